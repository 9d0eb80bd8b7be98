"""Streaming statistics for the report, in memory bounded by the number of columns, groups and samples.

Every accumulator takes one batch at a time as a float64 matrix ``values[n, C]`` (NaN wherever a
row has no finite value for a column) plus per-row group codes, so a file of any length costs
the same memory:

- :class:`Tally`: exact counts (values, nulls, NaN/inf, absent column), mean and variance
  (Chan's pairwise merge), min, max and smallest positive value, per group;
- :class:`RowReservoir`: a uniform sample of whole rows (Algorithm R, vectorised per batch):
  quantiles, correlations and rule terms come from it, exactly while the rows fit;
- :class:`Extremes`: the ``k`` lowest and highest values of each column with their row ids;
- :class:`Histograms`: exact bin counts per column and series on edges fixed by :func:`bin_edges`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Row states, per column (Tally.states counts them)
OK, NULL, NONFINITE, ABSENT = 0, 1, 2, 3
STATE_NAMES = ("values", "null", "NaN or inf", "column absent")


class Tally:
    """Exact per-group, per-column counts and moments over a stream of batches."""

    def __init__(self, groups: int, columns: int) -> None:
        shape = (groups, columns)
        self.states = np.zeros((groups, columns, 4), dtype=np.int64)
        self.mean = np.zeros(shape)
        self.m2 = np.zeros(shape)
        self.lo = np.full(shape, np.inf)
        self.hi = np.full(shape, -np.inf)
        self.lo_pos = np.full(shape, np.inf)  # smallest positive value (log scales)

    @property
    def count(self) -> np.ndarray:
        return self.states[:, :, OK]

    def add(self, values: np.ndarray, states: np.ndarray, groups: np.ndarray) -> None:
        """One batch: ``values[n, C]`` (NaN where not OK), ``states[n, C]`` (OK/NULL/...), ``groups[n]``."""
        n_groups = self.states.shape[0]
        for g in range(n_groups):
            rows = groups == g if n_groups > 1 else slice(None)
            v = values[rows]
            if not v.shape[0]:
                continue
            st = states[rows]
            for s in range(4):
                self.states[g, :, s] += (st == s).sum(axis=0)
            ok = ~np.isnan(v)
            n = ok.sum(axis=0)
            has = n > 0
            if not has.any():
                continue
            with np.errstate(invalid="ignore", divide="ignore"):
                bmean = np.where(has, np.nansum(v, axis=0) / np.maximum(n, 1), 0.0)
                bm2 = np.nansum((v - bmean) ** 2, axis=0)
            na = self.count[g] - n  # count before this batch (states already added)
            tot = na + n
            delta = bmean - self.mean[g]
            with np.errstate(invalid="ignore", divide="ignore"):
                self.mean[g] = np.where(has, self.mean[g] + delta * n / np.maximum(tot, 1), self.mean[g])
                self.m2[g] = np.where(has, self.m2[g] + bm2 + delta**2 * na * n / np.maximum(tot, 1), self.m2[g])
            vv = np.where(ok, v, np.inf)
            self.lo[g] = np.minimum(self.lo[g], vv.min(axis=0))
            self.lo_pos[g] = np.minimum(self.lo_pos[g], np.where(vv > 0, vv, np.inf).min(axis=0))
            self.hi[g] = np.maximum(self.hi[g], np.where(ok, v, -np.inf).max(axis=0))

    def overall(self) -> Tally:
        """All groups merged into one."""
        out = Tally(1, self.states.shape[1])
        out.states[0] = self.states.sum(axis=0)
        n = self.count.astype(np.float64)
        tot = n.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(tot > 0, (self.mean * n).sum(axis=0) / np.maximum(tot, 1), 0.0)
            out.m2[0] = (self.m2 + n * (self.mean - mean) ** 2).sum(axis=0)
        out.mean[0] = mean
        out.lo[0] = self.lo.min(axis=0)
        out.hi[0] = self.hi.max(axis=0)
        out.lo_pos[0] = self.lo_pos.min(axis=0)
        return out

    def std(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.count > 1, np.sqrt(self.m2 / np.maximum(self.count - 1, 1)), np.nan)


class RowReservoir:
    """A uniform sample of at most ``capacity`` rows of a stream (all of them while they fit).

    Keeps each row's values, id, group and selected flag, so quantiles, correlations and the
    rule's terms all describe the same rows.
    """

    def __init__(self, capacity: int, columns: int, rng: np.random.Generator) -> None:
        self.capacity = capacity
        self.rng = rng
        self.values = np.empty((0, columns))
        self.ids = np.empty(0, dtype=np.int64)
        self.groups = np.empty(0, dtype=np.int32)
        self.selected = np.empty(0, dtype=bool)
        self.seen = 0

    @property
    def exact(self) -> bool:
        """Whether the sample holds every row seen."""
        return self.seen <= self.capacity

    def add(self, values: np.ndarray, ids: np.ndarray, groups: np.ndarray, selected: np.ndarray) -> None:
        n = values.shape[0]
        filled = self.rows()
        free = self.capacity - filled
        if free > 0:  # fill first
            take = min(free, n)
            self._put(slice(filled, filled + take), values[:take], ids[:take], groups[:take], selected[:take])
            self.seen += take
            values, ids, groups, selected = values[take:], ids[take:], groups[take:], selected[take:]
            n -= take
        if not n:
            return
        # Algorithm R: the row seen as the t-th (1-based) replaces a random slot with probability capacity / t.
        t = self.seen + np.arange(1, n + 1)
        slot = (self.rng.random(n) * t).astype(np.int64)
        keep = np.flatnonzero(slot < self.capacity)
        # later rows overwrite earlier ones in the same slot, as a sequential pass would
        self.values[slot[keep]] = values[keep]
        self.ids[slot[keep]] = ids[keep]
        self.groups[slot[keep]] = groups[keep]
        self.selected[slot[keep]] = selected[keep]
        self.seen += n

    def _put(self, where: slice, values, ids, groups, selected) -> None:
        if self.ids.size < where.stop:  # grow geometrically up to the capacity
            size = min(self.capacity, max(where.stop, 2 * self.ids.size))
            extra = size - self.ids.size
            self.values = np.concatenate([self.values, np.empty((extra, self.values.shape[1]))])
            self.ids = np.concatenate([self.ids, np.empty(extra, np.int64)])
            self.groups = np.concatenate([self.groups, np.empty(extra, np.int32)])
            self.selected = np.concatenate([self.selected, np.empty(extra, bool)])
        self.values[where] = values
        self.ids[where] = ids
        self.groups[where] = groups
        self.selected[where] = selected

    def rows(self) -> int:
        return min(self.seen, self.capacity)

    def column(self, c: int, mask: np.ndarray | None = None) -> np.ndarray:
        """The finite sampled values of column ``c`` (of the rows in ``mask``)."""
        v = self.values[: self.rows(), c]
        if mask is not None:
            v = v[mask[: self.rows()]]
        return v[~np.isnan(v)]


class Extremes:
    """The ``k`` lowest and ``k`` highest finite values of every column, ties broken by row id."""

    def __init__(self, k: int, columns: int) -> None:
        self.k = k
        self.low = [(np.empty(0), np.empty(0, np.int64)) for _ in range(columns)]
        self.high = [(np.empty(0), np.empty(0, np.int64)) for _ in range(columns)]

    def add(self, values: np.ndarray, ids: np.ndarray) -> None:
        for c in range(values.shape[1]):
            v = values[:, c]
            ok = np.flatnonzero(~np.isnan(v))
            if not ok.size:
                continue
            self.low[c] = self._merge(self.low[c], v[ok], ids[ok], 1.0)
            self.high[c] = self._merge(self.high[c], v[ok], ids[ok], -1.0)

    def _merge(self, cur, v: np.ndarray, ids: np.ndarray, sign: float):
        k = self.k
        if v.size > k:  # candidates: the k best of the batch (ties at the cut kept whole)
            key = sign * v
            cut = np.partition(key, k - 1)[k - 1]
            pick = key <= cut
            v, ids = v[pick], ids[pick]
        allv = np.concatenate([cur[0], v])
        alli = np.concatenate([cur[1], ids])
        order = np.lexsort((alli, sign * allv))[:k]
        return allv[order], alli[order]


class Histograms:
    """Exact counts per column on fixed edges, for several series (all rows, each group, selected)."""

    def __init__(self, edges: list[np.ndarray], series: int) -> None:
        self.edges = edges
        self.counts = [np.zeros((series, e.size - 1), dtype=np.int64) for e in edges]

    def add(self, values: np.ndarray, codes: list[np.ndarray]) -> None:
        """One batch; ``codes``: per-row series index arrays (one per family of series: all rows,
        groups, selected), -1 where a row is in none of that family's series."""
        for c, edges in enumerate(self.edges):
            v = values[:, c]
            ok = ~np.isnan(v)
            if not ok.any():
                continue
            bins = edges.size - 1
            idx = np.searchsorted(edges, v[ok], side="right") - 1
            idx[idx == bins] = bins - 1  # the last bin holds its upper edge (numpy's convention)
            np.clip(idx, 0, bins - 1, out=idx)
            counts = self.counts[c]
            for series in codes:
                code = series[ok]
                inside = code >= 0
                flat = np.bincount(code[inside] * bins + idx[inside], minlength=counts.size)
                counts += flat.reshape(counts.shape)


@dataclass(frozen=True)
class Binning:
    """Histogram edges for one column and how its axis is drawn."""

    edges: np.ndarray
    log: bool


def bin_edges(lo: float, hi: float, lo_pos: float, median: float, *, integer: bool, bins: int) -> Binning:
    """Edges from a column's exact range.

    Log-spaced when every value is positive and the data spans decades with most of it near the
    bottom (``max / min >= 100`` and the median in the lowest tenth of the range: perplexity);
    integer columns get integer-wide bins centred on the integers; otherwise ``bins`` equal bins.
    The first edge is the minimum and the last the maximum (for integers, +-0.5), so every value
    lands in a bin (the last bin includes its upper edge, as in :func:`numpy.histogram`).

    >>> bin_edges(1.0, 1000.0, 1.0, 5.0, integer=False, bins=3).edges.tolist()
    [1.0, 10.0, 100.0, 1000.0]
    >>> bin_edges(0.0, 4.0, 1.0, 2.0, integer=True, bins=40).edges.tolist()
    [-0.5, 0.5, 1.5, 2.5, 3.5, 4.5]
    """
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return Binning(np.array([0.0, 1.0]), False)
    if lo == hi:
        half = 0.5 if integer or lo == 0 else abs(lo) * 0.05
        return Binning(np.array([lo - half, hi + half]), False)
    if lo > 0 and hi / lo >= 100 and (median - lo) <= 0.1 * (hi - lo):
        e = 10.0 ** np.linspace(math.log10(lo), math.log10(hi), bins + 1)
        e[0], e[-1] = lo, hi
        return Binning(e, True)
    if integer:
        width = max(1, math.ceil((hi - lo + 1) / bins))
        n = math.ceil((hi - lo + 1) / width)
        return Binning(lo - 0.5 + width * np.arange(n + 1, dtype=np.float64), False)
    e = np.linspace(lo, hi, bins + 1)
    e[0], e[-1] = lo, hi
    return Binning(e, False)


__all__ = [
    "ABSENT",
    "NONFINITE",
    "NULL",
    "OK",
    "STATE_NAMES",
    "Binning",
    "Extremes",
    "Histograms",
    "RowReservoir",
    "Tally",
    "bin_edges",
]
