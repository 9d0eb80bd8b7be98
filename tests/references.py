"""Independent references (ground truth) shared by the tests and the GPU check in ``bench/gpu/``.

Defined once here, as Liger-Kernel's benchmarks import their baselines from its tests, so a
tolerance or an oracle cannot drift between what ``make test`` checks on CPU and what
``bench/gpu/run.sh`` checks on a GPU:

* :func:`reference_token_logprobs`, :func:`reference_fused_linear_logprobs`: float64 torch
  ``log_softmax`` + gather, the ground truth of the log-probability kernels (a) and (b);
* :data:`TOLERANCES` and :func:`compare`: the per-dtype ``(atol, rtol)`` of each kernel and the
  one definition of "close" (NaN equals NaN, equal infinities are equal);
* :func:`knn_numpy` and :func:`same_neighbours`: numpy brute-force k nearest neighbours and the
  tie-aware comparison of two neighbour lists.

Nothing here imports instructfast: a reference must not share code with what it checks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

# ----------------------------------------------------------------------------- log-probabilities


def reference_token_logprobs(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """Ground truth of kernel (a): ``torch.log_softmax`` in float64 + gather, with instructfast's conventions.

    Computing in float64 from the very values the implementations read (already rounded to
    bf16/fp16) makes the tolerances measure only their fp32 accumulation; ignored positions give
    0.0 and targets outside [0, V) give NaN (see kernels/logprob.py).

    Parameters
    ----------
    logits
        ``[N, V]`` in any float dtype, on any device.
    targets
        ``[N]`` integer token ids.
    ignore_index
        Target value that gives 0.0.

    Returns
    -------
    torch.Tensor
        float64 ``[N]`` on the device of ``logits``.
    """
    n_vocab = logits.shape[1]
    logp = torch.log_softmax(logits.to(torch.float64), dim=-1)
    return _gather(logp, targets, n_vocab, ignore_index)


def reference_fused_linear_logprobs(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    bias: torch.Tensor | None = None,
    ignore_index: int = -100,
) -> torch.Tensor:
    """Ground truth of kernel (b): ``(hidden @ weight.T + bias).log_softmax(-1)`` in float64 + gather.

    This is the unfused computation a transformers LM head + ``log_softmax`` performs (Liger's
    ``TorchLMHeadCE`` in test_fused_linear_cross_entropy.py is the same baseline), done in float64
    from the rounded bf16/fp16 inputs so that only the implementations' fp32 accumulation is
    measured. Ignored positions give 0.0, targets outside [0, V) NaN.

    Returns
    -------
    torch.Tensor
        float64 ``[N]`` on the device of ``hidden``.
    """
    z = hidden.to(torch.float64) @ weight.to(torch.float64).T
    if bias is not None:
        z = z + bias.to(torch.float64)
    n_vocab = weight.shape[0]
    logp = torch.log_softmax(z, dim=-1)
    del z
    return _gather(logp, targets, n_vocab, ignore_index)


def _gather(logp: torch.Tensor, targets: torch.Tensor, n_vocab: int, ignore_index: int) -> torch.Tensor:
    valid = (targets >= 0) & (targets < n_vocab)
    out = logp.gather(1, targets.clamp(0, n_vocab - 1)[:, None]).squeeze(1)
    out = torch.where(valid, out, torch.full_like(out, float("nan")))
    return out.masked_fill(targets == ignore_index, 0.0)


# (atol, rtol) per kernel and input dtype, used by tests/kernels/ (interpreted, CPU) and by
# bench/gpu/parity.py (compiled, CUDA). Inputs are exact in every dtype and the references read
# the same rounded values, so only fp32 accumulation error is left:
# * kernel (a): ~1e-7 relative on log-sum-exp values up to ~500 (scale-30 logits shifted by 400);
# * kernel (b): products of bf16/fp16 values are exact in fp32, so the error is fp32 summation
#   over d (~sqrt(d) * 6e-8 * |logit|; tensor cores truncate instead of rounding, which makes the
#   error grow closer to linearly in d / 16: ~5e-5 at d = 4096 and logits of std 3) plus the
#   log-sum-exp, ~1e-5 at logits of std 30. fp32 inputs round their products too (the kernel uses
#   IEEE fp32 products for fp32, never TF32): the same budget holds.
TOLERANCES: dict[str, dict[torch.dtype, tuple[float, float]]] = {
    "logprob": {torch.float32: (1e-4, 1e-5), torch.float16: (1e-4, 1e-5), torch.bfloat16: (1e-4, 1e-5)},
    "fused_linear_logprob": {torch.float32: (2e-4, 1e-5), torch.float16: (2e-4, 1e-5), torch.bfloat16: (2e-4, 1e-5)},
}
DTYPE_IDS = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}


@dataclass(frozen=True)
class Comparison:
    """Outcome of :func:`compare`: pass/fail, mismatch count, worst errors and where they are."""

    ok: bool
    n_bad: int
    n: int
    max_abs: float  # over elements where both are finite (NaN when there are none)
    max_rel: float  # max |a - e| / |e| over finite elements with e != 0
    worst: list[int]  # indices of the worst mismatches (up to 5), worst first


def compare(actual: torch.Tensor, expected: torch.Tensor, *, atol: float, rtol: float) -> Comparison:
    """``|actual - expected| <= atol + rtol * |expected|`` elementwise, in float64 on the CPU.

    NaN matches NaN and an infinity matches the same infinity (the kernels' conventions for
    out-of-range targets and forbidden tokens); anything else non-finite is a mismatch.
    """
    a = actual.detach().to(device="cpu", dtype=torch.float64).flatten()
    e = expected.detach().to(device="cpu", dtype=torch.float64).flatten()
    if a.shape != e.shape:
        msg = f"shapes differ: actual {tuple(actual.shape)}, expected {tuple(expected.shape)}"
        raise ValueError(msg)
    err = (a - e).abs()
    same_special = (torch.isnan(a) & torch.isnan(e)) | (torch.isinf(a) & (a == e))
    bad = ~(same_special | (err <= atol + rtol * e.abs()))
    finite = torch.isfinite(a) & torch.isfinite(e)
    max_abs = float(err[finite].max()) if finite.any() else float("nan")
    nz = finite & (e != 0)
    max_rel = float((err[nz] / e[nz].abs()).max()) if nz.any() else 0.0
    worst: list[int] = []
    if bad.any():
        idx = torch.nonzero(bad).flatten()
        worst = idx[torch.argsort(torch.nan_to_num(err[idx], nan=float("inf")), descending=True)][:5].tolist()
    return Comparison(not bool(bad.any()), int(bad.sum()), a.numel(), max_abs, max_rel, worst)


# ----------------------------------------------------------------------------- k nearest neighbours


def knn_numpy(
    pool: np.ndarray, rows: np.ndarray, k: int, *, margin: int = 8, block: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """Each sampled pool row's k nearest other pool rows, by numpy brute force.

    Candidates by a blocked float32 ``pool[rows] @ pool.T`` and ``argpartition`` (k + 1 + margin
    per row: self and float32 ranking noise at the boundary), then exact float64 Euclidean
    distances ``||x - y||`` of the candidates, self excluded by position, sorted by (distance, id).

    Parameters
    ----------
    pool
        ``[n, dim]`` unit float32 rows.
    rows
        Positions of the query rows (each excluded from its own neighbours).
    k
        Neighbours per row.

    Returns
    -------
    ids, distances
        int64 and float64 ``[len(rows), k]``.
    """
    pool = np.ascontiguousarray(pool, dtype=np.float32)
    rows = np.asarray(rows, dtype=np.int64)
    n = pool.shape[0]
    kc = min(n, k + 1 + margin)
    ids = np.empty((rows.size, k), dtype=np.int64)
    dist = np.empty((rows.size, k))
    for s in range(0, rows.size, block):
        r = rows[s : s + block]
        sim = pool[r] @ pool.T
        cand = np.argpartition(-sim, kc - 1, axis=1)[:, :kc]
        diff = pool[cand].astype(np.float64) - pool[r, None, :].astype(np.float64)
        d = np.sqrt((diff * diff).sum(-1))
        d[cand == r[:, None]] = np.inf
        order = np.lexsort((cand, d), axis=-1)[:, :k]
        ids[s : s + block] = np.take_along_axis(cand, order, axis=1)
        dist[s : s + block] = np.take_along_axis(d, order, axis=1)
    return ids, dist


def same_neighbours(ids_a: np.ndarray, d_a: np.ndarray, ids_b: np.ndarray, d_b: np.ndarray, *, tol: float = 1e-6) -> np.ndarray:
    """Per row: do the two k-neighbour lists agree, up to ties at equal distance?

    A row agrees when its id sets are equal, or when they differ only by members lying at the
    k-th distance (within ``tol``) in both lists, i.e. a different pick among tied candidates,
    and the sorted distances agree within ``tol``.
    """
    same_set = (np.sort(ids_a, 1) == np.sort(ids_b, 1)).all(1)
    same_d = (np.abs(np.sort(d_a, 1) - np.sort(d_b, 1)) <= tol).all(1)
    out = same_set & same_d
    for i in np.flatnonzero(~same_set & same_d):
        kth = max(d_a[i].max(), d_b[i].max())
        only_a = ~np.isin(ids_a[i], ids_b[i])
        only_b = ~np.isin(ids_b[i], ids_a[i])
        out[i] = bool((np.abs(d_a[i][only_a] - kth) <= tol).all() and (np.abs(d_b[i][only_b] - kth) <= tol).all())
    return out
