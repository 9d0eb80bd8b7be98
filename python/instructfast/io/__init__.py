"""Reading and writing record files: JSON, JSON Lines, Parquet, Arrow IPC and CSV.

Readers stream record batches (JSON arrays too, re-laid one element per line: see
:mod:`instructfast.io._json`); a record may be as long as ``max_record_bytes``. Errors name the
file and, where it can be found, the line. Text is passed on unchecked; the scorer checks it.
Writers always write to a temporary name in the target directory and rename at the end, so an
output file that exists is complete, and they refuse to write text that is not valid UTF-8 (a
Parquet or Arrow string column holding it cannot be read back into Python).
"""

from __future__ import annotations

import json
import os
import re
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
import pyarrow.parquet as pq

from .._arrow import to_reader
from .._typing import FileFormat
from ..columns import LAYOUTS
from ..errors import ArgumentError, InputFormatError, InvalidTextError, SchemaError
from ..sidecar import attach
from ._json import JsonSource

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
    _locate: Callable[[int], str | None] | None = None
    # Parquet only: the file, so projections and row takes read just the column chunks they need.
    _parquet: pq.ParquetFile | None = None
    _batch_rows: int = 65_536

    def batches(self, columns: Sequence[str] | None = None) -> Iterator[pa.RecordBatch]:
        """Fresh iterator over the file's batches (each call starts at the top).

        ``columns`` keeps only those columns, in that order; Parquet then reads no other column chunk.
        Each batch passes pyarrow's structural check (buffer sizes against offsets; cheap): a
        corrupt Parquet or IPC file can hold offsets past its data, which no later reader could
        tell from the C data interface alone.
        """
        cols = self._projection(columns)
        try:
            if cols is not None and self._parquet is not None:
                batches = self._parquet.iter_batches(batch_size=self._batch_rows, columns=cols)
            else:
                batches = self._open()
            for b in batches:
                b.validate()
                yield b if cols is None or self._parquet is not None else b.select(cols)
        except (pa.ArrowException, OSError) as e:  # corrupt content found while reading
            raise _located(self.path, self.format, e) from e
        except UnicodeDecodeError as e:
            raise _bad_name(self.path, e) from None

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

    def locate(self, row: int) -> str:
        """Where row ``row`` (0-based, in file order) is, for messages: ``data.jsonl:17:42`` (line and
        column of its first invalid text), ``data.csv:18`` (its first line) or ``data.parquet: row 16``."""
        where = self._locate(row) if self._locate is not None else None
        return f"{self.path}:{where}" if where else f"{self.path}: row {row}"


def scan_file(
    path: str | os.PathLike[str],
    *,
    format: str | None = None,
    batch_rows: int = 65_536,
    text_columns: tuple[str, ...] = (),
    max_record_bytes: int = 1 << 30,
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
    max_record_bytes
        Longest record (JSON Lines line, JSON array element, CSV record) read; a longer one is an
        error naming its line and the limit (option ``max_record_bytes``).

    Text is read as bytes, unchecked (invalid UTF-8 and lone surrogate escapes included):
    :class:`instructfast.Scorer` checks it, and writers refuse to write it.

    Raises
    ------
    InputFormatError
        Missing or empty file, unreadable content (with the line where it can be found), a record
        over ``max_record_bytes``.
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
            src = _scan_parquet(p, batch_rows)
        elif fmt in ("arrow", "arrows"):
            src = _scan_ipc(p, fmt)
        elif fmt == "csv":
            src = _scan_csv(p, text_cols, max_record_bytes)
        else:
            if fmt == "json" and _first_byte(p) != b"[":
                fmt = "jsonl"  # a .json file holding JSON Lines
            src = _scan_json(p, text_cols, fmt, max_record_bytes, batch_rows)
    except (pa.ArrowException, OSError) as e:
        raise _located(p, fmt, e) from e
    except UnicodeDecodeError as e:  # pyarrow decoding a column name or path of the file
        raise _bad_name(p, e) from None
    _check_names(src.schema, p)
    return src


def _bad_name(p: Path, e: UnicodeDecodeError) -> InvalidTextError:
    msg = (
        f"{p}: a column name (or another name in the file's schema) is not valid UTF-8 ({e.reason} at byte "
        f"{e.start} of {e.object[:40]!r}); fix it at the source"
    )
    return InvalidTextError(msg)


def _check_names(schema: pa.Schema | pa.DataType, p: Path, where: str = "") -> None:
    """Column (and nested field) names must be text: pyarrow cannot even show a name that is not UTF-8."""
    fields = list(range(len(schema))) if isinstance(schema, pa.Schema) else list(range(schema.num_fields))
    for i in fields:
        f = schema.field(i)
        try:
            name = f.name
        except UnicodeDecodeError as e:
            msg = (
                f"{p}: the name of column {where}{i} (counting from 0) is not valid UTF-8 ({e.reason} at byte "
                f"{e.start}); fix the header or field name at the source"
            )
            raise InvalidTextError(msg) from None
        _check_names(f.type, p, f"{where}{name}.")


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
        while chunk and not chunk.strip():
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


def _scan_csv(p: Path, text_cols: tuple[str, ...], limit: int) -> FileSource:
    # check_utf8=False: text is checked (and repaired on request) by the scorer, with rows named
    convert = pacsv.ConvertOptions(
        column_types={c: pa.string() for c in text_cols}, strings_can_be_null=False, check_utf8=False
    )
    # pyarrow parses CSV in blocks and cannot read a record longer than one block
    read = pacsv.ReadOptions(block_size=max(1 << 20, _longest_csv_record(p, limit) + (1 << 16)))

    def gen():
        return iter(pacsv.open_csv(str(p), read_options=read, convert_options=convert))

    schema = pacsv.open_csv(str(p), read_options=read, convert_options=convert).schema

    def locate(row: int) -> str | None:
        line = _csv_record_line(p, row + 1)  # record 0 is the header
        return None if line is None else str(line)

    return FileSource(p, "csv", schema, None, gen, locate)


@dataclass
class _CsvChunk:
    offset: int  # of the chunk in the (decompressed) file
    length: int
    lines_before: int  # newlines before the chunk
    newlines: np.ndarray  # positions of the newlines in the chunk
    ends: np.ndarray  # positions of the newlines that end a record (outside quotes)


def _csv_chunks(p: Path) -> Iterator[_CsvChunk]:
    """The file in chunks, with its record ends found quote-aware (a quoted value may span lines)."""
    quoted, offset, lines = 0, 0, 0
    with pa.input_stream(str(p), compression="detect") as f:
        while chunk := f.read(1 << 22):
            a = np.frombuffer(chunk, dtype=np.uint8)
            nl = np.flatnonzero(a == 0x0A)
            q = a == 0x22
            if q.any():  # inside quotes after a byte iff an odd number of quotes so far ("" escapes count twice)
                inside = (np.cumsum(q, dtype=np.int64) + quoted) & 1
                ends = nl[inside[nl] == 0]
                quoted = int(inside[-1])
            else:
                ends = nl if not quoted else nl[:0]
            yield _CsvChunk(offset, len(a), lines, nl, ends)
            offset += len(a)
            lines += len(nl)


def _longest_csv_record(p: Path, limit: int) -> int:
    """Bytes of the longest CSV record; InputFormatError naming its line past ``limit``."""
    longest, start, start_line, total = 0, 0, 1, 0
    for c in _csv_chunks(p):
        total = c.offset + c.length
        if len(c.ends):
            lengths = c.ends + c.offset - np.concatenate(([start], c.ends[:-1] + c.offset + 1))
            worst = int(np.argmax(lengths))
            if lengths[worst] > limit:
                line = start_line if worst == 0 else _line_after(c, int(c.ends[worst - 1]))
                raise _csv_too_long(p, line, limit)
            longest = max(longest, int(lengths[worst]))
            start, start_line = int(c.ends[-1]) + c.offset + 1, _line_after(c, int(c.ends[-1]))
        if total - start > limit:  # an open record already past the limit: stop reading
            raise _csv_too_long(p, start_line, limit)
    return max(longest, total - start)


def _line_after(c: _CsvChunk, newline: int) -> int:
    """File line that starts after the newline at position ``newline`` of chunk ``c``."""
    return c.lines_before + int(np.searchsorted(c.newlines, newline, side="right")) + 1


def _csv_too_long(p: Path, line: int, limit: int) -> InputFormatError:
    return InputFormatError(
        f"{p}:{line}: a CSV record longer than {limit:,} bytes (the max_record_bytes limit); raise it with "
        "--option max_record_bytes=N if it is one record (an unclosed quote makes the rest of the file one record)"
    )


def _csv_record_line(p: Path, record: int) -> int | None:
    """File line (1-based) where CSV record ``record`` starts (the header is record 0)."""
    if record <= 0:
        return 1
    seen = 0
    for c in _csv_chunks(p):
        if seen + len(c.ends) >= record:
            return _line_after(c, int(c.ends[record - 1 - seen]))  # after the newline ending the record before
        seen += len(c.ends)
    return None


def _scan_json(p: Path, text_cols: tuple[str, ...], fmt: FileFormat, limit: int, batch_rows: int) -> FileSource:
    src = JsonSource(p, fmt, text_cols, limit, batch_rows)
    n = _count_lines(p) if fmt == "jsonl" else None

    def locate(row: int) -> str | None:
        pos = src.locate(row)
        if pos is None:
            return None
        line, col = pos
        return f"{line}" if col is None else f"{line}:{col}"

    return FileSource(p, fmt, src.schema, n, src.batches, locate)


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
    """An Arrow read error as one naming the file (JSON errors are located by :class:`JsonSource` itself)."""
    if isinstance(e, InputFormatError):
        return e
    return InputFormatError(f"{p}: cannot read as {fmt}: {e}")


# ---------------------------------------------------------------------------- writers


def _holds_text(t: pa.DataType) -> bool:
    if pa.types.is_string(t) or pa.types.is_large_string(t) or getattr(pa.types, "is_string_view", bool)(t):
        return True
    if pa.types.is_dictionary(t):
        return _holds_text(t.value_type)
    return any(_holds_text(t.field(i).type) for i in range(t.num_fields))


def _holds_bytes(t: pa.DataType) -> bool:
    """Text, binary, or nested (whose leaves may be either)."""
    return _holds_text(t) or pa.types.is_nested(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t)


_UTF8_ROW = re.compile(r"Invalid UTF8 sequence at string index (\d+)")


def check_text(batch: pa.RecordBatch, target: str | os.PathLike[str]) -> None:
    """Raise :class:`~instructfast.InvalidTextError` when a string column of ``batch`` holds invalid UTF-8.

    The writers' last line of defence: a Parquet or Arrow string column holding invalid UTF-8 is
    written without complaint and fails only when someone reads it back into Python. The scorer
    checks and repairs text long before (``on_invalid_utf8``); this catches what did not pass it.
    """
    for k, f in enumerate(batch.schema):
        if not _holds_text(f.type):
            continue
        try:
            batch.column(k).validate(full=True)
        except pa.ArrowInvalid as e:
            m = _UTF8_ROW.search(str(e))
            where = f" row {m.group(1)} of" if m and not pa.types.is_nested(f.type) else ""
            msg = (
                f"{target}: not written:{where} column `{f.name}` holds invalid UTF-8 ({e}), which a string column "
                "must not hold (it could not be read back); score the input with on_invalid_utf8='replace' "
                "(CLI --on-invalid-utf8=replace) to repair it, or fix it at the source"
            )
            raise InvalidTextError(msg) from None


class _BatchWriter:
    def __init__(self, path: str, schema: pa.Schema, fmt: FileFormat, target: str | os.PathLike[str] = "") -> None:
        self.fmt = fmt
        self.schema = schema
        self.target = target or path  # the name users know (the file is written under a temporary one)
        self._check = any(_holds_text(f.type) for f in schema)
        self.metadata: dict[bytes, bytes] = {}  # key-value metadata for the Parquet footer, written on close
        if fmt == "parquet":
            # No min/max statistics for text: useless for pruning, and the writer copies a value for each
            # (a single 256 MiB record made it hold seven times the record; without them, two).
            stats = [f.name for f in schema if not _holds_bytes(f.type)]
            self._w = pq.ParquetWriter(path, schema, compression="zstd", write_statistics=stats or False)
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
        if self._check:
            check_text(batch, self.target)
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
    w = _BatchWriter(tmp, schema, fmt, p)
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
