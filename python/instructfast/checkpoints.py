"""What a file run keeps on disk for one shard while it works, so that a crash loses nothing finished.

A shard's work folder holds:

* ``part-NNNNNN.arrow``: the per-row indicator columns of scored rows, with each row's text hash
  (and a sidecar's id column), in order, each part complete on disk (written under a temporary
  name, then renamed) before the state names it; the input columns stay in the input, which the
  final write reads again (checking each row against its hash);
* ``vec-<indicator>-NNNNNN.npy`` / ``pos-<indicator>-NNNNNN.npy``: a pool indicator's unit
  vectors for the part's usable rows (float32, or float16 to halve the disk) and their row
  positions in the shard: the embedding work, checkpointed like any other per-row result;
* ``pool-<indicator>.npz``: after the pool pass, each member's distances to its neighbours;
* ``state.json``: the phases done, under fingerprints of the settings, of the input shard and of
  the pool searched (written to a temporary file and renamed, so it is always whole).

Phases: per-row work (``rows``), the pool pass (``pool``, a run-level step) and the final write
(``output``). Each has its own marker, so a rerun redoes only what is not finished, and redoes
it when what it depends on changed.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from . import _faults
from .errors import ResumeError

STATE = "state.json"
STATE_VERSION = 3  # 3: parts hold the indicator columns and text hashes, not whole rows


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON atomically: a temporary file in the same folder, then a rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, sort_keys=True, default=str))
    os.replace(tmp, path)


def save_npy(path: Path, array: np.ndarray) -> None:
    """``np.save`` under a temporary name, then a rename: a file that exists is complete."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, array)
    os.replace(tmp, path)


@dataclass
class _OpenPart:
    index: int
    writer: Any
    rows: int = 0
    vectors: dict[str, list[np.ndarray]] = field(default_factory=dict)
    positions: dict[str, list[np.ndarray]] = field(default_factory=dict)
    nulls: dict[str, dict[str, int]] = field(default_factory=dict)
    notes: dict[str, dict[str, int]] = field(default_factory=dict)


def _add(into: dict[str, dict[str, int]], counts: dict[str, dict[str, int]]) -> None:
    for col, reasons in counts.items():
        slot = into.setdefault(col, {})
        for reason, n in reasons.items():
            slot[reason] = slot.get(reason, 0) + int(n)


class ShardStore:
    """One shard's checkpoints and phase markers (see the module docstring).

    Parameters
    ----------
    folder
        The shard's work folder (created).
    settings
        Fingerprint of the run's settings; a stored state with other settings is an error
        (:class:`~instructfast.ResumeError`) unless ``restart``.
    source
        Fingerprint of the input shard (:func:`instructfast.shards.fingerprint`); a stored state
        of other content is discarded (the shard changed: its work is redone).
    vector_dtype
        ``"float32"`` or ``"float16"`` for stored embeddings.
    """

    def __init__(
        self,
        folder: Path,
        *,
        settings: str,
        source: dict[str, Any],
        restart: bool = False,
        vector_dtype: str = "float32",
    ) -> None:
        self.folder = Path(folder)
        self.vector_dtype = np.dtype(vector_dtype)
        self.changed = False  # the input changed since an earlier run's work (that work was discarded)
        self.resumed_rows = 0
        state = self._read()
        if restart or state is None:
            if restart:
                shutil.rmtree(self.folder, ignore_errors=True)
            state = None
        elif (state.get("version") != STATE_VERSION or state.get("settings") != settings) and not _holds_work(state):
            # a run that failed before its first checkpoint (invalid text met in the first batch, say)
            # left nothing worth keeping: the next run, with its settings changed, starts afresh
            shutil.rmtree(self.folder, ignore_errors=True)
            state = None
        elif state.get("version") != STATE_VERSION or state.get("settings") != settings:
            msg = (
                f"{self.folder} holds a partial run with different settings (indicators, rule, options or "
                "models); rerun with the same settings to resume it, or pass --restart (restart=True) to discard it"
            )
            raise ResumeError(msg)
        elif state.get("source", {}).get("sha256") != source.get("sha256"):
            self.changed = True
            shutil.rmtree(self.folder, ignore_errors=True)
            state = None
        self.folder.mkdir(parents=True, exist_ok=True)
        if state is None:
            state = {"version": STATE_VERSION, "settings": settings, "source": source, "rows": self._fresh_rows(),
                     "pool": {}, "output": {}}  # fmt: skip
        state["source"] = source  # same content; the recorded time may be newer
        self.state = state
        self._open: _OpenPart | None = None
        self.resumed_rows = int(self.state["rows"]["rows"])
        self._save()

    @staticmethod
    def _fresh_rows() -> dict[str, Any]:
        return {"rows": 0, "parts": [], "nulls": {}, "notes": {}, "complete": False}

    def _read(self) -> dict[str, Any] | None:
        try:
            return dict(json.loads((self.folder / STATE).read_text()))
        except (OSError, ValueError):
            return None

    def _save(self) -> None:
        write_json(self.folder / STATE, self.state)

    # ---------------------------------------------------------------- per-row work

    @property
    def rows_done(self) -> int:
        """Rows whose per-row work is on disk."""
        return int(self.state["rows"]["rows"])

    @property
    def rows_complete(self) -> bool:
        return bool(self.state["rows"]["complete"])

    def append(
        self,
        batch: pa.RecordBatch,
        vectors: dict[str, tuple[np.ndarray, np.ndarray]],
        nulls: dict[str, dict[str, int]],
        notes: dict[str, dict[str, int]],
        *,
        part_rows: int,
    ) -> None:
        """Add one scored batch; a part is committed once it holds ``part_rows`` rows."""
        if self._open is None:
            idx = len(self.state["rows"]["parts"])
            path = self.folder / f"part-{idx:06d}.arrow"
            self._open = _OpenPart(idx, ipc.new_file(str(path) + ".tmp", batch.schema))
        part = self._open
        part.writer.write_batch(batch)
        part.rows += batch.num_rows
        for name, (u, pos) in vectors.items():
            part.vectors.setdefault(name, []).append(u.astype(self.vector_dtype, copy=False))
            part.positions.setdefault(name, []).append(pos)
        _add(part.nulls, nulls)
        _add(part.notes, notes)
        if part.rows >= part_rows:
            self.commit_part()

    def commit_part(self) -> None:
        """Make the open part durable: its Arrow file and vectors on disk first, then the state names them."""
        part = self._open
        if part is None:
            return
        self._open = None
        part.writer.close()
        path = self.folder / f"part-{part.index:06d}.arrow"
        os.replace(str(path) + ".tmp", path)
        entry: dict[str, Any] = {"file": path.name, "rows": part.rows, "vectors": {}}
        for name, chunks in part.vectors.items():
            vec = np.concatenate(chunks) if chunks else np.zeros((0, 0), self.vector_dtype)
            pos = np.concatenate(part.positions[name]).astype(np.int64)
            save_npy(self.folder / f"vec-{name}-{part.index:06d}.npy", vec)
            save_npy(self.folder / f"pos-{name}-{part.index:06d}.npy", pos)
            entry["vectors"][name] = {"members": int(pos.size), "dim": int(vec.shape[1]) if vec.ndim == 2 else 0}
        rows = self.state["rows"]
        rows["parts"].append(entry)
        rows["rows"] += part.rows
        _add(rows["nulls"], part.nulls)
        _add(rows["notes"], part.notes)
        self._save()
        _faults.point("rows:part")

    def abandon_open_part(self) -> None:
        """Drop an uncommitted part (an error mid-batch): only committed parts count."""
        if self._open is not None:
            try:
                self._open.writer.close()
            finally:
                Path(self.folder / f"part-{self._open.index:06d}.arrow.tmp").unlink(missing_ok=True)
                self._open = None

    def finish_rows(self) -> None:
        """Every row of the shard is scored: commit the last part and mark the phase done."""
        self.commit_part()
        self.state["rows"]["complete"] = True
        self._save()

    def discard(self) -> None:
        """Drop this shard's work: its input is not what was scored (see ``_write_shard``'s row check)."""
        self.abandon_open_part()
        shutil.rmtree(self.folder, ignore_errors=True)

    @property
    def nulls(self) -> dict[str, dict[str, int]]:
        return dict(self.state["rows"]["nulls"])

    @property
    def notes(self) -> dict[str, dict[str, int]]:
        return dict(self.state["rows"]["notes"])

    def parts(self) -> Iterator[pa.RecordBatch]:
        """The scored rows in order, streamed part by part (read, not memory-mapped)."""
        for entry in self.state["rows"]["parts"]:
            with pa.OSFile(str(self.folder / entry["file"])) as f:  # not mmap: mapped pages count as resident
                reader = ipc.open_file(f)
                for i in range(reader.num_record_batches):
                    yield reader.get_batch(i)

    def members(self, name: str) -> int:
        """Rows of this shard that are members of indicator ``name``'s pool (those with a vector)."""
        return sum(int(e["vectors"].get(name, {}).get("members", 0)) for e in self.state["rows"]["parts"])

    def vector_files(self, name: str) -> list[tuple[Path, Path]]:
        """(vectors, positions) file pairs of indicator ``name``, part by part."""
        return [
            (self.folder / f"vec-{name}-{e_idx:06d}.npy", self.folder / f"pos-{name}-{e_idx:06d}.npy")
            for e_idx, e in enumerate(self.state["rows"]["parts"])
            if name in e["vectors"]
        ]

    def positions(self, name: str) -> np.ndarray:
        files = self.vector_files(name)
        if not files:
            return np.zeros(0, np.int64)
        return np.concatenate([np.load(p) for _, p in files]).astype(np.int64)

    # ---------------------------------------------------------------- pool pass

    def pool_done(self, fingerprint: str) -> bool:
        return self.state["pool"].get("fingerprint") == fingerprint

    def save_pool(self, fingerprint: str, results: dict[str, tuple[np.ndarray, int]]) -> None:
        """Store each pool indicator's distances for this shard's members and the pool size searched."""
        for name, (dist, members) in results.items():
            tmp = self.folder / f".pool-{name}.{os.getpid()}.tmp.npz"
            np.savez(tmp, dist=dist, members=np.int64(members))
            os.replace(tmp, self.folder / f"pool-{name}.npz")
        self.state["pool"] = {"fingerprint": fingerprint, "indicators": sorted(results)}
        self._save()

    def pool_result(self, name: str) -> tuple[np.ndarray, int]:
        with np.load(self.folder / f"pool-{name}.npz") as z:
            return np.asarray(z["dist"]), int(z["members"])

    # ---------------------------------------------------------------- final write

    def output_done(self, fingerprint: str) -> bool:
        return self.state["output"].get("fingerprint") == fingerprint

    def mark_output(self, fingerprint: str, path: Path, rows: int, report: dict[str, Any]) -> None:
        self.state["output"] = {"fingerprint": fingerprint, "path": str(path), "rows": rows, "report": report}
        self._save()


def read_state(folder: Path) -> dict[str, Any] | None:
    """A shard folder's state, or None when it has none (for manifests and the CLI's resume message)."""
    try:
        return dict(json.loads((Path(folder) / STATE).read_text()))
    except (OSError, ValueError):
        return None


__all__ = ["STATE", "ShardStore", "read_state", "save_npy", "write_json"]


def _holds_work(state: Mapping[str, Any]) -> bool:
    """Whether a stored state has anything done: a checkpointed row, a pool result or a written output."""
    rows = state.get("rows") or {}
    return bool(rows.get("rows") or rows.get("parts") or state.get("pool") or state.get("output"))
