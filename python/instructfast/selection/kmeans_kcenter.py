"""The "0.5% data" selector (Chen et al., arXiv 2305.09246): K-means, then k-center per cluster.

Vectors are clustered with faiss K-means (Euclidean, on the unit-normalised rows the
caller passes); each cluster gets a share of the budget proportional to its size,
rounded by largest remainder so the shares sum exactly to the budget; inside each
cluster, farthest-first traversal (:func:`~instructfast.selection.kcenter.kcenter_greedy`)
picks its share. The paper does not publish its cluster count: the default here is
``ceil(sqrt(budget))`` (a 5,000 budget: 71 clusters of ~70 picks), so both the number of
clusters and the picks per cluster grow with the budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import ArgumentError
from .kcenter import Progress, kcenter_greedy


def default_clusters(budget: int, rows: int) -> int:
    """``ceil(sqrt(budget))``, at most ``rows``.

    >>> default_clusters(5000, 1_000_000), default_clusters(3, 10)
    (71, 2)
    """
    return max(1, min(rows, math.ceil(math.sqrt(budget))))


def proportional_quotas(sizes, budget: int) -> np.ndarray:
    """Shares of ``budget`` proportional to ``sizes``, summing exactly to ``budget``.

    Each cluster first gets ``floor(budget * size / total)``; the units left over go to
    the largest fractional remainders (ties: larger cluster, then lower index). A share
    never exceeds its cluster's size: what a cluster cannot take is handed on by the
    same rule to the clusters with room.

    Examples
    --------
    >>> proportional_quotas([50, 30, 20], 7).tolist()   # exact 3.5, 2.1, 1.4
    [4, 2, 1]
    >>> proportional_quotas([1, 1, 98], 3).tolist()
    [0, 0, 3]
    """
    s = np.asarray(sizes, dtype=np.int64)
    if s.ndim != 1 or (s < 0).any():
        msg = f"`sizes` must be a 1-d array of non-negative counts, got {sizes!r}"
        raise ArgumentError(msg)
    total = int(s.sum())
    if not 0 <= budget <= total:
        msg = f"`budget` must be in [0, {total}] (the rows available), got {budget}"
        raise ArgumentError(msg)
    quota = np.zeros_like(s)
    left = budget
    room = s.copy()
    while left > 0:
        open_ = room > 0
        weights = np.where(open_, s, 0)
        w = int(weights.sum())
        # Exact integer arithmetic: floor(left * size / w) and the remainder numerators.
        num = left * weights
        base = np.minimum(num // w, room)
        rem = np.where(base < room, num - (num // w) * w, -1)
        give = base
        extra = left - int(give.sum())
        if extra > 0:
            order = np.lexsort((np.arange(s.size), -s, -rem))  # remainder desc, size desc, index asc
            order = [i for i in order if rem[i] >= 0 and give[i] < room[i]][:extra]
            give = give.copy()
            give[order] += 1
        quota += give
        room -= give
        left -= int(give.sum())
    return quota


@dataclass
class ClusterAssignment:
    """K-means output: centroids ``[c, d]``, each row's cluster label and squared distance."""

    centroids: np.ndarray
    labels: np.ndarray
    distances: np.ndarray


def kmeans(vectors: np.ndarray, clusters: int, *, seed: int = 0, niter: int = 20) -> ClusterAssignment:
    """faiss K-means (Euclidean); labels from the nearest trained centroid.

    faiss trains on at most 256 rows per centroid (its sampling, seeded), then every
    row is assigned with an exact search on the centroids.
    """
    import faiss

    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n, d = x.shape
    if not 1 <= clusters <= n:
        msg = f"`clusters` must be in [1, {n}] (the rows available), got {clusters}"
        raise ArgumentError(msg)
    km = faiss.Kmeans(d, int(clusters), niter=niter, seed=int(seed), verbose=False, min_points_per_centroid=1)
    km.train(x)
    dist, lab = km.index.search(x, 1)
    return ClusterAssignment(km.centroids.copy(), lab[:, 0].astype(np.int64), dist[:, 0])


def kmeans_kcenter(
    vectors: np.ndarray,
    budget: int,
    *,
    clusters: int | None = None,
    seed: int = 0,
    niter: int = 20,
    backend: str = "auto",
    device: str | None = None,
    progress: Progress | None = None,
) -> tuple[np.ndarray, ClusterAssignment, np.ndarray]:
    """Select ``budget`` rows: K-means, proportional quotas, k-center inside each cluster.

    Returns
    -------
    positions, assignment, quotas
        Selected row positions (ascending), the clustering, and each cluster's quota.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = np.concatenate([rng.normal(0, 0.1, (60, 2)), rng.normal(5, 0.1, (40, 2))])
    >>> pos, km, q = kmeans_kcenter(x, 5, clusters=2)
    >>> sorted(q.tolist()), int((pos < 60).sum())
    ([2, 3], 3)
    """
    n = vectors.shape[0]
    c = default_clusters(budget, n) if clusters is None else int(clusters)
    km = kmeans(vectors, c, seed=seed, niter=niter)
    sizes = np.bincount(km.labels, minlength=c)
    quotas = proportional_quotas(sizes, budget)
    # Members of every cluster in row order, from one stable sort (no per-cluster scans).
    order = np.argsort(km.labels, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    picked = []
    for j in np.flatnonzero(quotas):
        members = order[bounds[j] : bounds[j + 1]]
        local = kcenter_greedy(
            vectors[members], int(quotas[j]), seed=seed + int(j), backend=backend, device=device, progress=progress
        )  # type: ignore[arg-type]
        picked.append(members[local])
    pos = np.sort(np.concatenate(picked)) if picked else np.empty(0, dtype=np.int64)
    return pos.astype(np.int64), km, quotas
