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

A JSON Lines record longer than :data:`HUGE` is not handed to pyarrow, whose parser holds several
copies of a record while it parses it: :func:`parse_record` walks it field by field, each string
decoded straight from the record's bytes (:func:`instructfast.io.jsonstr.json_string`) into the
buffer its Arrow array then uses without a copy. Reading it holds the record and its values, about
twice the record, at the peak.

The first piece fixes the columns and their types (as pyarrow's streaming reader does with its
first block); a later record with a new field or another type is an error naming its line.
"""

from __future__ import annotations

import codecs
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
from .jsonstr import json_string

BLOCK = 8 << 20
"""Target piece size in bytes (pyarrow's streaming reader used blocks of this size here before)."""
HUGE = 32 << 20
"""A JSON Lines record longer than this is parsed field by field (:func:`parse_record`): pyarrow's parser
holds about four times a record while it parses one, this about two."""

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
_NONBLANK = re.compile(rb"[^ \t\r\n]")


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
    huge: bool = False  # the first record is longer than HUGE: parsed field by field (parse_record)

    def records(self) -> Iterator[tuple[int, bytes | memoryview]]:
        """(file line, raw bytes) of each record, in row order (blank lines are not records)."""
        if self.element_lines is not None:
            yield from zip(self.element_lines, self.data.split(b"\n")[: len(self.element_lines)])
            return
        data: bytes = self.data
        line = self.line
        if self.huge:  # the first line is not copied: a view of it (only locate() reads it)
            nl = _line_end(data)
            yield line, memoryview(data)[:nl]
            data, line = data[nl + 1 :], line + 1
        for k, raw in enumerate(data.split(b"\n")):
            if raw.strip():
                yield line + k, raw


def _line_end(data: bytes) -> int:
    """Offset of the first newline (a huge last line may have none)."""
    nl = data.find(b"\n")
    return nl if nl >= 0 else len(data)


def too_long(path: Path, line: int, limit: int) -> InputFormatError:
    return InputFormatError(
        f"{path}:{line}: a record longer than {limit:,} bytes (the max_record_bytes limit); if it is one record, "
        "raise the limit with --option max_record_bytes=N (options={'max_record_bytes': N}): a record is held "
        "in memory about four times over while it is read and scored"
    )


def _check_lengths(data: bytes, path: Path, line: int, limit: int, start: int = 0) -> None:
    """Raise :func:`too_long` for the first line of ``data[start:]`` longer than ``limit`` bytes."""
    if len(data) - start <= limit:
        return
    ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8, offset=start) == 0x0A)
    starts = np.concatenate(([0], ends[:-1] + 1))
    over = np.flatnonzero(ends - starts > limit)
    if len(over):
        raise too_long(path, line + int(over[0]), limit)


def line_pieces(path: Path, limit: int, block: int | None = None) -> Iterator[Piece]:
    """JSON Lines as pieces of whole lines (about ``block`` bytes, default :data:`BLOCK`; a line longer
    than a read starts a piece of its own, and one longer than :data:`HUGE` is a piece alone, marked ``huge``).

    No piece is referenced here once yielded (each is handed over from a one-item list): the reader
    drops a piece's bytes as soon as it has parsed them, and a huge record must not outlive that.
    """
    block = block or BLOCK
    line = 1
    parts: list[bytes] = []  # the open line, when it is longer than what has been read
    held = 0
    out: list[Piece] = []
    with pa.input_stream(str(path), compression="detect") as f:
        seekable = f.seekable()
        while chunk := f.read(block):
            cut = chunk.rfind(b"\n") + 1
            if not cut:
                parts.append(chunk)
                held += len(chunk)
                if held > limit:
                    raise too_long(path, line, limit)
                if seekable and held > HUGE:
                    # A huge line: find its end, then read it again in one piece. Joined, the reads
                    # would leave a second copy of the record in the allocator's free lists.
                    parts, start = [], f.tell() - held
                    out.append(Piece(_read_line(f, start, held, block, limit, path, line), line, huge=True))
                    held = 0
                    line += 1
                    yield out.pop()
                continue
            data = chunk[:cut]
            if parts:
                parts.append(data)
                data = b"".join(parts)
                parts = []
            n = data.count(b"\n")
            out.append(_piece(data, path, line, limit))
            del data
            line += n
            yield out.pop()
            rest = chunk[cut:]
            parts, held = ([rest], len(rest)) if rest else ([], 0)
    if parts:  # a last line without its newline
        parts.append(b"\n")
        data = b"".join(parts)  # one join: a long last line is not copied twice
        parts = []
        if _NONBLANK.search(data):
            out.append(_piece(data, path, line, limit))
            del data
            yield out.pop()


def _read_line(f: pa.NativeFile, start: int, held: int, block: int, limit: int, path: Path, line: int) -> bytes:
    """The line at file offset ``start`` (``held`` bytes of it read so far, none of them a newline),
    newline included, read in one call; the file is left after it."""
    length = held
    while chunk := f.read(block):
        nl = chunk.find(b"\n")
        if nl >= 0:
            length += nl
            break
        length += len(chunk)
        if length > limit:
            raise too_long(path, line, limit)
    if length > limit:
        raise too_long(path, line, limit)
    f.seek(start)
    data = f.read(length + 1)  # its newline too (none at the end of the file)
    return data


def _piece(data: bytes, path: Path, line: int, limit: int) -> Piece:
    """Whole lines as a piece; only the first can be longer than a read (the others fit in one)."""
    first = data.find(b"\n")
    if first > limit:
        raise too_long(path, line, limit)
    if first > HUGE:
        _check_lengths(data, path, line + 1, limit, first + 1)
        return Piece(data, line, huge=True)
    _check_lengths(data, path, line, limit)
    return Piece(data, line)


def array_pieces(path: Path, limit: int, block: int | None = None) -> Iterator[Piece]:
    """A JSON array's elements, each on one line (newlines between tokens become spaces), in pieces."""
    block = block or BLOCK
    buf = bytearray()
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
                line_at(keep)  # mark_line is now the line at buf[keep], which becomes buf[0]
                del buf[:keep]
                base += keep
                mark, scan = 0, scan - keep
                if elem is not None:
                    elem -= keep
            if elem is not None and len(buf) - elem > limit + block:
                first = _NONBLANK.search(buf, elem)  # the element's first line, not the buffer's
                raise too_long(path, line_at(first.start() if first else elem), limit)
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


# ---------------------------------------------------------------------------- huge records

_WS = re.compile(rb"[ \t\r\n]*")
_NUMBER = re.compile(rb"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_LITERALS = ((b"true", True), (b"false", False), (b"null", None))
_MAX_DEPTH = 200  # two Python frames a level: well inside the recursion limit, far past real records


def _skip(data: bytes, i: int, end: int) -> int:
    """Offset of the first byte at or after ``i`` that is not JSON white space."""
    m = _WS.match(data, i, end)
    return m.end() if m else i


def parse_record(data: bytes, end: int) -> dict[str, object]:
    """The JSON object ``data[:end]`` (one JSON Lines record), string values as ``bytes``.

    Strings are decoded by :func:`~instructfast.io.jsonstr.json_string` (raw bytes as they are, lone
    surrogate escapes as their three bytes), numbers, ``true``, ``false`` and ``null`` as ``json.loads``
    reads them, objects as dicts (a repeated key keeps its last value) and arrays as lists.

    Raises
    ------
    ValueError
        Not one JSON object; the message ends with ``at byte N`` (an offset in ``data``).

    >>> record = b'{"a": "x\\u00e9", "b": [1, 2.5, true, null], "c": {"d": "e"}}'
    >>> parse_record(record, len(record))
    {'a': b'x\xc3\xa9', 'b': [1, 2.5, True, None], 'c': {'d': b'e'}}
    """
    i = _skip(data, 0, end)
    if data[i : i + 1] != b"{":
        raise ValueError(f"expected a JSON object at byte {i}")
    obj, i = _value(data, i, end, 0)
    i = _skip(data, i, end)
    if i != end:
        raise ValueError(f"data after the end of the record at byte {i}")
    assert isinstance(obj, dict)
    return obj


def _value(data: bytes, i: int, end: int, depth: int) -> tuple[object, int]:
    """The JSON value at ``data[i]`` (no leading white space) and the offset past it."""
    c = data[i : i + 1]
    if c == b'"':
        value, j = json_string(data, i)
        if j > end:
            raise ValueError(f"unterminated string at byte {i}")
        return value, j
    if c in (b"{", b"["):
        if depth >= _MAX_DEPTH:
            raise ValueError(f"nested too deeply at byte {i}")
        return _container(data, i, end, depth + 1)
    for word, constant in _LITERALS:
        if data.startswith(word, i, end):
            return constant, i + len(word)
    m = _NUMBER.match(data, i, end)
    if m is None or m.end() == i:
        raise ValueError(f"expected a value at byte {i}")
    return json.loads(m.group()), m.end()


def _container(data: bytes, i: int, end: int, depth: int) -> tuple[object, int]:
    """The object or array whose opening bracket is ``data[i]``."""
    is_obj = data[i] == 0x7B
    close = b"}" if is_obj else b"]"
    obj: dict[str, object] = {}
    items: list[object] = []
    i = _skip(data, i + 1, end)
    if data[i : i + 1] == close:
        return (obj if is_obj else items), i + 1
    while True:
        if is_obj:
            if data[i : i + 1] != b'"':
                raise ValueError(f"expected a field name at byte {i}")
            raw_key, i = json_string(data, i)
            try:
                key = raw_key.decode("utf-8")
            except UnicodeDecodeError:
                raise ValueError(f"a field name that is not valid UTF-8 at byte {i - len(raw_key) - 2}") from None
            i = _skip(data, i, end)
            if data[i : i + 1] != b":":
                raise ValueError(f"expected ':' at byte {i}")
            i = _skip(data, i + 1, end)
            obj[key], i = _value(data, i, end, depth)
        else:
            value, i = _value(data, i, end, depth)
            items.append(value)
        i = _skip(data, i, end)
        c = data[i : i + 1]
        if c == close:
            return (obj if is_obj else items), i + 1
        if c != b"," or i >= end:
            raise ValueError(f"expected ',' or {close.decode()!r} at byte {i}")
        i = _skip(data, i + 1, end)


def _kind(v: object) -> str:
    return "str" if isinstance(v, bytes) else _py_kind(v)


def _binary_like(t: pa.DataType) -> pa.DataType:
    """``t`` with every string type as the binary type of the same layout (values are bytes, unchecked)."""
    if pa.types.is_string(t):
        return pa.binary()
    if pa.types.is_large_string(t):
        return pa.large_binary()
    if pa.types.is_list(t):
        return pa.list_(t.value_field.with_type(_binary_like(t.value_type)))
    if pa.types.is_large_list(t):
        return pa.large_list(t.value_field.with_type(_binary_like(t.value_type)))
    if pa.types.is_struct(t):
        return pa.struct([t.field(k).with_type(_binary_like(t.field(k).type)) for k in range(t.num_fields)])
    return t


def _one_string(value: bytes, t: pa.DataType) -> pa.Array:
    """A one-element string array over ``value``'s own memory (no copy, no UTF-8 check: the scorer checks)."""
    large = pa.types.is_large_string(t)
    if not large and len(value) >= 1 << 31:
        raise OverflowError(f"a string of {len(value):,} bytes does not fit a `string` column (2 GiB at most)")
    offsets = np.array([0, len(value)], dtype=np.int64 if large else np.int32)
    return pa.Array.from_buffers(t, 1, [None, pa.py_buffer(offsets), pa.py_buffer(value)])


def _one_value(v: object, t: pa.DataType) -> pa.Array:
    """``v`` (as :func:`parse_record` gives it) as a one-element array of type ``t``."""
    if v is None:
        return pa.nulls(1, t)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        if not isinstance(v, bytes):
            raise TypeError(f"expected a string, got {_kind(v)}")
        return _one_string(v, t)
    if isinstance(v, bytes):  # a string read as another type (a timestamp): pyarrow's conversion
        return pa.array([v], pa.binary()).cast(pa.string()).cast(t)
    return pa.array([v], _binary_like(t)).view(t)


def first_bad_text(raw: bytes | memoryview) -> int | None:
    """Offset in ``raw`` (a record as written in the file) of its first invalid UTF-8 byte or lone surrogate escape.

    Decoded a megabyte at a time, so a huge record costs no copy of itself.
    """
    hits = []
    bad = _first_invalid_utf8(raw)
    if bad is not None:
        hits.append(bad)
    for m in _SURROGATE_ESCAPE.finditer(raw):
        if m.group(2) is not None and m.group(3) is not None:
            continue
        hits.append(m.start() + len(m.group(1) if m.group(2) is not None else m.group(4)))
        break
    return min(hits) if hits else None


_STEP = 1 << 20


def _first_invalid_utf8(raw: bytes | memoryview) -> int | None:
    view = memoryview(raw)
    dec = codecs.getincrementaldecoder("utf-8")()
    for at in range(0, len(view), _STEP):
        held = len(dec.getstate()[0])  # bytes of a character cut by the last step
        try:
            dec.decode(view[at : at + _STEP], final=at + _STEP >= len(view))
        except UnicodeDecodeError as e:  # e.start counts from the held bytes
            return at - held + e.start
    return None


def _chars(raw: bytes | memoryview, end: int) -> int:
    """Characters in ``raw[:end]`` (invalid bytes one each), a megabyte at a time."""
    view = memoryview(raw)[:end]
    dec = codecs.getincrementaldecoder("utf-8")("replace")
    return sum(
        len(dec.decode(view[at : at + _STEP], final=at + _STEP >= len(view))) for at in range(0, len(view), _STEP)
    )


class JsonSource:
    """The batches of a JSON Lines file or JSON array, parsed piece by piece; re-iterable.

    The first piece is parsed when the source is made (it fixes the schema) and kept for the first
    iteration, unless it holds a huge record (that is parsed again then, rather than held).
    """

    def __init__(self, path: Path, fmt: str, text_cols: tuple[str, ...], limit: int, batch_rows: int) -> None:
        self.path, self.fmt, self.limit, self.batch_rows = path, fmt, limit, batch_rows
        self.array = fmt == "json"
        self.text_cols = text_cols
        first = next(self._pieces(), None)
        if first is None:
            msg = f"{path}: the file holds no records" if not self.array else f"{path}: the JSON array holds no records"
            raise InputFormatError(msg)
        if first.huge:
            huge, rest = self._huge_parts(first, None)
            keys = list(dict.fromkeys(huge.column_names + (self._keys(rest) if rest else [])))
            # the huge record's types hold for the rest of the piece (but for its nulls, which say nothing)
            explicit = pa.schema([f for f in huge.schema if not pa.types.is_null(f.type)])
            explicit = _with_text(explicit, text_cols, keys)
            tables = [huge] + ([self._parse(rest, explicit, "infer", None)] if rest else [])
        else:
            keys = self._keys(first)
            tables = [self._parse(first, _with_text(pa.schema([]), text_cols, keys), "infer", None)]
        # columns in the order the records hold them (pyarrow puts the explicit ones first)
        self.schema = _first_schema(tables, keys, text_cols)
        self._first: list[pa.Table] | None = None if first.huge else [_conform(t, self.schema) for t in tables]

    def _pieces(self) -> Iterator[Piece]:
        gen = array_pieces if self.array else line_pieces
        return gen(self.path, self.limit)

    @staticmethod
    def _keys(piece: Piece) -> list[str]:
        """The fields of the piece's first records, in order of first appearance."""
        keys: dict[str, None] = {}
        for _, raw in itertools.islice(piece.records(), 200):
            try:
                obj = json.loads(str(raw, "utf-8", "surrogateescape"))
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

    def _tables(self, piece: Piece) -> list[pa.Table]:
        """The piece's rows as tables of the source's schema (a huge record is a table of its own)."""
        if not piece.huge:
            return [self._parse(piece, self.schema, "error", self.schema)]
        huge, rest = self._huge_parts(piece, self.schema)
        return [huge] + ([self._parse(rest, self.schema, "error", self.schema)] if rest else [])

    def _huge_parts(self, piece: Piece, schema: pa.Schema | None) -> tuple[pa.Table, Piece | None]:
        """The piece's first record, parsed field by field into a one-row table, and the rest of the piece.

        ``schema``: the source's (a field it lacks, or a value of another type, is an error naming
        the line); None while the first piece fixes it (types as pyarrow's reader would infer them).
        """
        data = piece.data
        nl = _line_end(data)
        try:
            obj = parse_record(data, nl)
        except ValueError as e:
            msg = f"{self.path}:{piece.line}: invalid JSON ({e}, counting from the start of the line)"
            raise InputFormatError(msg) from None
        rest = Piece(data[nl + 1 :], piece.line + 1, first_row=piece.first_row + 1)
        del data
        where = f"{self.path}:{piece.line}: "
        columns: dict[str, pa.Array] = {}
        if schema is not None:
            for k in obj:
                if k not in schema.names:
                    raise InputFormatError(
                        f"{where}field `{k}` is not among the columns fixed by the first {BLOCK:,} bytes of the "
                        f"file ({schema.names}); put a record with every field first"
                    )
        fields = list(schema if schema is not None else _inferred(obj))
        for f in fields:
            v = obj.pop(f.name, None)  # each value is dropped once it is an array: no second reference
            if f.name in self.text_cols and v is not None and not isinstance(v, bytes):
                raise InputFormatError(f"{where}field `{f.name}` must be a string, got {_kind(v)}")
            try:
                columns[f.name] = _one_value(v, f.type)
            except OverflowError as e:
                raise InputFormatError(f"{where}field `{f.name}`: {e}") from None
            except (TypeError, pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
                had = _arrow_kind(f.type) or str(f.type)
                msg = f"{where}field `{f.name}` is {_kind(v)} but the first records had {had}"
                raise InputFormatError(msg) from None
        table = pa.table(columns)
        return table, (rest if _NONBLANK.search(rest.data) else None)

    def batches(self) -> Iterator[pa.RecordBatch]:
        first, self._first = self._first, None
        rows = 0
        # no enumerate(): it keeps its last (index, piece) tuple alive until the next piece is read
        for piece in self._pieces():
            piece.first_row = rows
            tables = first if first is not None else self._tables(piece)
            first = None
            del piece  # a huge record's bytes go now: its values hold their own memory
            while tables:
                table = tables.pop(0)  # each table goes once its batches are consumed
                rows += table.num_rows
                yield from table.to_batches(max_chunksize=self.batch_rows)
                del table

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
                obj = json.loads(str(raw, "utf-8", "surrogateescape"))
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
                    return line, _chars(raw, off) + 1
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


def _inferred(obj: dict[str, object]) -> pa.Schema:
    """The schema pyarrow's JSON reader infers for the record ``obj`` (as :func:`parse_record` gives it).

    pyarrow itself infers it, from a copy of the record whose long strings are empty: the types are
    exactly those of the records it reads (a short string may be a timestamp), at no cost in memory.
    """
    skeleton = json.dumps(_skeleton(obj), ensure_ascii=False).encode()
    return pajson.read_json(pa.BufferReader(skeleton)).schema


def _skeleton(v: object) -> object:
    if isinstance(v, bytes):
        if len(v) > 64:
            return ""
        try:
            return v.decode("utf-8")
        except UnicodeDecodeError:  # invalid text is still a string
            return ""
    if isinstance(v, list):
        return [_skeleton(x) for x in v]
    if isinstance(v, dict):
        return {k: _skeleton(x) for k, x in v.items()}
    return v


def _with_text(schema: pa.Schema, text_cols: tuple[str, ...], keys: list[str]) -> pa.Schema:
    """``schema`` plus the text columns among ``keys`` that it lacks, as strings."""
    have = set(schema.names)
    return pa.schema(list(schema) + [pa.field(c, pa.string()) for c in text_cols if c in keys and c not in have])


def _first_schema(tables: list[pa.Table], keys: list[str], text_cols: tuple[str, ...]) -> pa.Schema:
    """The columns the first piece fixes: in the records' order, each with its first non-null type;
    text columns that were null throughout are text all the same."""
    types: dict[str, pa.DataType] = {}
    for t in tables:
        for f in t.schema:
            if f.name not in types or pa.types.is_null(types[f.name]):
                types[f.name] = f.type
    order = {k: i for i, k in enumerate(keys)}
    names = sorted(types, key=lambda c: order.get(c, len(order)))
    return pa.schema(
        [pa.field(c, pa.string() if c in text_cols and pa.types.is_null(types[c]) else types[c]) for c in names]
    )


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with ``schema``'s columns, in its order (absent ones null)."""
    cols = [
        table.column(f.name).cast(f.type) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(cols, schema=schema)
