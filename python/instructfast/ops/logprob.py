"""Per-token log-probabilities ``log p(x_t | x_<t)``: the core of the ``perplexity`` and ``ifd`` indicators.

Two entry points, one contract (fp32 ``[N]`` out, fp32 accumulation for bf16/fp16/fp32 in):

* :func:`token_logprobs` from materialised logits ``[N, V]``;
* :func:`fused_linear_logprobs` from final hidden states ``[N, d]`` and the LM head, never
  building the N x V logits.

Implementation choice (``INSTRUCTFAST_KERNELS``):

* unset / ``auto``: CUDA tensors use the Triton kernels (``instructfast.kernels.logprob`` and
  ``instructfast.kernels.fused_linear_logprob``); when triton cannot be imported they fall back to
  the torch path with one :class:`~instructfast.errors.ImplementationFallbackWarning` per process.
  CPU tensors use the chunked torch path (``ops/logprob_torch.py``).
* ``triton``: always the kernels; raises when they cannot load. CPU tensors are accepted only
  when ``TRITON_INTERPRET=1`` was set before triton was imported (the tests do this).
* ``torch``: always the torch path.

(``INSTRUCTFAST_IMPL`` is the text core's switch; the kernels have their own.)

:func:`resolve_impl` reports the choice and why, for a run summary.
"""

from __future__ import annotations

import importlib
import os
import warnings
from types import ModuleType

import torch

from ..errors import (
    ArgumentError,
    ArgumentTypeError,
    ImplementationFallbackWarning,
    IndicatorUnavailableError,
    MissingDependencyError,
)
from .logprob_torch import fused_linear_logprobs_torch, token_logprobs_torch

IMPL_ENV = "INSTRUCTFAST_KERNELS"
_CHOICES = ("auto", "triton", "torch")
_FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)

_kernel_modules: dict[str, ModuleType] = {}
_fallback_warned = False


def _import_kernel(name: str) -> ModuleType:
    """``instructfast.kernels.<name>``: imported on first use, since importing triton is slow."""
    if name not in _kernel_modules:
        # Relative to this package rather than by absolute name, so the lookup never re-imports a
        # package that is still initialising.
        _kernel_modules[name] = importlib.import_module(f"{__package__.rsplit('.', 1)[0]}.kernels.{name}")
    return _kernel_modules[name]


def resolve_impl(device: torch.device | str, kernel: str = "logprob") -> tuple[str, str]:
    """Return ``("triton" | "torch", reason)`` for tensors on ``device`` under ``INSTRUCTFAST_KERNELS``.

    ``kernel`` is the kernel module that would be loaded (``"logprob"`` or ``"fused_linear_logprob"``).
    Raises :class:`~instructfast.errors.MissingDependencyError` when the kernels were asked for
    explicitly and cannot load.
    """
    global _fallback_warned
    device = torch.device(device)
    choice = os.environ.get(IMPL_ENV, "auto").strip().lower() or "auto"
    if choice not in _CHOICES:
        msg = f"`{IMPL_ENV}` must be one of {_CHOICES}, got {choice!r}"
        raise ArgumentError(msg)
    if choice == "torch":
        return "torch", f"torch (forced by {IMPL_ENV}={choice})"
    if device.type != "cuda" and choice != "triton":
        return "torch", f"torch ({device.type} tensors)"
    try:
        module = _import_kernel(kernel)
    except ImportError as exc:
        if choice == "triton":
            msg = (
                f"{IMPL_ENV}={choice} but the Triton kernel instructfast.kernels.{kernel} failed to import: "
                f"{exc}. Install it with `pip install 'instructfast[gpu]'` (triton>=3.0)."
            )
            raise MissingDependencyError(msg) from exc
        reason = f"torch (Triton kernels unavailable: {exc})"
        if not _fallback_warned:
            _fallback_warned = True
            warnings.warn(reason, ImplementationFallbackWarning, stacklevel=3)
        return "torch", reason
    if device.type != "cuda" and not module.INTERPRETED:
        msg = (
            f"{IMPL_ENV}=triton with {device.type} tensors needs the Triton interpreter: set "
            "TRITON_INTERPRET=1 in the environment before triton is imported, or move the tensors to CUDA"
        )
        raise IndicatorUnavailableError(msg)
    if choice == "triton":
        return "triton", f"triton (forced by {IMPL_ENV}=triton)"
    return "triton", "triton (cuda tensors)"


def _check_tensor(name: str, value: object) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        msg = f"`{name}` must be a torch.Tensor, got {type(value).__name__}"
        raise ArgumentTypeError(msg)
    return value


def _check_float(name: str, tensor: torch.Tensor) -> None:
    if tensor.dtype not in _FLOAT_DTYPES:
        msg = f"`{name}` must be float32, float16 or bfloat16, got {tensor.dtype}"
        raise ArgumentError(msg)


def _check_targets(targets: object, n_rows: int, ref_name: str, ref: torch.Tensor, ref_dims: str) -> torch.Tensor:
    targets = _check_tensor("targets", targets)
    if targets.shape != (n_rows,):
        msg = (
            f"`targets` must have shape [N] matching {ref_name} {ref_dims}, got targets "
            f"{tuple(targets.shape)} and {ref_name} {tuple(ref.shape)}"
        )
        raise ArgumentError(msg)
    if targets.dtype == torch.bool or targets.is_floating_point() or targets.is_complex():
        msg = f"`targets` must hold integer token ids (int64), got {targets.dtype}"
        raise ArgumentError(msg)
    if targets.device != ref.device:
        msg = f"`targets` must be on the device of `{ref_name}` ({ref.device}), got {targets.device}"
        raise ArgumentError(msg)
    return targets


def _check_ignore_index(ignore_index: object) -> int:
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        msg = f"`ignore_index` must be an int, got {ignore_index!r}"
        raise ArgumentTypeError(msg)
    return ignore_index


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor, *, ignore_index: int = -100) -> torch.Tensor:
    """Log-probability of each target token under materialised logits.

    ``out[i] = logits[i, targets[i]] - logsumexp(logits[i, :])``, computed in one pass over each
    row with fp32 accumulation whatever the logits dtype. No gradient is recorded.

    Parameters
    ----------
    logits : torch.Tensor
        ``[N, V]`` float32, float16 or bfloat16 (e.g. a causal LM's logits flattened over
        batch and time, already shifted so row ``i`` predicts ``targets[i]``). The vocabulary axis
        must be the last one; rows may be strided.
    targets : torch.Tensor
        ``[N]`` integer token ids on the same device.
    ignore_index : int, default -100
        Target value marking positions not to score (prompt, padding). Those positions get
        ``0.0`` so that a sum over a sequence is its log-likelihood; divide by the number of
        non-ignored targets for the mean.

    Returns
    -------
    torch.Tensor
        ``[N]`` float32 on the device of ``logits``. A target outside ``[0, V)`` other than
        ``ignore_index`` gives NaN (checking the range up front would synchronise the device).
        A row's value does not depend on the other rows.

    Raises
    ------
    instructfast.ArgumentTypeError
        If an argument is not a tensor (or ``ignore_index`` not an int).
    instructfast.ArgumentError
        If shapes, dtypes or devices do not fit together.
    instructfast.MissingDependencyError
        If ``INSTRUCTFAST_KERNELS=triton`` and triton cannot be imported.

    Examples
    --------
    >>> import torch
    >>> from instructfast.ops.logprob import token_logprobs
    >>> logits = torch.tensor([[0.0, 0.0], [3.0, 1.0], [5.0, 5.0]])
    >>> token_logprobs(logits, torch.tensor([1, 0, -100]))
    tensor([-0.6931, -0.1269,  0.0000])
    """
    logits = _check_tensor("logits", logits)
    ignore_index = _check_ignore_index(ignore_index)
    if logits.ndim != 2:
        msg = f"`logits` must have shape [N, V], got {tuple(logits.shape)}"
        raise ArgumentError(msg)
    _check_float("logits", logits)
    n_rows, n_vocab = logits.shape
    if n_vocab == 0:
        msg = f"`logits` must have a non-empty vocabulary axis, got shape {tuple(logits.shape)}"
        raise ArgumentError(msg)
    targets = _check_targets(targets, n_rows, "logits", logits, "[N, V]")

    impl, _ = resolve_impl(logits.device, "logprob")
    with torch.no_grad():
        if impl == "triton":
            return _import_kernel("logprob").logprob_forward(logits, targets, ignore_index)
        return token_logprobs_torch(logits, targets, ignore_index)


def fused_linear_logprobs(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    ignore_index: int = -100,
) -> torch.Tensor:
    """Log-probability of each target token straight from hidden states and the LM head.

    ``out[i] = z[i, targets[i]] - logsumexp(z[i, :])`` with ``z = hidden @ weight.T + bias``,
    without materialising the N x V logits: on CUDA the Triton kernel tiles the head over the
    vocabulary and keeps a running max and sum per row (extra memory O(N)); elsewhere the torch
    path works on row chunks of at most 256 MiB of fp32 logits. Products are exact and sums fp32
    for bf16/fp16/fp32 inputs (no TF32). No gradient is recorded.

    Parameters
    ----------
    hidden : torch.Tensor
        ``[N, d]`` final hidden states (after the last norm), float32, float16 or bfloat16. Rows
        with ``ignore_index`` targets still cost their share of the matmul: select the scored
        positions first.
    weight : torch.Tensor
        ``[V, d]`` LM head weight (``lm_head.weight``, tied embeddings included), same dtype and
        device as ``hidden``.
    targets : torch.Tensor
        ``[N]`` integer token ids on the same device.
    bias : torch.Tensor, optional
        ``[V]`` LM head bias, any float dtype; accumulated in fp32.
    ignore_index : int, default -100
        Target value marking positions not to score; they get ``0.0``.

    Returns
    -------
    torch.Tensor
        ``[N]`` float32 on the device of ``hidden``. A target outside ``[0, V)`` other than
        ``ignore_index`` gives NaN. A row's value does not depend on the other rows.

    Raises
    ------
    instructfast.ArgumentTypeError
        If an argument is not a tensor (or ``ignore_index`` not an int).
    instructfast.ArgumentError
        If shapes, dtypes or devices do not fit together.
    instructfast.MissingDependencyError
        If ``INSTRUCTFAST_KERNELS=triton`` and triton cannot be imported.

    Examples
    --------
    >>> import torch
    >>> from instructfast.ops.logprob import fused_linear_logprobs
    >>> hidden = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    >>> weight = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    >>> fused_linear_logprobs(hidden, weight, torch.tensor([0, 1]))
    tensor([-0.5514, -0.2395])
    """
    hidden = _check_tensor("hidden", hidden)
    weight = _check_tensor("weight", weight)
    ignore_index = _check_ignore_index(ignore_index)
    if hidden.ndim != 2:
        msg = f"`hidden` must have shape [N, d], got {tuple(hidden.shape)}"
        raise ArgumentError(msg)
    _check_float("hidden", hidden)
    n_rows, d_model = hidden.shape
    if weight.ndim != 2 or weight.shape[1] != d_model:
        msg = f"`weight` must have shape [V, d] with d = {d_model} to match hidden [N, d], got {tuple(weight.shape)}"
        raise ArgumentError(msg)
    if weight.shape[0] == 0 or d_model == 0:
        msg = f"`weight` must be non-empty, got shape {tuple(weight.shape)}"
        raise ArgumentError(msg)
    if weight.dtype != hidden.dtype:
        msg = f"`weight` must have the dtype of `hidden` ({hidden.dtype}), got {weight.dtype}"
        raise ArgumentError(msg)
    if weight.device != hidden.device:
        msg = f"`weight` must be on the device of `hidden` ({hidden.device}), got {weight.device}"
        raise ArgumentError(msg)
    if bias is not None:
        bias = _check_tensor("bias", bias)
        if bias.shape != (weight.shape[0],):
            msg = f"`bias` must have shape [V] = ({weight.shape[0]},) to match weight [V, d], got {tuple(bias.shape)}"
            raise ArgumentError(msg)
        if not bias.is_floating_point():
            msg = f"`bias` must be a float tensor, got {bias.dtype}"
            raise ArgumentError(msg)
        if bias.device != hidden.device:
            msg = f"`bias` must be on the device of `hidden` ({hidden.device}), got {bias.device}"
            raise ArgumentError(msg)
    targets = _check_targets(targets, n_rows, "hidden", hidden, "[N, d]")

    impl, _ = resolve_impl(hidden.device, "fused_linear_logprob")
    with torch.no_grad():
        if impl == "triton":
            kernel = _import_kernel("fused_linear_logprob")
            return kernel.fused_linear_logprob_forward(hidden, weight, targets, bias, ignore_index)
        return fused_linear_logprobs_torch(hidden, weight, targets, bias, ignore_index)


__all__ = ["IMPL_ENV", "fused_linear_logprobs", "resolve_impl", "token_logprobs"]
