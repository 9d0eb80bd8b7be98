"""Sidecar outputs: a join key and the indicator columns, written beside the data instead of a copy of it.

As dolma's ``attributes/`` files, a sidecar holds one row per input row, in order: the key
(the input's id column when one is named, else ``_shard`` and ``_row``, the shard's relative
path and the row's position in it), ``_text_hash`` (a 64-bit BLAKE2b of the scored text fields:
instruction, input, output and earlier turns, as the column resolver reads them) and the
indicator columns. :func:`attach` joins a sidecar back onto its data and refuses a
misalignment: rows added, removed, reordered or edited since scoring give an error that names
the shard and the first row that differs, never silently shifted scores.

Examples
--------
>>> import pyarrow as pa
>>> data = pa.table({"instruction": ["q1", "q2"], "output": ["a1", "a2"]})
>>> scores = pa.table({"_shard": ["d.jsonl"] * 2, "_row": [0, 1], "_text_hash": row_hashes(data),
...                    "mtld": [1.0, 2.0]})
>>> attach(data, scores, shard="d.jsonl").column_names
['instruction', 'output', 'mtld']
>>> attach(data.take([1, 0]), scores, shard="d.jsonl")
Traceback (most recent call last):
...
instructfast.errors.SchemaError: d.jsonl: row 0 of the data does not match its scores (the text changed since scoring: text hash differs); rows added, removed, reordered or edited since scoring cannot be joined: score the data again
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .columns import CanonicalBatch, resolve_columns
from .errors import SchemaError

SHARD, ROW, TEXT_HASH = "_shard", "_row", "_text_hash"
KEY_COLUMNS = (SHARD, ROW, TEXT_HASH)


def _utf8_rows(arr: pa.Array | None, n: int) -> list[memoryview | bytes | None]:
    """Each row's UTF-8 bytes, as views of the Arrow buffer where the type allows (no copy: a 64 MiB
    record is hashed where it lies, not copied into a Python str and again into bytes)."""
    if arr is None:
        return [None] * n
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        _, offsets, data = arr.buffers()
        width = np.int32 if pa.types.is_string(arr.type) else np.int64
        off = np.frombuffer(offsets, dtype=width)[arr.offset : arr.offset + n + 1].tolist()
        body = memoryview(data) if data is not None else memoryview(b"")
        valid = arr.is_valid().to_numpy(zero_copy_only=False)
        return [body[off[i] : off[i + 1]] if valid[i] else None for i in range(n)]
    return [None if v is None else v.encode("utf-8", "surrogatepass") for v in arr.to_pylist()]


def canonical_hashes(canon: CanonicalBatch) -> pa.Array:
    """int64 BLAKE2b-64 of each row's instruction, input, output and history, as the resolver reads them.

    The hashed bytes: per field 0x00 for null or 0x01 then its UTF-8 (so None and "" differ), fields
    joined by 0x1f.
    """
    n = canon.num_rows
    cols = [_utf8_rows(c, n) for c in (canon.instruction, canon.input, canon.output, canon.history)]
    out = []
    for row in zip(*cols, strict=True):
        h = hashlib.blake2b(digest_size=8)
        for j, v in enumerate(row):
            if j:
                h.update(b"\x1f")
            if v is None:
                h.update(b"\x00")
            else:
                h.update(b"\x01")
                h.update(v)
        out.append(int.from_bytes(h.digest(), "little", signed=True))
    return pa.array(out, pa.int64())


def row_hashes(table: pa.Table | pa.RecordBatch, columns: Mapping[str, str] | None = None) -> pa.Array:
    """:func:`canonical_hashes` of a table whose layout the column resolver recognises."""
    resolved = resolve_columns(table.schema, columns)
    batches = table.to_batches() if isinstance(table, pa.Table) else [table]
    parts = [canonical_hashes(resolved.canonical(b)) for b in batches]
    return pa.concat_arrays(parts) if parts else pa.array([], pa.int64())


def key_columns(
    hashes: pa.Array, ids: pa.Array | None, *, shard: str, offset: int, id_column: str | None
) -> dict[str, pa.Array]:
    """The join key of rows whose first is row ``offset`` of ``shard``: ``ids`` (the id column's values,
    when one is named) or the shard and positions, then the rows' :func:`canonical_hashes`."""
    n = len(hashes)
    if id_column is not None:
        assert ids is not None
        key = {id_column: ids}
    else:
        key = {SHARD: pa.array([shard] * n, pa.string()), ROW: pa.array(range(offset, offset + n), pa.int64())}
    key[TEXT_HASH] = hashes
    return key


def attach(
    data: pa.Table,
    scores: pa.Table,
    *,
    shard: str | None = None,
    id_column: str | None = None,
    columns: Mapping[str, str] | None = None,
) -> pa.Table:
    """``data`` with the indicator columns of its sidecar ``scores``, after checking every row's key.

    Parameters
    ----------
    data
        The records that were scored, in their original order.
    scores
        Their sidecar: key columns and indicator columns, one row per data row.
    shard
        The data's shard path as the sidecar records it (``_shard``); checked when given.
    id_column
        The id column the sidecar was keyed by (``--id-column``), instead of shard and row.
    columns
        The column mapping used when scoring (for the text hash), if the layout was not detected.

    Raises
    ------
    instructfast.SchemaError
        When the row counts differ, a key column is missing, or a row's key or text hash does not
        match; the message names the shard and the first mismatching row.
    """
    where = shard or "data"
    if data.num_rows != scores.num_rows:
        msg = (
            f"{where}: the data has {data.num_rows} rows and its scores {scores.num_rows}; rows were added or "
            "removed since scoring: score the data again"
        )
        raise SchemaError(msg)
    want = [id_column, TEXT_HASH] if id_column else list(KEY_COLUMNS)
    missing = [c for c in want if c not in scores.column_names]
    if missing:
        msg = f"{where}: the scores lack the key column(s) {missing}; found {scores.column_names}"
        raise SchemaError(msg)
    checks: list[tuple[str, pa.ChunkedArray, pa.Array | pa.ChunkedArray]] = [
        ("text hash differs", scores.column(TEXT_HASH), row_hashes(data, columns))
    ]
    if id_column:
        if id_column not in data.column_names:
            msg = f"{where}: `id_column` {id_column!r} is not in the data; found {data.column_names}"
            raise SchemaError(msg)
        checks.insert(0, (f"`{id_column}` differs", scores.column(id_column), data.column(id_column)))
    else:
        checks.insert(0, ("row position differs", scores.column(ROW), pa.array(range(data.num_rows), pa.int64())))
        if shard is not None:
            shards = scores.column(SHARD).unique().to_pylist()
            if shards != [shard] and data.num_rows:
                msg = f"{where}: these scores belong to shard(s) {shards}, not {shard!r}"
                raise SchemaError(msg)
    first = None
    for what, got, expect in checks:
        bad = pc.not_equal(got, expect).fill_null(True) if len(got) else pa.array([], pa.bool_())
        idx = pc.index(bad, True).as_py() if len(bad) else -1
        if idx is not None and idx >= 0 and (first is None or idx < first[0]):
            first = (idx, what)
    if first is not None:
        row, what = first
        reason = "the text changed since scoring: " if what == "text hash differs" else ""
        msg = (
            f"{where}: row {row} of the data does not match its scores ({reason}{what}); rows added, removed, "
            "reordered or edited since scoring cannot be joined: score the data again"
        )
        raise SchemaError(msg)
    keep = [c for c in scores.column_names if c not in (*KEY_COLUMNS, id_column)]
    clash = [c for c in keep if c in data.column_names]
    if clash:
        msg = f"{where}: the data already has column(s) {clash} that the scores would add"
        raise SchemaError(msg)
    out = data
    for c in keep:
        out = out.append_column(scores.schema.field(c), scores.column(c))
    return out


__all__ = ["KEY_COLUMNS", "ROW", "SHARD", "TEXT_HASH", "attach", "canonical_hashes", "key_columns", "row_hashes"]
