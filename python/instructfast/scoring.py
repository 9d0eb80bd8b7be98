"""The scoring pipeline behind :func:`instructfast.score`.

A :class:`Scorer` is built once for a schema (column resolution, rule and indicator
plan all fail fast here, before any work), loads its models once, then scores record
batches one at a time: the unit for streaming files, ingestion services and Ray.
"""

from __future__ import annotations

import copy
import json
import threading
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np
import pyarrow as pa

from ._api import keyword_only
from ._arrow import rebatch, to_reader, total_rows
from ._native import IMPL_REASON
from .columns import ResolvedColumns, resolve_columns
from .errors import (
    ArgumentTypeError,
    ArrowDataError,
    IndicatorUnavailableError,
    InvalidTextError,
    NullValuesWarning,
    RuleError,
    SchemaError,
    UnavailableIndicatorWarning,
)
from .indicators import plan, provider_of
from .indicators.base import Indicator, NullCounter
from .models.registry import check_models
from .ops.utf8 import REPLACED, check_batch
from .options import ScoreOptions
from .rules import Rule, get_rule
from .run_record import RunRecord

RULE_COLUMN = "predicted_log_loss"
REPORT_KEY = b"instructfast.report"


@dataclass
class ScoreReport:
    """What one run did: rows, layout, computed and unavailable indicators, nulls by reason, and the run record.

    Attributes
    ----------
    rows
        Rows scored.
    layout
        How the input's columns were read (``alpaca: instruction=`instruction`, ...``).
    impl
        The text core in use and why (also in ``run.implementations``; kept for older readers).
    columns
        Indicator columns written, in order.
    unavailable
        Indicators left out of a default run, with the reason.
    kept_from_input
        Indicator columns the input already had, kept as they are.
    nulls
        Null values by column and reason.
    notes
        Values computed with a caveat, by column and what (truncated prompts, approximate search).
    rule
        The rule applied, if any.
    seconds
        Wall time (also ``run.seconds``).
    run
        The :class:`~instructfast.run_record.RunRecord`: implementations, models with hashes,
        versions, options, start time.
    """

    rows: int = 0
    layout: str = ""
    impl: str = ""
    columns: list[str] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)
    kept_from_input: list[str] = field(default_factory=list)
    nulls: dict[str, dict[str, int]] = field(default_factory=dict)
    notes: dict[str, dict[str, int]] = field(default_factory=dict)
    rule: str | None = None
    seconds: float = 0.0
    run: RunRecord = field(default_factory=RunRecord)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, default=str)

    @classmethod
    def from_json(cls, text: str | bytes) -> ScoreReport:
        """Read a stored report; reports written before the run record (or by newer versions) are read too."""
        data = json.loads(text)
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in data.items() if k in names and k != "run"}
        return cls(**kw, run=RunRecord.from_dict(data.get("run")))

    @classmethod
    def from_table(cls, table: pa.Table) -> ScoreReport | None:
        """The report stored in a scored table's (or Parquet file's) schema metadata."""
        meta = table.schema.metadata or {}
        return cls.from_json(meta[REPORT_KEY]) if REPORT_KEY in meta else None

    @classmethod
    def from_file(cls, path) -> ScoreReport | None:
        """The report in a scored Parquet file's footer (written by the CLI / score_file)."""
        import pyarrow.parquet as pq

        meta = pq.ParquetFile(path).metadata.metadata or {}
        return cls.from_json(meta[REPORT_KEY]) if REPORT_KEY in meta else None

    def null_summary(self) -> str:
        parts = []
        for col, reasons in self.nulls.items():
            n = sum(reasons.values())
            parts.append(f"{col}: {n} null (" + "; ".join(f"{r}: {c}" for r, c in reasons.items()) + ")")
        return "; ".join(parts)


@dataclass
class RowResult:
    """One batch scored by the row-scoped indicators (see :meth:`Scorer.score_rows`).

    Attributes
    ----------
    batch
        The input batch followed by the row-scoped indicator columns.
    vectors
        For each pool indicator (``knn``): the unit vectors of the usable rows and their row
        positions (batch position + ``offset``); the pool pass searches them once all rows are in.
    nulls
        This batch's null and note counts.
    """

    batch: pa.RecordBatch
    vectors: dict[str, tuple[np.ndarray, np.ndarray]]
    nulls: NullCounter


class Scorer:
    """Scores record batches of one schema; reusable, long-lived and thread-safe.

    One ``Scorer`` may be shared by many threads: each :meth:`score_batch` call counts its nulls
    and notes on its own and returns them in its batch's schema metadata (:meth:`ScoreReport.from_table`);
    ``scorer.report`` holds the sums over every call, updated under a lock. Models load once (the
    first call, or :meth:`start`); each model runs one batch at a time (every pass already uses all
    the cores it is given), while tokenising, text statistics and Arrow work of other threads overlap.

    Every string column of every batch is checked for invalid UTF-8 and lone surrogates first
    (``on_invalid_utf8``: an :class:`~instructfast.InvalidTextError` naming row, column and byte,
    or U+FFFD with the rows counted in ``report.notes``).

    Parameters
    ----------
    schema
        Schema of the batches to come.
    indicators, rule, columns, options
        As in :func:`instructfast.score`.

    Examples
    --------
    >>> import pyarrow as pa
    >>> s = Scorer(pa.schema([("instruction", pa.string()), ("output", pa.string())]), indicators=["mtld"])
    >>> out = s.score_batch(pa.record_batch({"instruction": ["Say hi"], "output": ["hi there hi"]}))
    >>> out.column("mtld").to_pylist(), ScoreReport.from_table(out).rows, s.report.rows
    ([3.0], 1, 1)
    """

    @keyword_only("indicators", "rule", "columns", "options")
    def __init__(
        self,
        schema: pa.Schema,
        *,
        indicators: Sequence[str] | str | None = None,
        rule: str | Rule | Mapping[str, Any] | None = None,
        columns: Mapping[str, str] | None = None,
        options: ScoreOptions | None = None,
    ) -> None:
        if not isinstance(schema, pa.Schema):
            msg = f"`schema` must be a pyarrow.Schema, got {type(schema).__name__}"
            raise ArgumentTypeError(msg)
        if options is not None and not isinstance(options, ScoreOptions):
            msg = (
                f"`options` must be a ScoreOptions (build one with ScoreOptions.build(options={{...}})), "
                f"got {type(options).__name__}"
            )
            raise ArgumentTypeError(msg)
        self.schema = schema
        self.column_map = dict(columns) if columns else None  # as given: a Ray actor builds its scorer alike
        self.options = options or ScoreOptions()
        check_models(self.options.models)
        self.resolved: ResolvedColumns = resolve_columns(schema, columns)
        self.rule = get_rule(rule) if rule is not None else None
        if self.rule is not None and RULE_COLUMN in schema.names:
            msg = f"input already has a `{RULE_COLUMN}` column; drop or rename it before applying a rule"
            raise SchemaError(msg)
        present = set(schema.names)
        if isinstance(indicators, str):
            indicators = [indicators]
        self.plan = plan(indicators, self.options, present=present, required=self.rule.columns if self.rule else ())
        clash = [c for c in self.plan.columns() if c in present]
        if clash:
            msg = (
                f"input already has column(s) {clash} that the requested indicators would write; original columns "
                "are never overwritten: drop or rename them, or leave `indicators` unset to keep them as they are"
            )
            raise SchemaError(msg)
        if self.rule is not None:
            self._check_rule_columns(present)
        self.nulls = NullCounter()
        self.report = ScoreReport(
            layout=self.resolved.describe(),
            impl=IMPL_REASON,
            columns=self.plan.columns(),
            unavailable=dict(self.plan.unavailable),
            kept_from_input=self.plan.skipped_present,
            rule=self.rule.name if self.rule else None,
            run=RunRecord.start(),
        )
        self.report.run.options = {
            "threads": self.options.resolved_threads,
            "batch_rows": self.options.batch_rows,
            "device": self.options.device or "auto",
            **self.options.to_flat(),
        }
        self.report.run.implementations["invalid text"] = _INVALID_TEXT[self.options.text.on_invalid_utf8]
        self._started = False
        self._start_lock = threading.Lock()  # models load once, whichever thread comes first
        self._lock = threading.Lock()  # the cumulative report and null counts

    @property
    def has_pool_indicators(self) -> bool:
        return any(ind.scope == "pool" for ind in self.plan.indicators)

    def _check_rule_columns(self, present: set[str]) -> None:
        assert self.rule is not None
        have = present | set(self.plan.columns())
        missing = [c for c in self.rule.columns if c not in have]
        if not missing:
            return
        lines = []
        for c in missing:
            cls = provider_of(c)
            if cls is None:
                lines.append(f"  `{c}`: no indicator makes this column; add it to the input table")
            else:
                av = cls.availability(self.options)
                lines.append(f"  `{c}` (indicator `{cls.name}`): {av.explain() or 'not requested'}")
        msg = (
            f"rule {self.rule.name!r} needs columns that are not available:\n" + "\n".join(lines) + "\n"
            "configure the models they need (see `instructfast indicators` and `instructfast models`), "
            "or provide the columns in the input table"
        )
        raise RuleError(msg)

    def start(self) -> None:
        """Load every indicator's models (once, whichever thread asks first); their choices go into the run record."""
        if self._started:
            return
        with self._start_lock:
            if not self._started:
                for ind in self.plan.indicators:
                    ind.start()
                self._record()
                self._started = True

    def _record(self) -> None:
        with self._lock:
            run = self.report.run
            run.implementations.setdefault("text core", IMPL_REASON)
            for ind in self.plan.indicators:
                ind.record(run)

    def close(self) -> None:
        with self._start_lock:
            for ind in self.plan.indicators:
                ind.close()
            self._started = False

    def __enter__(self) -> Scorer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def output_schema(self) -> pa.Schema:
        fields = list(self.schema)
        for ind in self.plan.indicators:
            by_name = {c.name: c for c in ind.output_columns()}
            for col in ind.wanted:
                t = by_name[col].type if col in by_name else pa.float64()
                fields.append(pa.field(col, t))
        if self.rule is not None:
            fields.append(pa.field(RULE_COLUMN, pa.float64()))
        return pa.schema(fields)

    def score_batch(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """Score one batch of row-scoped indicators; the batch's rows come back in order.

        Safe to call from many threads at once. The returned batch's schema metadata holds this
        call's own report (rows, nulls, notes, seconds; :meth:`ScoreReport.from_table`); ``self.report``
        accumulates every call's.
        """
        if self.has_pool_indicators:
            cols = [c for ind in self.plan.indicators if ind.scope == "pool" for c in ind.wanted]
            msg = (
                f"{cols} need the whole table as their pool: use score() / score_file(), not score_batch(), "
                "or measure against a reference pool (options={'knn_pool': DIR}, built by `instructfast index build`)"
            )
            raise IndicatorUnavailableError(msg)
        t0 = time.perf_counter()
        nulls = NullCounter()
        batch = self._checked(batch, nulls)  # invalid text fails before any model loads
        t1 = time.perf_counter()
        self.start()
        t2 = time.perf_counter()
        out = self._compute(batch, nulls)
        seconds = (t1 - t0) + (time.perf_counter() - t2)  # the call's own work, not the models' loading
        self._merge(nulls, batch.num_rows, seconds)
        with self._lock:
            call = replace(
                copy.deepcopy(self.report),
                rows=batch.num_rows,
                nulls=nulls.as_dict(),
                notes=nulls.notes_dict(),
                seconds=seconds,
            )
        call.run.seconds = seconds
        return out.replace_schema_metadata({REPORT_KEY: call.to_json().encode()})

    def _score_rows(self, batch: pa.RecordBatch, nulls: NullCounter) -> pa.RecordBatch:
        """Check the text, then every row-scoped indicator and the rule, counting into ``nulls``."""
        return self._compute(self._checked(batch, nulls), nulls)

    def _compute(self, batch: pa.RecordBatch, nulls: NullCounter) -> pa.RecordBatch:
        """Every row-scoped indicator and the rule on a checked batch, counting into ``nulls``."""
        out = _append(batch, self._row_columns(batch, nulls))
        if self.rule is not None:
            out = _append(out, {RULE_COLUMN: self._apply_rule(out, nulls)})
        return out

    def _checked(self, batch: pa.RecordBatch, nulls: NullCounter) -> pa.RecordBatch:
        """``batch`` with its structure and text checked (text repaired under ``on_invalid_utf8="replace"``)."""
        try:
            batch.validate()  # buffer sizes against offsets (cheap); the native core checks the rest
        except pa.ArrowInvalid as e:
            msg = f"the record batch is malformed ({e}); its producer wrote buffers that do not match its offsets"
            raise ArrowDataError(msg) from None
        return check_batch(
            batch,
            policy=self.options.text.on_invalid_utf8,
            threads=self.options.resolved_threads,
            on_replaced=lambda column, n: nulls.note(column, REPLACED, n),
        )

    def _merge(self, nulls: NullCounter, rows: int, seconds: float = 0.0) -> None:
        with self._lock:
            self.nulls.merge(nulls)
            self.report.rows += rows
            self.report.seconds += seconds
            self.report.run.seconds = self.report.seconds
            self.report.nulls = self.nulls.as_dict()
            self.report.notes = self.nulls.notes_dict()

    def score_rows(self, batch: pa.RecordBatch, *, offset: int = 0) -> RowResult:
        """The per-row half of a run: row-scoped indicator columns, and the pool indicators' vectors.

        Pool columns (``knn_<i>``) and the rule come later (:meth:`finish_batch`), once every row
        of the pool is embedded; this is the unit a file run checkpoints and a Ray actor runs.
        Nothing here touches the scorer's cumulative counts: the caller merges ``nulls``. The text is
        checked first (``on_invalid_utf8``); an :class:`~instructfast.InvalidTextError` counts its row
        from ``offset``, and the batch returned holds the repaired text under ``"replace"``.
        """
        nulls = NullCounter()
        batch = _located_rows(self._checked, batch, nulls, offset)
        self.start()  # after the text check: invalid text fails before any model loads
        canon = self.resolved.canonical(batch)
        new: dict[str, pa.Array] = {}
        vectors: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for ind in self.plan.indicators:
            if ind.scope == "row":
                got = ind.compute(canon, nulls)
                new.update((c, got[c]) for c in ind.wanted)  # schema order, whatever the indicator's
            else:
                u, pos = ind.embed(canon, nulls)
                vectors[ind.name] = (u, pos.astype(np.int64) + offset)
        return RowResult(_append(batch, new), vectors, nulls)

    def checked_rows(self, batch: pa.RecordBatch, *, offset: int = 0) -> pa.RecordBatch:
        """``batch`` as :meth:`score_rows` returns its input columns: structure and text checked, text
        repaired under ``on_invalid_utf8="replace"`` (the counts are :meth:`score_rows`'s to keep).

        A file run's final write reads the input again through this: its checkpoints hold no input column.
        """
        return _located_rows(self._checked, batch, NullCounter(), offset)

    @property
    def pool_indicators(self) -> list[Indicator]:
        return [ind for ind in self.plan.indicators if ind.scope == "pool"]

    def finish_batch(self, batch: pa.RecordBatch, pool: Mapping[str, pa.Array], nulls: NullCounter) -> pa.RecordBatch:
        """A row-scored batch with its pool columns appended, in plan order, then the rule's column."""
        cols: dict[str, pa.Array] = {}
        for ind in self.pool_indicators:
            cols.update((c, pool[c]) for c in ind.wanted)
        out = _append(batch, cols)
        if self.rule is not None:
            values = self.rule.apply(out)
            nulls.add(RULE_COLUMN, "an input indicator is null", values.null_count)
            out = _append(out, {RULE_COLUMN: values})
        return out

    def _row_columns(self, batch: pa.RecordBatch, nulls: NullCounter) -> dict[str, pa.Array]:
        canon = self.resolved.canonical(batch)
        new: dict[str, pa.Array] = {}
        for ind in self.plan.indicators:
            if ind.scope == "row":
                got = ind.compute(canon, nulls)
                new.update((c, got[c]) for c in ind.wanted)  # schema order, whatever the indicator's
            else:
                ind.observe(canon, nulls)
        return new

    def _apply_rule(self, data: pa.RecordBatch | pa.Table, nulls: NullCounter) -> pa.Array:
        assert self.rule is not None
        values = self.rule.apply(data)
        nulls.add(RULE_COLUMN, "an input indicator is null", values.null_count)
        return values

    def score_stream(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """Score a stream of batches; pool indicators are filled in after the last batch.

        An :class:`~instructfast.InvalidTextError` names the row as counted from the start of the stream.
        Streams with pool indicators (``knn_<i>`` over the table itself) use this Scorer's pool state: one
        such stream at a time per Scorer (:func:`score` makes a Scorer per call).
        """
        t0 = time.perf_counter()
        self.start()
        try:
            if not self.has_pool_indicators:
                start = 0
                for b in batches:
                    nulls = NullCounter()
                    out = _located_rows(self._score_rows, b, nulls, start)
                    self._merge(nulls, b.num_rows)
                    start += b.num_rows
                    yield out
            else:
                yield from self._score_with_pool(batches)
        finally:
            with self._lock:
                self.report.seconds += time.perf_counter() - t0
                self.report.run.seconds = self.report.seconds
            self._record()  # search methods and the like are known only after the last batch

    def _score_with_pool(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        # Pool indicators see every row before any value exists, so row results are
        # held until the end (the table being scored is the pool).
        held = []
        nulls = NullCounter()
        seen = 0
        for b in batches:
            b = _located_rows(self._checked, b, nulls, seen)
            held.append(_append(b, self._row_columns(b, nulls)))
            self._merge(NullCounter(), b.num_rows)
            seen += b.num_rows
        pool_cols: dict[str, pa.Array] = {}
        for ind in self.plan.indicators:
            if ind.scope == "pool":
                got = ind.finalize(nulls)
                pool_cols.update((c, got[c]) for c in ind.wanted)
        start = 0
        for b in held:
            part = {k: v.slice(start, b.num_rows) for k, v in pool_cols.items()}
            out = _append(b, part)
            if self.rule is not None:
                out = _append(out, {RULE_COLUMN: self._apply_rule(out, nulls)})
            start += b.num_rows
            yield out
        self._merge(nulls, 0)

    def finish_warnings(self, stacklevel: int = 3) -> None:
        """One summary warning for nulls and one for unavailable indicators (never one per row)."""
        warn_summary(self.report, stacklevel=stacklevel + 1)


def warn_summary(report: ScoreReport, *, stacklevel: int = 3) -> None:
    """One warning for a run's nulls and one for its unavailable indicators (never one per row).

    ``stacklevel`` counts frames from here to the user's call (3: the user called the function
    that calls this one directly).
    """
    if report.unavailable:
        text = "; ".join(f"{k}: {v}" for k, v in report.unavailable.items())
        warnings.warn(f"indicators not computed: {text}", UnavailableIndicatorWarning, stacklevel=stacklevel)
    if report.nulls:
        warnings.warn(f"null values by reason: {report.null_summary()}", NullValuesWarning, stacklevel=stacklevel)


_INVALID_TEXT = {
    "error": "error (on_invalid_utf8='error')",
    "replace": "replaced with U+FFFD, rows counted in notes (on_invalid_utf8='replace')",
}


def _located_rows(fn, batch: pa.RecordBatch, nulls: NullCounter, start: int) -> pa.RecordBatch:
    """``fn(batch, nulls)``, with an invalid-text error's row counted from the start of the stream."""
    try:
        return fn(batch, nulls)
    except InvalidTextError as e:
        if not start or e.row is None or e.detail is None:
            raise
        raise e.moved(start) from None


def _append(batch: pa.RecordBatch, cols: Mapping[str, pa.Array]) -> pa.RecordBatch:
    if not cols:
        return batch
    arrays = list(batch.columns) + list(cols.values())
    names = list(batch.schema.names) + list(cols)
    return pa.RecordBatch.from_arrays(arrays, names=names)


@keyword_only("indicators", "rule", "columns")
def score(
    data: Any,
    *,
    indicators: Sequence[str] | str | None = None,
    rule: str | Rule | Mapping[str, Any] | None = None,
    columns: Mapping[str, str] | None = None,
    models: Mapping[str, str] | None = None,
    threads: int | None = None,
    batch_rows: int = 65_536,
    mtld_threshold: float | None = None,
    device: str | None = None,
    options: Mapping[str, object] | None = None,
    progress: bool = False,
) -> pa.Table:
    """Score instruction records with InstructMining quality indicators.

    Parameters
    ----------
    data
        A pyarrow Table, RecordBatch or RecordBatchReader, or anything exporting the
        Arrow PyCapsule stream (``__arrow_c_stream__``: polars, pandas, HF ``datasets``),
        a dict of columns or a list of row dicts.
    indicators
        Indicator names (``"textstats"``) or output columns (``"mtld"``, ``"knn_6"``).
        ``None``: every indicator whose models are available; the others are listed in
        the report and in one :class:`~instructfast.UnavailableIndicatorWarning`.
        Naming an unavailable indicator raises :class:`~instructfast.IndicatorUnavailableError`.
    rule
        A preset name (``"instructmining-v1"``, ``"instructmining-v3"``), a rule JSON path,
        a dict or a :class:`~instructfast.Rule`; adds ``predicted_log_loss`` (lower is
        better). Missing rule inputs raise :class:`~instructfast.RuleError` naming them.
    columns
        Explicit ``{canonical: source}`` mapping (``instruction``, ``input``, ``output``,
        ``history`` or ``conversation``); known layouts are detected without it.
    models
        Model slots to local paths or hub ids (used by model-based indicators).
    threads
        Native worker threads (default: all available cores).
    batch_rows
        Streaming unit in rows; bounds memory together with the models' own batching.
    mtld_threshold
        MTLD factor threshold (default 0.72, lexicalrichness'; also the option ``mtld_threshold``).
    device
        ``"cpu"``, ``"cuda"`` or ``None`` (auto) for model indicators.
    options
        Settings by flat key (``{"lm_token_budget": 4096, "knn_exact_max": 100000}``); every key is
        listed by ``instructfast options`` and :func:`instructfast.options.describe_options`. An
        unknown key raises :class:`~instructfast.OptionError` naming the nearest valid one.
    progress
        Show a progress bar (rows/s) on stderr.

    Returns
    -------
    pyarrow.Table
        Every input row, in order, with its original columns untouched, followed by the
        indicator columns (and ``predicted_log_loss`` with a rule). Values that cannot be
        computed are null, counted by reason in the report stored under the schema
        metadata key ``instructfast.report`` (:meth:`ScoreReport.from_table`).

    Examples
    --------
    >>> import pyarrow as pa, instructfast
    >>> t = pa.table({"instruction": ["Name a colour."], "input": [""], "output": ["Blue, like the sky."]})
    >>> out = instructfast.score(t, indicators=["output_words", "mtld"])
    >>> out.column_names
    ['instruction', 'input', 'output', 'output_words', 'mtld']
    >>> out.column("output_words").to_pylist()
    [4]
    """
    opts = ScoreOptions.build(
        threads=threads,
        batch_rows=batch_rows,
        mtld_threshold=mtld_threshold,
        models=models,
        device=device,
        options=options,
    )
    total = total_rows(data)
    reader = to_reader(data)
    scorer = Scorer(reader.schema, indicators=indicators, rule=rule, columns=columns, options=opts)
    bar = _progress_bar(total) if progress else None
    batches = []
    try:
        for b in scorer.score_stream(_counting(rebatch(reader, opts.batch_rows), bar)):
            batches.append(b)
    finally:
        scorer.close()
        if bar is not None:
            bar.close()
    schema = scorer.output_schema()
    table = pa.Table.from_batches(batches, schema=schema) if batches else schema.empty_table()
    meta = dict(table.schema.metadata or {})
    meta[REPORT_KEY] = scorer.report.to_json().encode()
    scorer.finish_warnings(stacklevel=4)  # user -> keyword_only wrapper -> score -> here
    return table.replace_schema_metadata(meta)


def _progress_bar(total: int | None):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit=" rows", unit_scale=True, desc="scoring", dynamic_ncols=True)


def _counting(batches: Iterator[pa.RecordBatch], bar) -> Iterator[pa.RecordBatch]:
    for b in batches:
        yield b
        if bar is not None:
            bar.update(b.num_rows)


__all__ = ["REPORT_KEY", "RULE_COLUMN", "RowResult", "ScoreReport", "Scorer", "score", "warn_summary"]
