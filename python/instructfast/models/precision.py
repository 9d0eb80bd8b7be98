"""Which numeric precision each model slot runs at, and whether this machine can run it.

One place decides it for every slot (``score(options={"precision": ...})`` and the per-slot
``lm_precision``, ``embedder_precision``, ``reward_precision``, ``unieval_precision``):

* ``fp32``: today's exact results (the default everywhere except the LM on CUDA, which keeps
  its bf16 default when nothing is asked);
* ``bf16`` / ``fp16``: torch models (the causal LM; the torch embedder on CUDA). bf16 on a CPU
  needs AVX-512 BF16 or AMX: without them oneDNN emulates it and runs slower than fp32, so
  asking for it there is an error rather than a silent slowdown. fp16 is CUDA only (no
  half-precision GEMM on these CPUs);
* ``int8``: ONNX models on ONNX Runtime's CPU provider, dynamically quantised (see
  :mod:`instructfast.models.quantize`). The u8 x s8 kernels need VNNI (AVX-512 VNNI, AVX-VNNI,
  AMX) on x86: without it ORT's u8s8 products can saturate, so it is refused there;
* ``auto``: the reduced precision where this machine runs it, else fp32 with a counted note.

A global ``precision`` applies to the slots whose runtime implements it (``bf16`` sets the LM,
``int8`` the ONNX models); the others keep their default, and the run record says why. A
per-slot key naming a precision its runtime lacks is an error.
"""

from __future__ import annotations

import functools
import platform
from dataclasses import dataclass
from pathlib import Path

from .._typing import Precision
from ..errors import PrecisionError

# The formats each runtime implements: the torch LM and the torch embedder take a dtype, ONNX
# Runtime's CPU provider has int8 kernels but no bf16 kernels for most ops.
TORCH_FORMATS = ("fp32", "bf16", "fp16")
ONNX_FORMATS = ("fp32", "int8")
TORCH_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags Linux reports (``/proc/cpuinfo``); empty where it is not readable."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_bf16(flags: frozenset[str] | None = None) -> str | None:
    """The instruction set that runs bf16 products natively on this CPU, or ``None``."""
    flags = cpu_flags() if flags is None else flags
    for flag, name in (("amx_bf16", "AMX-BF16"), ("avx512_bf16", "AVX-512 BF16"), ("bf16", "Arm BF16")):
        if flag in flags:
            return name
    return None


def cpu_int8(flags: frozenset[str] | None = None) -> str | None:
    """The instruction set that runs u8 x s8 dot products natively on this CPU, or ``None``."""
    flags = cpu_flags() if flags is None else flags
    for flag, name in (
        ("amx_int8", "AMX-INT8"),
        ("avx512_vnni", "AVX-512 VNNI"),
        ("avx_vnni", "AVX-VNNI"),
        ("asimddp", "Arm dot product"),
    ):
        if flag in flags:
            return name
    return None


@dataclass(frozen=True)
class Resolved:
    """The precision a slot runs at, and why (``note`` is set when ``auto`` fell back)."""

    slot: str
    precision: str
    why: str
    note: str | None = None

    def describe(self) -> str:
        return f"{self.precision} ({self.why})"


@dataclass(frozen=True)
class Ask:
    """What a run asked of one slot: its own key (``lm_precision`` ...) and the global ``precision``."""

    slot: Precision | None = None
    all: Precision | None = None

    def of(self, formats: tuple[str, ...]) -> str | None:
        """The precision asked of a slot whose runtime has ``formats``: its own key, else the global
        one where the runtime implements it; ``None``: nothing asked (the slot's default)."""
        if self.slot is not None:
            return self.slot
        if self.all is not None and (self.all == "auto" or self.all in formats):
            return self.all
        return None


def resolve_torch(slot: str, want: str | None, device: str) -> Resolved:
    """The precision of a torch model on ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:N"``)."""
    cuda = device.startswith("cuda")
    if want is None:
        return Resolved(slot, "bf16" if cuda and slot == "lm" else "fp32", "default")
    if want not in TORCH_FORMATS + ("auto",):
        msg = (
            f"{slot}_precision={want!r}: the {slot} runs on torch, which here takes {list(TORCH_FORMATS)} or 'auto' "
            "(int8 applies to the ONNX models)"
        )
        raise PrecisionError(msg)
    if cuda:
        bf16_ok = _cuda_bf16(device)
        if want == "auto":
            return Resolved(slot, "bf16" if bf16_ok else "fp16", "auto on CUDA")
        if want == "bf16" and not bf16_ok:
            msg = f"{slot}_precision='bf16': this GPU ({device}) has no bf16 support; use 'fp16', 'fp32' or 'auto'"
            raise PrecisionError(msg)
        return Resolved(slot, want, f"asked, {device}")
    isa = cpu_bf16()
    if want == "auto":
        if isa:
            return Resolved(slot, "bf16", f"auto: {isa}")
        why = f"auto: this CPU ({_cpu_name()}) has no AVX-512 BF16 or AMX, so bf16 would run emulated"
        return Resolved(slot, "fp32", why, note="precision='auto' ran fp32: no bf16 instructions on this CPU")
    if want == "fp16":
        msg = f"{slot}_precision='fp16' needs a CUDA device (no half-precision GEMM on CPUs); on a CPU use 'bf16' or 'auto'"
        raise PrecisionError(msg)
    if want == "bf16" and not isa:
        msg = (
            f"{slot}_precision='bf16': this CPU ({_cpu_name()}) has no AVX-512 BF16 or AMX, so bf16 would run "
            "emulated and slower than fp32; use 'fp32', or 'auto' to fall back with a note"
        )
        raise PrecisionError(msg)
    return Resolved(slot, want, f"asked, {isa}" if want == "bf16" else "asked")


def resolve_onnx(slot: str, want: str | None, *, on_gpu: bool) -> Resolved:
    """The precision of an ONNX Runtime model (CPU provider unless ``on_gpu``)."""
    if want is None:
        return Resolved(slot, "fp32", "default")
    if want not in ONNX_FORMATS + ("auto",):
        msg = (
            f"{slot}_precision={want!r}: the {slot} runs on ONNX Runtime, whose CPU provider has no {want} kernels "
            f"for most ops; it takes {list(ONNX_FORMATS)} or 'auto'"
        )
        raise PrecisionError(msg)
    if want == "fp32":
        return Resolved(slot, "fp32", "asked")
    isa = cpu_int8()
    if on_gpu:
        problem = "the model runs on ONNX Runtime's CUDA provider, which has no kernels for int8 dynamic quantisation"
    elif not isa:
        problem = (
            f"this CPU ({_cpu_name()}) has no VNNI/AMX dot products (ORT's u8s8 int8 kernels can saturate without them)"
        )
    else:
        return Resolved(slot, "int8", f"{'auto' if want == 'auto' else 'asked'}: {isa}")
    if want == "auto":
        return Resolved(slot, "fp32", f"auto: {problem}", note="precision='auto' ran fp32: int8 unavailable here")
    msg = f"{slot}_precision='int8': {problem}; use 'fp32', or 'auto' to fall back with a note"
    raise PrecisionError(msg)


def _cuda_bf16(device: str) -> bool:
    import torch

    idx = int(device.split(":")[1]) if ":" in device else torch.cuda.current_device()
    with torch.cuda.device(idx):
        return bool(torch.cuda.is_bf16_supported())


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


__all__ = [
    "ONNX_FORMATS",
    "TORCH_DTYPES",
    "TORCH_FORMATS",
    "Ask",
    "Resolved",
    "cpu_bf16",
    "cpu_flags",
    "cpu_int8",
    "resolve_onnx",
    "resolve_torch",
]
