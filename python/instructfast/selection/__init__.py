"""Selecting a subset: InstructMining's rule ranking, the 0.5% coreset, k-center, random.

:func:`select` is the one entry point. Every method returns row positions into the
input plus the selected rows, is deterministic for a ``seed``, and never selects a row
whose score or embedding is missing: those rows are left out and counted by reason in
:attr:`SelectionResult.nulls`.

Budget: exactly one of ``k`` (``1 <= k <= available rows``) or ``fraction``
(``0 < fraction <= 1``), where ``fraction`` means ``round(fraction * available)``
rounded half up, at least 1; "available" counts the rows that can be selected (non-null
score or embedding).

Order of :attr:`SelectionResult.positions` (and of the rows in ``table``):

- ``rule``: rank order, best (lowest ``predicted_log_loss``) first, ties by row position;
- ``kcenter``: pick order of the farthest-first traversal (any prefix is a k-center set);
- ``kmeans-kcenter``: ascending row position (the per-cluster picks have no global order);
- ``random``: the order drawn (any prefix is a uniform sample).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from .._typing import SelectionMethod
from ..errors import ArgumentError, RuleError, SchemaError
from ..io import to_table
from ..rules import Rule
from .fit import fit_rule
from .subset_search import SubsetSearchResult, search_subset_size

Method = SelectionMethod
METHODS: tuple[str, ...] = ("rule", "kcenter", "kmeans-kcenter", "random")
SCORE_COLUMN = "predicted_log_loss"


@dataclass
class SelectionResult:
    """What :func:`select` chose.

    Attributes
    ----------
    positions
        int64 row positions into the input, in the order described in the module docs.
    table
        The selected rows (all original columns), in the order of ``positions``.
    method, k, seed
        How it was chosen.
    available
        Rows that could be selected; ``total - available`` were left out.
    total
        Rows in the input.
    nulls
        Rows left out, by reason (e.g. ``{"null predicted_log_loss": 3}``).
    clusters
        ``kmeans-kcenter`` only: cluster label of each selected row, and ``quotas`` the
        budget share of every cluster.
    """

    positions: np.ndarray
    table: pa.Table
    method: str
    k: int
    seed: int
    available: int
    total: int
    nulls: dict[str, int] = field(default_factory=dict)
    clusters: np.ndarray | None = None
    quotas: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.positions.size)

    def summary(self) -> str:
        """One line: how many of how many, by which method, and what was left out."""
        left = "; ".join(f"{r}: {c}" for r, c in self.nulls.items())
        return f"selected {self.k} of {self.available} available rows ({self.total} in input) by {self.method}" + (
            f"; left out {self.total - self.available} ({left})" if self.nulls else ""
        )


def resolve_budget(k: int | None, fraction: float | None, available: int) -> int:
    """The number of rows to select from ``k`` or ``fraction`` of ``available`` rows.

    >>> resolve_budget(None, 0.005, 1000), resolve_budget(None, 0.0025, 1000), resolve_budget(7, None, 10)
    (5, 3, 7)
    """
    if (k is None) == (fraction is None):
        msg = "give exactly one of `k` (a row count) or `fraction` (a share of the available rows)"
        raise ArgumentError(msg)
    if available < 1:
        msg = "no rows are available to select (every row's score or embedding is missing)"
        raise ArgumentError(msg)
    if k is not None:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            msg = f"`k` must be an integer, got {k!r}"
            raise ArgumentError(msg)
        if not 1 <= k <= available:
            msg = f"`k` must be in [1, {available}] (the rows available to select), got {k}"
            raise ArgumentError(msg)
        return int(k)
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        msg = f"`fraction` must be a number with 0 < fraction <= 1, got {fraction!r}"
        raise ArgumentError(msg)
    return max(1, min(available, math.floor(fraction * available + 0.5)))


def select(
    data: Any,
    k: int | None = None,
    fraction: float | None = None,
    *,
    method: Method = "rule",
    seed: int = 0,
    rule: str | Rule | Mapping[str, Any] | None = None,
    score_column: str = SCORE_COLUMN,
    embeddings: str | np.ndarray | None = None,
    already_selected: Sequence[int] | np.ndarray | None = None,
    clusters: int | None = None,
    columns: Mapping[str, str] | None = None,
    models: Mapping[str, str] | None = None,
    device: str | None = None,
    threads: int | None = None,
    progress: bool | Callable[[int], None] = False,
) -> SelectionResult:
    """Select a subset of records.

    Parameters
    ----------
    data
        Anything :func:`instructfast.score` accepts (Arrow table/batches/reader, polars,
        pandas, HF ``datasets``, dict of columns, list of dicts) or a path to a record file.
    k, fraction
        The budget: exactly one (see the module docs for rounding).
    method
        ``"rule"`` (InstructMining: ascending ``score_column``), ``"kcenter"``
        (farthest-first on unit-normalised embeddings), ``"kmeans-kcenter"`` (the 0.5%
        paper: K-means, proportional quotas, k-center per cluster) or ``"random"``.
    seed
        Seed for the random draw, the first k-center pick and K-means.
    rule
        ``rule`` method: a rule (preset, JSON path, dict, :class:`~instructfast.Rule`) to
        score the data with first; needed when ``score_column`` is absent.
    score_column
        ``rule`` method: the column to rank by, lower is better.
    embeddings
        Embedding methods: the name of a (fixed-size) list column holding each row's
        vector, or an ``[n, d]`` array; ``None`` embeds instruction + input + output with
        the embedder (default all-MiniLM-L6-v2; ``models={"embedder": ...}``).
    already_selected
        ``kcenter``: row positions treated as chosen before the first pick.
    clusters
        ``kmeans-kcenter``: number of K-means clusters (default ``ceil(sqrt(budget))``).
    columns, models, device, threads
        Column map, model slots, device and threads, as in :func:`instructfast.score`
        (used to score with ``rule`` or to embed). ``device`` also picks the k-center
        backend: a CUDA device runs it in torch on the GPU (auto-detected when ``None``).
    progress
        ``True`` for a progress bar on stderr, or a callable given the number of rows
        just selected (k-center picks; the rule and random methods finish at once).

    Returns
    -------
    SelectionResult

    Raises
    ------
    ValueError
        Bad budget, unknown method, malformed ``already_selected``.
    RuleError
        ``rule`` method without a score column and without a rule.
    SchemaError
        Named embeddings column missing or not a list of numbers.

    Examples
    --------
    >>> import pyarrow as pa, instructfast
    >>> t = pa.table({"instruction": list("abcd"), "output": list("wxyz"),
    ...               "predicted_log_loss": [0.3, None, 0.1, 0.3]})
    >>> r = instructfast.select(t, k=2, method="rule")
    >>> r.positions.tolist(), r.table.column("instruction").to_pylist(), r.nulls
    ([2, 0], ['c', 'a'], {'null predicted_log_loss': 1})
    >>> v = pa.array([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0], [0.7, 0.7]], pa.list_(pa.float32(), 2))
    >>> instructfast.select(t.append_column("emb", v), k=2, method="kcenter", embeddings="emb").positions.tolist()
    [3, 0]
    """
    if method not in METHODS:
        msg = f"`method` must be one of {METHODS}, got {method!r}"
        raise ArgumentError(msg)
    table = to_table(data)
    if method == "rule":
        return _select_rule(table, k, fraction, seed, rule, score_column, columns, models, device, threads)
    if method == "random":
        n = table.num_rows
        kk = resolve_budget(k, fraction, n)
        pos = np.random.default_rng(seed).choice(n, size=kk, replace=False).astype(np.int64)
        return SelectionResult(pos, table.take(pos), method, kk, seed, n, n)
    return _select_vectors(
        table,
        k,
        fraction,
        method,
        seed,
        embeddings,
        already_selected,
        clusters,
        columns,
        models,
        device,
        threads,
        progress,
    )


def _bar(show: bool, total: int, desc: str, unit: str):
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True)


def _select_rule(table, k, fraction, seed, rule, score_column, columns, models, device, threads) -> SelectionResult:
    if rule is not None:
        from ..scoring import score

        scored = score(table, indicators=[], rule=rule, columns=columns, models=models, device=device, threads=threads)
        scores = scored.column(SCORE_COLUMN)
        score_column = SCORE_COLUMN
    elif score_column in table.column_names:
        scores = table.column(score_column)
    else:
        msg = (
            f"the `rule` method ranks by `{score_column}`, which is not in the data (found columns: "
            f"{table.column_names}); score with a rule first (instructfast score --rule ...) or pass `rule=`"
        )
        raise RuleError(msg)
    t = scores.type
    if not (pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_null(t)):
        msg = f"score column `{score_column}` must be numeric, got {t}"
        raise SchemaError(msg)
    values = scores.to_numpy(zero_copy_only=False).astype(np.float64)  # nulls -> NaN
    ok = ~np.isnan(values)
    nulls = {f"null {score_column}": int((~ok).sum())} if (~ok).any() else {}
    avail = np.flatnonzero(ok)
    kk = resolve_budget(k, fraction, avail.size)
    order = avail[np.argsort(values[avail], kind="stable")][:kk].astype(np.int64)  # stable: ties by position
    return SelectionResult(order, table.take(order), "rule", kk, seed, int(avail.size), table.num_rows, nulls)


def _select_vectors(
    table, k, fraction, method, seed, embeddings, already_selected, clusters, columns, models, device, threads, progress
) -> SelectionResult:
    from ..models.embedder import embed_records
    from ..vectors import array_vectors, column_vectors, unit_rows
    from .kcenter import kcenter_greedy
    from .kmeans_kcenter import kmeans_kcenter

    n = table.num_rows
    if isinstance(embeddings, str):
        x, valid = column_vectors(table, embeddings)
    elif embeddings is not None:
        x, valid = array_vectors(embeddings, n)
    else:
        ebar = _bar(progress is True, n, "embedding", " rows")
        try:
            x, valid = embed_records(
                table,
                columns=columns,
                models=models,
                device=device,
                threads=threads,
                progress=ebar.update if ebar else None,
            )
        finally:
            if ebar is not None:
                ebar.close()
    u, pos, nulls = unit_rows(x, valid, missing="null output" if embeddings is None else "null embedding")
    del x
    backend: Literal["auto", "torch"] = "torch" if device is not None and str(device).startswith("cuda") else "auto"
    if method == "kcenter":
        seeds = _local_seeds(already_selected, pos, n)
        kk = resolve_budget(k, fraction, pos.size - seeds.size)
    else:
        if already_selected is not None:
            msg = "`already_selected` is supported by the kcenter method only"
            raise ArgumentError(msg)
        kk = resolve_budget(k, fraction, pos.size)
    bar = _bar(progress is True, kk, "selecting", " picks")
    cb = bar.update if bar is not None else (progress if callable(progress) else None)
    try:
        if method == "kcenter":
            local = kcenter_greedy(
                u, kk, already_selected=seeds, seed=seed, backend=backend, device=device, progress=cb
            )
            chosen = pos[local]
            return SelectionResult(chosen, table.take(chosen), method, kk, seed, int(pos.size), n, nulls)
        local, km, quotas = kmeans_kcenter(
            u, kk, clusters=clusters, seed=seed, backend=backend, device=device, progress=cb
        )
    finally:
        if bar is not None:
            bar.close()
    chosen = pos[local]
    return SelectionResult(
        chosen, table.take(chosen), method, kk, seed, int(pos.size), n, nulls, clusters=km.labels[local], quotas=quotas
    )


def _local_seeds(already_selected, pos: np.ndarray, n: int) -> np.ndarray:
    """Map input row positions of the seed set to positions among the usable rows."""
    if already_selected is None:
        return np.empty(0, dtype=np.int64)
    s = np.unique(np.asarray(already_selected, dtype=np.int64))
    if s.size and (s[0] < 0 or s[-1] >= n):
        msg = f"`already_selected` positions must be in [0, {n}), got {int(s[0] if s[0] < 0 else s[-1])}"
        raise ArgumentError(msg)
    local = np.searchsorted(pos, s)
    bad = (local >= pos.size) | (pos[np.minimum(local, pos.size - 1)] != s) if pos.size else np.ones(s.size, bool)
    if bad.any():
        msg = f"`already_selected` rows {s[bad][:10].tolist()} have no usable embedding (null, NaN or zero)"
        raise ArgumentError(msg)
    return local.astype(np.int64)


__all__ = [
    "select",
    "SelectionResult",
    "resolve_budget",
    "METHODS",
    "fit_rule",
    "search_subset_size",
    "SubsetSearchResult",
]
