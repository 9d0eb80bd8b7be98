"""Independent oracles: what the tests hold instructfast equal to, and what the benchmarks time as peers.

Each is written the plain way on purpose (full broadcasts, float64, one row at a time) and shares
no code with the package, so a bug in instructfast cannot hide in its own reference. Benchmarks
import from here rather than keeping copies (as Liger-Kernel's benchmarks import its test
baselines).

* :func:`lexicalrichness_stats`, :func:`lexicalrichness_pass`: lexicalrichness 0.5.1, the MTLD the paper's code used;
* :func:`brute_knn_sorted`, :func:`brute_knn_rows`: exact float64 distances by numpy;
* :func:`naive_kcenter`: textbook farthest-first traversal in float64;
* :func:`hf_row_perplexity`, :func:`hf_loop`, :func:`hf_sorted_batches`: Hugging Face forwards,
  one row at a time (what data-juicer does) and in right-padded batches with full logits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
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
    out = []
    with torch.no_grad():
        for ctx, tgt in rows:
            ids = torch.tensor([ctx + tgt], device=device)
            labels = torch.tensor([[-100] * len(ctx) + tgt], device=device)
            out.append(math.exp(model(input_ids=ids, labels=labels).loss.item()))
    return out


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


__all__ = [
    "brute_knn_rows",
    "brute_knn_sorted",
    "hf_loop",
    "hf_row_perplexity",
    "hf_sorted_batches",
    "lexicalrichness_pass",
    "lexicalrichness_stats",
    "naive_kcenter",
]
