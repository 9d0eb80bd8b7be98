"""The ONNX model filling a slot, exported into the cache first when the slot names a Hugging Face model.

One loader for every ONNX-runtime indicator (``reward``, ``unieval``) and the embedder, so
they share the export cache, the per-process model sharing and the kind check.
"""

from __future__ import annotations

from ..errors import ModelError
from ..options import ScoreOptions
from .export import cached_export
from .onnx_runtime import OnnxModel, cuda_provider, shared_model
from .precision import ONNX_FORMATS, Ask, Resolved, resolve_onnx
from .quantize import quantized_folder
from .registry import resolve


def load_onnx_slot(slot: str, options: ScoreOptions, *, kinds: tuple[str, ...]) -> tuple[OnnxModel, Resolved]:
    """The shared :class:`OnnxModel` for ``slot`` (manifest kind one of ``kinds``) and its precision.

    Batching settings come from the slot's option group (``reward_token_budget`` ...), then the
    ``onnx_*`` options, then the model's defaults. The precision comes from ``<slot>_precision``,
    then ``precision``; int8 runs the quantised copy of the fp32 graph (made once, cached).
    """
    group = getattr(options, slot)
    # checked before any export or quantisation: a precision the machine cannot run fails first
    precision = resolve_onnx(
        slot, Ask(group.precision, options.model.precision).of(ONNX_FORMATS), on_gpu=cuda_provider(options.device)
    )
    verify = options.model.verify_models
    folder = cached_export(slot, resolve(slot, options.models), verify=verify)
    if precision.precision == "int8":
        folder = quantized_folder(folder)
    model = shared_model(
        folder, device=options.device, threads=options.threads, verify=verify, **group.runtime(options.onnx)
    )
    if model.kind not in kinds:
        msg = (
            f"{folder} holds a {model.kind!r} export, not a {slot} model (expected {' or '.join(map(repr, kinds))}); "
            f"export one with `instructfast export {kinds[0]} --from MODEL --to DIR`"
        )
        raise ModelError(msg)
    return model, precision


__all__ = ["load_onnx_slot"]
