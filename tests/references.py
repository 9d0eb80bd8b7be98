"""Independent oracles: what the tests hold instructfast equal to, and what the benchmarks time as peers.

Each is written the plain way on purpose (full broadcasts, float64, one row at a time) and shares
no code with the package, so a bug in instructfast cannot hide in its own reference. Benchmarks
import from here rather than keeping copies (as Liger-Kernel's benchmarks import its test
baselines).

* :func:`lexicalrichness_stats`, :func:`lexicalrichness_pass`: lexicalrichness 0.5.1, the MTLD the paper's code used;
* :func:`brute_knn_sorted`, :func:`brute_knn_rows`: exact float64 distances by numpy;
* :func:`naive_kcenter`: textbook farthest-first traversal in float64;
* :func:`hf_row_perplexity`, :func:`hf_loop`, :func:`hf_sorted_batches`: Hugging Face forwards,
  one row at a time (what data-juicer does) and in right-padded batches with full logits;
* :func:`reference_token_logprobs`, :func:`reference_fused_linear_logprobs`: float64 torch
  ``log_softmax`` + gather, the ground truth of the log-probability kernels (a) and (b), with
  :data:`TOLERANCES` (per kernel and dtype) and :func:`compare` (the one definition of "close"),
  shared by ``tests/kernels/`` (interpreted, CPU) and ``bench/gpu/parity.py`` (compiled, CUDA);
* :func:`knn_numpy`, :func:`same_neighbours`: numpy brute-force neighbour ids (float32 candidates,
  float64 re-ranking) and the tie-aware comparison of two neighbour lists (``bench/bench_knn_gpu.py``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np

# ---------------------------------------------------------------------------------------- MTLD


def lexicalrichness_stats(text: str, threshold: float = 0.72) -> SimpleNamespace:
    """What lexicalrichness says of one text; ``ttr``/``mtld`` None where it raises (no tokens)."""
    from lexicalrichness import LexicalRichness

    lr = LexicalRichness(text)
    empty = lr.words == 0
    return SimpleNamespace(
        tokens=lr.wordlist,
        words=lr.words,
        terms=lr.terms,
        ttr=None if empty else lr.ttr,
        mtld=None if empty else lr.mtld(threshold),
    )


def lexicalrichness_pass(texts: Sequence[str], threshold: float = 0.72) -> int:
    """What a lexicalrichness user runs per text (words, terms, MTLD); returns the word total."""
    from lexicalrichness import LexicalRichness

    words = 0
    for t in texts:
        lr = LexicalRichness(t)
        w = lr.words
        _ = lr.terms  # its users read terms too: part of the peer's per-text cost
        if w:  # mtld() raises ZeroDivisionError on a text without words
            lr.mtld(threshold=threshold)
        words += w
    return words


# ----------------------------------------------------------------------------------------- kNN


def brute_knn_sorted(x: np.ndarray, q: np.ndarray | None = None, exclude_self: bool = True) -> np.ndarray:
    """Sorted exact distances ``[m, n]`` of queries ``q`` (default ``x``) to every row of ``x``.

    Computed from explicit differences in float64; with ``exclude_self`` the diagonal (a row and
    itself, by position) is +inf.
    """
    p = x.astype(np.float64)
    qq = p if q is None else q.astype(np.float64)
    d = np.empty((qq.shape[0], p.shape[0]))
    for s in range(0, qq.shape[0], 64):  # blocks keep the [m, n, dim] differences small
        d[s : s + 64] = np.sqrt(((qq[s : s + 64, None, :] - p[None, :, :]) ** 2).sum(-1))
    if exclude_self:
        np.fill_diagonal(d, np.inf)
    return np.sort(d, axis=1)


def brute_knn_rows(x: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` smallest distances ``[len(rows), k]`` of sampled rows to every other row (self by position).

    float64 by the expanded square (``|a|^2 + |b|^2 - 2 a.b``) so it scales to pools of 10^5-10^6
    rows; benchmarks check sampled rows with it.
    """
    p = x.astype(np.float64)
    sq = (p * p).sum(1)
    out = np.empty((rows.size, k))
    for s in range(0, rows.size, 100):
        r = rows[s : s + 100]
        d2 = sq[r, None] + sq[None, :] - 2 * p[r] @ p.T
        d2[np.arange(r.size), r] = np.inf
        out[s : s + 100] = np.sqrt(np.maximum(np.sort(np.partition(d2, k, axis=1)[:, :k], axis=1), 0))
    return out


# ------------------------------------------------------------------------------------ k-center


def naive_kcenter(x: np.ndarray, k: int, first: int | None, seeds: Sequence[int] = ()) -> np.ndarray:
    """Textbook farthest-first traversal (KCenterGreedy) in float64, one pick at a time.

    Starts from the ``seeds`` already chosen (or from row ``first`` when there are none) and
    repeatedly adds the row farthest from the chosen set; ties go to the lowest row. Returns the
    ``k`` new picks in order.
    """
    x = x.astype(np.float64)
    chosen = [int(s) for s in seeds]
    mind = np.full(x.shape[0], np.inf)
    for c in chosen:
        mind = np.minimum(mind, np.sqrt(((x - x[c]) ** 2).sum(axis=1)))
    picks: list[int] = []
    for i in range(k):
        if i == 0 and not chosen:
            c = int(first if first is not None else 0)
        else:
            d = mind.copy()
            d[chosen] = -1.0
            c = int(np.argmax(d))
        chosen.append(c)
        picks.append(c)
        mind = np.minimum(mind, np.sqrt(((x - x[c]) ** 2).sum(axis=1)))
    return np.asarray(picks, dtype=np.int64)


# ---------------------------------------------------------------------------------- perplexity


def hf_row_perplexity(model: Any, tok: Any, context: str, output: str, *, bos: list[int]) -> tuple[float, int]:
    """(perplexity, scored tokens) of one record, the plain Hugging Face way.

    Context and output are tokenised separately and their ids concatenated (so the scored tokens
    are exactly the output's); the loss is ``model(ids, labels=...)`` with the context labelled -100.
    """
    import torch

    ctx = bos + tok(context, add_special_tokens=False)["input_ids"]
    out = tok(output, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([ctx + out])
    labels = torch.tensor([[-100] * len(ctx) + out])
    with torch.no_grad():
        loss = model(input_ids=ids, labels=labels).loss
    return math.exp(loss.item()), len(out)


def hf_loop(model: Any, rows: Sequence[tuple[list[int], list[int]]]) -> list[float]:
    """Perplexity of each (context ids, target ids) row, one forward per row (what data-juicer does)."""
    import torch

    device = next(model.parameters()).device
    losses = []
    with torch.no_grad():
        for ctx, tgt in rows:
            ids = torch.tensor([ctx + tgt], device=device)
            labels = torch.tensor([[-100] * len(ctx) + tgt], device=device)
            # kept on the device: a GPU runs the next row while Python prepares it (one sync at the end)
            losses.append(model(input_ids=ids, labels=labels).loss)
    return [math.exp(x) for x in torch.stack(losses).float().tolist()] if losses else []


def hf_sorted_batches(
    model: Any, rows: Sequence[tuple[list[int], list[int]]], batches: Sequence[Sequence[int]], pad_id: int
) -> list[float]:
    """Perplexity per row from right-padded batches with full logits and ``log_softmax(float)`` gathered.

    ``batches`` lists the row positions of each batch (length-sorted ones make the "sorted padded
    batches" baseline; input-order ones the unsorted one peers use).
    """
    import torch

    device = next(model.parameters()).device
    out = [math.nan] * len(rows)
    with torch.no_grad():
        for batch in batches:
            seqs = [rows[i][0] + rows[i][1] for i in batch]
            width = max(len(s) for s in seqs)
            ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            labels = torch.full((len(batch), width), -100, dtype=torch.long)
            for j, i in enumerate(batch):
                ctx, tgt = rows[i]
                n = len(ctx) + len(tgt)
                ids[j, :n] = torch.tensor(seqs[j])
                mask[j, :n] = 1
                labels[j, len(ctx) : n] = torch.tensor(tgt)
            ids, mask, labels = ids.to(device), mask.to(device), labels.to(device)
            logits = model(input_ids=ids, attention_mask=mask).logits  # [B, L, V]: what these tools hold
            logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
            shifted = labels[:, 1:]
            scored = shifted != -100
            tok_lp = logp.gather(-1, shifted.clamp(min=0).unsqueeze(-1)).squeeze(-1)
            nll = -(tok_lp * scored).sum(1) / scored.sum(1)
            for j, i in enumerate(batch):
                out[i] = math.exp(nll[j].item())
            del logits, logp
    return out


# ---------------------------------------------------------------------------- log-probabilities


def reference_token_logprobs(logits: Any, targets: Any, ignore_index: int = -100) -> Any:
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
    import torch

    n_vocab = logits.shape[1]
    logp = torch.log_softmax(logits.to(torch.float64), dim=-1)
    return _gather(logp, targets, n_vocab, ignore_index)


def reference_fused_linear_logprobs(
    hidden: Any, weight: Any, targets: Any, bias: Any | None = None, ignore_index: int = -100
) -> Any:
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
    import torch

    z = hidden.to(torch.float64) @ weight.to(torch.float64).T
    if bias is not None:
        z = z + bias.to(torch.float64)
    n_vocab = weight.shape[0]
    logp = torch.log_softmax(z, dim=-1)
    del z
    return _gather(logp, targets, n_vocab, ignore_index)


def _gather(logp: Any, targets: Any, n_vocab: int, ignore_index: int) -> Any:
    import torch

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
TOLERANCES: dict[str, dict[str, tuple[float, float]]] = {
    "logprob": {"fp32": (1e-4, 1e-5), "fp16": (1e-4, 1e-5), "bf16": (1e-4, 1e-5)},
    "fused_linear_logprob": {"fp32": (2e-4, 1e-5), "fp16": (2e-4, 1e-5), "bf16": (2e-4, 1e-5)},
}


def torch_dtype(name: str) -> Any:
    """The torch dtype of a :data:`TOLERANCES` key (``"fp32"``, ``"fp16"``, ``"bf16"``)."""
    import torch

    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[name]


@dataclass(frozen=True)
class Comparison:
    """Outcome of :func:`compare`: pass/fail, mismatch count, worst errors and where they are."""

    ok: bool
    n_bad: int
    n: int
    max_abs: float  # over elements where both are finite (NaN when there are none)
    max_rel: float  # max |a - e| / |e| over finite elements with e != 0
    worst: list[int]  # indices of the worst mismatches (up to 5), worst first


def compare(actual: Any, expected: Any, *, atol: float, rtol: float) -> Comparison:
    """``|actual - expected| <= atol + rtol * |expected|`` elementwise, in float64 on the CPU.

    NaN matches NaN and an infinity matches the same infinity (the kernels' conventions for
    out-of-range targets and forbidden tokens); anything else non-finite is a mismatch.
    """
    import torch

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


# ---------------------------------------------------------------------------- kNN neighbour ids


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


def same_neighbours(
    ids_a: np.ndarray, d_a: np.ndarray, ids_b: np.ndarray, d_b: np.ndarray, *, tol: float = 1e-6
) -> np.ndarray:
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


__all__ = [
    "TOLERANCES",
    "Comparison",
    "brute_knn_rows",
    "brute_knn_sorted",
    "hf_loop",
    "hf_row_perplexity",
    "hf_sorted_batches",
    "knn_numpy",
    "lexicalrichness_pass",
    "lexicalrichness_stats",
    "naive_kcenter",
    "compare",
    "reference_fused_linear_logprobs",
    "reference_token_logprobs",
    "same_neighbours",
    "torch_dtype",
]
