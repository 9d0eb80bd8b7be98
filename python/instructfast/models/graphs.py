"""The torch modules that become ONNX graphs, one per export kind.

Each wrapper takes integer tensors (``input_ids``, ``attention_mask``, optionally
``token_type_ids``) with dynamic batch and sequence axes, and returns exactly what the
indicator needs, so the ONNX graph holds no work the runtime throws away:

* ``reward-pair``: a Hugging Face sequence classifier on (question, answer) pairs;
  output ``score`` [batch], the first logit.
* ``reward-oasst``: the OpenAssistant ``GPTNeoXRewardModel`` layout (``gpt_neox.*`` body,
  ``out_proj`` Linear(hidden, 1) head), loaded from its weights without the Open-Assistant
  training package; output ``score`` [batch] from the last non-padding token (right padding).
* ``unieval``: a T5 encoder plus the first decoder step, LM head sliced to the "Yes" and
  "No" rows; output ``yes_no_logits`` [batch, 2].
* ``embedder``: a BERT-style body, mean pooling over the attention mask and L2
  normalisation; output ``embedding`` [batch, dim] (what sentence-transformers computes
  with ``normalize_embeddings=True``). BERT bodies are exported as a packed graph that
  spends nothing on padding (:mod:`instructfast.models.packed_bert`); other bodies padded.

Loading needs ``torch`` and ``transformers``; only the export path imports this module.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ModelError, ModelFileError


@dataclass
class Graph:
    """A wrapper module ready to export, with what the manifest and verifier need to know."""

    kind: str
    module: nn.Module
    tokenizer: Any  # a transformers fast tokenizer
    input_names: list[str]
    output_names: list[str]
    max_length: int
    extra: dict[str, Any] = field(default_factory=dict)  # kind-specific manifest entries
    # packed graphs (see packed_bert): how to trace them, and the padded module they must equal
    layout: str = "padded"
    example: Callable[[list[list[int]]], tuple] | None = None  # token rows -> graph inputs
    dynamic_shapes: dict | None = None
    translations: dict | None = None  # custom_translation_table for the exporter
    export_context: Callable[[], Any] | None = None  # context manager the export runs in
    session: dict[str, Any] = field(default_factory=dict)  # ORT session settings for the manifest
    reference: nn.Module | None = None  # torch model on (input_ids, attention_mask); default: module


class PairClassifier(nn.Module):
    """Sequence classifier: score = first logit."""

    def __init__(self, model: nn.Module, with_token_types: bool) -> None:
        super().__init__()
        self.model = model
        self.with_token_types = with_token_types

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        kw = {"token_type_ids": token_type_ids} if self.with_token_types else {}
        return self.model(input_ids=input_ids, attention_mask=attention_mask, **kw).logits[:, 0]


class OasstReward(nn.Module):
    """GPT-NeoX body + scalar head; the score is read at each row's last real token."""

    def __init__(self, body: nn.Module, head: nn.Linear) -> None:
        super().__init__()
        self.body = body
        self.out_proj = head

    def forward(self, input_ids, attention_mask):
        h = self.body(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        last = attention_mask.sum(dim=1) - 1  # right padding: the last real token
        pooled = h[torch.arange(h.shape[0], device=h.device), last]
        return self.out_proj(pooled)[:, 0]


class UniEvalYesNo(nn.Module):
    """T5 encoder + one decoder step from the start token; logits of ("Yes", "No") only."""

    def __init__(self, model: nn.Module, yes_id: int, no_id: int) -> None:
        super().__init__()
        self.encoder = model.get_encoder()
        self.decoder = model.get_decoder()
        self.start_id = int(model.config.decoder_start_token_id)
        cfg = model.config
        # HF T5 rescales the decoder output before a tied LM head; keep its rule
        scale = getattr(cfg, "scale_decoder_outputs", getattr(cfg, "tie_word_embeddings", True))
        self.scale = float(cfg.d_model) ** -0.5 if scale else 1.0
        head = model.get_output_embeddings().weight.detach()[[yes_id, no_id]].clone()
        self.head = nn.Parameter(head, requires_grad=False)

    def forward(self, input_ids, attention_mask):
        enc = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        start = torch.full((input_ids.shape[0], 1), self.start_id, dtype=input_ids.dtype, device=input_ids.device)
        dec = self.decoder(
            input_ids=start,
            encoder_hidden_states=enc,
            encoder_attention_mask=attention_mask,
            use_cache=False,
        ).last_hidden_state[:, 0]
        return (dec * self.scale) @ self.head.T


class MeanPoolEmbedder(nn.Module):
    """BERT body, mean pooling over real tokens, unit L2 norm (sentence-transformers' recipe)."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, input_ids, attention_mask):
        h = self.body(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        m = attention_mask.unsqueeze(-1).to(h.dtype)
        mean = (h * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)
        return torch.nn.functional.normalize(mean, p=2.0, dim=1)


def _config_dict(src: str) -> dict:
    p = Path(src) / "config.json"
    if p.exists():
        return json.loads(p.read_text())
    from transformers.utils import cached_file  # hub id: same path as from_pretrained

    return json.loads(Path(cached_file(src, "config.json")).read_text())


def _window(tokenizer, config, override: int | None, default_cap: int) -> int:
    if override:
        return int(override)
    cands = [default_cap]
    tm = getattr(tokenizer, "model_max_length", None)
    if isinstance(tm, int) and 0 < tm < 10**8:
        cands.append(tm)
    pe = getattr(config, "max_position_embeddings", None)
    if isinstance(pe, int) and pe > 0:
        cands.append(pe)
    return min(cands)


def _tokenizer(src: str, revision: str | None):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(src, revision=revision, use_fast=True)
    if not getattr(tok, "is_fast", False):
        msg = f"{src}: the tokenizer has no fast (tokenizer.json) version; instructfast's runtime needs one"
        raise ModelError(msg)
    return tok


def build_reward_pair(src: str, *, revision: str | None = None, max_length: int | None = None) -> Graph:
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(src, revision=revision).eval()
    tok = _tokenizer(src, revision)
    types = int(getattr(model.config, "type_vocab_size", 0) or 0) > 0
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if types else [])
    return Graph(
        "reward-pair",
        PairClassifier(model, types),
        tok,
        names,
        ["reward_score"],
        _window(tok, model.config, max_length, 512),
    )


def _load_state_dict(src: str, revision: str | None) -> dict[str, torch.Tensor]:
    """All weight tensors of a checkpoint folder or hub id (safetensors or torch .bin, sharded or not)."""
    from transformers.utils import cached_file

    def get(name: str) -> Path | None:
        p = Path(src) / name
        if p.exists():
            return p
        if Path(src).is_dir():
            return None
        try:
            f = cached_file(src, name, revision=revision, _raise_exceptions_for_missing_entries=False)
        except OSError:
            return None
        return Path(f) if f else None

    for single, index in (
        ("model.safetensors", "model.safetensors.index.json"),
        ("pytorch_model.bin", "pytorch_model.bin.index.json"),
    ):
        files: list[Path] = []
        if (f := get(single)) is not None:
            files = [f]
        elif (ix := get(index)) is not None:
            shards = sorted(set(json.loads(ix.read_text())["weight_map"].values()))
            files = [get(s) for s in shards]  # type: ignore[misc]
            if any(f is None for f in files):
                msg = f"{src}: shard listed in {index} is missing"
                raise ModelFileError(msg)
        if files:
            state: dict[str, torch.Tensor] = {}
            for f in files:
                if f.suffix == ".safetensors":
                    from safetensors.torch import load_file

                    state.update(load_file(str(f)))
                else:
                    state.update(torch.load(str(f), map_location="cpu", weights_only=True))
            return state
    msg = f"{src}: no model.safetensors or pytorch_model.bin (sharded or not) found"
    raise ModelFileError(msg)


def build_reward_oasst(src: str, *, revision: str | None = None, max_length: int | None = None) -> Graph:
    from transformers import GPTNeoXConfig, GPTNeoXModel

    raw = _config_dict(src)
    pooling = raw.get("pooling", "last")
    if pooling != "last":
        msg = f"{src}: reward-oasst supports pooling='last' (the OpenAssistant checkpoints), got {pooling!r}"
        raise ModelError(msg)
    cfg_fields = {k: v for k, v in raw.items() if k not in ("model_type", "architectures", "auto_map", "pooling")}
    config = GPTNeoXConfig(**cfg_fields)
    body = GPTNeoXModel(config)
    state = _load_state_dict(src, revision)
    body_state = {k.removeprefix("gpt_neox."): v for k, v in state.items() if k.startswith("gpt_neox.")}
    if not body_state:
        msg = f"{src}: no `gpt_neox.*` weights; is this an OpenAssistant GPTNeoXRewardModel checkpoint?"
        raise ModelError(msg)
    missing, unexpected = body.load_state_dict(body_state, strict=False)
    missing = [m for m in missing if not m.endswith(("rotary_emb.inv_freq", "masked_bias", ".bias_mask"))]
    unexpected = [u for u in unexpected if not u.endswith(("rotary_emb.inv_freq", "attention.bias", "masked_bias"))]
    if missing or unexpected:
        msg = (
            f"{src}: GPT-NeoX body weights do not match its config (missing {missing[:5]}, unexpected {unexpected[:5]})"
        )
        raise ModelError(msg)
    if "out_proj.weight" not in state:
        msg = f"{src}: no `out_proj.weight` (the scalar reward head of GPTNeoXRewardModel)"
        raise ModelError(msg)
    w = state["out_proj.weight"]
    head = nn.Linear(w.shape[1], w.shape[0], bias="out_proj.bias" in state)
    with torch.no_grad():
        head.weight.copy_(w.float())
        if head.bias is not None:
            head.bias.copy_(state["out_proj.bias"].float())
    body = body.float().eval()
    tok = _tokenizer(src, revision)
    for special in ("<|prompter|>", "<|assistant|>", "<|endoftext|>"):
        if tok.convert_tokens_to_ids(special) in (None, tok.unk_token_id):
            msg = f"{src}: the tokenizer has no {special} token; not an OpenAssistant reward model tokenizer"
            raise ModelError(msg)
    return Graph(
        "reward-oasst",
        OasstReward(body, head).eval(),
        tok,
        ["input_ids", "attention_mask"],
        ["reward_score"],
        _window(tok, config, max_length, 2048),
        {"template": "<|prompter|>{prompt}<|endoftext|><|assistant|>{output}<|endoftext|>"},
    )


def yes_no_ids(tok) -> tuple[int, int]:
    """Token ids of "Yes" and "No" as UniEval reads them (first id of each word, no special tokens)."""
    ids = []
    for word in ("Yes", "No"):
        enc = tok(word, add_special_tokens=False)["input_ids"]
        if not enc or enc[0] == tok.unk_token_id:
            msg = f"the UniEval tokenizer has no token for {word!r}"
            raise ModelError(msg)
        ids.append(int(enc[0]))
    return ids[0], ids[1]


def build_unieval(src: str, *, revision: str | None = None, max_length: int | None = None) -> Graph:
    from transformers import AutoModelForSeq2SeqLM

    # eager attention: what the SPEC found to export correctly
    model = AutoModelForSeq2SeqLM.from_pretrained(src, revision=revision, attn_implementation="eager").eval()
    tok = _tokenizer(src, revision)
    yes, no = yes_no_ids(tok)
    return Graph(
        "unieval",
        UniEvalYesNo(model, yes, no).eval(),
        tok,
        ["input_ids", "attention_mask"],
        ["yes_no_logits"],
        int(max_length or 1024),  # UniEval truncates its inputs at 1024 tokens
        {"yes_id": yes, "no_id": no},
    )


def _sbert_settings(src: str) -> tuple[int | None, str]:
    """(max_seq_length, pooling mode) from a sentence-transformers folder, when present."""
    p = Path(src)
    max_len = None
    pooling = "mean"
    cfg = p / "sentence_bert_config.json"
    if cfg.exists():
        max_len = json.loads(cfg.read_text()).get("max_seq_length")
    pool = p / "1_Pooling" / "config.json"
    if pool.exists():
        pc = json.loads(pool.read_text())
        modes = [
            k.removeprefix("pooling_mode_").removesuffix("_tokens")
            for k, v in pc.items()
            if k.startswith("pooling_mode_") and v
        ]
        pooling = "+".join(modes) or "mean"
    return max_len, pooling


def build_embedder(
    src: str, *, revision: str | None = None, max_length: int | None = None, packed: bool = True
) -> Graph:
    from transformers import AutoModel

    sbert_len, pooling = _sbert_settings(src)
    if pooling != "mean":
        msg = f"{src}: the embedder export supports mean pooling (SentenceBERT), this model uses {pooling!r}"
        raise ModelError(msg)
    # eager attention exports to plain MatMul/Softmax that ORT's optimiser fuses
    body = AutoModel.from_pretrained(src, revision=revision, attn_implementation="eager").eval()
    tok = _tokenizer(src, revision)
    padded = MeanPoolEmbedder(body).eval()
    window = _window(tok, body.config, max_length or sbert_len, 512)
    extra = {"dim": int(body.config.hidden_size), "pooling": "mean", "normalize": "l2"}
    from . import packed_bert

    if not (packed and packed_bert.supports(body)):
        return Graph("embedder", padded, tok, ["input_ids", "attention_mask"], ["sentence_embedding"], window, extra)
    return Graph(
        "embedder",
        packed_bert.PackedBertEmbedder(body).eval(),
        tok,
        list(packed_bert.INPUTS),
        ["sentence_embedding"],
        window,
        extra,
        layout="packed",
        example=packed_bert.example_inputs,
        dynamic_shapes=packed_bert.dynamic_shapes(),
        translations=packed_bert.translation_table(),
        export_context=packed_bert.contrib_schemas,
        session=dict(packed_bert.SESSION),
        reference=padded,
    )


BUILDERS = {
    "reward-pair": build_reward_pair,
    "reward-oasst": build_reward_oasst,
    "unieval": build_unieval,
    "embedder": build_embedder,
}
