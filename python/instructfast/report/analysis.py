"""Computations on the bounded samples: Spearman correlations, the 2-D projection, the rule's variance shares."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..vectors import unit_rows


def _ranks(v: np.ndarray) -> np.ndarray:
    """1-based ranks, ties given their average rank (as Spearman's rho defines them).

    >>> _ranks(np.array([10.0, 30.0, 10.0, 20.0])).tolist()
    [1.5, 4.0, 1.5, 3.0]
    """
    order = np.argsort(v)  # ties get their average rank below, so the sort need not be stable
    sv = v[order]
    first = np.r_[True, sv[1:] != sv[:-1]]
    starts = np.flatnonzero(first)
    ends = np.r_[starts[1:], v.size]
    ranks = np.empty(v.size)
    ranks[order] = ((starts + ends + 1) / 2)[np.cumsum(first) - 1]
    return ranks


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else float("nan")


def spearman_matrix(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Spearman's rho for every pair of columns of ``x`` (NaN = missing), on the rows where both
    have values; returns ``(rho, pair_counts)``. NaN where fewer than 3 rows or a column is constant.

    >>> rho, n = spearman_matrix(np.array([[1.0, 10.0], [2.0, 30.0], [3.0, 20.0], [np.nan, 5.0]]))
    >>> round(float(rho[0, 1]), 3), int(n[0, 1])
    (0.5, 3)
    """
    c = x.shape[1]
    rho = np.full((c, c), np.nan)
    counts = np.zeros((c, c), dtype=np.int64)
    ok = ~np.isnan(x)
    full = ok.all(axis=0)
    ranks = {j: _ranks(x[:, j]) for j in range(c) if full[j]}  # reused by every pair of complete columns
    for i in range(c):
        for j in range(i, c):
            both = ok[:, i] & ok[:, j]
            n = int(both.sum())
            counts[i, j] = counts[j, i] = n
            if n < 3:
                continue
            if full[i] and full[j]:
                ri, rj = ranks[i], ranks[j]
            else:
                ri, rj = _ranks(x[both, i]), _ranks(x[both, j])
            rho[i, j] = rho[j, i] = _pearson(ri, rj)
    return rho, counts


def variance_shares(pred: np.ndarray, terms: np.ndarray) -> tuple[np.ndarray, int]:
    """Each term's share of the variance of the rule's prediction, ``cov(term, pred) / var(pred)``.

    The prediction is the intercept plus the terms, so the shares sum to 1 (on the rows where
    every term has a value): a term with a large share moves the ranking, one near 0 barely does.

    >>> t = np.array([[1.0, 0.0], [2.0, 0.1], [3.0, 0.0]])
    >>> s, n = variance_shares(t.sum(axis=1), t)
    >>> [round(float(v), 3) for v in s], n
    ([0.997, 0.003], 3)
    """
    ok = ~np.isnan(pred) & ~np.isnan(terms).any(axis=1)
    p, t = pred[ok], terms[ok]
    if p.size < 2 or p.var() == 0:
        return np.full(terms.shape[1], np.nan), int(p.size)
    cov = ((t - t.mean(axis=0)) * (p - p.mean())[:, None]).mean(axis=0)
    return cov / p.var(), int(p.size)


@dataclass
class Sample:
    """Rows drawn for the projection, sorted by row id."""

    ids: np.ndarray
    pool: np.ndarray  # drawn uniformly from all rows: these fit the axes
    selected: np.ndarray


@dataclass
class Projection:
    """Rows of the sample placed on the first two principal components of the pool sample."""

    ids: np.ndarray
    xy: np.ndarray  # [m, 2]
    pool: np.ndarray
    selected: np.ndarray
    explained: tuple[float, float]  # share of the pool sample's variance on PC1, PC2
    left_out: dict[str, int]  # rows of the sample without a usable vector, by reason


def pca_projection(sample: Sample, vectors: np.ndarray) -> Projection:
    """PCA of the unit-normalised vectors: axes fitted on the uniform pool sample, every sampled row projected."""
    u, pos, left = unit_rows(vectors.astype(np.float32, copy=False), np.ones(len(vectors), dtype=bool))
    x = u.astype(np.float64)
    fit = sample.pool[pos]
    base = x[fit] if fit.sum() >= 2 else x
    mean = base.mean(axis=0) if base.size else np.zeros(x.shape[1])
    if base.shape[0] >= 2:
        _, s, vt = np.linalg.svd(base - mean, full_matrices=False)
        var = s**2
        total = var.sum()
        comps = vt[:2]
        explained = tuple(float(v / total) if total > 0 else 0.0 for v in var[:2])
    else:
        comps, explained = np.eye(2, x.shape[1]), (0.0, 0.0)
    if comps.shape[0] < 2:  # one-dimensional vectors
        comps = np.vstack([comps, np.zeros((2 - comps.shape[0], x.shape[1]))])
        explained = (*explained, 0.0)[:2]
    xy = (x - mean) @ comps.T
    return Projection(sample.ids[pos], xy, sample.pool[pos], sample.selected[pos], (explained[0], explained[1]), left)


__all__ = ["Projection", "Sample", "pca_projection", "spearman_matrix", "variance_shares"]
