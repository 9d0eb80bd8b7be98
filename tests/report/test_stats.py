"""The streaming accumulators and sample computations against numpy / scipy on the whole data."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from instructfast.report.analysis import Sample, pca_projection, spearman_matrix, variance_shares
from instructfast.report.stats import NULL, OK, Extremes, Histograms, RowReservoir, Tally, bin_edges


def _batches(x: np.ndarray, rng: np.random.Generator):
    """Split rows into batches of random sizes."""
    cuts = np.sort(rng.choice(np.arange(1, x.shape[0]), size=6, replace=False))
    return np.split(np.arange(x.shape[0]), cuts)


def test_tally_matches_numpy_per_group(rng):
    x = rng.normal(3, 2, size=(1_000, 3))
    x[rng.random(x.shape) < 0.1] = np.nan
    groups = rng.integers(0, 3, 1_000).astype(np.int32)
    states = np.where(np.isnan(x), NULL, OK).astype(np.int8)
    t = Tally(3, 3)
    for idx in _batches(x, rng):
        t.add(x[idx], states[idx], groups[idx])
    for g in range(3):
        for c in range(3):
            v = x[groups == g, c]
            v = v[~np.isnan(v)]
            assert t.count[g, c] == v.size
            assert t.states[g, c, NULL] == int(np.isnan(x[groups == g, c]).sum())
            assert t.mean[g, c] == pytest.approx(v.mean(), rel=1e-12)
            assert t.std()[g, c] == pytest.approx(v.std(ddof=1), rel=1e-10)
            assert t.lo[g, c] == v.min() and t.hi[g, c] == v.max()
    a = t.overall()
    for c in range(3):
        v = x[:, c][~np.isnan(x[:, c])]
        assert a.mean[0, c] == pytest.approx(v.mean(), rel=1e-12)
        assert a.std()[0, c] == pytest.approx(v.std(ddof=1), rel=1e-10)
        assert a.lo_pos[0, c] == v[v > 0].min()


def test_reservoir_is_exact_while_rows_fit_then_bounded_and_uniform(rng):
    x = np.arange(500, dtype=np.float64)[:, None]
    res = RowReservoir(1_000, 1, rng)
    for idx in _batches(x, rng):
        res.add(x[idx], idx.astype(np.int64), np.zeros(idx.size, np.int32), np.zeros(idx.size, bool))
    assert res.exact and sorted(res.column(0).tolist()) == x[:, 0].tolist()
    # beyond capacity: at most `capacity` rows, each row equally likely (mean position ~ uniform)
    means = []
    for _ in range(40):
        res = RowReservoir(100, 1, rng)
        big = np.arange(10_000, dtype=np.float64)[:, None]
        for idx in _batches(big, rng):
            res.add(big[idx], idx.astype(np.int64), np.zeros(idx.size, np.int32), np.zeros(idx.size, bool))
        assert res.rows() == 100 and not res.exact
        assert np.array_equal(res.values[:, 0], res.ids.astype(np.float64))  # rows stay whole
        means.append(res.column(0).mean())
    # the mean of 4,000 uniform draws from 0..9999: sd ~ 2887 / sqrt(4000) ~ 46
    assert abs(np.mean(means) - 4999.5) < 5 * 46


def test_extremes_match_a_full_sort_with_ties_by_row(rng):
    x = rng.integers(0, 20, size=(3_000, 2)).astype(np.float64)
    x[rng.random(x.shape) < 0.05] = np.nan
    ids = np.arange(3_000, dtype=np.int64)
    e = Extremes(5, 2)
    for idx in _batches(x, rng):
        e.add(x[idx], ids[idx])
    for c in range(2):
        ok = np.flatnonzero(~np.isnan(x[:, c]))
        low = ok[np.lexsort((ok, x[ok, c]))][:5]
        high = ok[np.lexsort((ok, -x[ok, c]))][:5]
        assert e.low[c][1].tolist() == low.tolist()
        assert e.high[c][1].tolist() == high.tolist()
        assert e.low[c][0].tolist() == x[low, c].tolist()


@pytest.mark.parametrize("log", [False, True])
def test_histograms_equal_numpy_on_the_same_edges(rng, log):
    v = rng.lognormal(0, 2.5, 5_000) if log else rng.normal(0, 1, 5_000)
    v[rng.random(v.size) < 0.02] = np.nan
    ok = v[~np.isnan(v)]
    b = bin_edges(ok.min(), ok.max(), ok[ok > 0].min(), float(np.median(ok)), integer=False, bins=40)
    assert b.log is log
    groups = rng.integers(0, 2, v.size)
    h = Histograms([b.edges], 3)
    for idx in _batches(v[:, None], rng):
        h.add(v[idx][:, None], [np.zeros(idx.size, np.int64), groups[idx] + 1])
    assert h.counts[0][0].tolist() == np.histogram(ok, b.edges)[0].tolist()
    for g in range(2):
        sub = v[(groups == g) & ~np.isnan(v)]
        assert h.counts[0][1 + g].tolist() == np.histogram(sub, b.edges)[0].tolist()


def test_integer_bins_are_whole_numbers_and_cover_the_range():
    b = bin_edges(0, 1_000, 1, 100, integer=True, bins=40)
    widths = np.diff(b.edges)
    assert not b.log and (widths == widths[0]).all() and float(widths[0]).is_integer()
    assert b.edges[0] <= 0 and b.edges[-1] >= 1_000 and widths.size <= 40
    assert bin_edges(5, 5, 5, 5, integer=True, bins=40).edges.tolist() == [4.5, 5.5]


def test_spearman_matches_scipy_pairwise(rng):
    x = rng.normal(size=(400, 4))
    x[:, 1] = x[:, 0] + rng.normal(0, 0.5, 400)
    x[:, 2] = np.round(x[:, 2])  # ties
    x[rng.random(400) < 0.1, 3] = np.nan
    rho, n = spearman_matrix(x)
    for i in range(4):
        for j in range(4):
            both = ~np.isnan(x[:, i]) & ~np.isnan(x[:, j])
            assert n[i, j] == both.sum()
            expect = spearmanr(x[both, i], x[both, j]).statistic
            assert rho[i, j] == pytest.approx(expect, abs=1e-12)


def test_variance_shares_sum_to_one(rng):
    terms = rng.normal(size=(300, 3)) * [1.0, 0.1, 3.0]
    shares, n = variance_shares(0.5 + terms.sum(axis=1), terms)
    assert n == 300 and shares.sum() == pytest.approx(1.0)
    assert np.argmax(shares) == 2 and shares[1] < 0.01


def test_projection_recovers_a_plane(rng):
    basis = np.linalg.qr(rng.normal(size=(16, 2)))[0].T
    coords = rng.normal(size=(300, 2)) * [3.0, 1.0]
    x = (coords @ basis + 5 * rng.normal(size=16)).astype(np.float32)  # offset: unit norm changes little
    pool = np.ones(300, dtype=bool)
    p = pca_projection(Sample(np.arange(300), pool, np.zeros(300, bool)), x)
    assert p.xy.shape == (300, 2) and sum(p.explained) > 0.9 and p.explained[0] > p.explained[1]
