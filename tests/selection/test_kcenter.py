"""k-center greedy and the k-means + k-center coreset against independent references.

References: a float64 brute-force farthest-first traversal that recomputes every
distance from scratch with ``(x - c)**2`` (no shared code with the blocked GEMV update),
faiss's own assignment of rows to trained centroids, and quota arithmetic done with
Python fractions.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from instructfast.selection.kcenter import kcenter_greedy
from instructfast.selection.kmeans_kcenter import default_clusters, kmeans, kmeans_kcenter, proportional_quotas
from tests.references import naive_kcenter


def _unit(rng, n, d, dtype=np.float64):
    x = rng.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(dtype)


@pytest.mark.parametrize("strategy", ["lazy", "full"])
@pytest.mark.parametrize("n,d,k", [(500, 8, 40), (1234, 37, 60), (300, 384, 25)])
def test_same_picks_as_brute_force(n, d, k, strategy, seed):
    rng = np.random.default_rng([seed, n])
    x = _unit(rng, n, d)
    first = int(rng.integers(n))
    got = kcenter_greedy(x, k, start=first, backend="numpy", strategy=strategy)
    assert got.dtype == np.int64
    assert got.tolist() == naive_kcenter(x, k, first).tolist()


def _clustered(rng, n, d, centres=20, spread=0.15):
    c = _unit(rng, centres, d)
    x = c[rng.integers(0, centres, n)] + spread * rng.standard_normal((n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("pool,ratio", [(1, 1.0), (7, 0.0), (64, 0.05), (64, 1e9), (500, 1.0)])
@pytest.mark.parametrize("data", ["uniform", "clustered", "duplicates"])
def test_lazy_bounds_give_the_brute_force_picks(monkeypatch, pool, ratio, data, seed):
    # Small pools and every catch-up policy, so rebuilds, stale bounds and catch-ups all happen.
    import instructfast.selection.kcenter as kc

    monkeypatch.setattr(kc, "POOL_ROWS", pool)
    monkeypatch.setattr(kc, "CATCH_UP_RATIO", ratio)  # 0: catch up at every rebuild; 1e9: never
    monkeypatch.setattr(kc, "_CENTRE_CHUNK", 5)
    rng = np.random.default_rng([seed, pool])
    if data == "uniform":
        x = _unit(rng, 700, 12)
    elif data == "clustered":
        x = _clustered(rng, 700, 12)
    else:
        x = np.repeat(_clustered(rng, 100, 6), 7, axis=0)[rng.permutation(700)]  # each point 7 times
    got = kcenter_greedy(x, 45, start=5, strategy="lazy", backend="numpy")
    assert got.tolist() == kcenter_greedy(x, 45, start=5, strategy="full", backend="numpy").tolist()
    # duplicates: copies tie exactly, and the lowest position must win, as in the reference
    assert got.tolist() == naive_kcenter(x, 45, 5).tolist()
    seeds = rng.choice(700, 9, replace=False)
    assert (
        kcenter_greedy(x, 30, already_selected=seeds, strategy="lazy").tolist()
        == kcenter_greedy(x, 30, already_selected=seeds, strategy="full").tolist()
    )


def test_float32_picks_are_farthest_up_to_rounding(seed):
    # float32 vectors: each pick's float64 distance to the set so far must equal the maximum
    # (up to float32 rounding); a near-tie may send the two runs different ways, never a wrong pick.
    rng = np.random.default_rng(seed)
    x = _unit(rng, 2000, 16, np.float32)
    got = kcenter_greedy(x, 50, start=7, backend="numpy")
    x64 = x.astype(np.float64)
    for i in range(1, got.size):
        d = np.sqrt(((x64[:, None, :] - x64[None, got[:i], :]) ** 2).sum(-1)).min(axis=1)
        assert d[got[i]] >= d.max() - 1e-5, i
    assert len(set(got.tolist())) == got.size


@pytest.mark.parametrize("strategy", ["lazy", "full"])
def test_working_memory_is_linear_in_rows(strategy, seed):
    # 200k x 8: an N x k distance matrix would be 200k x 300 x 4 B = 229 MiB; O(N) state is a few MiB.
    import tracemalloc

    rng = np.random.default_rng(seed)
    x = _unit(rng, 200_000, 8, np.float32)
    seeds = rng.choice(200_000, 300, replace=False)
    tracemalloc.start()
    kcenter_greedy(x, 300, already_selected=seeds, strategy=strategy, backend="numpy")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 64 * 2**20, peak  # O(N) vectors (bounds, counters, ||x||^2) + 16 MiB distance blocks


def test_block_boundaries_do_not_matter(monkeypatch, seed):
    import instructfast.selection.kcenter as kc

    rng = np.random.default_rng(seed)
    x = _unit(rng, 1000, 24)
    whole = kcenter_greedy(x, 30, start=3, backend="numpy")
    monkeypatch.setattr(kc, "_BLOCK_BYTES", 24 * 8 * 77)  # 77-row blocks, a ragged last one
    assert kcenter_greedy(x, 30, start=3, backend="numpy").tolist() == whole.tolist()


def test_already_selected_seed_set(seed):
    rng = np.random.default_rng(seed)
    x = _unit(rng, 400, 10)
    seeds = rng.choice(400, size=17, replace=False)
    got = kcenter_greedy(x, 20, already_selected=seeds, backend="numpy")
    assert got.tolist() == naive_kcenter(x, 20, None, seeds=seeds.tolist()).tolist()
    assert not set(got.tolist()) & set(seeds.tolist())


def test_torch_path_matches_numpy(seed):
    rng = np.random.default_rng(seed)
    x = _unit(rng, 800, 32)
    ref = kcenter_greedy(x, 40, start=11, backend="numpy")
    assert kcenter_greedy(x, 40, start=11, backend="torch", device="cpu").tolist() == ref.tolist()
    seeds = [1, 2, 3]
    ref = kcenter_greedy(x, 10, already_selected=seeds, backend="numpy")
    assert kcenter_greedy(x, 10, already_selected=seeds, backend="torch", device="cpu").tolist() == ref.tolist()


def test_duplicates_never_picked_twice_and_ties_go_low():
    x = np.array([[1.0, 0.0]] * 5 + [[0.0, 1.0]] * 3)
    got = kcenter_greedy(x, 8, start=0, backend="numpy")
    assert sorted(got.tolist()) == list(range(8))
    assert got.tolist()[:3] == [0, 5, 1]  # then every remaining distance is 0: lowest position first


def test_seeded_start_and_progress(seed):
    x = _unit(np.random.default_rng(seed), 300, 8)
    calls = []
    a = kcenter_greedy(x, 12, seed=5, progress=calls.append)
    assert a.tolist() == kcenter_greedy(x, 12, seed=5).tolist()
    assert a[0] == np.random.default_rng(5).integers(300)
    assert sum(calls) == 12


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"k": 0}, r"`k` must be an integer in \[1, 10\]"),
        ({"k": 11}, r"`k` must be an integer in \[1, 10\]"),
        ({"k": 9, "already_selected": [0, 1]}, r"in \[1, 8\] \(10 rows, 2 already selected\)"),
        ({"k": 2, "already_selected": [10]}, r"`already_selected` positions must be in \[0, 10\), got 10"),
        ({"k": 2, "start": -1}, r"`start` must be a row position"),
        ({"k": 2, "backend": "cupy"}, r"`backend` must be one of"),
        ({"k": 2, "strategy": "fast"}, r"`strategy` must be 'lazy' or 'full'"),
    ],
)
def test_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        kcenter_greedy(np.ones((10, 3)), **kwargs)


def test_non_finite_vectors_are_an_error():
    x = np.ones((6, 3))
    x[4, 1] = np.nan
    with pytest.raises(ValueError, match=r"NaN or inf values in 1 rows \(first: row 4\)"):
        kcenter_greedy(x, 2)
    with pytest.raises(ValueError, match=r"2-d array"):
        kcenter_greedy(np.ones(5), 2)


# ------------------------------------------------------------------------- quotas


def reference_quotas(sizes, budget):
    exact = [Fraction(budget * s, sum(sizes)) for s in sizes]
    q = [int(e) for e in exact]
    order = sorted(range(len(sizes)), key=lambda i: (-(exact[i] - q[i]), -sizes[i], i))
    for i in order[: budget - sum(q)]:
        q[i] += 1
    return q


def test_quotas_largest_remainder_random(seed):
    rng = np.random.default_rng(seed)
    for _ in range(200):
        sizes = rng.integers(0, 50, size=rng.integers(1, 12)).tolist()
        if sum(sizes) == 0:
            continue
        budget = int(rng.integers(0, sum(sizes) + 1))
        q = proportional_quotas(sizes, budget)
        assert q.sum() == budget
        assert (q <= np.array(sizes)).all()
        assert q.tolist() == reference_quotas(sizes, budget), (sizes, budget)


def test_quotas_exact_cases():
    assert proportional_quotas([10, 10, 10], 2).tolist() == [1, 1, 0]  # equal remainders: lower index first
    assert proportional_quotas([3, 7], 10).tolist() == [3, 7]  # whole pool
    assert proportional_quotas([1, 2, 997], 5).tolist() == [0, 0, 5]
    assert proportional_quotas([5, 0, 5], 3).tolist() == [2, 0, 1]
    with pytest.raises(ValueError, match=r"`budget` must be in \[0, 4\]"):
        proportional_quotas([2, 2], 5)


def test_default_clusters():
    assert default_clusters(5000, 10**6) == 71
    assert default_clusters(1, 10) == 1
    assert default_clusters(100, 4) == 4


# ------------------------------------------------------------------------- k-means


def test_kmeans_assignment_is_faiss_nearest_centroid(seed):
    import faiss

    rng = np.random.default_rng(seed)
    x = _unit(rng, 3000, 24, np.float32)
    km = kmeans(x, 12, seed=3)
    index = faiss.IndexFlatL2(24)
    index.add(km.centroids)
    d, lab = index.search(x, 1)
    assert np.array_equal(km.labels, lab[:, 0])
    # and faiss's nearest centroid is the numpy float64 nearest (up to float32 ties)
    full = ((x[:, None, :].astype(np.float64) - km.centroids[None].astype(np.float64)) ** 2).sum(-1)
    best = full.min(axis=1)
    assert (full[np.arange(3000), km.labels] <= best + 1e-5).all()
    assert km.labels.min() >= 0 and km.labels.max() < 12


def test_kmeans_kcenter_quotas_and_per_cluster_greedy(seed):
    rng = np.random.default_rng(seed)
    centres = _unit(rng, 5, 16) * 3
    x = np.concatenate([c + 0.3 * rng.standard_normal((m, 16)) for c, m in zip(centres, [400, 250, 200, 100, 50])])
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    pos, km, quotas = kmeans_kcenter(x, 37, clusters=5, seed=1)
    sizes = np.bincount(km.labels, minlength=5)
    assert quotas.tolist() == reference_quotas(sizes.tolist(), 37)
    assert pos.size == 37 and np.all(np.diff(pos) > 0)
    assert np.bincount(km.labels[pos], minlength=5).tolist() == quotas.tolist()
    # inside each cluster, the picks are the farthest-first traversal of that cluster's rows
    for j in range(5):
        members = np.flatnonzero(km.labels == j)
        if quotas[j] == 0:
            continue
        local = kcenter_greedy(x[members], int(quotas[j]), seed=1 + j)
        assert sorted(members[local].tolist()) == sorted(pos[km.labels[pos] == j].tolist())


def test_kmeans_kcenter_deterministic_and_small_clusters(seed):
    rng = np.random.default_rng(seed)
    x = _unit(rng, 600, 8, np.float32)
    a = kmeans_kcenter(x, 30, clusters=40, seed=2)
    b = kmeans_kcenter(x, 30, clusters=40, seed=2)
    assert a[0].tolist() == b[0].tolist() and np.array_equal(a[1].labels, b[1].labels)
    sizes = np.bincount(a[1].labels, minlength=40)
    assert a[2].sum() == 30 and (a[2] <= sizes).all()
    # the whole pool: every cluster gives all its rows, however small
    pos, km, q = kmeans_kcenter(x[:50], 50, clusters=7, seed=0)
    assert pos.tolist() == list(range(50)) and q.tolist() == np.bincount(km.labels, minlength=7).tolist()
