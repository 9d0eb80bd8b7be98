"""Dynamic batching for services: concurrent callers' records merged into one batch, split back.

A service that calls ``Scorer.score_batch`` per request runs each request's few rows through the
models on their own: 32 callers with one record each make 32 forward passes of one row, where one
pass of 32 costs little more than one. :class:`BatchingScorer` queues requests and one dispatcher
thread merges those that share a schema (and indicator set) into one batch: once the oldest has
waited ``max_wait_ms``, or ``max_batch_rows`` rows are waiting, whichever comes first. Requests
that arrived while the previous batch ran are past their wait already; the wait is counted from the
end of the last batch too, so the callers it just answered can rejoin. A round trip through a
service (response out, next request parsed and queued) often takes longer than a few ms, so while
fewer requests are queued than the last batch held plus those that queued while it ran (two cohorts
of callers that alternate make one again), the scorer waits for them up to
``rejoin_fraction`` of that batch's run time (5%: a bounded cost for a batch twice as large):
closed-loop clients stay in one batch rather than splitting into cohorts that alternate. Under
load batches grow with the load; an idle scorer adds at most ``max_wait_ms`` to a lone request
(the rejoin window has closed by the time it comes).
Inside the batch each model packs rows under its own token budget, as in an offline run
(:mod:`instructfast.batching`), and each caller gets exactly its own rows back, in order.

One thread runs every batch, so a model never runs two batches at once and a :class:`Scorer` is
only ever used by that thread; callers only convert their records and wait. When a merged batch
fails, each of its requests is scored again alone, so only the request holding the bad record
gets the error. The queue is bounded in rows: a request that finds it full gets
:class:`~instructfast.Overloaded` (``on_full="reject"``) or waits for room (``"wait"``).

Pool indicators (``knn_<i>``) measure a record against a pool; a request has no table to be one,
so they need a reference pool (``knn_pool=DIR``): without it they are left out of the default set
and asking for them is an error when the scorer is built.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import dataclasses
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from typing import Any, Protocol

import pyarrow as pa

from ._api import keyword_only
from ._native import IMPL_REASON
from ._typing import OnFull
from .errors import ArgumentError, IndicatorUnavailableError, Overloaded
from .indicators import REGISTRY, describe
from .indicators.base import NullCounter
from .options import ScoreOptions
from .records import records_table
from .rules import Rule
from .run_record import RunRecord
from .scoring import REPORT_KEY, Scorer, ScoreReport

NO_POOL = (
    "a request has no table to be its pool: measure against a reference pool "
    "(options={'knn_pool': DIR}, built by `instructfast index build`)"
)


class BatchObserver(Protocol):
    """What a :class:`BatchingScorer` tells a monitor (``instructfast serve`` feeds Prometheus with it).

    Called from the dispatcher thread (``batch``, ``indicator``, ``request``) and from callers'
    threads (``queue``, ``request`` for refusals); implementations must be thread-safe and quick.
    """

    def queue(self, rows: int, requests: int) -> None:
        """Rows and requests waiting now."""

    def batch(self, rows: int, requests: int, seconds: float) -> None:
        """A merged batch ran (``seconds``: scoring time, retries alone included)."""

    def indicator(self, name: str, rows: int, seconds: float) -> None:
        """One indicator's pass over a batch."""

    def request(self, rows: int, seconds: float, outcome: str) -> None:
        """A request ended: ``ok``, ``error`` or ``overloaded``; ``seconds`` from submission to result."""


@dataclasses.dataclass
class _Entry:
    """A Scorer for one (schema, indicators) and what a report of its requests needs."""

    scorer: Scorer
    kept: list[str]  # indicator columns the requests bring along (default set only), kept as they are


@dataclasses.dataclass
class _Request:
    table: pa.Table
    entry: _Entry
    future: Future
    submitted: float
    queued: float = 0.0  # when it entered the queue (after any wait for room)

    @property
    def rows(self) -> int:
        return self.table.num_rows


class BatchingScorer:
    """A thread-safe, asyncio-friendly scorer that merges concurrent callers' records into shared batches.

    Parameters
    ----------
    indicators, rule, columns, models, threads, device, options
        As in :func:`instructfast.score`. ``indicators=None`` serves every available row indicator;
        ``knn_<i>`` only with a reference pool (``options={"knn_pool": DIR}``).
    max_wait_ms, max_batch_rows, max_queue_rows, on_full, max_schemas
        Batching and backpressure; each overrides the option of the same name with a ``serve_``
        prefix (``instructfast options`` lists them): how long the oldest request waits for others
        (5 ms), rows per merged batch (256), rows waiting at most (4096), what a request finds when
        the queue is full (``"reject"``: :class:`~instructfast.Overloaded`; ``"wait"``), and how
        many request schemas keep a Scorer (16, least recently used dropped; models are shared).
    observer
        A :class:`BatchObserver` told of queue depth, batches, indicator passes and requests.
    load
        Load the models now (default), so the first request does not wait for them.

    Examples
    --------
    >>> import instructfast
    >>> with instructfast.BatchingScorer(indicators=["output_words", "mtld"]) as bs:
    ...     bs.score([{"instruction": "Say hi.", "output": "Hi there, hi!"}]).to_pylist()
    [{'instruction': 'Say hi.', 'output': 'Hi there, hi!', 'output_words': 3, 'mtld': 3.0}]
    """

    @keyword_only("indicators", "rule", "columns")
    def __init__(
        self,
        *,
        indicators: Sequence[str] | str | None = None,
        rule: str | Rule | Mapping[str, Any] | None = None,
        columns: Mapping[str, str] | None = None,
        models: Mapping[str, str] | None = None,
        threads: int | None = None,
        device: str | None = None,
        options: Mapping[str, object] | None = None,
        max_wait_ms: float | None = None,
        max_batch_rows: int | None = None,
        max_queue_rows: int | None = None,
        on_full: OnFull | None = None,
        max_schemas: int | None = None,
        observer: BatchObserver | None = None,
        load: bool = True,
    ) -> None:
        flat = dict(options or {})
        given = {
            "serve_max_wait_ms": max_wait_ms,
            "serve_max_batch_rows": max_batch_rows,
            "serve_max_queue_rows": max_queue_rows,
            "serve_on_full": on_full,
            "serve_max_schemas": max_schemas,
        }
        flat.update({k: v for k, v in given.items() if v is not None})
        self.options = ScoreOptions.build(threads=threads, models=models, device=device, options=flat)
        self.rule = rule
        self.column_map = dict(columns) if columns else None
        self.indicators, self.unavailable = _served(indicators, self.options)
        self._default_set = indicators is None
        self._observer = observer
        self._cond = threading.Condition()
        self._queue: collections.deque[_Request] = collections.deque()
        self._queued_rows = 0
        self._closing = False
        self._rate = 0.0  # rows/s of recent batches (for Retry-After)
        self._last_done = 0.0  # when the last batch ended (perf_counter)
        self._last_seconds = 0.0  # how long it ran
        # the requests its callers may bring back at once: those it answered and those queued meanwhile
        self._rejoin: tuple[_Entry | None, int] = (None, 0)
        self._entries: collections.OrderedDict[tuple, _Entry] = collections.OrderedDict()
        self._entries_lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self._nulls = NullCounter()
        self._stats: collections.Counter[str] = collections.Counter()
        self._indicator_seconds: dict[str, float] = collections.defaultdict(float)
        # Everything is checked now, on a schema of the configured layout: unknown or unavailable
        # indicators, a rule's missing inputs, pool indicators without a pool.
        probe = self._entry(_probe_schema(self.column_map), None)
        self.columns = [c for c in probe.scorer.output_schema().names if c not in probe.scorer.schema.names]
        self._rule_name = probe.scorer.report.rule
        self._run = RunRecord.start()
        if load:
            probe.scorer.start()
            self._note_run(probe.scorer)
        self._loaded = load
        self._thread = threading.Thread(target=self._dispatch, name="instructfast-batcher", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ callers

    def submit(self, records: Any, *, indicators: Sequence[str] | str | None = None) -> Future:
        """Queue ``records``; a :class:`concurrent.futures.Future` of the scored table.

        Raises :class:`~instructfast.RecordError` for a malformed record and the usual errors for a
        bad schema or indicator at once; :class:`~instructfast.Overloaded` when the queue is full
        (``on_full="reject"``) or the scorer is closing. With ``on_full="wait"`` it blocks for room.
        """
        req = self._prepare(records, indicators)
        if req.rows == 0:
            req.future.set_result(self._empty(req))
            return req.future
        self._admit(req, block=self.options.serve.on_full == "wait")
        return req.future

    def score(
        self, records: Any, *, indicators: Sequence[str] | str | None = None, timeout: float | None = None
    ) -> pa.Table:
        """Score ``records`` (a list of row dicts, an Arrow table, ...) merged with other callers' requests.

        Returns the records, in order, with the indicator columns (and ``predicted_log_loss`` with a
        rule); the schema metadata holds this request's :class:`~instructfast.ScoreReport`, whose
        ``run.serving`` says which batch it joined. Thread-safe.
        """
        return self.submit(records, indicators=indicators).result(timeout)

    async def ascore(self, records: Any, *, indicators: Sequence[str] | str | None = None) -> pa.Table:
        """:meth:`score` for asyncio: the event loop is never blocked, waiting for room included."""
        req = self._prepare(records, indicators)
        if req.rows == 0:
            return self._empty(req)
        if self.options.serve.on_full == "wait":
            await asyncio.to_thread(self._admit, req, True)
        else:
            self._admit(req, False)
        return await asyncio.wrap_future(req.future)

    def close(self, *, wait: bool = True) -> None:
        """Refuse new requests; with ``wait``, return once every accepted request has its result."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if wait and self._thread is not threading.current_thread():
            self._thread.join()

    def __enter__(self) -> BatchingScorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def ready(self) -> bool:
        """Models loaded and requests accepted."""
        return self._loaded and not self._closing

    def load(self) -> None:
        """Load the models (when built with ``load=False``)."""
        if not self._loaded:
            probe = self._entry(_probe_schema(self.column_map), None)
            probe.scorer.start()
            self._note_run(probe.scorer)
            self._loaded = True

    @property
    def queued(self) -> tuple[int, int]:
        """(rows, requests) waiting now."""
        with self._cond:
            return self._queued_rows, len(self._queue)

    @property
    def report(self) -> ScoreReport:
        """Every request so far: rows, nulls and notes by reason, and ``run.serving`` (settings and counts)."""
        with self._stats_lock:
            s = self._stats
            batches = s["batches"]
            run = copy.deepcopy(self._run)
            run.serving = {
                **self._settings(),
                "requests": s["requests"],
                "rows": s["rows"],
                "batches": batches,
                "mean_batch_rows": s["batch_rows"] / batches if batches else 0.0,
                "mean_batch_requests": s["batch_requests"] / batches if batches else 0.0,
                "retried_alone": s["retried_alone"],
                "failed_requests": s["failed"],
                "overloaded": s["overloaded"],
                "schemas": s["schemas"],
                "indicator_seconds": dict(self._indicator_seconds),
            }
            run.seconds = s["seconds_milli"] / 1000
            return ScoreReport(
                rows=s["rows"],
                layout="per request schema",
                impl=IMPL_REASON,
                columns=list(self.columns),
                unavailable=dict(self.unavailable),
                nulls=self._nulls.as_dict(),
                notes=self._nulls.notes_dict(),
                rule=self._rule_name,
                seconds=run.seconds,
                run=run,
            )

    # ------------------------------------------------------------------ requests in

    def _settings(self) -> dict[str, Any]:
        s = self.options.serve
        return {
            "max_wait_ms": s.max_wait_ms,
            "rejoin_fraction": s.rejoin_fraction,
            "max_batch_rows": s.max_batch_rows,
            "max_queue_rows": s.max_queue_rows,
            "on_full": s.on_full,
            "max_schemas": s.max_schemas,
        }

    def _prepare(self, records: Any, indicators: Sequence[str] | str | None) -> _Request:
        t0 = time.perf_counter()
        table = records_table(records, columns=self.column_map)
        if table.num_columns == 0:  # an empty list of records: nothing to score, nothing to refuse
            return _Request(table, _Entry(self._probe_scorer(), []), Future(), t0)
        entry = self._entry(table.schema, indicators)
        return _Request(table, entry, Future(), t0)

    def _probe_scorer(self) -> Scorer:
        return self._entry(_probe_schema(self.column_map), None).scorer

    def _entry(self, schema: pa.Schema, indicators: Sequence[str] | str | None) -> _Entry:
        """The cached Scorer for this schema and indicator set (built, and checked, on first use)."""
        asked = (indicators,) if isinstance(indicators, str) else tuple(indicators) if indicators is not None else None
        key = (schema.to_string(show_field_metadata=False, show_schema_metadata=False), asked)
        with self._entries_lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                return entry
        entry = self._build(schema, asked)
        with self._entries_lock:
            entry = self._entries.setdefault(key, entry)
            self._entries.move_to_end(key)
            while len(self._entries) > self.options.serve.max_schemas:
                self._entries.popitem(last=False)  # queued requests hold their own entry; nothing is lost
        with self._stats_lock:
            self._stats["schemas"] = max(self._stats["schemas"], len(self._entries))
        return entry

    def _build(self, schema: pa.Schema, asked: tuple[str, ...] | None) -> _Entry:
        served = self.indicators
        kept: list[str] = []
        names: list[str] | None
        if asked is not None:
            names = list(asked)
        elif self._default_set and served is not None:
            # the default set, as score() treats it: indicator columns a request brings are kept, not recomputed
            cols = [c.name for n in served for c in REGISTRY[n].columns]
            kept = [c for c in cols if c in schema.names]
            names = [c for c in cols if c not in schema.names]
        else:
            names = list(served) if served is not None else None
        scorer = Scorer(schema, indicators=names, rule=self.rule, columns=self.column_map, options=self.options)
        pool = [c for ind in scorer.plan.indicators if ind.scope == "pool" for c in ind.wanted]
        if pool:
            msg = f"{pool} need a pool to measure against: {NO_POOL}"
            raise IndicatorUnavailableError(msg)
        if asked is not None:  # a request's own choice, among what this scorer serves
            extra = [c for c in scorer.plan.columns() if c not in self.columns]
            if extra:
                msg = f"`indicators`: {extra} are not served here; this scorer serves {self.columns}"
                raise ArgumentError(msg)
        for ind in scorer.plan.indicators:
            ind.compute = self._timed(ind.name, ind.compute)  # type: ignore[method-assign]
        return _Entry(scorer, kept)

    def _timed(self, name: str, compute: Callable) -> Callable:
        # Scorer times nothing per indicator; wrapping the instances this scorer owns measures each
        # model's share of a batch without touching the Scorer (whose internals are changing).
        def timed(batch, nulls):
            t0 = time.perf_counter()
            try:
                return compute(batch, nulls)
            finally:
                dt = time.perf_counter() - t0
                with self._stats_lock:
                    self._indicator_seconds[name] += dt
                if self._observer is not None:
                    self._observer.indicator(name, batch.num_rows, dt)

        return timed

    def _admit(self, req: _Request, block: bool) -> None:
        cap = self.options.serve.max_queue_rows
        with self._cond:
            while True:
                if self._closing:
                    self._refused(req)
                    msg = "the scorer is shutting down and accepts no new requests"
                    raise Overloaded(msg)
                # a request larger than the whole queue still gets in when the queue is empty
                if not self._queue or self._queued_rows + req.rows <= cap:
                    break
                if not block:
                    self._refused(req)
                    wait = max(1.0, math.ceil(self._queued_rows / self._rate)) if self._rate > 0 else 1.0
                    msg = (
                        f"queue full: {self._queued_rows} rows waiting (max_queue_rows {cap}), "
                        f"this request has {req.rows}; retry in about {wait:.0f} s"
                    )
                    raise Overloaded(msg, retry_after=wait)
                self._cond.wait()
            req.queued = time.perf_counter()
            self._queue.append(req)
            self._queued_rows += req.rows
            self._cond.notify_all()
            depth = self._queued_rows, len(self._queue)
        if self._observer is not None:
            self._observer.queue(*depth)

    def _refused(self, req: _Request) -> None:
        with self._stats_lock:
            self._stats["overloaded"] += 1
        if self._observer is not None:
            self._observer.request(req.rows, time.perf_counter() - req.submitted, "overloaded")

    def _empty(self, req: _Request) -> pa.Table:
        if req.table.num_columns == 0:
            return req.table
        schema = req.entry.scorer.output_schema()
        return schema.empty_table()

    # ------------------------------------------------------------------ the dispatcher

    def _dispatch(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._run_batch(batch)

    def _next_batch(self) -> list[_Request] | None:
        s = self.options.serve
        wait, limit = s.max_wait_ms / 1000, s.max_batch_rows
        with self._cond:
            while not self._queue:
                if self._closing:
                    return None
                self._cond.wait()
            first = self._queue[0]
            # Counted from the later of its arrival and the end of the last batch: the callers that
            # batch just answered come back within a round trip, and waiting for them keeps closed-loop
            # clients in one batch instead of splitting into cohorts that alternate.
            deadline = max(first.queued, self._last_done) + wait
            # ... and, while fewer requests wait than the last batch answered plus those queued as it ended,
            # up to a fraction of its run time after it: a service's round trip is often longer than
            # max_wait_ms, and callers answered a moment apart would otherwise split into cohorts.
            rejoin_until = self._last_done + s.rejoin_fraction * self._last_seconds
            entry, expected = self._rejoin
            while not self._closing:
                group = [r for r in self._queue if r.entry is first.entry]
                rows = sum(r.rows for r in group)
                until = max(deadline, rejoin_until) if first.entry is entry and len(group) < expected else deadline
                left = until - time.perf_counter()
                if rows >= limit or left <= 0:
                    break
                self._cond.wait(left)
            # the oldest request's group, in arrival order, up to the row limit (always at least one)
            taken: list[_Request] = []
            rest: collections.deque[_Request] = collections.deque()
            rows = 0
            for r in self._queue:
                if r.entry is first.entry and (not taken or rows + r.rows <= limit):
                    taken.append(r)
                    rows += r.rows
                else:
                    rest.append(r)
            self._queue = rest
            self._queued_rows -= rows
            self._cond.notify_all()  # room for callers waiting to be admitted
            depth = self._queued_rows, len(self._queue)
        if self._observer is not None:
            self._observer.queue(*depth)
        return taken

    def _run_batch(self, reqs: list[_Request]) -> None:
        live = [r for r in reqs if r.future.set_running_or_notify_cancel()]  # callers that gave up are dropped
        if not live:
            return
        t0 = time.perf_counter()
        try:
            results = self._score(live)
            retried = False
        except Exception as e:
            retried = len(live) > 1
            if not retried:
                results = [e]
            else:
                # one bad record fails the whole merged batch: each request again, alone, so only its own fails
                results = []
                for r in live:
                    try:
                        results += self._score([r], retried=True)
                    except Exception as err:
                        results.append(err)
        dt = time.perf_counter() - t0
        rows = sum(r.rows for r in live)
        with self._stats_lock:
            s = self._stats
            s["batches"] += 1
            s["batch_rows"] += rows
            s["batch_requests"] += len(live)
            s["retried_alone"] += len(live) if retried else 0
            s["seconds_milli"] += round(dt * 1000)
            if dt > 0:
                self._rate = rows / dt if self._rate == 0 else 0.8 * self._rate + 0.2 * rows / dt
        if self._observer is not None:
            self._observer.batch(rows, len(live), dt)
        now = time.perf_counter()
        for r, res in zip(live, results):
            ok = not isinstance(res, BaseException)
            with self._stats_lock:
                self._stats["requests"] += 1
                if ok:
                    self._stats["rows"] += r.rows
                else:
                    self._stats["failed"] += 1
            if self._observer is not None:
                self._observer.request(r.rows, now - r.submitted, "ok" if ok else "error")
            if ok:
                r.future.set_result(res)
            else:
                r.future.set_exception(res)
        with self._cond:
            self._last_done = time.perf_counter()
            self._last_seconds = dt
            entry = live[0].entry
            self._rejoin = (entry, len(live) + sum(r.entry is entry for r in self._queue))

    def _score(self, reqs: list[_Request], *, retried: bool = False) -> list[pa.Table]:
        """One Scorer batch of ``reqs`` (same entry); each request's rows with its own report."""
        entry = reqs[0].entry
        scorer = entry.scorer
        table = reqs[0].table if len(reqs) == 1 else pa.concat_tables([r.table for r in reqs]).combine_chunks()
        batches = table.to_batches()
        batch = batches[0] if len(batches) == 1 else pa.Table.from_batches(batches).combine_chunks().to_batches()[0]
        before_nulls, before_notes = scorer.nulls.as_dict(), scorer.nulls.notes_dict()
        out = scorer.score_batch(batch)
        nulls = _minus(scorer.nulls.as_dict(), before_nulls)
        notes = _minus(scorer.nulls.notes_dict(), before_notes)
        with self._stats_lock:
            self._nulls.extend(nulls, notes)
            if not self._run.models:
                self._note_run_locked(scorer)
        done = time.perf_counter()
        results, start = [], 0
        for r in reqs:
            part = out.slice(start, r.rows)
            start += r.rows
            # notes (rows computed with a caveat) cannot be told apart by request: a lone request's only
            rep = self._request_report(
                entry, r, part, nulls, notes if len(reqs) == 1 else {}, (table.num_rows, len(reqs)), retried, done
            )
            meta = {REPORT_KEY: rep.to_json().encode()}
            results.append(pa.Table.from_batches([part]).replace_schema_metadata(meta))
        return results

    def _request_report(
        self,
        entry: _Entry,
        req: _Request,
        part: pa.RecordBatch,
        nulls: dict[str, dict[str, int]],
        notes: dict[str, dict[str, int]],
        merged: tuple[int, int],
        retried: bool,
        done: float,
    ) -> ScoreReport:
        base = entry.scorer.report
        run = dataclasses.replace(base.run)
        run.seconds = done - req.submitted
        run.serving = {
            "batch_rows": merged[0],
            "batch_requests": merged[1],
            "queued_ms": round((done - req.queued) * 1000, 3),
            "retried_alone": retried,
        }
        return ScoreReport(
            rows=part.num_rows,
            layout=base.layout,
            impl=base.impl,
            columns=list(base.columns),
            unavailable={**self.unavailable, **base.unavailable},
            kept_from_input=[*entry.kept, *base.kept_from_input],
            nulls=_attributed(part, nulls),
            notes=notes,
            rule=base.rule,
            seconds=run.seconds,
            run=run,
        )

    def _note_run(self, scorer: Scorer) -> None:
        with self._stats_lock:
            self._note_run_locked(scorer)

    def _note_run_locked(self, scorer: Scorer) -> None:
        run = scorer.report.run
        self._run.implementations.update(run.implementations)
        for m in run.models:
            self._run.add_model(m)
        self._run.options = dict(run.options)


def _served(indicators: Sequence[str] | str | None, options: ScoreOptions) -> tuple[list[str] | None, dict[str, str]]:
    """The indicators a request gets by default, and those left out with the reason."""
    if indicators is not None:
        return ([indicators] if isinstance(indicators, str) else list(indicators)), {}
    if options.knn.pool:
        return None, {}  # every available indicator; knn_<i> against the pool, row by row
    names, unavailable = [], {}
    for info in describe(options):
        if info.scope == "pool":
            unavailable[info.name] = NO_POOL
        elif info.availability.ok:
            names.append(info.name)
        else:
            unavailable[info.name] = info.availability.explain()
    return names, unavailable


def _probe_schema(columns: Mapping[str, str] | None) -> pa.Schema:
    """A schema of the configured layout, to check the indicators and rule before any request."""
    if not columns:
        return pa.schema([("instruction", pa.string()), ("input", pa.string()), ("output", pa.string())])
    turn = pa.struct([("from", pa.string()), ("value", pa.string())])
    return pa.schema([(src, pa.list_(turn) if key == "conversation" else pa.string()) for key, src in columns.items()])


def _minus(after: dict[str, dict[str, int]], before: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for col, reasons in after.items():
        for reason, n in reasons.items():
            d = n - before.get(col, {}).get(reason, 0)
            if d:
                out.setdefault(col, {})[reason] = d
    return out


def _attributed(part: pa.RecordBatch, nulls: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """This request's nulls per column: its own count, under the batch's reason when the batch had one.

    A merged batch counts reasons for all its rows together; a request's nulls are exact per column,
    and so is the reason wherever the batch gave that column a single one (the usual case).
    """
    out: dict[str, dict[str, int]] = {}
    for col, reasons in nulls.items():
        if col not in part.schema.names:
            continue
        n = part.column(col).null_count
        if not n:
            continue
        reason = next(iter(reasons)) if len(reasons) == 1 else "one of: " + "; ".join(sorted(reasons))
        out[col] = {reason: n}
    return out


__all__ = ["NO_POOL", "BatchObserver", "BatchingScorer"]
