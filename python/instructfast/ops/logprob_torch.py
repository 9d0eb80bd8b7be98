"""The shipped torch twin of the log-probability kernels (CPU, and any device without Triton).

Same contract as ``kernels/logprob.py`` and ``kernels/fused_linear_logprob.py``: fp32 ``[N]``
results with fp32 accumulation, ``ignore_index`` -> 0.0, a target outside ``[0, V)`` -> NaN.
Memory is bounded by working over row chunks whose fp32 logits fit a byte budget, so a full
N x V fp32 tensor never exists for large N. The documented entry points are in
:mod:`instructfast.ops.logprob`; these functions skip its argument checks.
"""

from __future__ import annotations

import torch

from ..errors import ArgumentError

# 64 MiB of fp32 logits per chunk: 341 rows of SmolLM2's 49,152-token vocabulary, 128 rows of a
# 131,072-token one. logsumexp allocates one temporary of the chunk's size, so the peak is about
# twice this. At 256 MiB the chunks were most of the CPU scorer's working memory (930 MiB of it on
# 500 Alpaca rows) with no measurable speed gain: a [341, d] x [d, V] matmul already runs at the
# cores' FLOP rate.
DEFAULT_MAX_CHUNK_BYTES = 64 * 2**20


def _rows_per_chunk(n_vocab: int, chunk_rows: int | None, max_chunk_bytes: int) -> int:
    if chunk_rows is not None:
        if chunk_rows < 1:
            raise ArgumentError(f"`chunk_rows` must be >= 1, got {chunk_rows}")
        return int(chunk_rows)
    return max(1, int(max_chunk_bytes) // (4 * max(1, n_vocab)))


def _finish(z: torch.Tensor, targets: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """fp32 logits chunk ``[n, V]`` -> ``[n]`` log-probabilities with the ignore/NaN conventions."""
    n_vocab = z.shape[1]
    valid = (targets >= 0) & (targets < n_vocab)
    safe = torch.where(valid, targets, torch.zeros_like(targets))
    out = z.gather(1, safe[:, None]).squeeze(1) - torch.logsumexp(z, dim=1)
    out = torch.where(valid, out, torch.full_like(out, float("nan")))
    return out.masked_fill_(targets == ignore_index, 0.0)


def token_logprobs_torch(
    logits: torch.Tensor,
    targets: torch.Tensor,
    ignore_index: int = -100,
    chunk_rows: int | None = None,
    max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES,
) -> torch.Tensor:
    """``logits [N, V]``, ``targets [N]`` -> fp32 ``[N]``; rows in chunks of ``chunk_rows`` (else from the byte budget)."""
    n_rows, n_vocab = logits.shape
    step = _rows_per_chunk(n_vocab, chunk_rows, max_chunk_bytes)
    out = torch.empty(n_rows, dtype=torch.float32, device=logits.device)
    targets = targets.to(device=logits.device, dtype=torch.int64)
    for start in range(0, n_rows, step):
        stop = min(start + step, n_rows)
        # .float() is a no-op view for fp32 input and a chunk-sized copy otherwise.
        out[start:stop] = _finish(logits[start:stop].float(), targets[start:stop], ignore_index)
    return out


def fused_linear_logprobs_torch(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    bias: torch.Tensor | None = None,
    ignore_index: int = -100,
    chunk_rows: int | None = None,
    max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES,
) -> torch.Tensor:
    """``hidden [N, d]``, ``weight [V, d]``, optional ``bias [V]`` -> fp32 ``[N]`` without N x V logits.

    Logits are computed from fp32 operands, one row chunk at a time: bf16/fp16 weights are widened
    once (a V x d fp32 copy, within SPEC's O(N*d + V*d) budget) so that products are exact and
    sums fp32, as in the Triton kernel; a bf16 matmul would round every logit to 8 bits of
    mantissa (errors of 0.1 nat at logits of magnitude 30).
    """
    n_rows = hidden.shape[0]
    n_vocab = weight.shape[0]
    w = weight.float()
    b = bias.float() if bias is not None else None
    step = _rows_per_chunk(n_vocab, chunk_rows, max_chunk_bytes)
    out = torch.empty(n_rows, dtype=torch.float32, device=hidden.device)
    targets = targets.to(device=hidden.device, dtype=torch.int64)
    for start in range(0, n_rows, step):
        stop = min(start + step, n_rows)
        h = hidden[start:stop].float()
        z = torch.addmm(b, h, w.T) if b is not None else h @ w.T
        out[start:stop] = _finish(z, targets[start:stop], ignore_index)
    return out


__all__ = ["DEFAULT_MAX_CHUNK_BYTES", "token_logprobs_torch", "fused_linear_logprobs_torch"]
