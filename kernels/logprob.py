"""Kernel (a): token log-probabilities from materialised logits, in one pass over each row.

``out[i] = logits[i, targets[i]] - logsumexp(logits[i, :])`` in fp32, for bf16/fp16/fp32 logits
``[N, V]`` and integer ``targets [N]``. One program per row walks the vocabulary in ``BLOCK_V``
chunks keeping a running max and a running sum of exponentials (online log-sum-exp, Milakov &
Gimelshein 2018, arXiv 1805.02867), so each logit is read from memory exactly once: the op is
bandwidth-bound and the target is ~70% of HBM bandwidth (SPEC section 5).

Conventions (shared with ``instructfast.indicators.logprob_torch``, the torch twin):

* ``targets[i] == ignore_index`` gives ``0.0`` (not NaN): summing a row range then yields the
  sequence log-likelihood directly; divide by the count of non-ignored targets for a mean.
* a target outside ``[0, V)`` that is not ``ignore_index`` gives ``NaN``: checking the range up
  front would cost a device synchronisation per call, and an out-of-bounds read is never made.

Only ``torch`` and ``triton`` are imported (absolutely), so a source checkout can import this file
as ``kernels.logprob`` before the package is installed.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

# 4096 logits per loop step: 8 KiB of bf16 per row per step, i.e. 16 elements (two 16-byte
# vector loads) per thread at 8 warps, enough bytes in flight per SM to stream at HBM rate
# while leaving registers for several resident programs. Larger blocks only add masked tail
# work for small V (a 49,152-token vocabulary is exactly 12 steps). bench/bench_logprob_gpu.py
# sweeps BLOCK_V in {2048, 4096, 8192, 16384} x num_warps in {4, 8, 16}: re-tune from its CSV.
_MAX_BLOCK_V = 4096
_SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


@triton.jit
def _logprob_forward_kernel(
    logits_ptr,
    logits_row_stride,
    targets_ptr,
    out_ptr,
    n_cols,
    ignore_index,
    BLOCK_V: tl.constexpr,
):
    # int64 row index: program_id is int32 and row * row_stride overflows once N * V > 2**31
    # (already at 16,384 rows of a 131,072-token vocabulary);
    # https://github.com/triton-lang/triton/issues/1058 (the same cast as Liger's cross_entropy).
    row = tl.program_id(0).to(tl.int64)
    target = tl.load(targets_ptr + row)
    if target == ignore_index:
        tl.store(out_ptr + row, 0.0)
        return

    row_ptr = logits_ptr + row * logits_row_stride
    # Masked gather: an out-of-range target reads nothing and yields NaN (see module docstring).
    in_range = (target >= 0) & (target < n_cols)
    target_logit = tl.load(row_ptr + target, mask=in_range, other=float("nan")).to(tl.float32)

    running_max = tl.full((), float("-inf"), tl.float32)
    running_sum = tl.full((), 0.0, tl.float32)
    for start in range(0, n_cols, BLOCK_V):
        cols = start + tl.arange(0, BLOCK_V)
        x = tl.load(row_ptr + cols, mask=cols < n_cols, other=float("-inf")).to(tl.float32)
        new_max = tl.maximum(running_max, tl.max(x, axis=0))
        # While every logit seen so far is -inf (vocabulary masked with -inf by a logits
        # processor), exp(-inf - -inf) would be NaN: subtract 0 instead, giving exp(-inf) = 0.
        shift = tl.where(new_max == float("-inf"), 0.0, new_max)
        running_sum = running_sum * tl.exp(running_max - shift) + tl.sum(tl.exp(x - shift), axis=0)
        running_max = new_max

    tl.store(out_ptr + row, target_logit - (running_max + tl.log(running_sum)))


# True when TRITON_INTERPRET=1 was set before this module was imported: the kernel then runs
# on CPU tensors through triton's numpy interpreter (tests), not as compiled GPU code.
INTERPRETED = type(_logprob_forward_kernel).__name__ == "InterpretedFunction"


def logprob_forward(
    logits: torch.Tensor,
    targets: torch.Tensor,
    ignore_index: int = -100,
    *,
    block_v: int | None = None,
    num_warps: int | None = None,
) -> torch.Tensor:
    """Launch kernel (a): fp32 ``[N]`` log-probabilities of ``targets`` under ``logits [N, V]``.

    ``block_v`` / ``num_warps`` override the tuned defaults (benchmarks, interpreter tests).
    Validation with user-facing wording lives in ``instructfast.indicators.logprob``; the checks
    here guard the kernel's memory safety.
    """
    if logits.ndim != 2:
        raise ValueError(f"`logits` must have shape [N, V], got {tuple(logits.shape)}")
    n_rows, n_cols = logits.shape
    if targets.shape != (n_rows,):
        raise ValueError(
            f"`targets` must have shape [N] matching logits [N, V], got targets {tuple(targets.shape)} "
            f"and logits {tuple(logits.shape)}"
        )
    if logits.dtype not in _SUPPORTED_DTYPES:
        raise ValueError(f"`logits` must be float32, float16 or bfloat16, got {logits.dtype}")
    if n_cols == 0:
        raise ValueError("`logits` must have a non-empty vocabulary dimension, got V = 0")
    if targets.device != logits.device:
        raise ValueError(f"`targets` must be on {logits.device}, got {targets.device}")

    # Rows may be strided (a view of a larger logits buffer) as long as the vocabulary axis is
    # contiguous: this saves a full N x V copy for views such as logits[:, :V_real].
    if logits.stride(1) != 1:
        logits = logits.contiguous()
    if targets.dtype != torch.int64:
        targets = targets.to(torch.int64)
    targets = targets.contiguous()

    out = torch.empty(n_rows, dtype=torch.float32, device=logits.device)
    if n_rows == 0:
        return out

    if block_v is None:
        block_v = min(_MAX_BLOCK_V, triton.next_power_of_2(n_cols))
    if num_warps is None:
        # 32 threads x num_warps lanes share a block: aim for ~16 logits per thread.
        num_warps = max(1, min(16, block_v // (32 * 16)))

    _logprob_forward_kernel[(n_rows,)](
        logits,
        logits.stride(0),
        targets,
        out,
        n_cols,
        ignore_index,
        BLOCK_V=block_v,
        num_warps=num_warps,
    )
    return out


__all__ = ["INTERPRETED", "logprob_forward"]
