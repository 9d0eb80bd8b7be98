"""Reading and writing record files: JSON, JSON Lines, Parquet, Arrow IPC and CSV.

Readers stream record batches where the format allows (JSONL, Parquet, IPC, CSV);
a JSON array is parsed whole. Errors name the file and, where it can be found, the
line. Writers always write to a temporary name in the target directory and rename at
the end, so an output file that exists is complete.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.ipc as ipc
import pyarrow.json as pajson
import pyarrow.parquet as pq

from ._arrow import to_reader
from ._typing import FileFormat
from .columns import LAYOUTS
from .errors import ArgumentError, InputFormatError, SchemaError
from .sidecar import attach

_EXT: dict[str, FileFormat] = {
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".arrow": "arrow",
    ".feather": "arrow",
    ".ipc": "arrow",
    ".arrows": "arrows",
    ".csv": "csv",
}
FORMATS: tuple[str, ...] = ("json", "jsonl", "parquet", "arrow", "arrows", "csv")
# Columns that hold text in known layouts: read as strings even where a CSV/JSON
# reader would infer numbers (e.g. an `input` column holding "42").
_TEXT_COLUMNS = sorted({c for lay in LAYOUTS for c in (lay.instruction, lay.input, lay.output) if c})


def detect_format(path: str | os.PathLike[str], fmt: str | None = None) -> FileFormat:
    """The file format from ``fmt`` or the extension (``.gz`` etc. stripped)."""
    if fmt is not None:
        if fmt not in FORMATS:
            msg = f"`format` must be one of {FORMATS}, got {fmt!r}"
            raise ArgumentError(msg)
        return fmt  # type: ignore[return-value]  # checked against FORMATS just above
    p = Path(path)
    suffixes = [s.lower() for s in p.suffixes]
    while suffixes and suffixes[-1] in (".gz", ".bz2", ".zst", ".lz4"):
        suffixes.pop()
    if suffixes and suffixes[-1] in _EXT:
        return _EXT[suffixes[-1]]
    msg = f"cannot tell the format of {str(path)!r} from its extension; known: {sorted(_EXT)} (or pass a format)"
    raise InputFormatError(msg)


@dataclass
class FileSource:
    """A re-iterable view of one input file: schema, row count when known, batches."""

    path: Path
    format: FileFormat
    schema: pa.Schema
    num_rows: int | None
    _open: Callable[[], Iterator[pa.RecordBatch]]
    # Parquet only: the file, so projections and row takes read just the column chunks they need.
    _parquet: pq.ParquetFile | None = None
    _batch_rows: int = 65_536

    def batches(self, columns: Sequence[str] | None = None) -> Iterator[pa.RecordBatch]:
        """Fresh iterator over the file's batches (each call starts at the top).

        ``columns`` keeps only those columns, in that order; Parquet then reads no other column chunk.
        """
        cols = self._projection(columns)
        try:
            if cols is not None and self._parquet is not None:
                yield from self._parquet.iter_batches(batch_size=self._batch_rows, columns=cols)
                return
            for b in self._open():
                yield b if cols is None else b.select(cols)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise _located(self.path, self.format, e) from e

    def take(self, positions: Sequence[int] | np.ndarray, columns: Sequence[str] | None = None) -> pa.Table:
        """The rows at ``positions`` (0-based, any order, repeats allowed), in that order.

        One streaming pass; a Parquet file reads only the row groups holding those rows.
        """
        want = np.asarray(positions, dtype=np.int64)
        cols = self._projection(columns)
        schema = self.schema if cols is None else pa.schema([self.schema.field(c) for c in cols])
        if want.size == 0:
            return schema.empty_table()
        if want.min() < 0 or (self.num_rows is not None and want.max() >= self.num_rows):
            msg = (
                f"{self.path}: row positions must be in [0, {self.num_rows}), got {int(want.min())}..{int(want.max())}"
            )
            raise ArgumentError(msg)
        uniq = np.unique(want)
        parts: list[pa.Table] = []
        for start, chunk in self._chunks_holding(uniq, cols):
            local = uniq[(uniq >= start) & (uniq < start + chunk.num_rows)] - start
            if local.size:
                parts.append(chunk.take(pa.array(local)))
        found = sum(t.num_rows for t in parts)
        if found != uniq.size:
            msg = f"{self.path}: row positions up to {int(uniq[-1])} requested, but the file has fewer rows"
            raise ArgumentError(msg)
        table = pa.concat_tables(parts).combine_chunks() if parts else schema.empty_table()
        return table.take(pa.array(np.searchsorted(uniq, want)))

    def _projection(self, columns: Sequence[str] | None) -> list[str] | None:
        if columns is None:
            return None
        missing = [c for c in columns if c not in self.schema.names]
        if missing:
            msg = f"{self.path}: no column(s) {missing}; found columns: {self.schema.names}"
            raise SchemaError(msg)
        return list(columns)

    def _chunks_holding(self, uniq: np.ndarray, cols: list[str] | None) -> Iterator[tuple[int, pa.Table]]:
        """(first row, rows) pieces of the file that hold the sorted positions ``uniq``."""
        if self._parquet is not None:
            meta = self._parquet.metadata
            start = 0
            for i in range(meta.num_row_groups):
                n = meta.row_group(i).num_rows
                lo = np.searchsorted(uniq, start)
                if lo < uniq.size and uniq[lo] < start + n:  # 8,192 rows at a time: a large row group is never whole
                    at = start
                    for b in self._parquet.iter_batches(batch_size=8_192, row_groups=[i], columns=cols):
                        yield at, pa.Table.from_batches([b])
                        at += b.num_rows
                start += n
            return
        start = 0
        for b in self.batches(cols):
            if start > uniq[-1]:
                return
            yield start, pa.Table.from_batches([b])
            start += b.num_rows

    def reader(self) -> pa.RecordBatchReader:
        return pa.RecordBatchReader.from_batches(self.schema, self.batches())


def scan_file(
    path: str | os.PathLike[str],
    *,
    format: str | None = None,
    batch_rows: int = 65_536,
    text_columns: tuple[str, ...] = (),
) -> FileSource:
    """Open a record file for streaming.

    Parameters
    ----------
    path
        Input file.
    format
        One of ``json``, ``jsonl``, ``parquet``, ``arrow``, ``arrows``, ``csv``; by default from the extension.
    batch_rows
        Target rows per batch for formats that allow choosing.
    text_columns
        Extra columns to read as strings in CSV/JSON (the known layouts' text columns always are).

    Raises
    ------
    InputFormatError
        Missing or empty file, unreadable content (with the line where it can be found).
    """
    p = Path(path)
    fmt = detect_format(p, format)
    if not p.exists():
        msg = f"{p}: no such file"
        raise InputFormatError(msg)
    if p.is_dir():
        msg = f"{p}: is a directory, expected a file"
        raise InputFormatError(msg)
    if p.stat().st_size == 0:
        msg = f"{p}: file is empty"
        raise InputFormatError(msg)
    text_cols = tuple(dict.fromkeys(_TEXT_COLUMNS + list(text_columns)))
    try:
        if fmt == "parquet":
            return _scan_parquet(p, batch_rows)
        if fmt in ("arrow", "arrows"):
            return _scan_ipc(p, fmt)
        if fmt == "csv":
            return _scan_csv(p, text_cols)
        if fmt == "json" and _first_byte(p) == b"[":
            return _scan_json_array(p, batch_rows)
        return _scan_jsonl(p, text_cols, fmt)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise _located(p, fmt, e) from e


def read_table(
    path: str | os.PathLike[str],
    *,
    format: str | None = None,
    scores: str | os.PathLike[str] | None = None,
    id_column: str | None = None,
    columns: Mapping[str, str] | None = None,
) -> pa.Table:
    """Read a whole record file into a Table (see :func:`scan_file`), with its sidecar scores attached.

    Parameters
    ----------
    path
        A record file.
    format
        Its format (default: from the extension).
    scores
        Its sidecar (``instructfast score --sidecar``): the indicator columns are appended after
        every row's key and text hash are checked (:func:`instructfast.sidecar.attach`).
    id_column, columns
        The sidecar's key column and the column map used when scoring, if any.

    Raises
    ------
    instructfast.SchemaError
        When the sidecar does not match the data row for row (the message names the first row).
    """
    src = scan_file(path, format=format)
    table = pa.Table.from_batches(list(src.batches()), schema=src.schema)
    if scores is None:
        return table
    side = read_table(scores)
    shard = None if id_column else _sidecar_shard(side)
    return attach(table, side, shard=shard, id_column=id_column, columns=columns)


def _sidecar_shard(side: pa.Table) -> str | None:
    """The one shard a sidecar says it belongs to (checked against itself, not the data's file name)."""
    if "_shard" not in side.column_names or not side.num_rows:
        return None
    shards = side.column("_shard").unique().to_pylist()
    return str(shards[0]) if len(shards) == 1 else None


def to_table(data: Any) -> pa.Table:
    """A whole :class:`pyarrow.Table` from a record file's path or anything :func:`instructfast.score` takes."""
    if isinstance(data, (str, os.PathLike)):
        return read_table(data)
    if isinstance(data, pa.Table):
        return data
    return to_reader(data).read_all()


def _first_byte(p: Path) -> bytes:
    with pa.input_stream(str(p), compression="detect") as f:
        chunk = f.read(4096)
    return chunk.lstrip()[:1]


def _scan_parquet(p: Path, batch_rows: int) -> FileSource:
    # pre_buffer=False: with pre-buffering the reader keeps the file's column chunks
    # cached as it goes, so memory grew with the row count (measured: 268 vs 52 MiB peak
    # Arrow allocation over 1M rows); streaming must stay flat.
    pf = pq.ParquetFile(p, pre_buffer=False)
    return FileSource(
        p,
        "parquet",
        pf.schema_arrow,
        pf.metadata.num_rows,
        lambda: pf.iter_batches(batch_size=batch_rows),
        _parquet=pf,
        _batch_rows=batch_rows,
    )


def _scan_ipc(p: Path, fmt: FileFormat) -> FileSource:
    try:
        f = ipc.open_file(pa.memory_map(str(p)))
        schema, n = f.schema, sum(f.get_batch(i).num_rows for i in range(f.num_record_batches))

        def gen():
            g = ipc.open_file(pa.memory_map(str(p)))
            for i in range(g.num_record_batches):
                yield g.get_batch(i)

        return FileSource(p, "arrow", schema, n, gen)
    except pa.ArrowInvalid:
        s = ipc.open_stream(pa.memory_map(str(p)))
        return FileSource(p, "arrows", s.schema, None, lambda: iter(ipc.open_stream(pa.memory_map(str(p)))))


def _scan_csv(p: Path, text_cols: tuple[str, ...]) -> FileSource:
    convert = pacsv.ConvertOptions(column_types={c: pa.string() for c in text_cols}, strings_can_be_null=False)

    def gen():
        return iter(pacsv.open_csv(str(p), convert_options=convert))

    schema = pacsv.open_csv(str(p), convert_options=convert).schema
    return FileSource(p, "csv", schema, None, gen)


def _scan_jsonl(p: Path, text_cols: tuple[str, ...], fmt: FileFormat) -> FileSource:
    # Text columns get an explicit string type so a first block of nulls cannot fix
    # them as null type, and a number where text belongs is an error, not a cast.
    with pa.input_stream(str(p), compression="detect") as f:
        head = f.read(1 << 20)
    keys: set[str] = set()
    for line in head.splitlines()[:200]:
        try:
            obj = json.loads(line)
        except ValueError:
            break
        if isinstance(obj, dict):
            keys |= obj.keys()
    explicit = pa.schema([(c, pa.string()) for c in text_cols if c in keys])
    parse = pajson.ParseOptions(explicit_schema=explicit, unexpected_field_behavior="infer", newlines_in_values=False)
    read = pajson.ReadOptions(block_size=8 << 20)

    def gen():
        with pa.input_stream(str(p), compression="detect") as f:
            yield from pajson.open_json(f, read_options=read, parse_options=parse)

    with pa.input_stream(str(p), compression="detect") as f:
        schema = pajson.open_json(f, read_options=read, parse_options=parse).schema
    return FileSource(p, fmt, schema, _count_lines(p), gen)


def _scan_json_array(p: Path, batch_rows: int) -> FileSource:
    with pa.input_stream(str(p), compression="detect") as f:
        try:
            records = json.loads(f.read())
        except json.JSONDecodeError as e:
            msg = f"{p}:{e.lineno}: invalid JSON ({e.msg}, column {e.colno})"
            raise InputFormatError(msg) from e
    if not isinstance(records, list):
        msg = f"{p}: expected a JSON array of objects or JSON Lines, got a top-level {type(records).__name__}"
        raise InputFormatError(msg)
    for i, r in enumerate(records):
        if not isinstance(r, dict):
            msg = f"{p}: record {i} is a {type(r).__name__}, expected a JSON object"
            raise InputFormatError(msg)
    if not records:
        msg = f"{p}: the JSON array holds no records"
        raise InputFormatError(msg)
    try:
        table = pa.Table.from_pylist(records)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        msg = f"{p}: {_record_type_problem(records) or e}"
        raise InputFormatError(msg) from e
    return FileSource(p, "json", table.schema, table.num_rows, lambda: iter(table.to_batches(max_chunksize=batch_rows)))


def _record_type_problem(records: list[dict]) -> str | None:
    """First record whose field type disagrees with the first non-null value of that field."""
    first: dict[str, tuple[type, int]] = {}
    for i, r in enumerate(records):
        for k, v in r.items():
            if v is None:
                continue
            t = float if isinstance(v, int) and not isinstance(v, bool) else type(v)
            if k not in first:
                first[k] = (t, i)
            elif first[k][0] is not t and not (first[k][0] is float and t is int):
                return (
                    f"record {i}: field `{k}` is {type(v).__name__} but record {first[k][1]} has {first[k][0].__name__}"
                )
    return None


def _count_lines(p: Path) -> int | None:
    """Row count of an uncompressed JSONL file (non-blank lines), fast; None when compressed."""
    if p.suffix.lower() not in (".jsonl", ".ndjson", ".json"):
        return None
    n = 0
    with open(p, "rb") as f:
        last = b"\n"
        while chunk := f.read(1 << 24):
            n += chunk.count(b"\n")
            last = chunk[-1:]
    return n + (last != b"\n")


def _located(p: Path, fmt: str, e: Exception) -> InputFormatError:
    """Turn an Arrow parse error into one naming the file and (for JSONL) the first bad line."""
    if fmt in ("jsonl", "json"):
        where = _first_bad_jsonl_line(p)
        if where:
            return InputFormatError(f"{p}:{where}")
    return InputFormatError(f"{p}: cannot read as {fmt}: {e}")


def _first_bad_jsonl_line(p: Path) -> str | None:
    types: dict[str, tuple[str, int]] = {}
    with pa.input_stream(str(p), compression="detect") as f:
        for lineno, raw in enumerate(f.read().splitlines(), 1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except ValueError as e:
                return f"{lineno}: invalid JSON ({e})"
            if not isinstance(obj, dict):
                return f"{lineno}: expected a JSON object, got {type(obj).__name__}"
            for k, v in obj.items():
                if v is None:
                    continue
                t = "number" if isinstance(v, (int, float)) and not isinstance(v, bool) else type(v).__name__
                if k in _TEXT_COLUMNS and t != "str":
                    return f"{lineno}: field `{k}` must be a string, got {t}"
                if k in types and types[k][0] != t:
                    return f"{lineno}: field `{k}` is {t} but line {types[k][1]} has {types[k][0]}"
                types.setdefault(k, (t, lineno))
    return None


# ---------------------------------------------------------------------------- writers


class _BatchWriter:
    def __init__(self, path: str, schema: pa.Schema, fmt: FileFormat) -> None:
        self.fmt = fmt
        self.schema = schema
        self.metadata: dict[bytes, bytes] = {}  # key-value metadata for the Parquet footer, written on close
        if fmt == "parquet":
            self._w = pq.ParquetWriter(path, schema, compression="zstd")
        elif fmt == "arrow":
            self._w = ipc.new_file(path, schema)
        elif fmt == "arrows":
            self._w = ipc.new_stream(path, schema)
        elif fmt == "csv":
            nested = [f.name for f in schema if pa.types.is_nested(f.type)]
            if nested:
                msg = f"cannot write nested columns {nested} to CSV; choose parquet, arrow or jsonl"
                raise InputFormatError(msg)
            self._w = pacsv.CSVWriter(path, schema)
        else:
            self._f = open(path, "w", encoding="utf-8")
            self._first = True
            if fmt == "json":
                self._f.write("[")

    def write(self, batch: pa.RecordBatch) -> None:
        if self.fmt in ("json", "jsonl"):
            sep = "\n" if self.fmt == "jsonl" else ",\n"
            for row in batch.to_pylist():
                if self.fmt == "json":
                    self._f.write("\n" if self._first else sep)
                self._f.write(json.dumps(row, ensure_ascii=False, default=str))
                if self.fmt == "jsonl":
                    self._f.write("\n")
                self._first = False
        elif self.fmt == "parquet":
            self._w.write_batch(batch)
        else:
            self._w.write(batch)

    def close(self, metadata: dict[bytes, bytes] | None = None) -> None:
        if self.fmt in ("json", "jsonl"):
            if self.fmt == "json":
                self._f.write("\n]\n")
            self._f.close()
            return
        if metadata and self.fmt == "parquet":
            self._w.add_key_value_metadata(metadata)
        self._w.close()


def created_mode() -> int:
    """The mode ``open()`` would give a new file here (0o666 less the umask).

    Atomic writes start from ``mkstemp``, whose files are private (0o600); an output a user
    shares or serves must get the permissions any other file they write gets. The umask is read
    from /proc (Linux), else set and restored, which is not thread-safe but only briefly wrong.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


@contextmanager
def atomic_writer(
    path: str | os.PathLike[str], schema: pa.Schema, *, format: str | None = None
) -> Iterator[_BatchWriter]:
    """Yield a writer with ``write(batch)``; the file appears under ``path`` only on success.

    Call ``writer.metadata.update({...})`` before the block ends to store key-value
    metadata (Parquet footer).
    """
    p = Path(path)
    fmt = detect_format(p, format)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    os.close(fd)
    w = _BatchWriter(tmp, schema, fmt)
    ok = False
    try:
        yield w
        w.close(w.metadata)
        os.chmod(tmp, created_mode())
        os.replace(tmp, p)
        ok = True
    finally:
        if not ok:
            try:
                w.close()
            except Exception:
                pass
            if os.path.exists(tmp):
                os.unlink(tmp)


def write_table(table: pa.Table, path: str | os.PathLike[str], *, format: str | None = None) -> None:
    """Write ``table`` to ``path`` atomically in the format named by ``format`` or the extension."""
    with atomic_writer(path, table.schema, format=format) as w:
        for b in table.to_batches():
            w.write(b)
        if table.schema.metadata:
            w.metadata.update(table.schema.metadata)
