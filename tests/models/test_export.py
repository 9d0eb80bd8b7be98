"""`instructfast export`: folder contents, manifest, verification against torch, errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from instructfast.models.export import (
    ExportError,
    ExportVerificationError,
    export,
    reward_kind,
    sha256_file,
    verify_folder,
)
from instructfast.models.graphs import BUILDERS
from instructfast.models.onnx_runtime import OnnxModel
from tests.tiny_models import exported, hf_folder

KINDS = ["reward-pair", "reward-oasst", "unieval"]
pytestmark = pytest.mark.slow  # three dynamo exports (~15 s each on 2 cores), shared with the indicator tests


@pytest.mark.parametrize("kind", KINDS)
def test_folder_and_manifest(kind):
    d = exported(kind)
    m = json.loads((d / "manifest.json").read_text())
    assert m["format"] == "instructfast-onnx" and m["kind"] == kind
    assert m["opset"] == 18
    assert m["source"] == str(hf_folder(kind).resolve())
    assert m["inputs"] == ["input_ids", "attention_mask"]  # tiny DeBERTa has type_vocab_size=0, like v3
    assert m["outputs"] == (["yes_no_logits"] if kind == "unieval" else ["reward_score"])
    assert m["max_length"] == {"reward-pair": 256, "reward-oasst": 256, "unieval": 1024}[kind]
    assert "model.onnx" in m["files"] and "tokenizer.json" in m["files"]
    for name, digest in m["files"].items():
        assert sha256_file(d / name) == digest
    assert not list(d.glob("*.data")), "small models keep their weights inside model.onnx"
    v = m["verification"]
    assert v["samples"] >= 5 and max(v["max_abs_diff_alone"], v["max_abs_diff_batched"]) <= v["tolerance"]
    if kind == "unieval":
        tok = __import__("transformers").AutoTokenizer.from_pretrained(str(hf_folder(kind)))
        assert (m["yes_id"], m["no_id"]) == (tok("Yes").input_ids[0], tok("No").input_ids[0])


@pytest.mark.parametrize("kind", KINDS)
def test_verification_fails_loudly_on_a_wrong_graph(kind, tmp_path):
    """The verifier compares the folder with a torch module; perturbed weights must be caught."""
    d = tmp_path / "copy"
    shutil.copytree(exported(kind), d)
    graph = BUILDERS[kind](str(hf_folder(kind)))
    with torch.no_grad():
        p = [p for n, p in graph.module.named_parameters() if p.ndim == 2][-1]
        p.add_(torch.randn_like(p) * 0.5)
    manifest = json.loads((d / "manifest.json").read_text())
    with pytest.raises(ExportVerificationError, match="differs from torch"):
        verify_folder(d, graph, manifest)
    assert not (d / "manifest.json").exists(), "a folder that failed verification must not load"


def test_runtime_padding_invariance_and_order(rng):
    """A row alone vs in one padded batch (and bucketed batches) within 1e-4, results in input order."""
    for kind in KINDS:
        m = OnnxModel(exported(kind), device="cpu", threads=1)
        vocab = 300
        lengths = rng.integers(3, 60, size=9)
        ids = [[int(x) for x in rng.integers(5, vocab, size=n)] for n in lengths]
        one_batch = OnnxModel(
            exported(kind), device="cpu", threads=1, token_budget=1 << 20, max_rows=1 << 20, slack=None
        )
        batched = one_batch.run(ids)
        bucketed = OnnxModel(exported(kind), device="cpu", threads=1, token_budget=64, max_rows=3, slack=0.0).run(ids)
        alone = np.stack([m.run([x])[0] for x in ids])
        np.testing.assert_allclose(batched, alone, atol=1e-4, rtol=1e-4)
        np.testing.assert_allclose(bucketed, alone, atol=1e-4, rtol=1e-4)
        assert np.ptp(alone, axis=0).max() > 1e-3, "rows must differ, or order is not checked"


def test_reward_kind_detection():
    assert reward_kind(str(hf_folder("reward-oasst"))) == "reward-oasst"
    assert reward_kind(str(hf_folder("reward-pair"))) == "reward-pair"
    assert reward_kind("OpenAssistant/oasst-rm-2.1-pythia-1.4b-epoch-2.5") == "reward-oasst"


def test_errors(tmp_path, monkeypatch):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("x")
    with pytest.raises(ExportError, match="not empty"):
        export("unieval", hf_folder("unieval"), tmp_path / "busy")
    with pytest.raises(ValueError, match="unknown export kind"):
        export("bert", hf_folder("unieval"), tmp_path / "out")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ExportError, match="hub id"):
        export("unieval", "MingZhong/unieval-dialog", tmp_path / "hub")
    # a folder that is not an OpenAssistant reward model is refused with the reason
    with pytest.raises(ValueError, match="gpt_neox"):
        export("reward-oasst", hf_folder("reward-pair"), tmp_path / "wrong")


def test_cli_models_lists_export_commands(capsys):
    from instructfast.cli import main

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "export: instructfast export reward-oasst --from OpenAssistant/oasst-rm-2.1-pythia-1.4b-epoch-2.5" in out
    assert "export: instructfast export unieval --from MingZhong/unieval-dialog" in out
    assert "embedder: hf-folder" in out and "packaged default" in out
