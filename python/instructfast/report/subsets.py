"""Which rows belong together on the page: groups (inputs, or values of a ``by`` column) and the selection.

Both are fixed before the statistics pass, so every accumulator sees final codes: groups by one
pass over the ``by`` column alone, a selected records file by one pass over the text columns
(rows are matched on their exact instruction, input and output).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..columns import CanonicalBatch, resolve_columns
from ..errors import ArgumentError, SchemaError
from ..io import read_table, scan_file
from .inputs import Dataset

MAX_DISTINCT = 10_000
NULL_LABEL = "(null)"
OTHER_LABEL = "(other)"


@dataclass
class Groups:
    """Group labels and how a batch's rows map onto them (a single group means no comparison)."""

    labels: list[str]
    by: str | None = None
    _index: dict[str, int] = field(default_factory=dict)
    other: int = -1

    @property
    def count(self) -> int:
        return max(1, len(self.labels))

    def codes(self, dataset: int, batch: pa.RecordBatch) -> np.ndarray:
        """The group index of every row of ``batch`` (of input number ``dataset``)."""
        n = batch.num_rows
        if self.by is None:
            return np.full(n, dataset if len(self.labels) > 1 else 0, dtype=np.int32)
        values, codes = _encode(batch.column(self.by))
        lookup = np.array([self._index.get(v, self.other) for v in values], dtype=np.int32)
        return lookup[codes] if lookup.size else np.zeros(n, dtype=np.int32)


def _encode(col: pa.Array | pa.ChunkedArray) -> tuple[list[str], np.ndarray]:
    """(distinct labels, per-row index into them); nulls get :data:`NULL_LABEL`."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    enc = pc.dictionary_encode(col.cast(pa.string()) if not pa.types.is_string(col.type) else col)
    labels = [str(v) for v in enc.dictionary.to_pylist()] + [NULL_LABEL]
    codes = enc.indices.fill_null(len(labels) - 1).to_numpy(zero_copy_only=False).astype(np.int64)
    return labels, codes


def find_groups(datasets: Sequence[Dataset], by: str | None, max_groups: int) -> Groups:
    """Groups by input (several inputs) or by the values of ``by`` (the largest ``max_groups - 1``
    values, the rest as "(other)" when there are more than ``max_groups``)."""
    if by is None:
        return Groups([d.label for d in datasets] if len(datasets) > 1 else [])
    counts: dict[str, int] = {}
    for d in datasets:
        if by not in d.source.schema.names:
            msg = f"`by` column `{by}` is not in `{d.label}`; found columns: {d.source.schema.names}"
            raise SchemaError(msg)
        t = d.source.schema.field(by).type
        if pa.types.is_nested(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
            msg = f"`by` column `{by}` must hold strings, numbers or booleans, got {t}"
            raise SchemaError(msg)
        for b in d.source.batches([by]):
            labels, codes = _encode(b.column(0))
            for label, n in zip(labels, np.bincount(codes, minlength=len(labels)).tolist()):
                if n:
                    counts[label] = counts.get(label, 0) + n
            if len(counts) > MAX_DISTINCT:
                msg = f"`by` column `{by}` has more than {MAX_DISTINCT:,} distinct values; group by a column with few values"
                raise ArgumentError(msg)
    ranked = sorted(counts, key=lambda v: (-counts[v], v))
    if len(ranked) > max_groups:
        keep, other = ranked[: max_groups - 1], len(ranked[: max_groups - 1])
        labels = [*keep, OTHER_LABEL]
    else:
        keep, other, labels = ranked, -1, ranked
    return Groups(labels, by, {v: i for i, v in enumerate(keep)}, other)


@dataclass
class Selection:
    """The selected rows of each input, and how they were found."""

    where: str
    positions: list[np.ndarray]  # per input: sorted unique row positions
    how: str
    requested: int

    @property
    def count(self) -> int:
        return int(sum(p.size for p in self.positions))

    def mask(self, dataset: int, start: int, n: int) -> np.ndarray:
        """Which of rows ``start .. start + n`` of input ``dataset`` are selected."""
        pos = self.positions[dataset]
        lo, hi = np.searchsorted(pos, [start, start + n])
        out = np.zeros(n, dtype=bool)
        out[pos[lo:hi] - start] = True
        return out


def read_selection(
    selected: str | os.PathLike[str] | Sequence[int] | np.ndarray,
    datasets: Sequence[Dataset],
    columns: Mapping[str, str] | None,
) -> Selection:
    """Selected rows from positions (an array, or a file with a ``position`` column as
    ``instructfast select --positions`` writes) or from a selected records file (matched by text)."""
    if not isinstance(selected, (str, os.PathLike)):
        arr = np.asarray(selected)
        if arr.ndim != 1 or not (arr.size == 0 or np.issubdtype(arr.dtype, np.integer)):
            msg = f"`selected` must be a file or a 1-D sequence of integer row positions, got {arr.dtype} of shape {arr.shape}"
            raise ArgumentError(msg)
        return _from_positions(arr.astype(np.int64), "", datasets)
    path = Path(selected)
    src = scan_file(path)
    if "position" in src.schema.names:
        table = read_table(path).select(["position"])
        t = table.schema.field("position").type
        if not pa.types.is_integer(t):
            msg = f"`selected` file {path}: the `position` column must hold integers, got {t}"
            raise SchemaError(msg)
        pos = table.column("position").drop_null().to_numpy()
        return _from_positions(pos.astype(np.int64), str(path), datasets)
    return _match_records(path, datasets, columns)


def _from_positions(pos: np.ndarray, where: str, datasets: Sequence[Dataset]) -> Selection:
    if len(datasets) != 1:
        msg = (
            "`selected` row positions refer to one input, but the report has "
            f"{len(datasets)}; pass the selected records file instead (rows are matched by text)"
        )
        raise ArgumentError(msg)
    if pos.size and pos.min() < 0:
        msg = f"`selected` positions must be >= 0, got {int(pos.min())}"
        raise ArgumentError(msg)
    uniq = np.unique(pos)
    how = f"{uniq.size:,} row positions" + (f" from {where}" if where else "")
    return Selection(where or "positions", [uniq], how, int(pos.size))


def _keys(canon: CanonicalBatch) -> list[int]:
    parts = [canon.instruction, canon.input if canon.input is not None else pa.nulls(canon.num_rows, pa.string())]
    parts.append(canon.output)
    joined = pc.binary_join_element_wise(*parts, "\x1f", null_handling="replace", null_replacement="\x00")
    return [hash(s) for s in joined.to_pylist()]


def _match_records(path: Path, datasets: Sequence[Dataset], columns: Mapping[str, str] | None) -> Selection:
    src = scan_file(path, text_columns=tuple((columns or {}).values()))
    try:
        resolved = resolve_columns(src.schema, columns)
    except SchemaError as e:
        msg = f"`selected` file {path} has neither a `position` column nor records to match: {e}"
        raise SchemaError(msg) from e
    wanted: set[int] = set()
    requested = 0
    for b in src.batches(resolved.source_columns()):
        keys = _keys(resolved.canonical(b))
        wanted.update(keys)
        requested += len(keys)
    positions: list[np.ndarray] = []
    found_keys: set[int] = set()
    for d in datasets:
        if d.resolved is None:
            msg = f"cannot match the selected records of {path} in `{d.label}`: it has no instruction/output columns"
            raise SchemaError(msg)
        hits, start = [], 0
        for b in d.source.batches(d.text_columns):
            keys = _keys(d.resolved.canonical(b))
            mask = np.fromiter((k in wanted for k in keys), dtype=bool, count=len(keys))
            hits.append(np.flatnonzero(mask) + start)
            found_keys.update(k for k, m in zip(keys, mask) if m)
            start += b.num_rows
        positions.append(np.concatenate(hits) if hits else np.empty(0, np.int64))
    n = sum(p.size for p in positions)
    missing = len(wanted - found_keys)
    how = f"{requested:,} records of {path} matched by exact instruction, input and output: {n:,} rows" + (
        f"; {missing:,} distinct records not found in the inputs" if missing else ""
    )
    return Selection(str(path), positions, how, requested)


__all__ = ["Groups", "Selection", "find_groups", "read_selection"]
