"""Everything the page shows, gathered in a few streaming passes over the inputs.

0. keys (only when needed): the ``by`` column's values; a selected records file's rows matched by text;
1. statistics: exact counts, moments and ranges; a uniform row sample; the records at each end;
2. histograms: exact counts on edges fixed from pass 1 (and the vectors of the projection sample);
3. texts: only the rows shown (ends of each column, projection sample), read by position.

Passes 1 and 2 read only numeric columns (Parquet reads no text column chunk); memory is bounded
by the histograms and samples, never by the row count.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from ..errors import ArgumentError, RuleError
from ..rules import Rule, get_rule
from ..scoring import RULE_COLUMN
from ..vectors import column_vectors
from .analysis import Projection, Sample, pca_projection, spearman_matrix
from .inputs import ChartColumn, Dataset
from .stats import ABSENT, NONFINITE, NULL, OK, Binning, Extremes, Histograms, RowReservoir, Tally, bin_edges
from .subsets import Groups, Selection

ID_SHIFT = 40  # row id = input index << 40 | row position


def row_id(dataset: int, position: int | np.ndarray) -> Any:
    return (np.int64(dataset) << ID_SHIFT) | position


def split_id(rid: int) -> tuple[int, int]:
    return int(rid) >> ID_SHIFT, int(rid) & ((1 << ID_SHIFT) - 1)


@dataclass(frozen=True)
class Settings:
    """How much the page holds; the report() parameters of the same names."""

    bins: int = 40
    sample_rows: int = 100_000
    group_sample_rows: int = 20_000
    projection_rows: int = 2_000
    examples: int = 5
    max_chars: int = 3_000
    max_groups: int = 12
    seed: int = 0
    embed: bool = False
    embeddings: str | None = None
    columns: Mapping[str, str] | None = None
    models: Mapping[str, str] | None = None
    device: str | None = None
    threads: int | None = None


@dataclass(frozen=True)
class Term:
    """One term of the rule: ``coefficient * column``."""

    column: str
    coefficient: float

    @property
    def label(self) -> str:
        return f"{self.coefficient:+.4g} × {self.column}"


@dataclass
class RulePlan:
    rule: Rule | None
    terms: list[Term]
    computed: bool  # predicted_log_loss computed here from the rule (not in the input)
    note: str = ""


def plan_rule(datasets: Sequence[Dataset], rule: str | Rule | Mapping[str, Any] | None, names: set[str]) -> RulePlan:
    """The rule whose terms the page shows: ``rule``, else the one the inputs were scored with."""
    explicit = rule is not None
    note = ""
    if rule is None:
        stored = {d.report.rule for d in datasets if d.report is not None and d.report.rule}
        if len(stored) > 1:
            return RulePlan(None, [], False, f"the inputs were scored with different rules {sorted(stored)}")
        if not stored:
            return RulePlan(None, [], False)
        name = stored.pop()
        try:
            rule = get_rule(name)
        except RuleError:
            note = f"the inputs were scored with rule {name!r}, which is not a preset: pass `rule=` (--rule FILE.json) to show its terms"
            return RulePlan(None, [], False, note)
        note = f"rule {name!r} from the run record"
    r = get_rule(rule)
    missing = [c for c in r.columns if c not in names]
    has_score = RULE_COLUMN in names
    if missing and (explicit and not has_score):
        msg = f"rule {r.name!r} needs columns {missing} that the inputs do not have (and no `{RULE_COLUMN}` column)"
        raise RuleError(msg)
    terms = [Term(c, float(k)) for c, k in r.coefficients.items() if c in names]
    if missing:
        note += ("; " if note else "") + f"terms of {missing} not shown: the inputs lack those columns"
    return RulePlan(r, terms, not has_score and not missing, note)


@dataclass
class Findings:
    """What the passes found; the page is rendered from this alone."""

    datasets: list[Dataset]
    columns: list[ChartColumn]
    rule: RulePlan
    groups: Groups
    selection: Selection | None
    settings: Settings
    tally: Tally  # by group
    tally_all: Tally
    tally_datasets: list[Tally]
    tally_selected: Tally | None
    reservoir: RowReservoir
    group_reservoirs: list[RowReservoir]
    selected_reservoir: RowReservoir | None
    extremes: Extremes
    binnings: list[Binning] = field(default_factory=list)
    histograms: Histograms | None = None
    series: list[str] = field(default_factory=list)  # histogram series: "all", groups..., "selected"
    texts: dict[int, dict[str, str | None]] = field(default_factory=dict)
    spearman: tuple[np.ndarray, np.ndarray] | None = None  # rho [C, C], pair counts [C, C]
    projection: Projection | None = None
    projection_note: str = ""

    @property
    def value_labels(self) -> list[str]:
        return [c.name for c in self.columns] + [t.label for t in self.rule.terms]

    @property
    def rows(self) -> int:
        return sum(d.rows for d in self.datasets)

    def quantiles(self, c: int, qs: Sequence[float], res: RowReservoir | None = None) -> list[float] | None:
        v = (res or self.reservoir).column(c)
        return [float(x) for x in np.quantile(v, qs)] if v.size else None


def _matrix(batch: pa.RecordBatch, columns: list[ChartColumn], rp: RulePlan) -> tuple[np.ndarray, np.ndarray]:
    """``values[n, C]`` (NaN where a row has no finite value) and ``states[n, C]`` for one batch."""
    n = batch.num_rows
    names = batch.schema.names
    keys = [c.name for c in columns] + [t.column for t in rp.terms]
    values = np.full((n, len(keys)), np.nan)
    states = np.full((n, len(keys)), ABSENT, dtype=np.int8)
    cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for j, name in enumerate(keys):
        if name == RULE_COLUMN and rp.computed and rp.rule is not None:
            if all(c in names for c in rp.rule.columns):
                arr: pa.Array | pa.ChunkedArray = rp.rule.apply(batch)
            else:
                continue
        elif name in names:
            arr = batch.column(name)
        else:
            continue
        if name not in cache:
            v = arr.cast(pa.float64()).to_numpy(zero_copy_only=False)
            st = np.zeros(n, dtype=np.int8)
            if arr.null_count:
                st[arr.is_null().to_numpy(zero_copy_only=False)] = NULL
            bad = ~np.isfinite(v)
            st[bad & (st == OK)] = NONFINITE
            cache[name] = (np.where(bad, np.nan, v), st)
        v, st = cache[name]
        if j >= len(columns):
            v = rp.terms[j - len(columns)].coefficient * v
        values[:, j] = v
        states[:, j] = st
    return values, states


def gather(
    datasets: list[Dataset],
    columns: list[ChartColumn],
    rp: RulePlan,
    groups: Groups,
    selection: Selection | None,
    vectors: str | None,
    settings: Settings,
) -> Findings:
    rng = np.random.default_rng(settings.seed)
    n_vals = len(columns) + len(rp.terms)
    g = groups.count
    f = Findings(
        datasets=datasets,
        columns=columns,
        rule=rp,
        groups=groups,
        selection=selection,
        settings=settings,
        tally=Tally(g, n_vals),
        tally_all=Tally(1, n_vals),
        tally_datasets=[Tally(1, n_vals) for _ in datasets],
        tally_selected=Tally(1, n_vals) if selection else None,
        reservoir=RowReservoir(settings.sample_rows, n_vals, rng),
        group_reservoirs=[RowReservoir(settings.group_sample_rows, n_vals, rng) for _ in range(g)] if g > 1 else [],
        selected_reservoir=RowReservoir(settings.group_sample_rows, n_vals, rng) if selection else None,
        extremes=Extremes(settings.examples, len(columns)),
    )
    _statistics_pass(f)
    f.tally_all = f.tally.overall()
    _fix_bins(f)
    # the projection shows where the selected rows sit: without a selection it is not drawn (nor paid for)
    sample = _projection_sample(f, rng) if selection is not None and (vectors or settings.embed) else None
    vecs = _histogram_pass(f, vectors, sample)
    _text_pass(f, sample)
    if sample is not None:
        if settings.embed and vectors is None:
            vecs = _embed_sample(f, sample)
        assert vecs is not None
        f.projection = pca_projection(sample, vecs)
        f.projection_note = f"embeddings from column `{vectors}`" if vectors else "embedded here (--embed)"
    elif len(columns):
        f.projection_note = "no embeddings: pass an embeddings column (--embeddings COLUMN) or --embed"
    if len(columns) > 1:
        f.spearman = spearman_matrix(f.reservoir.values[: f.reservoir.rows(), : len(columns)])
    return f


def _read_columns(d: Dataset, f: Findings, extra: Sequence[str] = ()) -> list[str]:
    names = d.source.schema.names
    want = [c.name for c in f.columns] + [t.column for t in f.rule.terms]
    if f.rule.computed and f.rule.rule is not None:
        want += list(f.rule.rule.columns)
    if f.groups.by:
        want.append(f.groups.by)
    want += list(extra)
    return [c for c in dict.fromkeys(want) if c in names]


def _statistics_pass(f: Findings) -> None:
    n_chart = len(f.columns)
    for di, d in enumerate(f.datasets):
        start = 0
        for b in d.source.batches(_read_columns(d, f)):
            n = b.num_rows
            values, states = _matrix(b, f.columns, f.rule)
            groups = f.groups.codes(di, b)
            sel = f.selection.mask(di, start, n) if f.selection else np.zeros(n, dtype=bool)
            ids = row_id(di, np.arange(start, start + n, dtype=np.int64))
            f.tally.add(values, states, groups)
            f.tally_datasets[di].add(values, states, np.zeros(n, np.int32))
            f.reservoir.add(values, ids, groups, sel)
            for gi, res in enumerate(f.group_reservoirs):
                m = groups == gi
                if m.any():
                    res.add(values[m], ids[m], groups[m], sel[m])
            if f.selection and sel.any():
                assert f.tally_selected is not None and f.selected_reservoir is not None
                f.tally_selected.add(values[sel], states[sel], np.zeros(int(sel.sum()), np.int32))
                f.selected_reservoir.add(values[sel], ids[sel], groups[sel], sel[sel])
            f.extremes.add(values[:, :n_chart], ids)
            start += n
        d.rows = start
        if f.selection is not None:
            pos = f.selection.positions[di]
            if pos.size and pos[-1] >= start:
                msg = f"`selected` positions must be below the {start:,} rows of `{d.label}`, got {int(pos[-1])}"
                raise ArgumentError(msg)


def _fix_bins(f: Findings) -> None:
    t = f.tally_all
    for c, col in enumerate(f.columns):
        med = f.quantiles(c, [0.5])
        f.binnings.append(
            bin_edges(
                float(t.lo[0, c]),
                float(t.hi[0, c]),
                float(t.lo_pos[0, c]),
                med[0] if med else 0.0,
                integer=col.integer,
                bins=f.settings.bins,
            )
        )
    f.series = ["all rows"]
    if f.groups.count > 1:
        f.series += f.groups.labels
    if f.selection is not None:
        f.series.append("selected")
    f.histograms = Histograms([b.edges for b in f.binnings], len(f.series))


def _projection_sample(f: Findings, rng: np.random.Generator) -> Sample:
    """A uniform sample of the pool plus a sample of the selected rows (sorted by row id)."""
    sizes = np.array([d.rows for d in f.datasets], dtype=np.int64)
    total = int(sizes.sum())
    k = min(f.settings.projection_rows, total)
    flat = np.sort(rng.choice(total, size=k, replace=False)) if k else np.empty(0, np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    ds = np.searchsorted(offsets, flat, side="right") - 1
    ids = (ds.astype(np.int64) << ID_SHIFT) | (flat - offsets[ds])
    pool_only = np.ones(ids.size, dtype=bool)
    if f.selection is not None and f.selection.count:
        sel_ids = np.concatenate([row_id(di, p) for di, p in enumerate(f.selection.positions)])
        if sel_ids.size > f.settings.projection_rows:
            sel_ids = rng.choice(sel_ids, size=f.settings.projection_rows, replace=False)
        extra = np.setdiff1d(sel_ids, ids)
        ids = np.concatenate([ids, extra])
        pool_only = np.concatenate([pool_only, np.zeros(extra.size, dtype=bool)])
    order = np.argsort(ids)
    ids, pool_only = ids[order], pool_only[order]
    selected = np.zeros(ids.size, dtype=bool)
    if f.selection is not None:
        for i, rid in enumerate(ids):
            di, pos = split_id(rid)
            p = f.selection.positions[di]
            j = np.searchsorted(p, pos)
            selected[i] = j < p.size and p[j] == pos
    return Sample(ids, pool_only, selected)


def _histogram_pass(f: Findings, vectors: str | None, sample: Sample | None) -> np.ndarray | None:
    assert f.histograms is not None
    n_chart = len(f.columns)
    g = f.groups.count
    vecs: list[np.ndarray] = []
    for di, d in enumerate(f.datasets):
        start = 0
        extra = [vectors] if vectors and sample is not None else []
        want = _local_positions(sample.ids, di) if extra and sample is not None else np.empty(0, np.int64)
        for b in d.source.batches(_read_columns(d, f, extra)):
            n = b.num_rows
            values, _ = _matrix(b, f.columns, f.rule)
            codes = [np.zeros(n, dtype=np.int64)]
            if g > 1:
                codes.append(f.groups.codes(di, b).astype(np.int64) + 1)
            if f.selection is not None:
                codes.append(np.where(f.selection.mask(di, start, n), len(f.series) - 1, -1))
            f.histograms.add(values[:, :n_chart], codes)
            if extra:
                lo, hi = np.searchsorted(want, [start, start + n])
                if hi > lo:
                    part = pa.table({"v": b.column(vectors).take(pa.array(want[lo:hi] - start))})
                    vecs.append(column_vectors(part, "v")[0])
            start += n
    if not vecs:
        return None
    return np.concatenate(vecs)


def _local_positions(ids: np.ndarray, dataset: int) -> np.ndarray:
    mine = ids[(ids >> ID_SHIFT) == dataset]
    return mine & ((1 << ID_SHIFT) - 1)


def _text_pass(f: Findings, sample: Sample | None) -> None:
    wanted = [ids for pair in (f.extremes.low, f.extremes.high) for _, ids in pair]
    if sample is not None:
        wanted.append(sample.ids)
    all_ids = np.unique(np.concatenate(wanted)) if wanted else np.empty(0, np.int64)
    for di, d in enumerate(f.datasets):
        pos = _local_positions(all_ids, di)
        if not pos.size or d.resolved is None:
            continue
        table = d.source.take(pos, d.text_columns)
        for b, start in _batches_with_offsets(table):
            canon = d.resolved.canonical(b)
            parts = {
                "instruction": canon.instruction.to_pylist(),
                "input": canon.input.to_pylist() if canon.input is not None else [None] * b.num_rows,
                "output": canon.output.to_pylist(),
                "history": canon.history.to_pylist() if canon.history is not None else [None] * b.num_rows,
            }
            for i in range(b.num_rows):
                f.texts[int(row_id(di, int(pos[start + i])))] = {k: v[i] for k, v in parts.items()}


def _batches_with_offsets(table: pa.Table):
    start = 0
    for b in table.to_batches():
        yield b, start
        start += b.num_rows


def _embed_sample(f: Findings, sample: Sample) -> np.ndarray:
    from ..models.embedder import embed_records

    ids = sample.ids
    out: np.ndarray | None = None
    for di, d in enumerate(f.datasets):
        mask = (ids >> ID_SHIFT) == di
        if not mask.any():
            continue
        if d.resolved is None:
            msg = f"`embed` needs instruction/output text columns, which `{d.label}` does not have"
            raise ArgumentError(msg)
        table = d.source.take(_local_positions(ids, di), d.text_columns)
        x, _ = embed_records(
            table,
            columns=f.settings.columns,
            models=f.settings.models,
            device=f.settings.device,
            threads=f.settings.threads,
            progress=None,
        )
        if out is None:
            out = np.full((ids.size, x.shape[1]), np.nan, dtype=np.float32)
        out[mask] = x
    assert out is not None
    return out


__all__ = ["Findings", "RulePlan", "Settings", "Term", "gather", "plan_rule", "row_id", "split_id"]
