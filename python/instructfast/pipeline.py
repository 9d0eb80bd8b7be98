"""File runs: one file, or a folder (or glob) of shards, with bounded memory and resumable at every phase.

A run has three phases, each checkpointed (:mod:`instructfast.checkpoints`):

1. **per-row work**, shard by shard: the row-scoped indicators' columns and the pool indicators'
   embeddings go into part files as they are computed; an interrupted shard resumes after its
   last complete part;
2. **the pool pass** (``knn_<i>``): once every shard's embeddings are on disk, one search over
   the union of all shards (``knn_scope="union"``, the default: the paper's KNN-i is over the
   dataset) or one per shard (``"shard"``), reading the stored vectors memory-mapped;
3. **the final write**: each shard's parts, pool columns and rule column are streamed into its
   output (written under a temporary name and renamed, so an output that exists is complete).

A rerun of the same command skips what is done: a shard whose output is complete, a pool pass
already run over the same shards, per-row work already on disk. A shard whose input changed is
redone; under a union pool every other shard's per-row work is reused and every shard's
``knn_<i>`` is recomputed (the log says so). A folder run writes one output per shard mirroring
its relative path, its working state under ``OUT/.instructfast/`` and a manifest,
``OUT/_instructfast_manifest.json``. Single-file runs keep their working state in
``OUT.partial/`` and remove it once the output is written.

How the per-row work runs is pluggable: in this process (the default) or on a Ray cluster
(:mod:`instructfast.ray_engine`); the phases, checkpoints and markers are the same.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import gc
import hashlib
import json
import logging
import os
import shutil
import time as _time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from . import _faults
from ._api import keyword_only
from ._arrow import rebatch
from .checkpoints import ShardStore, write_json
from .errors import ArgumentError, InvalidTextError, ResumeError, SchemaError
from .indicators.base import NullCounter
from .io import FileSource, atomic_writer, detect_format, scan_file
from .models.registry import SLOTS, resolve, source_sha256
from .options import ScoreOptions
from .rules import Rule
from .run_record import RunRecord
from .scoring import REPORT_KEY, RowResult, Scorer, ScoreReport, warn_summary
from .shards import Inputs, Shard, discover, fingerprint, output_path
from .sidecar import canonical_hashes, key_columns
from .summary import Summary

log = logging.getLogger("instructfast")

WORK = ".instructfast"
MANIFEST = "_instructfast_manifest.json"
EMBEDDING_COLUMN = "embedding"
# A part's text hash of each row: checked against the input when the output is written, and the sidecar's
# _text_hash. Named apart from any input column (a part holds no input column but the sidecar's id).
PART_HASH = "__instructfast_text_hash"


@dataclass
class RowJob:
    """One shard's per-row work, as a row runner receives it."""

    shard: Shard
    source: FileSource
    scorer: Scorer
    start: int
    batch_rows: int
    text_columns: tuple[str, ...] = ()
    max_record_bytes: int = 1 << 30


RowRunner = Callable[[Sequence[RowJob]], Iterator[tuple[int, RowResult]]]
"""Runs shards' per-row work, each from its row ``start``: yields (job index, :class:`RowResult`) with the
jobs in the order given and each job's batches in row order."""


def local_rows(jobs: Sequence[RowJob]) -> Iterator[tuple[int, RowResult]]:
    """The default row runner: each shard's batches through its scorer in this process."""
    for i, job in enumerate(jobs):
        offset = job.start
        for batch in _skip_rows(rebatch(job.source.reader(), job.batch_rows), job.start):
            try:
                res = job.scorer.score_rows(batch, offset=offset)
            except InvalidTextError as e:
                raise in_file(e, job.source) from None
            yield i, res
            offset += batch.num_rows


def in_file(e: InvalidTextError, src: FileSource) -> InvalidTextError:
    """The scorer's "row N: ..." as "data.jsonl:LINE:COLUMN: field ...": where to look in the file."""
    if e.row is None or e.detail is None:
        return e
    detail = e.detail
    if src.format in ("json", "jsonl") and e.column:
        detail = detail.replace(f"column `{e.column}`", f"field `{e.column}`", 1)
    err = InvalidTextError(f"{src.locate(e.row)}: {detail}")
    err.row, err.column, err.byte, err.detail = e.row, e.column, e.byte, e.detail
    return err


@dataclass
class ShardResult:
    """What a run did with one shard."""

    rel: str
    output: Path
    rows: int
    status: str  # "written", "skipped" (its output was complete), or "rewritten" (new pool values)
    resumed_rows: int = 0
    changed: bool = False


@dataclass
class FileRunResult:
    """A single-file run's output, rows, rows resumed from checkpoints, report and summary."""

    output: Path
    rows: int
    resumed_rows: int
    report: ScoreReport
    summary: Summary


@dataclass
class ShardedRunResult:
    """A folder run: one :class:`ShardResult` per shard, the merged report and summary, the manifest."""

    output: Path
    shards: list[ShardResult]
    rows: int
    report: ScoreReport
    summary: Summary
    manifest: Path
    log: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------ helpers


def _skip_rows(batches: Iterator[pa.RecordBatch], n: int) -> Iterator[pa.RecordBatch]:
    for b in batches:
        if n >= b.num_rows:
            n -= b.num_rows
            continue
        if n:
            b = b.slice(n)
            n = 0
        yield b


class _RowTaker:
    """Rows from a stream of batches, ``k`` at a time, whatever the stream's own batch sizes."""

    def __init__(self, batches: Iterator[pa.RecordBatch]) -> None:
        self._batches = batches
        self._held: list[pa.RecordBatch] = []
        self._rows = 0

    def take(self, k: int) -> pa.RecordBatch:
        """The next ``k`` rows (fewer when the stream ends first), as one batch."""
        while self._rows < k:
            b = next(self._batches, None)
            if b is None:
                break
            self._held.append(b)
            self._rows += b.num_rows
        table = pa.Table.from_batches(self._held)
        rest = table.slice(k)
        self._held = rest.to_batches()
        self._rows = rest.num_rows
        head = table.slice(0, k).combine_chunks()
        return head.to_batches()[0] if head.num_rows else pa.RecordBatch.from_pylist([], schema=table.schema)


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def _check_positive(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        msg = f"`{name}` must be a positive integer, got {value!r}"
        raise ArgumentError(msg)
    return value


def _minus(notes: Mapping[str, Mapping[str, int]], less: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for col, what in notes.items():
        kept = {w: int(n) - int(less.get(col, {}).get(w, 0)) for w, n in what.items()}
        kept = {w: n for w, n in kept.items() if n}
        if kept:
            out[col] = kept
    return out


def _unit_rows(vec: np.ndarray) -> np.ndarray:
    """float32 rows, re-normalised when stored in float16 (its rounding moves norms by ~1e-3)."""
    if vec.dtype == np.float32:
        return vec
    out = vec.astype(np.float32)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    np.divide(out, norms, out=out, where=norms > 0)
    return out


class _Run:
    """One file run: inputs, outputs, settings; the three phases (see the module docstring)."""

    def __init__(
        self,
        inputs: Inputs,
        *,
        outputs: Mapping[str, Path],
        work: Path,
        indicators: Sequence[str] | str | None,
        rule: str | Rule | Mapping[str, Any] | None,
        columns: Mapping[str, str] | None,
        input_format: str | None,
        output_format: str,
        opts: ScoreOptions,
        checkpoint_rows: int,
        restart: bool,
        sidecar: bool,
        id_column: str | None,
        keep_embeddings: bool,
        on_progress: Callable[[int], None] | None,
        row_runner: RowRunner,
    ) -> None:
        self.inputs = inputs
        self.outputs = outputs
        self.work = work
        self.indicators = indicators
        self.rule = rule
        self.columns = columns
        self.input_format = input_format
        self.output_format = output_format
        self.opts = opts
        self.checkpoint_rows = checkpoint_rows
        self.restart = restart
        self.sidecar = sidecar
        self.id_column = id_column
        self.keep_embeddings = keep_embeddings
        self.on_progress = on_progress
        self.row_runner = row_runner
        self.text_cols = tuple(columns.values()) if columns else ()
        self._scorers: dict[str, Scorer] = {}
        self.messages: list[str] = []
        self.run_record = RunRecord.start()
        self.settings = self._settings()
        self.stores: dict[str, ShardStore] = {}
        self.pool_facts: dict[str, dict[str, Any]] = {}  # pool fingerprint -> its search's notes and methods
        self.started = _time.perf_counter()

    # ----------------------------------------------------------------- plumbing

    def say(self, message: str) -> None:
        self.messages.append(message)
        log.info(message)

    def _settings(self) -> str:
        """Fingerprint of everything that decides the values: a stored partial run must match it."""
        rule = self.rule.to_dict() if isinstance(self.rule, Rule) else self.rule
        models = {}
        for slot in SLOTS:
            try:
                src = resolve(slot, self.opts.models)
            except Exception:  # an unavailable slot simply takes no part
                continue
            models[slot] = {"kind": src.kind, "sha256": source_sha256(src.location) or src.location}
        return _digest(
            {
                "indicators": self.indicators,
                "rule": rule,
                "columns": dict(self.columns or {}),
                "options": {k: repr(v) for k, v in self.opts.to_flat().items()},
                "models": models,
                "output": [self.output_format, self.sidecar, self.id_column, self.keep_embeddings],
            }
        )

    def source(self, shard: Shard) -> FileSource:
        return scan_file(
            shard.path,
            format=self.input_format,
            batch_rows=self.opts.batch_rows,
            text_columns=self.text_cols,
            max_record_bytes=self.opts.input.max_record_bytes,
        )

    def scorer(self, source: FileSource) -> Scorer:
        """One scorer per input schema (shards of one corpus may differ), models loaded once."""
        key = source.schema.to_string()
        if key not in self._scorers:
            scorer = Scorer(
                source.schema, indicators=self.indicators, rule=self.rule, columns=self.columns, options=self.opts
            )
            if self.id_column is not None and self.id_column not in source.schema.names:
                msg = f"{source.path}: `id_column` {self.id_column!r} not found; found columns: {source.schema.names}"
                raise SchemaError(msg)
            if self.keep_embeddings and EMBEDDING_COLUMN in source.schema.names:
                msg = f"{source.path}: keep_embeddings would write `{EMBEDDING_COLUMN}`, which the input already has"
                raise SchemaError(msg)
            self._scorers[key] = scorer
        return self._scorers[key]

    def store(self, shard: Shard, known: Mapping[str, Any] | None) -> ShardStore:
        if shard.rel not in self.stores:
            self.stores[shard.rel] = ShardStore(
                self.work / "shards" / shard.rel,
                settings=self.settings,
                source=fingerprint(shard, known),
                restart=self.restart,
                vector_dtype=self.opts.knn.embedding_dtype,
            )
        return self.stores[shard.rel]

    # ----------------------------------------------------------------- phase 1: per-row work

    def rows_phase(self) -> None:
        jobs: list[RowJob] = []
        for shard in self.inputs.shards:
            store = self.store(shard, self._known(shard))
            if store.changed:
                self.say(f"{shard.rel}: the input changed since the last run; its work is redone")
            if store.rows_complete:
                if self.on_progress:
                    self.on_progress(store.rows_done)
                continue
            if store.rows_done:
                self.say(f"{shard.rel}: resuming per-row work after {store.rows_done} rows")
                if self.on_progress:
                    self.on_progress(store.rows_done)
            src = self.source(shard)
            jobs.append(RowJob(shard, src, self.scorer(src), store.rows_done, self.opts.batch_rows, self.text_cols,
                               self.opts.input.max_record_bytes))  # fmt: skip
        if not jobs:
            return
        # Results come job by job, in order: a job is finished once the next one's rows start.
        done = 0
        current = None
        try:
            for i, res in self.row_runner(jobs):
                while done < i:
                    self.stores[jobs[done].shard.rel].finish_rows()
                    done += 1
                current = self.stores[jobs[i].shard.rel]
                current.append(self._kept(res.batch, jobs[i]), res.vectors, res.nulls.as_dict(),
                               res.nulls.notes_dict(), part_rows=self.checkpoint_rows)  # fmt: skip
                if self.on_progress:
                    self.on_progress(res.batch.num_rows)
        except BaseException:
            if current is not None:
                current.abandon_open_part()
            raise
        while done < len(jobs):
            self.stores[jobs[done].shard.rel].finish_rows()
            done += 1

    def _kept(self, batch: pa.RecordBatch, job: RowJob) -> pa.RecordBatch:
        """What a part keeps of a scored batch: the rows' text hashes, the indicator columns and a
        sidecar's id column. The input columns are read from the shard again when the output is
        written: a part holding whole rows would double the disk a run needs."""
        inputs = set(job.source.schema.names)
        cols = {PART_HASH: canonical_hashes(job.scorer.resolved.canonical(batch))}
        if self.sidecar and self.id_column is not None:
            cols[self.id_column] = batch.column(self.id_column)
        cols.update((c, batch.column(c)) for c in batch.schema.names if c not in inputs)
        return pa.RecordBatch.from_arrays(list(cols.values()), names=list(cols))

    def _known(self, shard: Shard) -> Mapping[str, Any] | None:
        from .checkpoints import read_state

        state = read_state(self.work / "shards" / shard.rel)
        return state.get("source") if state else None

    # ----------------------------------------------------------------- phase 2: the pool pass

    def pool_names(self) -> list[str]:
        names: list[str] = []
        for store in self.stores.values():
            for entry in store.state["rows"]["parts"]:
                names += [n for n in entry["vectors"] if n not in names]
        return names

    def pool_groups(self) -> list[list[Shard]]:
        shards = self.inputs.shards
        return [list(shards)] if self.opts.knn.scope == "union" else [[s] for s in shards]

    def pool_fingerprint(self, group: Sequence[Shard]) -> str:
        return _digest(
            {
                "settings": self.settings,
                "shards": [
                    (s.rel, self.stores[s.rel].state["source"]["sha256"], self.stores[s.rel].rows_done) for s in group
                ],
            }
        )

    def pool_phase(self) -> dict[str, str]:
        """Search every pool (reusing one already searched over the same shards); shard -> pool fingerprint."""
        names = self.pool_names()
        fps: dict[str, str] = {}
        if not names:
            return fps
        facts_path = self.work / "pool" / "facts.json"
        stored: dict[str, Any] = json.loads(facts_path.read_text()) if facts_path.exists() else {}
        for group in self.pool_groups():
            fp = self.pool_fingerprint(group)
            for s in group:
                fps[s.rel] = fp
            if fp in stored and all(self.stores[s.rel].pool_done(fp) for s in group):
                self.pool_facts[fp] = stored[fp]
                continue
            if self.opts.knn.scope == "union" and any(self.stores[s.rel].state["pool"] for s in group):
                self.say(f"the pool of {len(group)} shard(s) changed: knn recomputed for every shard")
            by_name = {ind.name: ind for ind in self._template_scorer().pool_indicators}
            facts: dict[str, Any] = {"notes": {}, "methods": {}}
            results: dict[str, dict[str, tuple[np.ndarray, int]]] = {s.rel: {} for s in group}
            for name in names:
                ind = by_name[name]
                vectors, offsets = self._pool_vectors(name, group)
                _faults.point("pool:search")
                dist = ind.search_pool(vectors)
                notes = NullCounter()
                method = ind.pool_search_facts(notes)
                facts["notes"].update(notes.notes_dict())
                if method:
                    facts["methods"][name] = method
                for s, (lo, hi) in zip(group, offsets, strict=True):
                    results[s.rel][name] = (dist[lo:hi], vectors.shape[0])
                del vectors
                (self.work / "pool" / "vectors.f32").unlink(missing_ok=True)
            for s in group:
                self.stores[s.rel].save_pool(fp, results[s.rel])
                _faults.point("pool:saved")
            stored[fp] = facts
            facts_path.parent.mkdir(parents=True, exist_ok=True)
            write_json(facts_path, stored)
            self.pool_facts[fp] = facts
        return fps

    def _pool_vectors(self, name: str, group: Sequence[Shard]) -> tuple[np.ndarray, list[tuple[int, int]]]:
        """Every member's unit vector, one float32 memory-mapped matrix; each shard's row range in it."""
        sizes = [self.stores[s.rel].members(name) for s in group]
        total = sum(sizes)
        dim = 0
        for s in group:
            for vec_path, _ in self.stores[s.rel].vector_files(name):
                shape = np.load(vec_path, mmap_mode="r").shape
                if len(shape) == 2 and shape[1]:
                    dim = int(shape[1])
                    break
            if dim:
                break
        offsets, start = [], 0
        for n in sizes:
            offsets.append((start, start + n))
            start += n
        if total == 0 or dim == 0:
            return np.zeros((total, max(dim, 1)), np.float32), offsets
        path = self.work / "pool" / "vectors.f32"
        path.parent.mkdir(parents=True, exist_ok=True)
        # A memory-mapped float32 file: the search reads it in blocks, so the pool's vectors never
        # need to fit in memory beside the index; pages are read back from disk as needed.
        mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(total, dim))
        row = 0
        for s in group:
            for vec_path, _ in self.stores[s.rel].vector_files(name):
                vec = np.load(vec_path, mmap_mode="r")
                if vec.shape[0]:
                    mm[row : row + vec.shape[0]] = _unit_rows(np.asarray(vec))
                    row += vec.shape[0]
        mm.flush()
        return np.load(path, mmap_mode="r"), offsets

    def _template_scorer(self) -> Scorer:
        if self._scorers:
            scorer = next(iter(self._scorers.values()))
        else:
            scorer = self.scorer(self.source(self.inputs.shards[0]))
        scorer.start()
        return scorer

    # ----------------------------------------------------------------- phase 3: the final write

    def write_phase(self, pool_fps: Mapping[str, str]) -> tuple[list[ShardResult], ScoreReport, Summary]:
        results: list[ShardResult] = []
        total_nulls = NullCounter()
        summary: Summary | None = None
        rows = 0
        first: dict[str, Any] = {}
        for shard in self.inputs.shards:
            store = self.stores[shard.rel]
            out = self.outputs[shard.rel]
            fp = _digest({"settings": self.settings, "source": store.state["source"]["sha256"],
                          "pool": pool_fps.get(shard.rel)})  # fmt: skip
            rep_dict: dict[str, Any]
            if store.output_done(fp) and out.exists():
                rep_dict = store.state["output"]["report"]
                status = "skipped"
                self.say(f"{shard.rel}: already written, skipped")
                if summary is None:
                    summary = Summary(list(rep_dict.get("columns", [])))
                for b in self._read_output_columns(out, summary.columns):
                    summary.update(b)
            else:
                status = "rewritten" if store.state["output"] else "written"
                if store.resumed_rows and store.resumed_rows == store.rows_done:
                    self.say(f"{shard.rel}: per-row work reused ({store.rows_done} rows), output written again")
                rep_dict, summary = self._write_shard(shard, store, out, summary, pool_fps.get(shard.rel))
                store.mark_output(fp, out, store.rows_done, rep_dict)
                self._update_manifest()
            rows += store.rows_done
            first = first or rep_dict
            # a pool search's caveats sit in every report of its shards: the run counts them once
            own = _minus(
                rep_dict.get("notes", {}), self.pool_facts.get(pool_fps.get(shard.rel, ""), {}).get("notes", {})
            )
            total_nulls.extend(rep_dict.get("nulls", {}), own)
            results.append(ShardResult(shard.rel, out, store.rows_done, status, store.resumed_rows, store.changed))
        for facts in self.pool_facts.values():
            total_nulls.extend({}, facts.get("notes", {}))
        report = self._overall_report(total_nulls, rows, first)
        return results, report, summary or Summary([])

    def _read_output_columns(self, path: Path, columns: Sequence[str]) -> Iterator[pa.RecordBatch]:
        src = scan_file(path, batch_rows=self.opts.batch_rows)
        keep = [c for c in columns if c in src.schema.names]
        for b in src.batches():
            yield b.select(keep)

    def _write_shard(
        self, shard: Shard, store: ShardStore, out: Path, summary: Summary | None, pool_fp: str | None
    ) -> tuple[dict[str, Any], Summary]:
        src = self.source(shard)
        scorer = self.scorer(src)
        scorer.start()
        nulls = NullCounter()
        nulls.extend(store.nulls, store.notes)
        n = store.rows_done
        pool_cols: dict[str, pa.Array] = {}
        for ind in scorer.pool_indicators:
            dist, members = store.pool_result(ind.name)
            pool_cols.update(ind.pool_columns(n, store.positions(ind.name), dist, members, nulls, recall_notes=False))
        facts = self.pool_facts.get(pool_fp or "", {})
        for col, what in facts.get("notes", {}).items():
            for note, k in what.items():
                nulls.note(col, note, k)
        vectors = self._embedding_parts(store, scorer) if self.keep_embeddings else None
        indicator_cols = [c for c in scorer.output_schema().names if c not in src.schema.names]
        if summary is None:
            summary = Summary(indicator_cols)
        report = dataclasses.replace(scorer.report, rows=n, nulls=nulls.as_dict(), notes=nulls.notes_dict())
        writer_schema: pa.Schema | None = None
        offset = 0
        # a sidecar needs only what the parts hold; a full output takes the input columns from the shard again
        rows = None if self.sidecar else _RowTaker(rebatch(src.reader(), self.opts.batch_rows))
        with atomic_writer(out, self._out_schema(scorer, src), format=self.output_format) as w:
            for i, part in enumerate(store.parts()):
                k = part.num_rows
                hashes = part.column(PART_HASH)
                names = [c for c in indicator_cols if c in part.schema.names]  # the per-row ones
                indicators = [part.column(c) for c in names]
                if rows is None:
                    batch = pa.RecordBatch.from_arrays(indicators, names=names)
                else:
                    data = scorer.checked_rows(rows.take(k), offset=offset)
                    if data.num_rows != k or not canonical_hashes(scorer.resolved.canonical(data)).equals(hashes):
                        # Its size and time may be unchanged (they were: the hash was not taken again), so
                        # only dropping the shard's work makes the next run score it afresh.
                        store.discard()
                        msg = (
                            f"{shard.path}: rows {offset}-{offset + k - 1} differ from those scored: the input "
                            "changed during the run; run the command again (this shard is scored afresh)"
                        )
                        raise ResumeError(msg)
                    batch = pa.RecordBatch.from_arrays([*data.columns, *indicators], names=[*data.schema.names, *names])
                sl = {c: a.slice(offset, k) for c, a in pool_cols.items()}
                full = scorer.finish_batch(batch, sl, nulls)
                if vectors is not None:
                    full = full.append_column(EMBEDDING_COLUMN, vectors(i, offset, k))
                if self.sidecar:
                    ids = part.column(self.id_column) if self.id_column is not None else None
                    key = key_columns(hashes, ids, shard=shard.rel, offset=offset, id_column=self.id_column)
                    keep = [c for c in full.schema.names if c in indicator_cols or c == EMBEDDING_COLUMN]
                    full = pa.RecordBatch.from_arrays([*key.values(), *(full.column(c) for c in keep)],
                                                      names=[*key, *keep])  # fmt: skip
                writer_schema = writer_schema or full.schema
                w.write(full)
                summary.update(full)
                offset += k
                _faults.point("write:batch")
            report = dataclasses.replace(report, nulls=nulls.as_dict(), notes=nulls.notes_dict())
            report.run = self._run_record(scorer, pool_fp)
            w.metadata[REPORT_KEY] = report.to_json().encode()
        return json.loads(report.to_json()), summary

    def _out_schema(self, scorer: Scorer, src: FileSource) -> pa.Schema:
        schema = scorer.output_schema()
        if self.keep_embeddings:
            schema = schema.append(pa.field(EMBEDDING_COLUMN, pa.list_(pa.float32())))
        if not self.sidecar:
            return schema
        indicator = [f for f in schema if f.name not in src.schema.names]
        if self.id_column is not None:
            key = [src.schema.field(self.id_column)]
        else:
            key = [pa.field("_shard", pa.string()), pa.field("_row", pa.int64())]
        return pa.schema([*key, pa.field("_text_hash", pa.int64()), *indicator])

    def _embedding_parts(self, store: ShardStore, scorer: Scorer) -> Callable[[int, int, int], pa.Array]:
        names = [ind.name for ind in scorer.pool_indicators]
        if not names:
            msg = "keep_embeddings needs a pool indicator (knn_<i>) in the run: there are no embeddings to keep"
            raise ArgumentError(msg)
        files = store.vector_files(names[0])

        def column(part: int, offset: int, n: int) -> pa.Array:
            vec_path, pos_path = files[part]
            vec = _unit_rows(np.load(vec_path))
            pos = np.load(pos_path) - offset
            dim = vec.shape[1] if vec.ndim == 2 else 0
            rows: list[list[float] | None] = [None] * n
            for j, p in enumerate(pos.tolist()):
                rows[p] = vec[j].tolist()
            return pa.array(rows, pa.list_(pa.float32())) if dim else pa.nulls(n, pa.list_(pa.float32()))

        return column

    def _run_record(self, scorer: Scorer, pool_fp: str | None) -> RunRecord:
        run = dataclasses.replace(scorer.report.run, implementations=dict(scorer.report.run.implementations))
        run.started = self.run_record.started
        run.seconds = _time.perf_counter() - self.started
        if pool_fp is not None:
            run.options = dict(run.options, knn_scope=self.opts.knn.scope)
            for name, method in self.pool_facts.get(pool_fp, {}).get("methods", {}).items():
                run.implementations[f"{name} search"] = method
        return run

    def _overall_report(self, nulls: NullCounter, rows: int, first: Mapping[str, Any]) -> ScoreReport:
        """The run's report: the shards' counts added up, the run record of this run."""
        if self._scorers:
            scorer = next(iter(self._scorers.values()))
            base = scorer.report
            run = self._run_record(scorer, next(iter(self.pool_facts), None))
        else:  # every shard was already written: no model was loaded, the first shard's report says what ran
            base = ScoreReport.from_json(json.dumps(first))
            run = base.run
        if len(self.inputs.shards) == 1 and first:
            # one output file: the run record returned is the one in its footer, not a later reading of the clock
            run = ScoreReport.from_json(json.dumps(first)).run
        report = dataclasses.replace(base, rows=rows, nulls=nulls.as_dict(), notes=nulls.notes_dict())
        report.run = run
        report.seconds = _time.perf_counter() - self.started
        return report

    # ----------------------------------------------------------------- the manifest

    def manifest(self) -> dict[str, Any]:
        shards = []
        for shard in self.inputs.shards:
            store = self.stores.get(shard.rel)
            state = store.state if store else {}
            out = state.get("output", {}) if state else {}
            rows_state = state.get("rows", {}) if state else {}
            shards.append(
                {
                    "input": state.get("source") if state else {"rel": shard.rel},
                    "output": os.path.relpath(self.outputs[shard.rel], self.outputs_root()),
                    "status": "done" if out else ("scored" if rows_state.get("complete") else "pending"),
                    "rows": rows_state.get("rows", 0),
                }
            )
        template = next(iter(self._scorers.values()), None)
        return {
            "format": "instructfast-run",
            "version": 1,
            "settings": self.settings,
            "indicators": template.plan.columns() if template else self.indicators,
            "rule": template.rule.name if template and template.rule else None,
            "layout": {
                "output_format": self.output_format,
                "sidecar": self.sidecar,
                "id_column": self.id_column,
                "keep_embeddings": self.keep_embeddings,
                "knn_scope": self.opts.knn.scope,
            },  # fmt: skip
            "options": self.opts.to_flat(),
            "models": (template.report.run.models if template else []),
            "versions": self.run_record.versions,
            "updated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "shards": shards,
        }

    def outputs_root(self) -> Path:
        return self.work.parent

    def _update_manifest(self) -> None:
        if not self.inputs.single_file:
            write_json(self.outputs_root() / MANIFEST, self.manifest())

    # ----------------------------------------------------------------- all phases

    def run(self) -> tuple[list[ShardResult], ScoreReport, Summary]:
        try:
            self.rows_phase()
            self._update_manifest()
            _release_memory()
            fps = self.pool_phase()
            _release_memory()
            results, report, summary = self.write_phase(fps)
            self._update_manifest()
        finally:
            for scorer in self._scorers.values():
                scorer.close()
        return results, report, summary


def _release_memory() -> None:
    """Hand memory freed by the last phase back to the system before the next one starts.

    Arrow's allocator (mimalloc or jemalloc) keeps freed pages for reuse; the per-row phase's
    batches leave hundreds of MiB of them, which would otherwise sit under the pool pass's index
    and memory-mapped vectors and count against the run's peak.
    """
    gc.collect()
    pa.default_memory_pool().release_unused()


def _run_options(
    *,
    models: Mapping[str, str] | None,
    threads: int | None,
    batch_rows: int,
    mtld_threshold: float | None,
    device: str | None,
    options: Mapping[str, object] | None,
    checkpoint_rows: int,
) -> ScoreOptions:
    _check_positive("checkpoint_rows", checkpoint_rows)
    return ScoreOptions.build(
        threads=threads,
        batch_rows=batch_rows,
        mtld_threshold=mtld_threshold,
        models=models,
        device=device,
        options=options,
    )


@keyword_only("indicators", "rule", "columns")
def score_file(
    input: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    indicators: Sequence[str] | str | None = None,
    rule: str | Rule | Mapping[str, Any] | None = None,
    columns: Mapping[str, str] | None = None,
    input_format: str | None = None,
    output_format: str | None = None,
    models: Mapping[str, str] | None = None,
    threads: int | None = None,
    batch_rows: int = 65_536,
    mtld_threshold: float | None = None,
    device: str | None = None,
    options: Mapping[str, object] | None = None,
    checkpoint_rows: int = 100_000,
    restart: bool = False,
    sidecar: bool = False,
    id_column: str | None = None,
    keep_embeddings: bool = False,
    on_progress: Callable[[int], None] | None = None,
    row_runner: RowRunner | None = None,
) -> FileRunResult:
    """Score a record file into another file, resumable after interruption at any phase.

    Parameters are those of :func:`instructfast.score`, plus the input/output paths and
    formats, ``checkpoint_rows`` (rows per checkpoint part), ``restart`` (discard a partial
    run instead of resuming it), ``sidecar`` (write the join key and indicator columns only,
    see :mod:`instructfast.sidecar`), ``id_column`` (the sidecar's key column),
    ``keep_embeddings`` (add the ``knn_<i>`` embeddings as an ``embedding`` column), and
    ``on_progress(n)``, called with each batch's row count. For a folder or glob of shards use
    :func:`score_files`.

    Examples
    --------
    >>> import tempfile, os, pyarrow as pa, instructfast
    >>> d = tempfile.mkdtemp()
    >>> instructfast.write_table(pa.table({"instruction": ["q"], "output": ["a b a"]}), os.path.join(d, "in.jsonl"))
    >>> r = score_file(os.path.join(d, "in.jsonl"), os.path.join(d, "out.parquet"), indicators=["mtld"])
    >>> r.rows, instructfast.read_table(r.output).column("mtld").to_pylist()
    (1, [3.0])
    """
    opts = _run_options(models=models, threads=threads, batch_rows=batch_rows, mtld_threshold=mtld_threshold,
                        device=device, options=options, checkpoint_rows=checkpoint_rows)  # fmt: skip
    out = Path(output)
    out_fmt = detect_format(out, output_format)
    inputs = discover(input)
    if not inputs.single_file:
        msg = f"`input` {os.fspath(input)!r} is a folder or pattern: use score_files(...) (CLI: the same command)"
        raise ArgumentError(msg)
    shard = inputs.shards[0]
    work = out.with_name(out.name + ".partial")
    run = _Run(
        inputs, outputs={shard.rel: out}, work=work, indicators=indicators, rule=rule, columns=columns,
        input_format=input_format, output_format=out_fmt, opts=opts, checkpoint_rows=checkpoint_rows,
        restart=restart, sidecar=sidecar, id_column=id_column, keep_embeddings=keep_embeddings,
        on_progress=on_progress, row_runner=row_runner or local_rows,
    )  # fmt: skip
    results, report, summary = run.run()
    shutil.rmtree(work, ignore_errors=True)
    warn_summary(report, stacklevel=4)  # user -> keyword_only wrapper -> score_file -> here
    return FileRunResult(out, results[0].rows, results[0].resumed_rows, report, summary)


def score_files(
    inputs: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    indicators: Sequence[str] | str | None = None,
    rule: str | Rule | Mapping[str, Any] | None = None,
    columns: Mapping[str, str] | None = None,
    input_format: str | None = None,
    output_format: str = "parquet",
    models: Mapping[str, str] | None = None,
    threads: int | None = None,
    batch_rows: int = 65_536,
    mtld_threshold: float | None = None,
    device: str | None = None,
    options: Mapping[str, object] | None = None,
    checkpoint_rows: int = 100_000,
    restart: bool = False,
    sidecar: bool = False,
    id_column: str | None = None,
    keep_embeddings: bool = False,
    on_progress: Callable[[int], None] | None = None,
    row_runner: RowRunner | None = None,
) -> ShardedRunResult:
    """Score a folder (or glob, or one file) of record shards into one output per shard under ``output``.

    Outputs mirror the shards' relative paths with ``output_format``'s extension; the run's
    state lives under ``output/.instructfast/`` and its manifest (inputs with size, time and
    SHA-256, indicators, models with hashes, options, versions, each shard's status and rows)
    in ``output/_instructfast_manifest.json``. Rerunning the same call skips finished shards,
    resumes unfinished ones, and redoes shards whose input changed. ``knn_<i>`` is computed over
    all shards together unless ``options={"knn_scope": "shard"}``. Other parameters are those of
    :func:`score_file`.

    Examples
    --------
    >>> import tempfile, os, pyarrow as pa, instructfast
    >>> d = tempfile.mkdtemp()
    >>> for i in range(2):
    ...     t = pa.table({"instruction": ["q"], "output": [f"a b a {i}"]})
    ...     instructfast.write_table(t, os.path.join(d, "in", f"part-{i}.jsonl"))
    >>> r = instructfast.score_files(os.path.join(d, "in"), os.path.join(d, "out"), indicators=["mtld"])
    >>> [(s.rel, s.rows, s.output.name) for s in r.shards]
    [('part-0.jsonl', 1, 'part-0.parquet'), ('part-1.jsonl', 1, 'part-1.parquet')]
    >>> [s.status for s in instructfast.score_files(os.path.join(d, "in"), os.path.join(d, "out"), indicators=["mtld"]).shards]
    ['skipped', 'skipped']
    """
    opts = _run_options(models=models, threads=threads, batch_rows=batch_rows, mtld_threshold=mtld_threshold,
                        device=device, options=options, checkpoint_rows=checkpoint_rows)  # fmt: skip
    fmt = detect_format(f"x.{output_format}", output_format)
    out = Path(output)
    if out.exists() and not out.is_dir():
        msg = f"`output` {out} is a file; a run over several shards writes a folder"
        raise ArgumentError(msg)
    found = discover(inputs, exclude=out)
    found = Inputs(found.shards, found.root, single_file=False)  # one file into a folder still gets a manifest
    outputs = {s.rel: output_path(out, s, fmt) for s in found.shards}
    run = _Run(
        found, outputs=outputs, work=out / WORK, indicators=indicators, rule=rule, columns=columns,
        input_format=input_format, output_format=fmt, opts=opts, checkpoint_rows=checkpoint_rows, restart=restart,
        sidecar=sidecar, id_column=id_column, keep_embeddings=keep_embeddings, on_progress=on_progress,
        row_runner=row_runner or local_rows,
    )  # fmt: skip
    results, report, summary = run.run()
    warn_summary(report, stacklevel=3)
    return ShardedRunResult(out, results, report.rows, report, summary, out / MANIFEST, run.messages)


__all__ = [
    "EMBEDDING_COLUMN",
    "MANIFEST",
    "FileRunResult",
    "RowJob",
    "RowRunner",
    "ShardResult",
    "ShardedRunResult",
    "local_rows",
    "score_file",
    "score_files",
]
