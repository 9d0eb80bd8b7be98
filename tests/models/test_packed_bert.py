"""The packed BERT embedder graph: feed layout, export, and equality with float64 HF forwards."""

from __future__ import annotations

import json
import random
import shutil

import numpy as np
import onnx
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from instructfast.models import packed_bert
from instructfast.models.export import ExportVerificationError, verify_folder
from instructfast.models.graphs import BUILDERS
from instructfast.models.onnx_runtime import OnnxModel, packed_feed
from tests.tiny_models import _corpus, exported, hf_folder


# -- the feed: pure numpy, checked against a row-by-row construction ------------------------
@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.integers(1, 999), min_size=1, max_size=12), min_size=1, max_size=9))
def test_packed_feed_layout(rows):
    f = packed_feed(rows)
    width = max(map(len, rows))
    flat = [t for r in rows for t in r]
    assert f["input_ids"].tolist() == flat
    assert f["position_ids"].tolist() == [i for r in rows for i in range(len(r))]
    assert f["pad_index"].shape == f["attention_mask"].shape == (len(rows), width)
    assert f["attention_mask"].dtype == np.int32 and f["input_ids"].dtype == np.int64
    for b, r in enumerate(rows):
        assert f["attention_mask"][b].tolist() == [1] * len(r) + [0] * (width - len(r))
        # the padded view shows the row's tokens in order (padding slots point at token 0)
        shown = f["input_ids"][f["pad_index"][b, : len(r)]].tolist()
        assert shown == list(r)
        assert (f["pad_index"][b, len(r) :] == 0).all()
    # unpad_index takes every real slot of the flattened [B * L] view, in packed order
    padded = f["input_ids"][f["pad_index"]].reshape(-1)
    assert padded[f["unpad_index"]].tolist() == flat
    assert len(set(f["unpad_index"].tolist())) == len(flat)


# -- float64 Hugging Face reference ---------------------------------------------------------
def _hf_float64(folder, rows: list[list[int]]) -> np.ndarray:
    """AutoModel forward in float64 on a right-padded batch, mean pooling, L2 normalisation."""
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(folder), attn_implementation="eager").double().eval()
    width = max(map(len, rows))
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    with torch.no_grad():
        h = model(input_ids=ids, attention_mask=mask).last_hidden_state
    m = mask.unsqueeze(-1).double()
    mean = (h * m).sum(1) / m.sum(1)
    return torch.nn.functional.normalize(mean, dim=1).numpy()


def _rows(model: OnnxModel, n: int, seed: int) -> list[list[int]]:
    texts = [t for t in _corpus() if t]
    random.Random(seed).shuffle(texts)
    # varied lengths, some past the window (truncated), plus a near-empty text
    texts = texts[:n] + [" ".join(texts[:40]), "ok"]
    return model.encode(texts, truncate=True)[0]


@pytest.mark.slow  # two tiny dynamo exports
@pytest.mark.parametrize(("kind", "layout"), [("embedder-bert", "packed"), ("embedder-distilbert", "padded")])
def test_export_layout_and_float64_parity(kind, layout):
    d = exported(kind)
    m = json.loads((d / "manifest.json").read_text())
    assert m["layout"] == layout
    ops = {(n.domain, n.op_type) for n in onnx.load(str(d / "model.onnx")).graph.node}
    if layout == "packed":
        assert m["inputs"] == packed_bert.INPUTS
        assert m["session"] == {"disabled_optimizers": ["SkipLayerNormFusion"]}
        assert m["graph_fusions"] == {"written": {"Attention": 2, "BiasGelu": 2}}
        assert ("com.microsoft", "Attention") in ops and ("com.microsoft", "BiasGelu") in ops
        assert ("com.microsoft", "SkipLayerNormalization") not in ops
    else:
        assert m["inputs"] == ["input_ids", "attention_mask"] and "session" not in m
    model = OnnxModel(d, device="cpu")
    rows = _rows(model, 60, seed=1)
    ref = _hf_float64(hf_folder(kind), rows)
    got = model.run(rows)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)
    # batch composition: each row alone, and shuffled small batches, give the same vectors
    alone = np.stack([model.run([r])[0] for r in rows])
    np.testing.assert_allclose(alone, got, atol=1e-5, rtol=0)
    small = OnnxModel(d, device="cpu", token_budget=300, max_rows=5, slack=None)
    np.testing.assert_allclose(small.run(rows), got, atol=1e-5, rtol=0)


@pytest.mark.slow
def test_packed_torch_module_equals_padded_hf():
    """The torch side of the packed graph (custom ops with torch bodies) equals the HF body."""
    graph = BUILDERS["embedder"](str(hf_folder("embedder-bert")))
    assert graph.layout == "packed" and isinstance(graph.module, packed_bert.PackedBertEmbedder)
    model = OnnxModel(exported("embedder-bert"), device="cpu")
    rows = _rows(model, 20, seed=2)
    with torch.no_grad():
        got = graph.module(*packed_bert.example_inputs(rows)).numpy()
    np.testing.assert_allclose(got, _hf_float64(hf_folder("embedder-bert"), rows), atol=1e-5, rtol=0)


@pytest.mark.slow
def test_verification_catches_a_packed_graph_that_differs(tmp_path):
    d = tmp_path / "copy"
    shutil.copytree(exported("embedder-bert"), d)
    graph = BUILDERS["embedder"](str(hf_folder("embedder-bert")))
    with torch.no_grad():  # the padded reference drifts from what was exported
        graph.reference.body.encoder.layer[1].output.dense.weight.mul_(1.5)
    manifest = json.loads((d / "manifest.json").read_text())
    with pytest.raises(ExportVerificationError, match="differs from torch"):
        verify_folder(d, graph, manifest)


def test_supports_only_plain_bert():
    from transformers import BertConfig, BertModel

    small = {
        "vocab_size": 50,
        "hidden_size": 8,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 8,
    }
    assert packed_bert.supports(BertModel(BertConfig(**small)))
    assert not packed_bert.supports(BertModel(BertConfig(**small, position_embedding_type="relative_key")))
    assert not packed_bert.supports(BertModel(BertConfig(**small, hidden_act="gelu_new")))
    with pytest.raises(ValueError, match="not a BERT encoder"):
        packed_bert.PackedBertEmbedder(BertModel(BertConfig(**small, hidden_act="relu")))


def test_contrib_schemas_are_removed_after_export():
    assert not onnx.defs.has("Attention", "com.microsoft")
    with packed_bert.contrib_schemas():
        assert onnx.defs.has("Attention", "com.microsoft") and onnx.defs.has("BiasGelu", "com.microsoft")
    assert not onnx.defs.has("Attention", "com.microsoft") and not onnx.defs.has("BiasGelu", "com.microsoft")


def test_unknown_layout_is_a_clear_error(tmp_path):
    d = tmp_path / "m"
    shutil.copytree(exported("embedder-bert"), d)
    m = json.loads((d / "manifest.json").read_text())
    m["layout"] = "ragged"
    (d / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ValueError, match="unknown graph layout 'ragged'"):
        OnnxModel(d, device="cpu")


@pytest.mark.slow
def test_cli_padded_export_gives_the_same_vectors(tmp_path):
    from instructfast.cli import main

    dest = tmp_path / "padded"
    assert main(["export", "embedder", "--from", str(hf_folder("embedder-bert")), "--to", str(dest), "--padded"]) == 0
    assert json.loads((dest / "manifest.json").read_text())["layout"] == "padded"
    packed = OnnxModel(exported("embedder-bert"), device="cpu")
    padded = OnnxModel(dest, device="cpu")
    rows = _rows(packed, 30, seed=3)
    np.testing.assert_allclose(padded.run(rows), packed.run(rows), atol=1e-5, rtol=0)
