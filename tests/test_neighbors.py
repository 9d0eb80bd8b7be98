"""The kNN engine against numpy float64 brute force: exact, approximate with recall, torch path."""

from __future__ import annotations

import numpy as np
import pytest

from instructfast.neighbors import NeighborIndex, as_unit_vectors, knn_distances
from tests.references import brute_knn_sorted

BACKENDS = ["faiss", "torch"]


def clustered(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    """Unit vectors with exact duplicates, triplicates and near-duplicates (distances ~1e-5)."""
    x = rng.normal(size=(n, dim))
    x[5] = x[4]
    x[10] = x[11] = x[12]
    x[20:23] = x[30] + 1e-5 * rng.normal(size=(3, dim))
    return as_unit_vectors(x)


@pytest.mark.parametrize("backend", BACKENDS)
def test_exact_matches_numpy_brute_force(rng, backend):
    x = clustered(rng, 400, 24)
    ks = [1, 2, 6, 50, 399, 400]
    got, report = knn_distances(x, ks, backend=backend, block_rows=97)
    assert report.exact
    ref = brute_knn_sorted(x)
    for k in ks:
        if k <= 399:
            np.testing.assert_allclose(got[k], ref[:, k - 1], rtol=0, atol=1e-12)
        else:  # only 399 other rows
            assert np.isinf(got[k]).all()
    # duplicates are neighbours at distance 0; self is not
    assert got[1][4] == 0.0 and got[1][5] == 0.0
    assert got[2][10] == 0.0 and got[3 if 3 in got else 6][10] > 0.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_distances_accurate_near_zero(rng, backend):
    base = rng.normal(size=(1, 32))
    x = as_unit_vectors(np.concatenate([base + 3e-6 * rng.normal(size=(8, 32)), rng.normal(size=(40, 32))]))
    got, _ = knn_distances(x, [1, 3], backend=backend)
    ref = brute_knn_sorted(x)
    assert 1e-7 < ref[:8, 0].max() < 1e-4  # the near-duplicates really are that close
    np.testing.assert_allclose(got[1][:8], ref[:8, 0], rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(got[3][:8], ref[:8, 2], rtol=1e-9, atol=1e-13)
    # the float32 shortcut sqrt(2 - 2 x.y) is wrong at this scale: it rounds to 0 or misses by far more
    # than the distances themselves (relative error >= 10%, where the search above is within 1e-9)
    ip = (x[:8] @ x[:8].T).astype(np.float32)
    shortcut = np.sqrt(np.maximum(0, 2 - 2 * ip[0, 1:]))
    exact = np.linalg.norm(x[0].astype(np.float64) - x[1:8], axis=1)
    assert (np.abs(shortcut - exact) / exact).max() > 0.1


@pytest.mark.parametrize("backend", BACKENDS)
def test_many_duplicates_self_excluded_by_position(rng, backend):
    x = rng.normal(size=(60, 16))
    x[:25] = x[0]  # 25 identical rows: more than the candidates searched per query
    x = as_unit_vectors(x)
    got, _ = knn_distances(x, [6, 24, 25], backend=backend)
    ref = brute_knn_sorted(x)
    assert (got[6][:25] == 0).all() and (got[24][:25] == 0).all()
    np.testing.assert_allclose(got[25], ref[:, 24], atol=1e-12)
    assert (got[25][:25] > 0).all()  # the 25th other row of a copy is no longer a copy


@pytest.mark.parametrize("rerank_on_device", [False, True])  # True: the CUDA code path, run on the CPU
def test_torch_equals_faiss(rng, rerank_on_device):
    x = clustered(rng, 700, 48)
    a, _ = knn_distances(x, [1, 6], backend="faiss")
    index = NeighborIndex(x, backend="torch", memory_mb=1)  # many small blocks
    index.rerank_on_device = rerank_on_device
    d, _, rep = index.search(x, 6, exclude="position", query_ids=np.arange(700))
    assert rep.method.startswith("exact (torch")
    for k in (1, 6):
        np.testing.assert_allclose(a[k], d[:, k - 1], rtol=0, atol=1e-14)  # same rows; float64 sums may round apart


@pytest.mark.parametrize(("storage", "code_bytes"), [("sq8", 1), ("flat", 4)])
def test_approximate_search_reports_measured_recall(rng, storage, code_bytes):
    centers = rng.normal(size=(30, 32))
    x = as_unit_vectors(centers[rng.integers(0, 30, 3000)] + 0.6 * rng.normal(size=(3000, 32)))
    index = NeighborIndex(
        x, exact_max=1000, recall_sample=400, recall_target=0.9, nprobe=1, seed=int(rng.integers(1 << 30)),
        ivf_storage=storage,
    )  # fmt: skip
    assert not index.exact and index.ivf.code_size == 32 * code_bytes  # what the index holds per member
    d, ids, rep = index.search(x, 6, exclude="position", query_ids=np.arange(3000), recall_ks=[1, 6])
    assert rep.method.startswith("approximate (faiss IVF") and rep.nprobe == index.nprobe
    assert f",{'SQ8' if storage == 'sq8' else 'Flat'} inner product" in rep.method
    assert rep.recall_sample == 400 and rep.recall_checked == {1: 400, 6: 2400}
    ref = brute_knn_sorted(x)
    # what approximate search returns is real: exact distances to real, non-self rows, ascending
    assert (ids != np.arange(3000)[:, None]).all()
    np.testing.assert_allclose(d, np.linalg.norm(x[ids].astype(np.float64) - x[:, None, :], axis=-1), atol=1e-12)
    assert (np.diff(d, axis=1) >= 0).all() and (d >= ref[:, :6] - 1e-12).all()
    # nprobe was raised from 1 until the sample reached the target (or every list is probed)
    assert rep.recall(6) >= 0.9 or index.nprobe == index.ivf.nlist
    # the sampled recall estimates the recall over all rows
    true_recall = (d <= ref[:, 5:6] + 1e-9).mean()
    assert abs(rep.recall(6) - true_recall) < 0.06


def test_recall_target_one_gives_exact_results(rng):
    x = as_unit_vectors(rng.normal(size=(1500, 16)))
    got, rep = knn_distances(x, [1, 6], exact_max=100, recall_target=1.0, recall_sample=1500)
    assert not rep.exact and rep.recall(6) == 1.0 and rep.recall(1) == 1.0
    ref = brute_knn_sorted(x)
    np.testing.assert_allclose(got[6], ref[:, 5], atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_reference_pool_without_and_with_self_match(rng, backend):
    pool = clustered(rng, 300, 16)
    index = NeighborIndex(pool, backend=backend)
    other = as_unit_vectors(rng.normal(size=(50, 16)))
    d, ids, rep = index.search(other, 4)
    np.testing.assert_allclose(d, brute_knn_sorted(pool, other, exclude_self=False)[:, :4], atol=1e-12)
    assert rep.no_self_match == 0
    # rows that are in the pool (with ~1e-7 re-embedding noise) skip their own copy
    take = rng.permutation(300)[:80]
    q = as_unit_vectors(pool[take] + 1e-8 * rng.normal(size=(80, 16)))
    mixed = np.concatenate([q, other[:5]])
    d, ids, rep = index.search(mixed, 6, exclude="match", self_tol=1e-4)
    np.testing.assert_allclose(d[:80], brute_knn_sorted(pool)[take, :6], atol=1e-6)
    assert rep.no_self_match == 5  # the 5 outside rows had no copy: nothing excluded
    np.testing.assert_allclose(d[80:], brute_knn_sorted(pool, other[:5], exclude_self=False)[:, :6], atol=1e-12)


def test_threads_set_during_search_and_restored(rng):
    import faiss

    before = faiss.omp_get_max_threads()
    x = as_unit_vectors(rng.normal(size=(50, 8)))
    knn_distances(x, [2], threads=1)
    assert faiss.omp_get_max_threads() == before


def test_bad_vectors_are_clear_errors():
    with pytest.raises(ValueError, match="unit-normalised"):
        NeighborIndex(np.full((4, 3), 2.0, dtype=np.float32))
    with pytest.raises(ValueError, match="NaN or infinite.*row 1"):
        as_unit_vectors([[1.0, 0.0], [np.nan, 1.0]])
    with pytest.raises(ValueError, match="all zeros.*row 0"):
        as_unit_vectors([[0.0, 0.0], [1.0, 1.0]])
    index = NeighborIndex(as_unit_vectors(np.eye(4)))
    with pytest.raises(ValueError, match=r"\[rows, 4\]"):
        index.search(np.ones((2, 3), dtype=np.float32), 1)
    with pytest.raises(ValueError, match="knn_backend"):
        NeighborIndex(as_unit_vectors(np.eye(4)), backend="annoy")
