"""The ONNX model filling a slot, exported into the cache first when the slot names a Hugging Face model.

One loader for every ONNX-runtime indicator (``reward``, ``unieval``) and the embedder, so
they share the export cache, the per-process model sharing and the kind check.
"""

from __future__ import annotations

from ..errors import ModelError
from ..options import ScoreOptions
from .export import cached_export
from .onnx_runtime import OnnxModel, shared_model
from .registry import resolve


def load_onnx_slot(slot: str, options: ScoreOptions, *, kinds: tuple[str, ...]) -> OnnxModel:
    """The shared :class:`OnnxModel` for ``slot``, whose manifest kind must be one of ``kinds``.

    Batching settings come from the slot's option group (``reward_token_budget`` ...), then the
    ``onnx_*`` options, then the model's defaults.
    """
    verify = options.model.verify_models
    folder = cached_export(slot, resolve(slot, options.models), verify=verify)
    group = getattr(options, slot)
    model = shared_model(
        folder, device=options.device, threads=options.threads, verify=verify, **group.runtime(options.onnx)
    )
    if model.kind not in kinds:
        msg = (
            f"{folder} holds a {model.kind!r} export, not a {slot} model (expected {' or '.join(map(repr, kinds))}); "
            f"export one with `instructfast export {kinds[0]} --from MODEL --to DIR`"
        )
        raise ModelError(msg)
    return model


__all__ = ["load_onnx_slot"]
