"""int8 copies of exported ONNX folders (ONNX Runtime's dynamic quantisation), cached under their own key.

Recipe (the one ``bench/bench_precision.py`` measured best on all-MiniLM-L6-v2, see
``bench/results/precision.md``): ``onnxruntime.quantization.quantize_dynamic`` with int8
weights **per output channel** and uint8 activations whose scale ORT computes per tensor at run
time; the ops quantised are the weight products (``MatMul`` and ``Gemm`` with a constant weight)
and ORT's fused ``Attention`` (which becomes ``QAttention``). Embedding tables (``Gather``) stay
fp32: quantising them saves memory, not time, and adds error. Alternatives measured and rejected
on the same records: per-tensor weights (median cosine to fp32 0.960 instead of 0.995), static
QDQ quantisation calibrated on the bundled sample (MinMax: 0.947), weight products only
without ``Attention`` (same error, slower).

What a user gives up: activation scales are computed over the whole batch tensor, so a row's
value moves slightly with its batch-mates (measured, and bounded in the tests); and vectors
differ from fp32 by ~0.5% in cosine, which reorders near-tied neighbour distances. The
fidelity on real records is measured in ``bench/results/precision.md``.

The quantised folder keeps the tokenizer and a manifest that says ``"precision": "int8"``, the
recipe, the fp32 folder it came from (with that graph's SHA-256) and the onnxruntime version;
its cache key covers all of these, so a new recipe, runtime or source makes a new folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from ..errors import MissingDependencyError
from .onnx_runtime import MANIFEST, read_manifest
from .registry import build_once, cache_dir, sha256_file

RECIPE_VERSION = "1"
OP_TYPES = ("MatMul", "Gemm", "Attention")
RECIPE: dict[str, Any] = {
    "method": "dynamic",
    "weights": "int8, per output channel",
    "activations": "uint8, per tensor, scale computed at run time",
    "op_types": list(OP_TYPES),
    "tool": "onnxruntime.quantization.quantize_dynamic",
}


def _runtime_version() -> str:
    import onnxruntime

    return str(onnxruntime.__version__)


def quantized_key(folder: str | os.PathLike) -> str:
    """Cache key of the int8 copy: the fp32 graph's content, the recipe and the runtime version."""
    manifest = read_manifest(folder)
    graph_sha = manifest.get("files", {}).get("model.onnx") or sha256_file(Path(folder) / "model.onnx")
    h = hashlib.sha256(f"{RECIPE_VERSION}|{json.dumps(RECIPE, sort_keys=True)}|{_runtime_version()}|".encode())
    h.update(graph_sha.encode())
    return h.hexdigest()[:16]


def quantized_folder(folder: str | os.PathLike, *, cache: Path | None = None) -> Path:
    """The int8 copy of an exported fp32 folder, made once into ``cache_dir()/onnx/`` and reused.

    Other processes asking for the same copy wait on a file lock, then read it.
    """
    src = Path(folder)
    manifest = read_manifest(src)
    if manifest.get("precision") == "int8":
        return src
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as e:  # pragma: no cover - onnxruntime without its quantization tools (needs `onnx`)
        msg = "int8 needs onnxruntime.quantization, which needs the `onnx` package: pip install onnx"
        raise MissingDependencyError(msg) from e
    root = cache or (cache_dir() / "onnx")

    def build(tmp: Path) -> None:
        for f in src.iterdir():
            if f.is_file() and f.name != MANIFEST and not f.name.startswith("model.onnx"):
                shutil.copy2(f, tmp / f.name)
        with _quiet():
            quantize_dynamic(
                str(src / "model.onnx"),
                str(tmp / "model.onnx"),
                weight_type=QuantType.QInt8,
                per_channel=True,
                reduce_range=False,  # VNNI's u8 x s8 products do not saturate (resolve_onnx checks for it)
                op_types_to_quantize=list(OP_TYPES),
                use_external_data_format=(src / "model.onnx.data").exists(),
                extra_options={"MatMulConstBOnly": True},
            )
        out = dict(manifest)
        out["precision"] = "int8"
        out["quantization"] = {
            **RECIPE,
            "from": str(src.resolve()),
            "from_sha256": manifest.get("files", {}).get("model.onnx"),
            "onnxruntime": _runtime_version(),
            "recipe_version": RECIPE_VERSION,
        }
        out.pop("verification", None)  # the fp32 export's check against torch does not hold for int8
        out["files"] = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        (tmp / MANIFEST).write_text(json.dumps(out, indent=2) + "\n")

    return build_once(root / f"{src.name}-int8-{quantized_key(src)}", build, done=MANIFEST)


@contextlib.contextmanager
def _quiet():
    """quantize_dynamic logs a 'run pre-processing first' warning on every call through the root logger."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


__all__ = ["OP_TYPES", "RECIPE", "quantized_folder", "quantized_key"]
