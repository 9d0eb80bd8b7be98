"""search_subset_size on a synthetic double-descent loss: BlendSearch and the log-grid fallback."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

import instructfast
from instructfast import MissingDependencyError, search_subset_size
from instructfast.selection import subset_search


def double_descent(best: float, bump: float, dip: float):
    """Loss over log10(size): a first dip, a bump (the interpolation peak), then the basin at `best`."""

    def loss(size: int) -> float:
        x = math.log10(size)
        return (
            0.5 * (x - math.log10(best)) ** 2
            + 0.4 * math.exp(-(((x - math.log10(bump)) / 0.15) ** 2))
            - 0.25 * math.exp(-(((x - math.log10(dip)) / 0.15) ** 2))
        )

    return loss


def _objective(seed):
    rng = np.random.default_rng(seed)
    best = float(rng.uniform(1500, 6000))  # the basin, somewhere past the bump
    return best, double_descent(best, bump=best / 3.5, dip=best / 15)


def _counting(fn):
    calls = []

    def evaluate(subset):
        calls.append(len(subset))
        return fn(len(subset))

    return evaluate, calls


@pytest.mark.parametrize("method,budget", [("blendsearch", 20), ("log-grid", 14)])
def test_finds_the_basin(method, budget, seed):
    best, loss = _objective(seed)
    evaluate, calls = _counting(loss)
    res = search_subset_size(list(range(100_000)), evaluate, 100, 100_000, budget, method=method, seed=seed % 1000)
    assert res.method == method
    # within a factor 1.8; the first dip is a factor 15 away
    assert abs(math.log10(res.best_size / best)) < 0.25, (best, res.history)
    assert res.best_loss == loss(res.best_size) == min(v for _, v in res.history)
    # budget = evaluations actually run, each size once, history in call order
    assert calls == [s for s, _ in res.history] and len(calls) == len(set(calls)) == budget


def test_fallback_when_flaml_missing(monkeypatch, seed):
    monkeypatch.setattr(subset_search, "_flaml", lambda: None)
    best, loss = _objective(seed)
    res = search_subset_size(list(range(50_000)), lambda s: loss(len(s)), 100, 50_000, 14)
    assert res.method == "log-grid"
    assert abs(math.log10(res.best_size / best)) < 0.25
    with pytest.raises(MissingDependencyError, match="pip install"):
        search_subset_size(list(range(1000)), len, 1, 1000, 5, method="blendsearch")


def test_blendsearch_deterministic_for_a_seed(seed):
    _, loss = _objective(seed)
    a = search_subset_size(list(range(20_000)), lambda s: loss(len(s)), 50, 20_000, 10, method="blendsearch", seed=3)
    b = search_subset_size(list(range(20_000)), lambda s: loss(len(s)), 50, 20_000, 10, method="blendsearch", seed=3)
    assert a.history == b.history


def test_subsets_are_heads_of_the_ranking(seed):
    t = pa.table(
        {
            "instruction": [f"i{j}" for j in range(300)],
            "output": ["o"] * 300,
            "predicted_log_loss": np.random.default_rng(seed).random(300),
        }
    )
    ranked = instructfast.select(t, fraction=1.0, method="rule")
    seen = []

    def evaluate(subset):
        assert isinstance(subset, pa.Table)
        assert (
            subset.column("instruction").to_pylist()
            == ranked.table.column("instruction").to_pylist()[: subset.num_rows]
        )
        seen.append(subset.num_rows)
        return abs(subset.num_rows - 120)

    res = search_subset_size(ranked, evaluate, 10, 300, 8, method="log-grid")
    assert res.best_size == min(seen, key=lambda s: abs(s - 120))
    assert search_subset_size(t, lambda s: s.num_rows, 5, 300, 3, method="log-grid").best_size == 5


def test_small_range_stops_when_exhausted():
    res = search_subset_size(list(range(10)), lambda s: (len(s) - 4) ** 2, 2, 6, 50, method="log-grid")
    assert sorted(s for s, _ in res.history) == [2, 3, 4, 5, 6] and res.best_size == 4


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"low": 0, "high": 10}, r"1 <= low < high <= 100"),
        ({"low": 10, "high": 10}, r"1 <= low < high"),
        ({"low": 1, "high": 101}, r"high <= 100"),
        ({"budget": 1}, r"`budget` must be an integer >= 2"),
        ({"method": "grid"}, r"`method` must be"),
    ],
)
def test_errors(kwargs, match):
    args = {"low": 1, "high": 100, "budget": 4} | kwargs
    with pytest.raises(ValueError, match=match):
        search_subset_size(list(range(100)), len, **args)


def test_non_finite_loss_is_an_error():
    with pytest.raises(ValueError, match=r"returned nan for size 1"):
        search_subset_size(list(range(100)), lambda s: float("nan"), 1, 100, 4, method="log-grid")
