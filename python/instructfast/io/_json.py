"""JSON Lines and JSON arrays, read in pieces of whole records: any record size up to a limit, in bounded memory.

pyarrow's JSON reader parses a file in fixed blocks and cannot read a record longer than its block
("straddling object straddles two block boundaries"). Here the file is cut into *pieces* of whole
records (about :data:`BLOCK` bytes; a longer record is a piece of its own, up to ``max_record_bytes``)
and each piece is parsed as one block. A JSON array is re-laid as one element per line on the fly, so
it streams the same way instead of being parsed whole.

Text is passed through as bytes: invalid UTF-8 stays as it is, and a lone surrogate escape
(``"\\ud800"``, which pyarrow refuses and ``json.loads`` accepts) becomes the three bytes it would
encode to, so the scorer's one text check (:mod:`instructfast.ops.utf8`) sees every kind of invalid
text and applies ``on_invalid_utf8`` to it; :func:`locate` maps a row back to its line and column.

The first piece fixes the columns and their types (as pyarrow's streaming reader does with its
first block); a later record with a new field or another type is an error naming its line.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.json as pajson

from ..errors import InputFormatError

BLOCK = 8 << 20
"""Target piece size in bytes (pyarrow's streaming reader used blocks of this size here before)."""

# A JSON string (escapes included), a structural character, or a lone quote: the start of a
# string that has not ended yet in the bytes read so far.
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{},]|"')
# A surrogate escape whose backslash is not itself escaped: a high one (with the low one after it,
# when there is one), or a low one.
_SURROGATE_ESCAPE = re.compile(
    rb"(?<!\\)((?:\\\\)*)\\u([dD][89abAB][0-9a-fA-F]{2})(\\u[dD][c-fC-F][0-9a-fA-F]{2})?"
    rb"|(?<!\\)((?:\\\\)*)\\u([dD][c-fC-F][0-9a-fA-F]{2})"
)
_ANY_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")
_NEWLINES = bytes.maketrans(b"\r\n", b"  ")


@dataclass
class Piece:
    """Whole records, one per line; ``line``: the file line of the first; ``element_lines`` and
    ``element_offsets``: for a JSON array, each element's first line and byte offset in the file;
    ``first_row``: rows before this piece."""

    data: bytes
    line: int
    element_lines: list[int] | None = None
    element_offsets: list[int] | None = None
    first_row: int = 0

    def records(self) -> Iterator[tuple[int, bytes]]:
        """(file line, raw bytes) of each record, in row order (blank lines are not records)."""
        if self.element_lines is not None:
            yield from zip(self.element_lines, self.data.split(b"\n")[: len(self.element_lines)])
            return
        for k, raw in enumerate(self.data.split(b"\n")):
            if raw.strip():
                yield self.line + k, raw


def too_long(path: Path, line: int, limit: int) -> InputFormatError:
    return InputFormatError(
        f"{path}:{line}: a record longer than {limit:,} bytes (the max_record_bytes limit); if it is one record, "
        "raise the limit with --option max_record_bytes=N (options={'max_record_bytes': N}): a record is held "
        "in memory about four times over while it is read and scored"
    )


def _check_lengths(data: bytes, path: Path, line: int, limit: int) -> None:
    """Raise :func:`too_long` for the first line of ``data`` longer than ``limit`` bytes."""
    if len(data) <= limit:
        return
    ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 0x0A)
    starts = np.concatenate(([0], ends[:-1] + 1))
    over = np.flatnonzero(ends - starts > limit)
    if len(over):
        raise too_long(path, line + int(over[0]), limit)


def line_pieces(path: Path, limit: int, block: int | None = None) -> Iterator[Piece]:
    """JSON Lines as pieces of whole lines (about ``block`` bytes, default :data:`BLOCK`; a longer line alone)."""
    block = block or BLOCK
    line = 1
    parts: list[bytes] = []  # the open line, when it is longer than what has been read
    held = 0
    with pa.input_stream(str(path), compression="detect") as f:
        while chunk := f.read(block):
            cut = chunk.rfind(b"\n") + 1
            if not cut:
                parts.append(chunk)
                held += len(chunk)
                if held > limit:
                    raise too_long(path, line, limit)
                continue
            data = chunk[:cut]
            if parts:
                parts.append(data)
                data = b"".join(parts)
                parts = []
            _check_lengths(data, path, line, limit)
            yield Piece(data, line)
            line += data.count(b"\n")
            rest = chunk[cut:]
            parts, held = ([rest], len(rest)) if rest else ([], 0)
    data = b"".join(parts)
    if data.strip():
        _check_lengths(data + b"\n", path, line, limit)
        yield Piece(data + b"\n", line)


def array_pieces(path: Path, limit: int, block: int | None = None) -> Iterator[Piece]:
    """A JSON array's elements, each on one line (newlines between tokens become spaces), in pieces."""
    block = block or BLOCK
    buf = bytearray()
    line0 = 1  # file line at buf[0]
    base = 0  # file offset of buf[0]
    mark, mark_line = 0, 1  # newlines are counted forward from here (positions only grow)
    scan = 0
    depth = 0
    elem: int | None = None  # start of the open element in buf
    out: list[bytes] = []
    out_lines: list[int] = []
    out_offsets: list[int] = []
    out_len = 0
    n_elements = 0
    closed = False

    def line_at(pos: int) -> int:
        nonlocal mark, mark_line
        mark_line += buf.count(b"\n", mark, pos)
        mark = pos
        return mark_line

    def emit(start: int, end: int) -> None:
        nonlocal out_len, n_elements
        raw = bytes(buf[start:end])
        lead = len(raw) - len(raw.lstrip())
        raw = raw.strip()
        where = line_at(start + lead)
        if not raw:
            if closed and not n_elements:
                return  # "[]": reported by the caller as an array without records
            raise InputFormatError(f"{path}:{where}: invalid JSON (an empty element: a comma too many?)")
        if raw[:1] != b"{":
            kind = {b"[": "list", b'"': "str", b"t": "bool", b"f": "bool", b"n": "null"}.get(raw[:1], "number")
            raise InputFormatError(f"{path}:{where}: record {n_elements} is a {kind}, expected a JSON object")
        if len(raw) > limit:
            raise too_long(path, where, limit)
        out.append(raw.translate(_NEWLINES))
        out_lines.append(where)
        out_offsets.append(base + start + lead)
        out_len += len(raw) + 1
        n_elements += 1

    with pa.input_stream(str(path), compression="detect") as f:
        while not closed:
            chunk = f.read(block)
            eof = not chunk
            buf += chunk
            for m in _TOKEN.finditer(buf, scan):
                c = buf[m.start()]
                if c == 0x22:  # '"'
                    if m.end() - m.start() == 1:  # a string that goes on past what was read
                        scan = m.start()
                        break
                    continue
                if depth == 0 and elem is None:
                    if c != 0x5B:  # '['
                        raise InputFormatError(f"{path}:{line_at(m.start())}: expected a JSON array of objects")
                    depth, elem = 1, m.end()
                    continue
                if c in (0x5B, 0x7B):
                    depth += 1
                elif c in (0x5D, 0x7D):
                    depth -= 1
                if depth == 1 and c == 0x2C:  # ',' between elements
                    assert elem is not None
                    emit(elem, m.start())
                    elem = m.end()
                elif depth == 0:  # the array's closing bracket
                    if c != 0x5D:
                        raise InputFormatError(f"{path}:{line_at(m.start())}: invalid JSON (unbalanced brackets)")
                    closed = True
                    assert elem is not None
                    emit(elem, m.start())
                    tail = bytes(buf[m.end() :]) + f.read()
                    if tail.strip():
                        where = line_at(m.end()) + tail[: len(tail) - len(tail.lstrip())].count(b"\n")
                        raise InputFormatError(f"{path}:{where}: data after the end of the JSON array")
                    break
            else:
                scan = len(buf)
            if out and (out_len >= block or closed):
                yield Piece(b"\n".join(out) + b"\n", out_lines[0], out_lines, out_offsets, n_elements - len(out))
                out, out_lines, out_offsets, out_len = [], [], [], 0
            if closed:
                break
            if eof:
                raise InputFormatError(
                    f"{path}:{line_at(len(buf))}: the JSON array is not closed (unexpected end of file)"
                )
            # drop what is done: everything before the open element (or the scan point)
            keep = elem if elem is not None else scan
            keep = min(keep, scan)
            if keep > 0:
                line_at(keep)
                line0 = mark_line
                del buf[:keep]
                base += keep
                mark, scan = 0, scan - keep
                if elem is not None:
                    elem -= keep
            if elem is not None and len(buf) - elem > limit + block:
                raise too_long(path, line0, limit)
    if not n_elements:
        raise InputFormatError(f"{path}: the JSON array holds no records")


def fix_surrogate_escapes(data: bytes) -> bytes:
    """Lone surrogate escapes replaced by the bytes they would encode to (pyarrow refuses the escapes).

    >>> fix_surrogate_escapes(b'{"a": "x\\\\ud800y", "b": "\\\\ud83d\\\\ude00", "c": "\\\\\\\\ud800"}')
    b'{"a": "x\\xed\\xa0\\x80y", "b": "\\\\ud83d\\\\ude00", "c": "\\\\\\\\ud800"}'
    """
    if not _ANY_SURROGATE.search(data):
        return data

    def fix(m: re.Match[bytes]) -> bytes:
        if m.group(2) is not None:
            if m.group(3) is not None:  # a high surrogate with its low one: a valid pair
                return m.group(0)
            return m.group(1) + chr(int(m.group(2), 16)).encode("utf-8", "surrogatepass")
        return m.group(4) + chr(int(m.group(5), 16)).encode("utf-8", "surrogatepass")

    return _SURROGATE_ESCAPE.sub(fix, data)


def first_bad_text(raw: bytes) -> int | None:
    """Offset in ``raw`` (a record as written in the file) of its first invalid UTF-8 byte or lone surrogate escape."""
    hits = []
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as e:
        hits.append(e.start)
    for m in _SURROGATE_ESCAPE.finditer(raw):
        if m.group(2) is not None and m.group(3) is not None:
            continue
        hits.append(m.start() + len(m.group(1) if m.group(2) is not None else m.group(4)))
        break
    return min(hits) if hits else None


class JsonSource:
    """The batches of a JSON Lines file or JSON array, parsed piece by piece; re-iterable.

    The first piece is parsed when the source is made (it fixes the schema) and kept for the first
    iteration.
    """

    def __init__(self, path: Path, fmt: str, text_cols: tuple[str, ...], limit: int, batch_rows: int) -> None:
        self.path, self.fmt, self.limit, self.batch_rows = path, fmt, limit, batch_rows
        self.array = fmt == "json"
        self.text_cols = text_cols
        first = next(self._pieces(), None)
        if first is None:
            msg = f"{path}: the file holds no records" if not self.array else f"{path}: the JSON array holds no records"
            raise InputFormatError(msg)
        keys = self._keys(first)
        explicit = pa.schema([(c, pa.string()) for c in text_cols if c in keys])
        table = self._parse(first, explicit, "infer", None)
        # columns in the order the records hold them (pyarrow puts the explicit ones first)
        order = {k: i for i, k in enumerate(keys)}
        table = table.select(sorted(table.column_names, key=lambda c: order.get(c, len(order))))
        # Text columns that were null throughout the first piece are text all the same.
        fields = [
            pa.field(f.name, pa.string()) if f.name in text_cols and pa.types.is_null(f.type) else f
            for f in table.schema
        ]
        self.schema = pa.schema(fields)
        self._first: pa.Table | None = table.cast(self.schema)

    def _pieces(self) -> Iterator[Piece]:
        gen = array_pieces if self.array else line_pieces
        return gen(self.path, self.limit)

    @staticmethod
    def _keys(piece: Piece) -> list[str]:
        """The fields of the piece's first records, in order of first appearance."""
        keys: dict[str, None] = {}
        for _, raw in itertools.islice(piece.records(), 200):
            try:
                obj = json.loads(raw.decode("utf-8", "surrogateescape"))
            except ValueError:
                break
            if isinstance(obj, dict):
                keys.update(dict.fromkeys(obj))
        return list(keys)

    def _parse(self, piece: Piece, schema: pa.Schema, unexpected: str, known: pa.Schema | None) -> pa.Table:
        data = fix_surrogate_escapes(piece.data)
        read = pajson.ReadOptions(block_size=max(len(data) + 1, 1 << 20), use_threads=True)
        parse = pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior=unexpected)
        try:
            return pajson.read_json(pa.BufferReader(data), read_options=read, parse_options=parse)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise self._diagnose(piece, known, e) from e

    def batches(self) -> Iterator[pa.RecordBatch]:
        first, self._first = self._first, None
        rows = 0
        for k, piece in enumerate(self._pieces()):
            piece.first_row = rows
            if k == 0 and first is not None:
                table = first
            else:
                table = self._parse(piece, self.schema, "error", self.schema)
            rows += table.num_rows
            yield from table.to_batches(max_chunksize=self.batch_rows)

    # -- errors --------------------------------------------------------------------------
    def _diagnose(self, piece: Piece, known: pa.Schema | None, e: Exception) -> InputFormatError:
        """The first record of ``piece`` that explains pyarrow's error, by file line."""
        types: dict[str, tuple[str, str]] = {}  # field -> (kind, where it was first seen)
        for f in known or []:
            kind = _arrow_kind(f.type)
            if kind is not None:
                types[f.name] = (kind, "the first records")
        for row, (line, raw) in enumerate(piece.records()):
            rec = f"record {piece.first_row + row}: " if self.array else ""
            try:
                obj = json.loads(raw.decode("utf-8", "surrogateescape"))
            except ValueError as err:
                return InputFormatError(f"{self.path}:{line}: {rec}invalid JSON ({err})")
            if not isinstance(obj, dict):
                return InputFormatError(f"{self.path}:{line}: {rec}expected a JSON object, got {type(obj).__name__}")
            for k, v in obj.items():
                if known is not None and k not in known.names:
                    return InputFormatError(
                        f"{self.path}:{line}: {rec}field `{k}` is not among the columns fixed by the first "
                        f"{BLOCK:,} bytes of the file ({known.names}); put a record with every field first"
                    )
                if v is None:
                    continue
                kind = _py_kind(v)
                if k in self.text_cols and kind != "str":
                    return InputFormatError(f"{self.path}:{line}: {rec}field `{k}` must be a string, got {kind}")
                here = f"record {piece.first_row + row}" if self.array else f"line {line}"
                seen = types.setdefault(k, (kind, here))
                if seen[0] != kind:
                    return InputFormatError(
                        f"{self.path}:{line}: {rec}field `{k}` is {kind} but {seen[1]} had {seen[0]}"
                    )
        return InputFormatError(f"{self.path}:{piece.line}: cannot read as {self.fmt}: {e}")

    def locate(self, row: int) -> tuple[int, int | None] | None:
        """(line, column) of the first invalid text of ``row`` (column None when not found), None past the end."""
        for piece in self._pieces():
            offsets = iter(piece.element_offsets or ())
            for line, raw in piece.records():
                start = next(offsets, None)
                if row == 0:
                    off = first_bad_text(raw)
                    if off is None:
                        return line, None
                    if start is not None:  # an array element, re-laid on one line: its place in the file
                        return self._file_position(start + off)
                    return line, len(raw[:off].decode("utf-8", "replace")) + 1
                row -= 1
        return None

    def _file_position(self, offset: int) -> tuple[int, int]:
        """Line and column (characters, 1-based) of byte ``offset`` of the (decompressed) file."""
        with pa.input_stream(str(self.path), compression="detect") as f:
            head = f.read(offset)
        start = head.rfind(b"\n") + 1
        return head.count(b"\n") + 1, len(head[start:].decode("utf-8", "replace")) + 1


def _py_kind(v: object) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    for t, name in ((str, "str"), (list, "list"), (dict, "dict")):
        if isinstance(v, t):
            return name
    return type(v).__name__


def _arrow_kind(t: pa.DataType) -> str | None:
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "str"
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return "number"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return "list"
    if pa.types.is_struct(t):
        return "dict"
    return None
