"""Choosing the subset size: the head of a ranking, sized by the user's own evaluation.

InstructMining ranks the pool by the rule, then searches the size of the head to
fine-tune on with FLAML's BlendSearch (the paper: 2,532 of 100,000 OpenOrca records).
Each evaluation is the user's fine-tuning run, so ``budget`` counts evaluations, and a
size already evaluated is answered from the history instead of being run again.

BlendSearch (``pip install "instructfast[search]"``) searches ``log(size)``, starting from
``low`` (the cheap end) plus a few log-spaced sizes across the range, so a loss curve with
two descents (a basin past a first bump) is still found. Without FLAML, or with
``method="log-grid"``, half the budget goes to log-spaced sizes and the rest refines
around the best one by geometric bisection of its wider neighbouring gap.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from ..errors import ArgumentError, MissingDependencyError


@dataclass
class SubsetSearchResult:
    """Best size and loss found, and every evaluation in call order as ``(size, loss)``."""

    best_size: int
    best_loss: float
    history: list[tuple[int, float]] = field(default_factory=list)
    method: str = ""


def search_subset_size(
    ranked: Any,
    evaluate: Callable[[Any], float],
    low: int,
    high: int,
    budget: int,
    *,
    method: Literal["auto", "blendsearch", "log-grid"] = "auto",
    seed: int = 0,
) -> SubsetSearchResult:
    """Find the head size of ``ranked`` whose ``evaluate`` loss is lowest.

    Parameters
    ----------
    ranked
        Records best first: a :class:`~instructfast.selection.SelectionResult` (its
        ``table``), a pyarrow Table, or any sliceable sequence / array.
    evaluate
        ``evaluate(subset) -> loss`` with ``subset`` the first ``size`` records (a Table
        slice for Arrow input, ``ranked[:size]`` otherwise); lower is better. Typically
        fine-tunes on the subset and returns the eval loss.
    low, high
        Smallest and largest size to try, ``1 <= low < high <= len(ranked)``.
    budget
        Number of evaluations (distinct sizes) to spend, at least 2.
    method
        ``"auto"``: BlendSearch when FLAML is installed, else the log-spaced search;
        ``"blendsearch"`` requires FLAML; ``"log-grid"`` forces the fallback.
    seed
        Seed for BlendSearch (the log-grid search is deterministic).

    Returns
    -------
    SubsetSearchResult

    Examples
    --------
    A cheap stand-in for fine-tuning: a loss curve with its best size at 2,500, a local
    dip near 160 and a bump near 700 between them.

    >>> import math
    >>> def evaluate(subset):
    ...     x = math.log10(len(subset))
    ...     return (0.5 * (x - math.log10(2500)) ** 2 + 0.4 * math.exp(-((x - math.log10(700)) / 0.15) ** 2)
    ...             - 0.25 * math.exp(-((x - 2.2) / 0.15) ** 2))
    >>> ranked = list(range(100_000))  # e.g. select(..., method="rule", fraction=1.0).table
    >>> res = search_subset_size(ranked, evaluate, low=100, high=100_000, budget=16, method="log-grid")
    >>> res.best_size, round(res.best_loss, 4), len(res.history)
    (2471, 0.0, 16)
    """
    n = _length(ranked)
    if not (isinstance(low, (int, np.integer)) and isinstance(high, (int, np.integer)) and 1 <= low < high <= n):
        msg = f"need integers 1 <= low < high <= {n} (the ranked records), got low={low!r}, high={high!r}"
        raise ArgumentError(msg)
    if not isinstance(budget, (int, np.integer)) or budget < 2:
        msg = f"`budget` must be an integer >= 2 (evaluations), got {budget!r}"
        raise ArgumentError(msg)
    if method not in ("auto", "blendsearch", "log-grid"):
        msg = f"`method` must be 'auto', 'blendsearch' or 'log-grid', got {method!r}"
        raise ArgumentError(msg)
    budget = min(int(budget), int(high) - int(low) + 1)
    history: list[tuple[int, float]] = []
    seen: dict[int, float] = {}

    def run(size: int) -> float:
        size = int(min(max(size, low), high))
        if size not in seen:
            loss = float(evaluate(_head(ranked, size)))
            if not math.isfinite(loss):
                msg = f"`evaluate` returned {loss} for size {size}; it must return a finite loss"
                raise ArgumentError(msg)
            seen[size] = loss
            history.append((size, loss))
        return seen[size]

    use = method
    if method == "auto":
        use = "blendsearch" if _flaml() is not None else "log-grid"
    if use == "blendsearch":
        if _flaml() is None:
            msg = 'method="blendsearch" needs FLAML: pip install "instructfast[search]" (flaml, optuna)'
            raise MissingDependencyError(msg)
        _blendsearch(run, seen, int(low), int(high), budget, seed)
    else:
        _log_grid(run, seen, int(low), int(high), budget)
    best = min(history, key=lambda h: (h[1], h[0]))  # ties: the smaller (cheaper) subset
    return SubsetSearchResult(best[0], best[1], history, use)


def _length(ranked: Any) -> int:
    if hasattr(ranked, "positions") and hasattr(ranked, "table"):
        return int(ranked.table.num_rows)
    if isinstance(ranked, (pa.Table, pa.RecordBatch)):
        return int(ranked.num_rows)
    return len(ranked)


def _head(ranked: Any, size: int) -> Any:
    if hasattr(ranked, "positions") and hasattr(ranked, "table"):
        return ranked.table.slice(0, size)
    if isinstance(ranked, (pa.Table, pa.RecordBatch)):
        return ranked.slice(0, size)
    return ranked[:size]


def _flaml():
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "flaml.automl is not available": irrelevant for tune
            from flaml import BlendSearch, tune
    except ImportError:
        return None
    return BlendSearch, tune


def _blendsearch(run: Callable[[int], float], seen: dict, low: int, high: int, budget: int, seed: int) -> None:
    import logging

    BlendSearch, tune = _flaml()
    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
    except ImportError:  # pragma: no cover - BlendSearch's global search needs optuna
        pass
    # BlendSearch forwards some completions twice to its optuna searcher, which logs a
    # harmless warning per repeat: keep FLAML quiet (verbose=0 in tune.run terms) for the call.
    flaml_log = logging.getLogger("flaml")
    old_level = flaml_log.level
    flaml_log.setLevel(logging.ERROR)
    try:
        _blendsearch_loop(BlendSearch, tune, run, seen, low, high, budget, seed)
    finally:
        flaml_log.setLevel(old_level)


def _blendsearch_loop(BlendSearch, tune, run, seen: dict, low: int, high: int, budget: int, seed: int) -> None:
    # Seed the global search with log-spaced sizes so a second descent beyond a bump is seen.
    starts = [{"size": int(round(v))} for v in np.geomspace(low, high, max(2, min(4, budget // 3)))]
    alg = BlendSearch(
        metric="loss",
        mode="min",
        space={"size": tune.lograndint(low, high + 1)},
        low_cost_partial_config={"size": low},
        points_to_evaluate=starts,
        seed=seed,
    )
    # A suggestion may repeat a size (answered from the history) or be None (the searcher
    # waiting on itself); cap the attempts so a stuck searcher cannot loop forever.
    for attempt in range(50 * budget):
        if len(seen) >= budget:
            break
        cfg = alg.suggest(str(attempt))
        if cfg is None:
            continue
        loss = run(int(cfg["size"]))
        alg.on_trial_complete(str(attempt), {"loss": loss, "config": cfg})


def _log_grid(run: Callable[[int], float], seen: dict, low: int, high: int, budget: int) -> None:
    first = max(2, math.ceil(budget / 2))
    for v in np.geomspace(low, high, first):
        if len(seen) >= budget:
            return
        run(int(round(v)))
    while len(seen) < budget:
        sizes = sorted(seen)
        i = min(range(len(sizes)), key=lambda j: (seen[sizes[j]], sizes[j]))
        gaps = []
        for j in (i - 1, i + 1):
            if 0 <= j < len(sizes):
                a, b = sorted((sizes[i], sizes[j]))
                if b - a > 1:
                    gaps.append((math.log(b / a), a, b))
        if not gaps:
            return  # the best size's neighbours are adjacent integers: nothing left to refine
        _, a, b = max(gaps)
        mid = min(max(int(round(math.sqrt(a * b))), a + 1), b - 1)
        run(mid)
