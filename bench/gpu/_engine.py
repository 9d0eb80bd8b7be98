"""Every engine internal the GPU scripts use, imported from the installed ``instructfast``, in one place.

The GPU scripts (``bench/bench_*_gpu.py``, ``bench/gpu/*.py``) take engine code only from here,
so when an engine module moves (as the log-prob dispatcher and its twin moved from
``instructfast.indicators`` to ``instructfast.ops``) the table below is the one place to change.

Names load on first use (a module ``__getattr__``), so a script pays only for what it touches:
the kNN part never imports triton or transformers. ``bench/gpu/run.sh`` installs the package first
(or, when the native build fails, runs with ``PYTHONPATH=python``; the kernels then come from the
checkout through the dispatcher's own loader).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

_DISPATCH = "instructfast.ops.logprob"
_TWIN = "instructfast.ops.logprob_torch"

# name -> (module, attribute)
_WHERE: dict[str, tuple[str, str]] = {
    "LMScorer": ("instructfast.models.lm_scorer", "LMScorer"),
    "Encoded": ("instructfast.models.lm_scorer", "Encoded"),
    "LoadedLM": ("instructfast.models.causal_lm", "LoadedLM"),
    "load_causal_lm": ("instructfast.models.causal_lm", "load_causal_lm"),
    "PromptTemplate": ("instructfast.prompts", "PromptTemplate"),
    "resolve_model": ("instructfast.models.registry", "resolve"),
    "resolve_impl": (_DISPATCH, "resolve_impl"),
    "token_logprobs_torch": (_TWIN, "token_logprobs_torch"),
    "fused_linear_logprobs_torch": (_TWIN, "fused_linear_logprobs_torch"),
    "NeighborIndex": ("instructfast.neighbors", "NeighborIndex"),
    "TorchEmbedder": ("instructfast.models.embedder_torch", "TorchEmbedder"),
    "length_buckets": ("instructfast.batching", "length_buckets"),
}
# Triton kernel modules, loaded the way the dispatcher loads them (``instructfast.kernels.<name>``
# when installed, else ``<repo>/kernels/<name>.py``), so the scripts time the module the engine runs.
_KERNELS = {"logprob_kernel": "logprob", "fused_kernel": "fused_linear_logprob"}


def native_impl() -> tuple[str, str]:
    """``(instructfast.IMPL, instructfast.IMPL_REASON)``: which text core loaded and why."""
    import instructfast

    return instructfast.IMPL, instructfast.IMPL_REASON


def __getattr__(name: str) -> Any:
    if name in _KERNELS:
        module: ModuleType = importlib.import_module(_DISPATCH)
        return module._import_kernel(_KERNELS[name])
    if name in _WHERE:
        module_name, attr = _WHERE[name]
        return getattr(importlib.import_module(module_name), attr)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


__all__ = sorted([*_WHERE, *_KERNELS, "native_impl"])
