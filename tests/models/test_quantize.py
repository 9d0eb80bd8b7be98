"""int8 copies of exported folders: the recipe's ops, the manifest, the cache key, reuse."""

from __future__ import annotations

import json
from pathlib import Path

import onnx

from instructfast.models.quantize import quantized_folder, quantized_key
from tests.tiny_models import exported


def test_quantised_graph_is_cached_under_its_own_key_with_a_manifest(tmp_path):
    src = exported("embedder-bert")
    q = quantized_folder(src, cache=tmp_path)
    assert q.parent == tmp_path and q.name == f"{src.name}-int8-{quantized_key(src)}"
    m = json.loads((q / "manifest.json").read_text())
    src_manifest = json.loads((Path(src) / "manifest.json").read_text())
    assert m["precision"] == "int8" and m["quantization"]["method"] == "dynamic"
    assert m["quantization"]["from_sha256"] == src_manifest["files"]["model.onnx"]
    assert "verification" not in m  # the fp32 export's check against torch does not describe int8
    assert set(m["files"]) >= {"model.onnx", "tokenizer.json"} and m["kind"] == src_manifest["kind"]
    ops = [n.op_type for n in onnx.load(str(q / "model.onnx")).graph.node]
    # packed BERT: each layer's fused Attention becomes QAttention, the weight products int8
    assert "QAttention" in ops
    assert "MatMulInteger" in ops or "DynamicQuantizeMatMul" in ops
    assert "DequantizeLinear" not in ops  # embedding tables (Gather) stay fp32
    stamp = (q / "model.onnx").stat().st_mtime_ns
    assert quantized_folder(src, cache=tmp_path) == q and (q / "model.onnx").stat().st_mtime_ns == stamp  # reused
    assert quantized_folder(q) == q  # an int8 folder is not quantised again
