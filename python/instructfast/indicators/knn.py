"""``knn_<i>``: Euclidean distance from a record's unit embedding to its i-th nearest *other* record.

Ask for any ``knn_<i>`` column (default ``knn_6``, the paper's); several ranks come from one search.
The pool is the table being scored: every row with an embedding is a member, self is excluded by
position (duplicates are neighbours at distance 0). With fewer than i + 1 members the value is
null with a reason. Rows that cannot be embedded (null output, empty text, null / zero /
non-finite user vector) are null with a reason and are not pool members.

Options (``score(..., options={...})``, CLI ``--option KEY=VALUE``):

* ``knn_vectors=COLUMN``: use that list column's embeddings (any dim) instead of the embedder;
* ``knn_pool=DIR``: measure against a reference pool from ``instructfast index build`` instead;
  the indicator then streams (each row depends only on itself and the pool). By default the
  scored rows are *not* taken to be pool members, so nothing is excluded;
  ``knn_table_in_pool=true`` says they are: each row skips its own copy, the nearest pool
  member within ``knn_self_tol`` (1e-4) -- a duplicate of it is indistinguishable and counts as
  that copy, which gives the same distance. Rows with no such member are counted in the notes;
* ``knn_exact_max`` (200000): pools up to this size are searched exactly; larger ones with a faiss
  IVF index, ``nprobe`` doubled from ``knn_nprobe`` (16) until recall@i measured against exact
  search on ``knn_recall_sample`` (1000) rows reaches ``knn_recall_target`` (0.95). The measured
  recall is in the report notes: "recall@i check: ..." counts of true neighbours checked and found;
* ``knn_backend`` (auto | faiss | torch): torch matmul top-k on CUDA (GPU machines without faiss),
  faiss otherwise; ``knn_nlist``, ``knn_seed``.
"""

from __future__ import annotations

import copy
import importlib.util
import re
import threading
from typing import Any, ClassVar, Literal

import numpy as np
import pyarrow as pa

from ..columns import CanonicalBatch
from ..errors import ArgumentError
from ..models.precision import Ask
from ..models.registry import slot_status
from ..neighbors import SearchReport
from ..options import ScoreOptions
from ..run_record import RunRecord
from .base import Availability, Indicator, NullCounter, OutputColumn, masked

COLUMN = OutputColumn(
    "knn_6", pa.float64(), "distance to the 6th nearest other record (unit embeddings)", pattern=r"knn_(\d+)"
)


def too_few(i: int, pool: bool) -> str:
    if pool:
        return f"reference pool has fewer than {i} members"
    return f"fewer than {i + 1} rows with embeddings in the pool"


def not_found(i: int) -> str:
    return f"approximate search found fewer than {i} neighbours"


def ranks(columns: tuple[str, ...]) -> list[int]:
    """Neighbour ranks from ``knn_<i>`` column names (i >= 1)."""
    out = []
    for c in columns:
        m = re.fullmatch(COLUMN.pattern or "", c)
        if not m or int(m.group(1)) < 1:
            msg = f"kNN columns are knn_<i> with i >= 1, got {c!r}"
            raise ArgumentError(msg)
        out.append(int(m.group(1)))
    return out


class Knn(Indicator):
    name = "knn"
    scope: Literal["row", "pool"] = "pool"
    models = ("embedder",)
    columns: ClassVar = (COLUMN,)

    def __init__(self, options: ScoreOptions, wanted: tuple[str, ...] | None = None) -> None:
        super().__init__(options, wanted)
        self.ks = ranks(self.wanted)
        knn = options.knn
        self.vectors_column = knn.vectors or None
        self.pool_dir = knn.pool or None
        self.table_in_pool = knn.table_in_pool
        self.self_tol = knn.self_tol
        self.index_options: dict[str, Any] = {
            "exact_max": knn.exact_max,
            "nprobe": knn.nprobe,
            "nlist": knn.nlist,
            "ivf_storage": knn.ivf_storage,
            "recall_target": knn.recall_target,
            "recall_sample": knn.recall_sample,
            "backend": knn.backend,
            "device": options.device,
            "threads": options.threads,
            "seed": knn.seed,
        }
        if self.pool_dir:
            self.scope = "row"  # each row depends only on itself and the fixed pool
        self.report: SearchReport | None = None  # the search(es) of this run, for Python callers
        # A reference-pool index tunes itself on its first search (nprobe) and merges reports:
        # threads sharing a Scorer search it one at a time.
        self._search_lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        # The Ray engine ships the indicator to its pool-search task: a lock does not pickle (nor
        # would it mean anything in another process), so the copy gets a fresh one.
        state = self.__dict__.copy()
        del state["_search_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._search_lock = threading.Lock()

    def output_columns(self) -> tuple[OutputColumn, ...]:
        return tuple(
            OutputColumn(c, pa.float64(), f"distance to the nearest other record number {i} (unit embeddings)")
            for c, i in zip(self.wanted, self.ks)
        )

    @classmethod
    def availability(cls, options: ScoreOptions) -> Availability:
        if importlib.util.find_spec("faiss") is None and importlib.util.find_spec("torch") is None:
            return Availability(False, "neither faiss nor torch is installed", "pip install faiss-cpu")
        if options.knn.vectors:
            return Availability(True, f"vectors from column `{options.knn.vectors}`")
        return Availability.of(slot_status("embedder", options.models))

    def start(self) -> None:
        from ..neighbors import choose_backend
        from ..pool_index import RecordVectors, ReferencePool

        opts = self.options
        # resolved once, before any embedding: a bad backend/device fails now, not after the pass
        backend, device = choose_backend(self.index_options["backend"], opts.device)
        self.index_options.update(backend=backend, device=device)
        self.source = RecordVectors(
            self.vectors_column,
            models=opts.models,
            device=opts.device,
            threads=opts.threads,
            runtime={**opts.embedder.runtime(opts.onnx), "verify": opts.model.verify_models},
            backend=opts.embedder.backend,
            precision=Ask(opts.embedder.precision, opts.model.precision),
        )
        # decided now, without loading the embedder: a precision this machine cannot run fails first
        self.precision = self.source.resolved_precision()
        self._parts: list[np.ndarray] = []
        self._positions: list[np.ndarray] = []
        self._rows = 0
        self._pool = None
        if self.pool_dir:
            pool = ReferencePool.load(self.pool_dir)
            if self.vectors_column is not None:
                self.source.dim = pool.dim  # user vectors must then match the pool's dim
            self.source.start()
            pool.check_vectors(self.source.identity())
            self._pool = pool
            self._index = pool.index(**self.index_options)

    def record(self, run: RunRecord) -> None:
        if self.vectors_column is not None:
            run.implementations["knn vectors"] = f"column `{self.vectors_column}`"
        else:
            run.add_model(self.source.model_record())
            self.record_precision(run)
        if self.pool_dir:
            run.implementations["knn pool"] = str(self.pool_dir)
        run.implementations["knn backend"] = f"{self.index_options['backend']} on {self.index_options['device']}"
        if self.report is not None:
            run.implementations["knn search"] = self.report.method

    # ------------------------------------------------------------ table as pool

    def embed(self, batch: CanonicalBatch, nulls: NullCounter) -> tuple[np.ndarray, np.ndarray]:
        """Unit vectors of the batch's usable rows and their positions in the batch; the rest counted by reason.

        The per-row half of a pool indicator: a file run checkpoints these vectors like any other
        per-row result, and searches them once every row is embedded (:meth:`search_pool`).
        """
        u, pos, reasons = self.source.encode(batch)
        self.note_precision(nulls, len(pos))
        for r, n in reasons.items():
            for c in self.wanted:
                nulls.add(c, r, n)
        return u, pos

    def observe(self, batch: CanonicalBatch, nulls: NullCounter) -> None:
        u, pos = self.embed(batch, nulls)
        self._parts.append(u)
        self._positions.append(pos + self._rows)
        self._rows += batch.num_rows

    def search_pool(self, vectors: np.ndarray) -> np.ndarray:
        """Distances ``[members, max rank]`` from every pool member to its nearest other members.

        ``vectors`` are the unit vectors of every member (a memory-mapped array is fine: it is read
        in blocks); a member is excluded from its own neighbours by position, so duplicates are
        neighbours at distance 0. Several calls (one pool per shard) add up in :attr:`report`.
        """
        from ..neighbors import NeighborIndex

        kmax = max(self.ks)
        members = vectors.shape[0]
        if members < 2:
            return np.full((members, kmax), np.inf)
        index = NeighborIndex(vectors, **self.index_options)
        dist, _, rep = index.search(
            index.vectors, kmax, exclude="position", query_ids=np.arange(members), recall_ks=self.ks
        )
        if self.report is None:
            self.report = rep
        else:
            self.report.merge(rep)
        return dist

    def pool_columns(
        self,
        n: int,
        positions: np.ndarray,
        dist: np.ndarray,
        members: int,
        nulls: NullCounter,
        *,
        recall_notes: bool = True,
    ) -> dict[str, pa.Array]:
        """The ``knn_<i>`` columns of ``n`` rows whose pool members (at ``positions``) have distances ``dist``.

        ``members`` is the size of the pool searched. A run that writes one pool's columns shard
        by shard passes ``recall_notes=False`` and counts the recall check once (:meth:`recall_notes`).
        """
        return self._columns(n, positions, dist, members - 1, nulls, recall_notes=recall_notes)

    def finalize(self, nulls: NullCounter) -> dict[str, pa.Array]:
        n = self._rows
        pos = np.concatenate(self._positions) if self._positions else np.zeros(0, np.int64)
        dim = self.source.dim or 0
        vecs = np.concatenate(self._parts) if self._parts else np.zeros((0, dim), np.float32)
        self._parts = []
        dist = self.search_pool(vecs)
        return self.pool_columns(n, pos, dist, vecs.shape[0], nulls)

    # ------------------------------------------------------------ reference pool

    def compute(self, batch: CanonicalBatch, nulls: NullCounter) -> dict[str, pa.Array]:
        u, pos, reasons = self.source.encode(batch)
        self.note_precision(nulls, len(pos))
        for r, n in reasons.items():
            for c in self.wanted:
                nulls.add(c, r, n)
        kmax = max(self.ks)
        exclude: Literal["match", "none"] = "match" if self.table_in_pool else "none"
        with self._search_lock:
            dist, _, rep = self._index.search(u, kmax, exclude=exclude, self_tol=self.self_tol, recall_ks=self.ks)
            if self.report is None:
                self.report = copy.deepcopy(rep)
            else:
                self.report.merge(rep)
        if self.table_in_pool:
            for c in self.wanted:
                nulls.note(c, "row not found in the reference pool (nothing excluded)", rep.no_self_match)
        assert self._pool is not None  # compute() runs only with a reference pool, loaded in start()
        eligible = self._pool.count - (1 if self.table_in_pool else 0)
        return self._columns(batch.num_rows, pos, dist, eligible, nulls, rep)

    # ------------------------------------------------------------ shared

    def _columns(
        self,
        n: int,
        pos: np.ndarray,
        dist: np.ndarray,
        eligible: int,
        nulls: NullCounter,
        rep: SearchReport | None = None,
        recall_notes: bool = True,
    ) -> dict[str, pa.Array]:
        rep = rep if rep is not None else self.report
        out: dict[str, pa.Array] = {}
        for c, i in zip(self.wanted, self.ks):
            vals = np.full(n, np.nan)
            invalid = np.ones(n, dtype=bool)
            if pos.size:
                d = dist[:, i - 1]
                vals[pos] = d
                invalid[pos] = ~np.isfinite(d)
                missing = int((~np.isfinite(d)).sum())
                nulls.add(c, too_few(i, self._pool is not None) if eligible < i else not_found(i), missing)
            if rep is not None and not rep.exact:
                nulls.note(c, rep.method, int(np.isfinite(vals).sum()))
                if recall_notes:
                    self.recall_notes(nulls, rep, only=c)
            out[c] = masked(vals, invalid, pa.float64())
        return out

    def pool_search_facts(self, nulls: NullCounter) -> str | None:
        rep, self.report = self.report, None
        if rep is None:
            return None
        self.recall_notes(nulls, rep)
        return rep.method

    def recall_notes(self, nulls: NullCounter, rep: SearchReport, only: str | None = None) -> None:
        """Count an approximate search's recall check in the notes (once per search, not per shard)."""
        if rep.exact:
            return
        for c, i in zip(self.wanted, self.ks):
            if only is None or c == only:
                nulls.note(c, f"recall@{i} check: true neighbours of sampled rows", rep.recall_checked.get(i, 0))
                nulls.note(c, f"recall@{i} check: of those found by the approximate search", rep.recall_found.get(i, 0))
