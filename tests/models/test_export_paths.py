"""Export paths the real checkpoints take but the other tiny models do not: a pair classifier
with token type ids (BERT-style reward models), and weights in an external data file (models
over 2 GB, forced here by lowering the threshold)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from instructfast.models import export as export_mod
from instructfast.models.export import export, sha256_file
from instructfast.models.onnx_runtime import OnnxModel
from tests.tiny_models import _copy_minilm_tokenizer, exported, hf_folder

pytestmark = pytest.mark.slow  # tiny dynamo exports, a few seconds each

PAIRS = [
    ("Name three primary colours.", "Red, yellow and blue."),
    ("Translate 'good morning' into French.", "Bonjour."),
    ("Write a haiku about rain.", "Soft rain on the roof / the garden drinks slowly / puddles hold the sky"),
    ("2 + 2 = ?", "4"),
]


@pytest.fixture(scope="module")
def bert_pair(tmp_path_factory):
    """A tiny BertForSequenceClassification (one label) that takes token type ids."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("bert-pair")
    _copy_minilm_tokenizer(d)
    cfg = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=128,
        type_vocab_size=2,
        num_labels=1,
        initializer_range=0.2,
    )
    BertForSequenceClassification(cfg).eval().save_pretrained(d)
    return d


def test_pair_classifier_with_token_type_ids(bert_pair, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    dest = export("reward-pair", bert_pair, tmp_path / "onnx")
    m = json.loads((dest / "manifest.json").read_text())
    assert m["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]
    model = OnnxModel(dest, device="cpu")
    ids, types = model.encode(PAIRS)
    assert types is not None and all(set(t) == {0, 1} for t in types), "the answer segment has type 1"
    got = model.run(ids, types)

    tok = AutoTokenizer.from_pretrained(str(bert_pair))
    hf = AutoModelForSequenceClassification.from_pretrained(str(bert_pair)).double().eval()
    enc = tok([q for q, _ in PAIRS], [a for _, a in PAIRS], padding=True, return_tensors="pt")
    with torch.no_grad():
        ref = hf(**enc).logits[:, 0].numpy()
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)
    # the types reach the graph: all-zero types give different scores
    zeros = model.run(ids, [[0] * len(t) for t in types])
    assert np.abs(zeros - got).max() > 1e-3


@pytest.mark.parametrize("kind", ["reward-pair", "embedder-bert"])
def test_external_data_when_over_the_threshold(kind, tmp_path, monkeypatch):
    """Past the 2 GB protobuf limit the weights go to model.onnx.data; here forced at 0 bytes."""
    inline_dir = exported(kind)  # the shared single-file export, made before the threshold drops
    monkeypatch.setattr(export_mod, "_TWO_GB", 0)
    export_kind = "embedder" if kind.startswith("embedder") else kind
    dest = export(export_kind, hf_folder(kind), tmp_path / "ext")
    files = sorted(p.name for p in dest.iterdir())
    assert "model.onnx.data" in files and not any("unfused" in f for f in files)
    m = json.loads((dest / "manifest.json").read_text())
    assert m["files"]["model.onnx.data"] == sha256_file(dest / "model.onnx.data")
    assert (dest / "model.onnx").stat().st_size < (dest / "model.onnx.data").stat().st_size
    # same results as the single-file export of the same model
    inline = OnnxModel(inline_dir, device="cpu")
    external = OnnxModel(dest, device="cpu")
    ids, types = inline.encode(PAIRS if kind == "reward-pair" else [q + "\n" + a for q, a in PAIRS])
    np.testing.assert_allclose(external.run(ids, types), inline.run(ids, types), atol=1e-6, rtol=0)
