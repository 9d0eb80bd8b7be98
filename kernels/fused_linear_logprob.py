"""Kernel (b): token log-probabilities straight from hidden states and the LM head.

``out[i] = z[i, targets[i]] - logsumexp(z[i, :])`` with ``z = hidden @ weight.T (+ bias)``, fp32
``[N]`` out of hidden ``[N, d]``, weight ``[V, d]`` and optional bias ``[V]`` (bf16/fp16/fp32), without
ever materialising the N x V logits (for 64k tokens of a 128k vocabulary those would be 32 GiB
in fp32). Inference only: there is no backward.

Each program owns ``BLOCK_N`` rows and one contiguous slice ("split") of the vocabulary. It walks
its slice in ``BLOCK_V`` columns; for each column tile it accumulates the logits tile
``[BLOCK_N, BLOCK_V]`` with ``tl.dot`` over ``BLOCK_D`` chunks of d in fp32, then folds the tile
into a per-row running max / sum of exponentials (online log-sum-exp) and picks up the target
logit when the target's column is in the tile. It writes one partial log-sum-exp per (row,
split) and, from the split that holds the target, the target logit; the launcher combines the
``[N, n_splits]`` partials. Extra memory: ``N * (n_splits + 1)`` fp32 plus the tiles, O(N).

Conventions are those of ``kernels/logprob.py``: ``ignore_index`` gives 0.0, a target outside
``[0, V)`` gives NaN. Ignored rows still cost their share of the matmul: callers scoring only
some positions (perplexity skips the prompt) should select those rows of ``hidden`` first.

Only ``torch`` and ``triton`` are imported (absolutely), so a source checkout can import this file
as ``kernels.fused_linear_logprob`` before the package is installed.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

_SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)

# 128 x 128 logits tile, 64-deep K steps: the classic Hopper/Ampere bf16 GEMM tile. The fp32
# accumulator is 64 KiB of registers (64 per thread at 8 warps), and 3 pipeline stages of the
# two operand tiles take 3 * (128*64 + 64*128) * 2 B = 96 KiB of the H100's 228 KiB shared memory.
# Compiled offline for sm_90 (triton 3.9, 16-byte-aligned arguments as the JIT specialises them):
# wgmma m64n128k16 with a 3-stage cp.async pipeline, 241 registers, no spills, i.e. one program
# per SM; 128 x 256 tiles and this tile at 4 warps both spill (255 registers). Not yet timed on
# a GPU: bench/bench_logprob_gpu.py --sweep times the tile shapes, re-tune from its CSV.
_BLOCK_N = 128
_BLOCK_V = 128
_BLOCK_D = 64
_NUM_WARPS = 8
_NUM_STAGES = 3
# Minimum vocabulary splits, even when N alone fills the GPU. Programs are numbered split-fastest,
# so the 132 resident programs of an H100 (one per SM) cover ~8 row tiles x 16 splits: per column-tile step
# they touch 8 hidden tiles and 16 weight tiles of 128 x 4096 bf16 = 1 MiB each at d = 4096,
# 24 MiB that stay in the 50 MiB L2. With one split, 132 distinct hidden tiles (132 MiB) would
# stream from HBM every step: 132 MiB per ~18 us of tile matmul is ~7.7 TB/s, over the 3.35 TB/s
# of HBM3, so the kernel would turn bandwidth-bound.
_MIN_SPLITS = 16
# Aim for 4 programs per SM when N is small (4k rows = 32 row tiles would leave 100 of 132 SMs
# idle without splitting the vocabulary).
_PROGRAMS_PER_SM = 4


@triton.jit
def _fused_linear_logprob_kernel(
    hidden_ptr,
    weight_ptr,
    bias_ptr,
    targets_ptr,
    part_lse_ptr,
    target_logit_ptr,
    n_rows,
    n_vocab,
    d_model,
    hidden_row_stride,
    weight_row_stride,
    cols_per_split,
    n_splits,
    ignore_index,
    HAS_BIAS: tl.constexpr,
    INPUT_PRECISION: tl.constexpr,
    UPCAST_OPERANDS: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_V: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    # Split-fastest numbering (see _MIN_SPLITS): neighbouring programs share their hidden rows.
    pid = tl.program_id(0)
    row_tile = pid // n_splits
    split = pid % n_splits

    # int64 row indices: rows * row_stride exceeds 2**31 at 524,288 rows of d = 4096
    # (https://github.com/triton-lang/triton/issues/1058); vocabulary indices fit in int32 but
    # are widened too before multiplying by weight_row_stride (V * d reaches 2**31 at V = 512k).
    rows = row_tile.to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_mask = rows < n_rows
    targets = tl.load(targets_ptr + rows, mask=row_mask, other=ignore_index)

    col_start = split * cols_per_split
    col_end = tl.minimum(col_start + cols_per_split, n_vocab)

    running_max = tl.full((BLOCK_N,), float("-inf"), tl.float32)
    running_sum = tl.zeros((BLOCK_N,), tl.float32)
    target_logit = tl.zeros((BLOCK_N,), tl.float32)
    for v0 in range(col_start, col_end, BLOCK_V):
        cols = v0 + tl.arange(0, BLOCK_V)
        col_mask = cols < col_end
        acc = tl.zeros((BLOCK_N, BLOCK_V), tl.float32)
        for d0 in range(0, d_model, BLOCK_D):
            ks = d0 + tl.arange(0, BLOCK_D)
            k_mask = ks < d_model
            h = tl.load(
                hidden_ptr + rows[:, None] * hidden_row_stride + ks[None, :],
                mask=row_mask[:, None] & k_mask[None, :],
                other=0.0,
            )
            # Weight tile loaded already transposed, [BLOCK_D, BLOCK_V]: the K-major operand the
            # tensor cores take directly, so no register transpose is needed.
            w = tl.load(
                weight_ptr + cols[None, :].to(tl.int64) * weight_row_stride + ks[:, None],
                mask=k_mask[:, None] & col_mask[None, :],
                other=0.0,
            )
            if UPCAST_OPERANDS:
                # Interpreter only (see INTERPRETED below): a bf16 x bf16 product is exact in fp32,
                # so fp32 operands give what the tensor cores give, up to summation order.
                h = h.to(tl.float32)
                w = w.to(tl.float32)
            acc = tl.dot(h, w, acc, input_precision=INPUT_PRECISION)
        if HAS_BIAS:
            acc += tl.load(bias_ptr + cols, mask=col_mask, other=0.0).to(tl.float32)[None, :]
        acc = tl.where(col_mask[None, :], acc, float("-inf"))

        new_max = tl.maximum(running_max, tl.max(acc, axis=1))
        # exp(-inf - -inf) would be NaN while a row has seen only -inf logits: shift by 0 then.
        shift = tl.where(new_max == float("-inf"), 0.0, new_max)
        running_sum = running_sum * tl.exp(running_max - shift) + tl.sum(tl.exp(acc - shift[:, None]), axis=1)
        running_max = new_max
        # At most one column of the whole vocabulary matches a row's target: adding the masked
        # tile sum to 0 is exact.
        hit = cols[None, :] == targets[:, None]
        target_logit += tl.sum(tl.where(hit, acc, 0.0), axis=1)

    tl.store(part_lse_ptr + rows * n_splits + split, running_max + tl.log(running_sum), mask=row_mask)
    in_split = row_mask & (targets >= col_start) & (targets < col_end)
    tl.store(target_logit_ptr + rows, target_logit, mask=in_split)


# TRITON_INTERPRET=1 (CPU tests): the interpreter (triton 3.9) keeps bf16 tensors as their
# uint16 bit patterns and its tl.dot is a plain np.matmul of those, i.e. an integer product of
# bit patterns (errors ~1e10 in the tests). bf16 operands are therefore widened to fp32 before
# tl.dot under the interpreter only; compiled kernels keep bf16 tensor-core operands.
INTERPRETED = type(_fused_linear_logprob_kernel).__name__ == "InterpretedFunction"


def _num_splits(n_row_tiles: int, n_col_tiles: int, device: torch.device) -> int:
    if device.type == "cuda":
        sm_count = torch.cuda.get_device_properties(device).multi_processor_count
    else:  # the interpreter: no SMs to fill, keep the split structure anyway
        sm_count = 1
    wanted = max(_MIN_SPLITS, triton.cdiv(_PROGRAMS_PER_SM * sm_count, n_row_tiles))
    return max(1, min(n_col_tiles, wanted))


def fused_linear_logprob_forward(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    bias: torch.Tensor | None = None,
    ignore_index: int = -100,
    *,
    block_n: int | None = None,
    block_v: int | None = None,
    block_d: int | None = None,
    n_splits: int | None = None,
    num_warps: int | None = None,
    num_stages: int | None = None,
    allow_tf32: bool = False,
) -> torch.Tensor:
    """Launch kernel (b): fp32 ``[N]`` log-probabilities of ``targets`` under ``hidden @ weight.T (+ bias)``.

    Keyword overrides set the tile shape and vocabulary split count (benchmarks, interpreter
    tests). ``allow_tf32`` lets fp32 inputs use TF32 tensor cores (10-bit mantissa products,
    ~1e-3 relative error on logits); by default fp32 inputs get full fp32 products.
    Validation with user-facing wording lives in ``instructfast.indicators.logprob``.
    """
    if hidden.ndim != 2 or weight.ndim != 2:
        raise ValueError(
            f"`hidden` must be [N, d] and `weight` [V, d], got {tuple(hidden.shape)} and {tuple(weight.shape)}"
        )
    n_rows, d_model = hidden.shape
    n_vocab = weight.shape[0]
    if weight.shape[1] != d_model:
        raise ValueError(f"`weight` must have shape [V, {d_model}] to match hidden [N, d], got {tuple(weight.shape)}")
    if targets.shape != (n_rows,):
        raise ValueError(
            f"`targets` must have shape [N] matching hidden [N, d], got targets {tuple(targets.shape)} "
            f"and hidden {tuple(hidden.shape)}"
        )
    if hidden.dtype not in _SUPPORTED_DTYPES or weight.dtype != hidden.dtype:
        raise ValueError(
            "`hidden` and `weight` must share one dtype among float32, float16, bfloat16, "
            f"got {hidden.dtype} and {weight.dtype}"
        )
    if bias is not None and bias.shape != (n_vocab,):
        raise ValueError(f"`bias` must have shape [V] = ({n_vocab},), got {tuple(bias.shape)}")
    if n_vocab == 0 or d_model == 0:
        raise ValueError(f"`weight` must be non-empty, got shape {tuple(weight.shape)}")
    for name, t in (("weight", weight), ("targets", targets), ("bias", bias)):
        if t is not None and t.device != hidden.device:
            raise ValueError(f"`{name}` must be on {hidden.device}, got {t.device}")

    if hidden.stride(1) != 1:
        hidden = hidden.contiguous()
    if weight.stride(1) != 1:
        weight = weight.contiguous()
    if bias is not None:
        bias = bias.contiguous()
    if targets.dtype != torch.int64:
        targets = targets.to(torch.int64)
    targets = targets.contiguous()

    if n_rows == 0:
        return torch.empty(0, dtype=torch.float32, device=hidden.device)

    # tl.dot needs every tile dimension >= 16; a tile taller than N only wastes rows.
    block_n = block_n or max(16, min(_BLOCK_N, triton.next_power_of_2(n_rows)))
    block_v = block_v or _BLOCK_V
    block_d = block_d or max(16, min(_BLOCK_D, triton.next_power_of_2(d_model)))
    n_row_tiles = triton.cdiv(n_rows, block_n)
    n_col_tiles = triton.cdiv(n_vocab, block_v)
    if n_splits is None:
        n_splits = _num_splits(n_row_tiles, n_col_tiles, hidden.device)
    n_splits = max(1, min(int(n_splits), n_col_tiles))
    # Whole column tiles per split, then drop splits that would be empty.
    cols_per_split = triton.cdiv(n_col_tiles, n_splits) * block_v
    n_splits = triton.cdiv(n_vocab, cols_per_split)

    part_lse = torch.empty((n_rows, n_splits), dtype=torch.float32, device=hidden.device)
    # NaN stays where no split owns the target, i.e. for out-of-range targets.
    target_logit = torch.full((n_rows,), float("nan"), dtype=torch.float32, device=hidden.device)

    upcast = INTERPRETED and hidden.dtype == torch.bfloat16
    input_precision = "tf32" if (hidden.dtype != torch.float32 or allow_tf32) and not upcast else "ieee"
    _fused_linear_logprob_kernel[(n_row_tiles * n_splits,)](
        hidden,
        weight,
        bias if bias is not None else hidden,  # dummy pointer, never read when HAS_BIAS is False
        targets,
        part_lse,
        target_logit,
        n_rows,
        n_vocab,
        d_model,
        hidden.stride(0),
        weight.stride(0),
        cols_per_split,
        n_splits,
        ignore_index,
        HAS_BIAS=bias is not None,
        INPUT_PRECISION=input_precision,
        UPCAST_OPERANDS=upcast,
        BLOCK_N=block_n,
        BLOCK_V=block_v,
        BLOCK_D=block_d,
        num_warps=num_warps or _NUM_WARPS,
        num_stages=num_stages or _NUM_STAGES,
    )
    # Combining N x n_splits partials is O(N) work next to the O(N * V * d) matmul; torch's
    # logsumexp handles splits whose partial is -inf.
    out = target_logit - torch.logsumexp(part_lse, dim=1)
    return out.masked_fill_(targets == ignore_index, 0.0)


__all__ = ["INTERPRETED", "fused_linear_logprob_forward"]
