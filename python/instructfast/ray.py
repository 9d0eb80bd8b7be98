"""Scoring on a Ray cluster: the per-row work in an actor pool, each actor holding one loaded Scorer.

Two ways in:

* :func:`score` takes a ``ray.data.Dataset`` and returns one: per-row indicators run in
  ``Dataset.map_batches`` over an actor pool (``compute=ray.data.ActorPoolStrategy``; models load
  once per actor; ``num_gpus`` per actor); pool indicators (``knn_<i>``) gather the embeddings
  (not the texts) and search them once, in one Ray task, under the local engine's policy (exact
  up to ``knn_exact_max``, approximate with measured recall above), then the values are zipped
  back onto the rows;
* :func:`score_files` (CLI ``instructfast score ... --engine ray``) runs the file engine of
  :mod:`instructfast.pipeline` with the per-row phase on the cluster: shards, sidecars,
  checkpoints and resume work exactly as locally (Ray's retries cover a dead worker; the done
  markers cover a dead driver).

Results equal the single-process engine's: text statistics bit for bit, model values within the
batch-invariance tolerance. Ray is the optional extra ``instructfast[ray]``, imported only here.

A one-CPU Ray actor runs with ``OMP_NUM_THREADS=1``; actors here set torch's and the text core's
threads to the CPUs they hold (``cpus_per_worker``), so a 2-CPU actor uses both cores.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import _faults
from .errors import ArgumentError, MissingDependencyError
from .indicators.base import NullCounter
from .io import scan_file
from .options import ScoreOptions
from .pipeline import RowJob, RowRunner, ShardedRunResult
from .pipeline import score_files as _score_files
from .rules import Rule
from .scoring import RowResult, Scorer

INSTALL = "pip install 'instructfast[ray]'"
VEC_PREFIX = "__instructfast_vec__"
NULLS_COLUMN = "__instructfast_nulls__"
JOB_COLUMN = "__instructfast_job__"


def _ray() -> Any:
    if importlib.util.find_spec("ray") is None:
        msg = f"the Ray engine needs Ray: {INSTALL}"
        raise MissingDependencyError(msg)
    import ray
    import ray.data

    return ray


def _vector_column(u: np.ndarray, pos: np.ndarray, n: int) -> pa.Array:
    """``fixed_size_list<float32>[dim]`` with each member's vector at its row and null elsewhere."""
    dim = int(u.shape[1]) if u.ndim == 2 and u.shape[1] else 1
    full = np.zeros((n, dim), np.float32)
    valid = np.zeros(n, bool)
    if pos.size:
        full[pos] = u
        valid[pos] = True
    values = pa.array(full.reshape(-1))
    arr = pa.FixedSizeListArray.from_arrays(values, dim)
    return arr if valid.all() else pc.if_else(pa.array(valid), arr, pa.nulls(n, arr.type))


def _vectors_of(column: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(members' vectors float32 [m, dim], their row positions) from a :func:`_vector_column`."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    valid = arr.is_valid().to_numpy(zero_copy_only=False)
    dim = arr.type.list_size
    flat = arr.flatten() if arr.null_count == 0 else arr.fill_null(pa.scalar([0.0] * dim, arr.type)).flatten()
    full = flat.to_numpy(zero_copy_only=False).reshape(-1, dim)
    pos = np.flatnonzero(valid).astype(np.int64)
    return np.ascontiguousarray(full[pos], np.float32), pos


class ScorerActor:
    """A Ray Data actor holding one :class:`~instructfast.Scorer`; models load once, in ``__init__``.

    It returns each batch scored by the row-scoped indicators, plus one vector column per pool
    indicator and the batch's null counts (JSON, on its first row), for the driver to unpack.
    """

    def __init__(
        self,
        schema: bytes,
        indicators: Sequence[str],
        rule: Rule | None,
        columns: Mapping[str, str] | None,
        options: ScoreOptions,
        threads: int | None,
        finish: bool,
    ) -> None:
        if threads:
            try:
                import torch

                torch.set_num_threads(threads)  # Ray sets OMP_NUM_THREADS=1 for one-CPU actors
            except ImportError:
                pass
            options = replace(options, threads=threads)
        self.scorer = Scorer(
            pa.ipc.read_schema(pa.py_buffer(schema)), indicators=indicators, rule=rule, columns=columns, options=options
        )
        self.scorer.start()
        self.finish = finish

    def __call__(self, table: pa.Table) -> pa.Table:
        _faults.point("ray:batch")
        if JOB_COLUMN not in table.column_names:
            return self._score(table)
        # Ray may merge blocks of several shards into one batch: each shard's rows are scored and
        # counted apart, so the driver can attribute every null to its shard.
        tags = table.column(JOB_COLUMN).to_numpy()
        cuts = [0, *(np.flatnonzero(np.diff(tags)) + 1).tolist(), table.num_rows]
        parts = []
        for lo, hi in zip(cuts[:-1], cuts[1:], strict=True):
            part = self._score(table.slice(lo, hi - lo).drop_columns([JOB_COLUMN]))
            parts.append(part.append_column(JOB_COLUMN, pa.array([int(tags[lo])] * (hi - lo), pa.int32())))
        return pa.concat_tables(parts) if parts else table

    def _score(self, table: pa.Table) -> pa.Table:
        batch = (
            table.combine_chunks().to_batches()[0] if table.num_rows else pa.RecordBatch.from_pylist([], table.schema)
        )
        res = self.scorer.score_rows(batch)
        out = res.batch
        if self.finish:  # no pool indicator: the rule can run here, on the row columns
            out = self.scorer.finish_batch(out, {}, res.nulls)
        result = pa.Table.from_batches([out])
        for name, (u, pos) in res.vectors.items():
            result = result.append_column(VEC_PREFIX + name, _vector_column(u, pos, batch.num_rows))
        counts = json.dumps({"nulls": res.nulls.as_dict(), "notes": res.nulls.notes_dict()})
        meta = (
            pa.array([counts] + [None] * (batch.num_rows - 1), pa.string())
            if batch.num_rows
            else pa.array([], pa.string())
        )
        return result.append_column(NULLS_COLUMN, meta)


def _shards_datasource(jobs: Sequence[RowJob]) -> Any:
    """A Ray Data datasource over several record files, one read task each, read with instructfast's
    own readers from each job's first unscored row; every block is tagged with its job's index."""
    from ray.data.block import BlockMetadata
    from ray.data.datasource import Datasource, ReadTask

    specs = [
        (i, str(j.source.path), j.source.format, j.start, j.batch_rows, j.text_columns, j.max_record_bytes)
        for i, j in enumerate(jobs)
    ]

    def reader(
        i: int, path: str, fmt: str, start: int, batch_rows: int, text_columns: tuple[str, ...], limit: int
    ) -> Any:
        def read() -> Iterator[pa.Table]:
            from ._arrow import rebatch
            from .pipeline import _skip_rows

            src = scan_file(path, format=fmt, batch_rows=batch_rows, text_columns=text_columns, max_record_bytes=limit)
            for b in _skip_rows(rebatch(src.reader(), batch_rows), start):
                t = pa.Table.from_batches([b])
                yield t.append_column(JOB_COLUMN, pa.array([i] * t.num_rows, pa.int32()))

        return read

    class _Shards(Datasource):
        def estimate_inmemory_data_size(self) -> int | None:
            return None

        def get_read_tasks(
            self, parallelism: int, per_task_row_limit: int | None = None, data_context: Any = None
        ) -> list[Any]:
            return [
                ReadTask(
                    reader(*spec),
                    BlockMetadata(num_rows=None, size_bytes=None, input_files=(spec[1],), exec_stats=None),
                )  # fmt: skip
                for spec in specs
            ]

    return _Shards()


class RayEngine:
    """Where and how the per-row work runs on Ray.

    Parameters
    ----------
    address
        A running cluster to join (``ray.init(address=...)``); ``None`` starts a local one, unless
        this process already joined a cluster.
    workers
        Scoring actors (default: one per ``cpus_per_worker`` CPUs of the cluster).
    gpus_per_worker
        GPUs each actor holds (``num_gpus``): 1 for one model replica per GPU.
    cpus_per_worker
        CPUs each actor holds; its torch and text-core threads follow it.
    actor_options
        Further Ray actor options for the scoring actors, e.g. ``{"runtime_env": {...}}``.
    """

    def __init__(
        self,
        *,
        address: str | None = None,
        workers: int | None = None,
        gpus_per_worker: float = 0.0,
        cpus_per_worker: float = 1.0,
        actor_options: Mapping[str, Any] | None = None,
    ) -> None:
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            msg = f"`workers` must be a positive integer or None, got {workers!r}"
            raise ArgumentError(msg)
        if gpus_per_worker < 0 or cpus_per_worker <= 0:
            msg = f"`gpus_per_worker` must be >= 0 and `cpus_per_worker` > 0, got {gpus_per_worker!r}, {cpus_per_worker!r}"
            raise ArgumentError(msg)
        self.ray = _ray()
        self.address = address
        self.workers = workers
        self.gpus_per_worker = float(gpus_per_worker)
        self.cpus_per_worker = float(cpus_per_worker)
        self.actor_options = dict(actor_options or {})

    def start(self) -> Any:
        ray = self.ray
        if not ray.is_initialized():
            ray.init(address=self.address, include_dashboard=False, ignore_reinit_error=True,
                     log_to_driver=False)  # fmt: skip
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True  # rows come back in input order: positions, keys, zip
        return ray

    def pool_size(self) -> int:
        if self.workers is not None:
            return self.workers
        cpus = self.start().cluster_resources().get("CPU", 1)
        return max(1, int(cpus // self.cpus_per_worker))

    def holds_every_cpu(self) -> bool:
        """Whether the scoring actors together hold every CPU of the cluster."""
        cpus = self.start().cluster_resources().get("CPU", 0)
        return self.pool_size() * self.cpus_per_worker >= cpus

    def map_rows(self, ds: Any, scorer: Scorer, *, batch_rows: int, finish: bool) -> Any:
        """``ds`` through an actor pool of :class:`ScorerActor` built like ``scorer``."""
        ray = self.start()
        threads = max(1, int(self.cpus_per_worker))
        return ds.map_batches(
            ScorerActor,
            fn_constructor_kwargs={
                "schema": scorer.schema.serialize().to_pybytes(),
                "indicators": scorer.plan.columns(),
                "rule": scorer.rule,
                "columns": scorer.column_map,
                "options": scorer.options,
                "threads": threads,
                "finish": finish,
            },
            batch_format="pyarrow",
            batch_size=batch_rows,
            # One batch in flight per actor: a model batch runs for seconds to minutes, so queueing a
            # second one behind a busy actor hides nothing and can leave another actor idle (two 1-CPU
            # actors took 145 s where an even split took 81 s, with two batches queued on one actor).
            compute=ray.data.ActorPoolStrategy(size=self.pool_size(), max_tasks_in_flight_per_actor=1),
            num_cpus=self.cpus_per_worker,
            num_gpus=self.gpus_per_worker or None,
            # Ray Data restarts a dead actor and retries its batch (max_restarts=-1, max_task_retries=-1
            # by default for actor pools): a crashed worker loses no row and scores none twice.
            **self.actor_options,
        )

    def row_runner(self) -> RowRunner:
        """A row runner for :mod:`instructfast.pipeline`: shards' per-row work on one actor pool.

        Shards of one schema share one dataset (one read task each) and one actor pool, so the
        models load once per actor for the whole run; rows come back in shard and row order.
        """

        def run(jobs: Sequence[RowJob]) -> Iterator[tuple[int, RowResult]]:
            ray = self.start()
            groups: list[list[int]] = []  # runs of consecutive jobs with one scorer (one schema)
            for i, job in enumerate(jobs):
                if groups and jobs[groups[-1][0]].scorer is job.scorer:
                    groups[-1].append(i)
                else:
                    groups.append([i])
            for group in groups:
                members = [jobs[i] for i in group]
                # The reads ask for no CPU: with every CPU held by a scoring actor, a read task that
                # waited for one would never run (Ray Data gives the actors their CPUs first).
                ds = ray.data.read_datasource(_shards_datasource(members), num_cpus=0)
                scored = self.map_rows(ds, members[0].scorer, batch_rows=members[0].batch_rows, finish=False)
                offsets = [j.start for j in members]
                for table in scored.iter_batches(batch_format="pyarrow", batch_size=None):
                    # a batch may span the end of one shard and the start of the next: split it by job
                    tags = table.column(JOB_COLUMN).to_numpy()
                    cuts = [0, *(np.flatnonzero(np.diff(tags)) + 1).tolist(), table.num_rows]
                    for lo, hi in zip(cuts[:-1], cuts[1:], strict=True):
                        k = int(tags[lo])
                        yield group[k], _unpack(table.slice(lo, hi - lo).drop_columns([JOB_COLUMN]), offsets[k])
                        offsets[k] += hi - lo

        return run


def _unpack(table: pa.Table, offset: int) -> RowResult:
    """A :class:`RowResult` from what :class:`ScorerActor` returned for rows starting at ``offset``."""
    nulls = NullCounter()
    meta = table.column(NULLS_COLUMN)
    for value in meta.drop_null().to_pylist():
        counts = json.loads(value)
        nulls.extend(counts["nulls"], counts["notes"])
    vectors: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    keep = []
    for name in table.column_names:
        if name.startswith(VEC_PREFIX):
            u, pos = _vectors_of(table.column(name))
            vectors[name[len(VEC_PREFIX) :]] = (u, pos + offset)
        elif name != NULLS_COLUMN:
            keep.append(name)
    body = table.select(keep).combine_chunks()
    batch = body.to_batches()[0] if body.num_rows else pa.RecordBatch.from_pylist([], body.schema)
    return RowResult(batch, vectors, nulls)


def score(
    ds: Any,
    *,
    indicators: Sequence[str] | str | None = None,
    rule: str | Rule | Mapping[str, Any] | None = None,
    columns: Mapping[str, str] | None = None,
    models: Mapping[str, str] | None = None,
    threads: int | None = None,
    batch_rows: int = 4096,
    mtld_threshold: float | None = None,
    device: str | None = None,
    options: Mapping[str, object] | None = None,
    address: str | None = None,
    workers: int | None = None,
    gpus_per_worker: float = 0.0,
    cpus_per_worker: float = 1.0,
    actor_options: Mapping[str, Any] | None = None,
) -> Any:
    """Score a ``ray.data.Dataset`` of records; returns a Dataset with the indicator columns appended.

    Parameters are those of :func:`instructfast.score`, plus the engine's (:class:`RayEngine`).
    ``batch_rows`` is the actors' batch size. Rows keep their order.

    Examples
    --------
    >>> import ray, pyarrow as pa, instructfast.ray as ifr  # doctest: +SKIP
    >>> ds = ray.data.from_arrow(pa.table({"instruction": ["q"], "output": ["a b a"]}))  # doctest: +SKIP
    >>> ifr.score(ds, indicators=["mtld"]).take_all()  # doctest: +SKIP
    [{'instruction': 'q', 'output': 'a b a', 'mtld': 3.0}]
    """
    engine = RayEngine(
        address=address,
        workers=workers,
        gpus_per_worker=gpus_per_worker,
        cpus_per_worker=cpus_per_worker,
        actor_options=actor_options,
    )
    ray = engine.start()
    opts = ScoreOptions.build(
        threads=threads,
        batch_rows=batch_rows,
        mtld_threshold=mtld_threshold,
        models=models,
        device=device,
        options=options,
    )
    if engine.holds_every_cpu():
        # Ray Data starts a fixed actor pool before the operators above it: with every CPU held by
        # a scoring actor, an upstream task that asks for one (a read, a repartition, a map) never
        # runs and the job waits forever (seen with one 2-CPU actor on a 2-CPU machine). Running
        # the upstream part first costs its output in the object store, which spills to disk.
        ds = ds.materialize()
    schema = ds.schema()
    arrow_schema = schema.base_schema if hasattr(schema, "base_schema") else schema
    template = Scorer(arrow_schema, indicators=indicators, rule=rule, columns=columns, options=opts)
    pool = template.pool_indicators
    scored = engine.map_rows(ds, template, batch_rows=batch_rows, finish=not pool)
    if not pool:
        # No CPU asked for a zero-copy column drop: with every CPU held by a scoring actor it would
        # otherwise wait for the whole pool to finish before passing on any batch.
        return scored.drop_columns([NULLS_COLUMN], num_cpus=0)
    scored = scored.materialize()
    vec_cols = [VEC_PREFIX + ind.name for ind in pool]
    pieces: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {c: [] for c in vec_cols}
    n = 0
    for table in scored.select_columns(vec_cols).iter_batches(batch_format="pyarrow", batch_size=None):
        for c in vec_cols:
            u, pos = _vectors_of(table.column(c))
            pieces[c].append((u, pos + n))
        n += table.num_rows
    nulls = NullCounter()
    columns_out: dict[str, pa.Array] = {}
    for ind, c in zip(pool, vec_cols, strict=True):
        ind.start()
        u = np.concatenate([p[0] for p in pieces[c]]) if pieces[c] else np.zeros((0, 1), np.float32)
        pos = np.concatenate([p[1] for p in pieces[c]]) if pieces[c] else np.zeros(0, np.int64)
        dist = ray.get(_search_task().remote(ind, ray.put(u)))
        columns_out.update(ind.pool_columns(n, pos, dist, u.shape[0], nulls))
    knn = ray.data.from_arrow(pa.table(columns_out))
    joined = scored.drop_columns([*vec_cols, NULLS_COLUMN], num_cpus=0).zip(knn)
    if template.rule is None:
        return joined
    rule_obj = template.rule

    def apply_rule(table: pa.Table) -> pa.Table:
        return table.append_column("predicted_log_loss", rule_obj.apply(table))

    return joined.map_batches(apply_rule, batch_format="pyarrow")


def _search_fn(ind: Any, vectors: np.ndarray) -> np.ndarray:
    return np.asarray(ind.search_pool(vectors))


_remote: dict[str, Any] = {}


def _search_task() -> Any:
    """The pool search as a Ray task (made on first use, so importing this module needs no Ray)."""
    if "search" not in _remote:
        _remote["search"] = _ray().remote(_search_fn)
    return _remote["search"]


def score_files(
    inputs: Any,
    output: Any,
    *,
    address: str | None = None,
    workers: int | None = None,
    gpus_per_worker: float = 0.0,
    cpus_per_worker: float = 1.0,
    actor_options: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> ShardedRunResult:
    """:func:`instructfast.score_files` with the per-row work on a Ray cluster (same outputs, markers, resume)."""
    engine = RayEngine(
        address=address,
        workers=workers,
        gpus_per_worker=gpus_per_worker,
        cpus_per_worker=cpus_per_worker,
        actor_options=actor_options,
    )
    return _score_files(inputs, output, row_runner=engine.row_runner(), **kwargs)


__all__ = ["RayEngine", "ScorerActor", "score", "score_files"]
