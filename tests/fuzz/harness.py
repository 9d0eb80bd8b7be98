"""What the fuzzers check, as plain functions of a byte string: atheris drives them (``fuzz_*.py``,
``make fuzz``) and the normal suite replays every kept input (``test_fuzz_corpus.py``).

:func:`check_core` (the native core): the bytes choose an Arrow string array, either built by
pyarrow (``string``, ``large_string`` or ``string_view``; nulls, slices, chunks; any bytes, valid
UTF-8 or not) or laid out by hand through the C data interface with arbitrary offsets, views,
bitmaps and counts (:mod:`tests.arrow_c`). Every result is held to the pure-Python twin: the UTF-8
check (:mod:`instructfast.ops.utf8_py`), the repair, and the text statistics, bit for bit; a hand
laid array either gives those same results or, exactly when it breaks a rule the C data interface
lets us check, an :class:`~instructfast.ArrowDataError`. Under ``make fuzz`` the core is built with
AddressSanitizer and UndefinedBehaviorSanitizer, so a read out of bounds is a crash, not luck.

:func:`check_readers` (the file readers and writers): the bytes are a file in one of the input
formats; reading it and scoring it to Parquet may fail only with an :class:`~instructfast.InstructfastError`,
and whatever is written must read back into Python (no invalid UTF-8 in a string column).
"""

from __future__ import annotations

import tempfile
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa

import instructfast
from instructfast._native import core
from instructfast.ops import textstats_py, utf8_py
from instructfast.ops.textstats import text_stats
from instructfast.ops.utf8 import invalid_utf8, replace_invalid_utf8
from tests.arrow_c import FORMATS, HandBuilt, validity, view

# Characters that stress the tokenizer and the decoder: ASCII classes, Unicode spaces and dashes,
# case mappings that grow or depend on context, astral characters, and byte sequences that are not
# UTF-8 (overlong, encoded surrogates, truncated, out of range).
PALETTE = [
    b"a", b"Z", b"7", b" ", b"\t", b"\n", b"-", b".", b"'", b"_",
    "\u2013".encode(), "\u2014".encode(), "\u00a0".encode(), "\u2028".encode(), "\u3000".encode(),
    "\u03a3".encode(), "\u0130".encode(), "\u00df".encode(), "\u1e9e".encode(), "\u0345".encode(),
    "\U0001f642".encode(), "\u4e2d".encode(), "\ufffd".encode(),
    b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xc0\x80", b"\xe0\x80\x80", b"\xf4\x90\x80\x80",
    b"\xff", b"\xfe", b"\x80", b"\xe2\x82", b"\xf0\x9f\x98",
]  # fmt: skip
KINDS = ("string", "large_string", "string_view")
_BINARY = {"string": pa.binary(), "large_string": pa.large_binary(), "string_view": pa.binary_view()}
_TEXT = {"string": pa.string(), "large_string": pa.large_string(), "string_view": pa.string_view()}


class Reader:
    """Structured choices drawn from fuzz bytes, deterministically (zeros once they run out)."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def byte(self) -> int:
        b = self.data[self.pos] if self.pos < len(self.data) else 0
        self.pos += 1
        return b

    def int(self, lo: int, hi: int) -> int:
        span = hi - lo + 1
        v = 0
        for _ in range(max(1, (span.bit_length() + 7) // 8)):
            v = (v << 8) | self.byte()
        return lo + v % span

    def bool(self, p: float = 0.5) -> bool:
        return self.byte() < p * 256

    def pick(self, seq):
        return seq[self.int(0, len(seq) - 1)]

    def raw(self, n: int) -> bytes:
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def rest(self) -> bytes:
        out = self.data[self.pos :]
        self.pos = len(self.data)
        return out

    def text(self, max_pieces: int = 24) -> bytes:
        """Bytes of a text: raw bytes or pieces from :data:`PALETTE` (mostly)."""
        if self.bool(0.2):
            return self.raw(self.int(0, 48))
        return b"".join(self.pick(PALETTE) if self.bool(0.7) else self.raw(1) for _ in range(self.int(0, max_pieces)))


# ----------------------------------------------------------------------------------- the core


def _expected_stats(values: list[bytes | None], threshold: float) -> dict[str, np.ndarray]:
    return textstats_py.text_stats([None if v is None else v.decode("utf-8") for v in values], threshold=threshold)


def _assert_same(got: dict[str, np.ndarray], want: dict[str, np.ndarray], rows: np.ndarray | None = None) -> None:
    for key, w in want.items():
        g = got[key] if rows is None else got[key][rows]
        w = w if rows is None else w[rows]
        assert g.dtype == w.dtype, key
        assert np.array_equal(g, w, equal_nan=w.dtype.kind == "f"), (key, g, w)


def _pyarrow_layouts(r: Reader) -> None:
    kind = r.pick(KINDS)
    values = [None if r.bool(0.15) else r.text() for _ in range(r.int(0, 20))]
    arr = pa.array(values, _BINARY[kind]).view(_TEXT[kind])
    start = r.int(0, len(values))
    stop = r.int(start, len(values))
    arr, values = arr.slice(start, stop - start), values[start:stop]
    threshold = r.pick([0.72, 0.5, 0.9, 0.01])
    threads = r.int(1, 3)

    bad = invalid_utf8(arr, threads=threads)
    want_bad = utf8_py.check(values)
    assert np.array_equal(bad, want_bad), (bad, want_bad)

    cut = r.int(0, len(values))  # chunked: the same rows in two chunks
    chunked = pa.chunked_array([arr.slice(0, cut), arr.slice(cut)], arr.type)
    if (want_bad >= 0).any():
        first = int(np.argmax(want_bad >= 0))
        try:
            text_stats(chunked, threshold=threshold, threads=threads)
        except instructfast.InvalidTextError as e:
            assert (e.row, e.byte) == (first, int(want_bad[first])), (e.row, e.byte, first)
        else:
            raise AssertionError("text_stats accepted invalid UTF-8")
    repaired = replace_invalid_utf8(arr)
    want_values = [None if v is None else utf8_py.replace_invalid(v) for v in values]
    assert repaired.to_pylist() == [None if v is None else v.decode("utf-8") for v in want_values]
    got = text_stats(pa.chunked_array([repaired.slice(0, cut), repaired.slice(cut)]), threshold=threshold)
    _assert_same(got, _expected_stats(want_values, threshold))


def _bitmap(r: Reader, n: int) -> tuple[list[bool], bytes | None, int]:
    """Validity bits of n elements, the bitmap (or None) and the null count the producer declares."""
    bits = [not r.bool(0.2) for _ in range(n)]
    with_bitmap = r.bool(0.6)
    declared = r.pick([-1, 0, bits.count(False), r.int(-3, n + 3)])
    return bits, (validity(bits) if with_bitmap else None), declared


def _declared_valid(bits: list[bool], bitmap: bytes | None, declared: int, offset: int, length: int) -> list[bool]:
    """Which elements [offset, offset + length) the core treats as valid."""
    if declared == 0 or bitmap is None:
        return [True] * length
    return bits[offset : offset + length]


def _count_rules(declared: int, bitmap: bytes | None, length: int) -> bool:
    """True when the null count and bitmap break the rules the core checks."""
    return not (-1 <= declared <= length) or (declared not in (0, -1) and bitmap is None)


def _compare_hand_built(hb: HandBuilt, malformed: bool, values: list[bytes | None]) -> None:
    """The core on a hand-laid array: ArrowDataError exactly when ``malformed``, else the twin's results."""
    threshold = 0.72
    try:
        got = core.text_stats(*hb.capsules(), threshold=threshold)
    except instructfast.ArrowDataError:
        assert malformed, "a well-formed array was refused"
        try:
            core.utf8_check(*hb.capsules())
        except instructfast.ArrowDataError:
            return
        raise AssertionError("utf8_check accepted what text_stats refused") from None
    assert not malformed, "a malformed array was read"
    bad = utf8_py.check(values)
    assert np.array_equal(got.pop("utf8_error"), bad)
    assert np.array_equal(core.utf8_check(*hb.capsules(), threads=2), bad)
    ok = np.flatnonzero(bad < 0)  # statistics of invalid text are not defined; of the rest, equal to the twin
    _assert_same(got, _expected_stats([values[i] if bad[i] < 0 else None for i in range(len(values))], threshold), ok)


def _hand_built_offsets(r: Reader) -> None:
    kind = r.pick(("string", "large_string"))
    data = r.text(32)
    n = r.int(0, 10)
    # offsets within the data: a monotonic run past its end would be an overflow no one can check
    offsets = [r.int(-3, len(data)) if r.bool(0.3) else None for _ in range(n + 1)]
    run, fixed = 0, []
    for o in offsets:
        run = o if o is not None else min(len(data), run + r.int(0, 6))
        fixed.append(run)
    offset = r.int(0, n)
    length = r.int(0, n - offset)
    bits, bitmap, declared = _bitmap(r, n)
    n_buffers = r.pick([3, 3, 3, 2, 4])
    dtype = "<i4" if kind == "string" else "<i8"
    buffers = [bitmap, np.asarray(fixed, dtype=dtype).tobytes(), data, b""][:n_buffers]
    hb = HandBuilt(FORMATS[kind], length, buffers, offset=offset, null_count=declared)
    window = fixed[offset : offset + length + 1]
    malformed = (
        n_buffers != 3
        or _count_rules(declared, bitmap, length)
        or (length > 0 and (window[0] < 0 or any(b < a for a, b in zip(window, window[1:]))))
    )
    valid = _declared_valid(bits, bitmap, declared, offset, length)
    values = [data[window[k] : window[k + 1]] if valid[k] else None for k in range(length)] if not malformed else []
    _compare_hand_built(hb, malformed, values)


def _hand_built_views(r: Reader) -> None:
    bufs = [r.text(16) for _ in range(r.int(0, 3))]
    declared_sizes = [r.int(0, len(b)) for b in bufs]  # never more than what is there
    n = r.int(0, 8)
    views, parts = [], []
    for _ in range(n):
        length = r.int(-3, 30)
        if length <= 12:
            inline = r.raw(12)
            views.append(view(length, inline=inline))
            parts.append(("inline", length, inline))
        else:
            b, off = r.int(-1, len(bufs)), r.int(-3, 40)
            views.append(view(length, buffer=b, offset=off, prefix=b"pfx"))
            parts.append(("out", length, (b, off)))
    offset = r.int(0, n)
    length = r.int(0, n - offset)
    bits, bitmap, declared = _bitmap(r, n)
    sizes = np.asarray(declared_sizes, dtype="<i8").tobytes()
    hb = HandBuilt(FORMATS["string_view"], length, [bitmap, b"".join(views), *bufs, sizes], offset, declared)
    valid = _declared_valid(bits, bitmap, declared, offset, length)
    malformed = _count_rules(declared, bitmap, length)
    values: list[bytes | None] = []
    for k in range(length):
        where, ln, what = parts[offset + k]
        if not valid[k]:
            values.append(None)
        elif ln < 0:
            malformed = True
        elif where == "inline":
            values.append(bytes(what)[:ln].ljust(ln, b"\0"))  # short fuzz input: the view holds zeros
        else:
            b, off = what
            if not (0 <= b < len(bufs)) or off < 0 or off + ln > declared_sizes[b]:
                malformed = True
            else:
                values.append(bufs[b][off : off + ln])
    _compare_hand_built(hb, malformed, values)


def _bad_structs(r: Reader) -> None:
    fmt = r.pick([b"u", b"U", b"vu", b"z", b"l", b"", b"uu", b"vz"])
    released = r.bool(0.2)
    n_buffers = r.pick([3, 2, 4])
    hb = HandBuilt(fmt, 0, [None] * n_buffers, released=released, offset=r.pick([0, -1]), null_count=0)
    # (a utf8_view with a fourth buffer has a data buffer, so it needs a sizes buffer: null here)
    ok = fmt in (b"u", b"U", b"vu") and not released and hb.offset == 0 and n_buffers == 3
    try:
        got = core.text_stats(*hb.capsules())
    except instructfast.ArrowDataError:
        assert not ok, "a well-formed empty array was refused"
        return
    assert ok and len(got["words"]) == 0


# Pieces of JSON string literals: every escape, surrogate halves, broken escapes, raw quotes,
# backslashes and control characters.
_JSON_PIECES = [
    b'\\"', b"\\\\", b"\\/", b"\\b", b"\\f", b"\\n", b"\\r", b"\\t", b"\\u0041", b"\\u00e9", b"\\u4E2D",
    b"\\ud83d", b"\\ude00", b"\\uD800", b"\\udfff", b"\\u12", b"\\uZZZZ", b"\\u+123", b"\\x", b"\\", b'"',
    b"\n", b"\x01", b"\x7f", b" ",
]  # fmt: skip


def _json_strings(r: Reader) -> None:
    """A JSON string literal (and bytes around it): the native decoder gives what its twin gives, value
    and end or the same error; where the bytes are UTF-8, CPython's scanner agrees with both."""
    import json.decoder

    from instructfast.io import jsonstr_py

    lead = r.raw(r.int(0, 4))
    body = [r.pick(_JSON_PIECES) if r.bool(0.6) else r.pick(PALETTE) for _ in range(r.int(0, 24))]
    tail = (b'"' if r.bool(0.8) else b"") + r.raw(r.int(0, 4))
    data = lead + b'"' + b"".join(body) + tail
    start = len(lead) if r.bool(0.9) else r.int(0, len(data) + 1)
    try:
        want = jsonstr_py.json_string(data, start)
    except ValueError as e:
        try:
            core.json_string(data, start)
        except ValueError as got:
            assert str(got) == str(e), (data, start)
        else:
            raise AssertionError(f"native accepted what the twin refused ({e}): {data!r} at {start}") from None
        return
    assert core.json_string(data, start) == want, (data, start)
    try:
        text = data[start:].decode("utf-8")
    except UnicodeDecodeError:
        return  # raw bytes that are not UTF-8 are copied as they are: nothing for CPython to say
    value, end = json.decoder.scanstring(text, 1)
    assert value.encode("utf-8", "surrogatepass") == want[0] and len(text[:end].encode()) == want[1] - start


def check_core(data: bytes) -> None:
    """One native-core check chosen by the first byte (see the module docstring)."""
    if core is None:
        raise RuntimeError("the native core is not built: make fuzz builds it with the sanitizers")
    r = Reader(data)
    checks = (_pyarrow_layouts, _hand_built_offsets, _hand_built_views, _bad_structs, _json_strings)
    checks[r.int(0, len(checks) - 1)](r)


# ----------------------------------------------------------------------------------- readers

FILE_FORMATS = ("jsonl", "json", "csv", "parquet", "arrow", "arrows")
_TMP = Path(tempfile.mkdtemp(prefix="instructfast-fuzz-"))


def check_readers(data: bytes) -> None:
    """The bytes as an input file (the first byte picks the format): read, score, write, read back."""
    from instructfast.io import _json

    r = Reader(data)
    fmt = FILE_FORMATS[r.int(0, len(FILE_FORMATS) - 1)]
    policy = r.pick(["error", "replace"])
    limit = r.pick([1 << 30, 64])
    path = _TMP / f"input.{fmt}"
    out = _TMP / "output.parquet"
    path.write_bytes(r.rest())
    # One input in four reads every JSON Lines record past 16 bytes field by field (the huge-record
    # parser); chosen by a hash, so the bytes kept as regression inputs keep their meaning.
    huge = zlib.crc32(data) % 4 == 0
    saved = _json.HUGE, _json.BLOCK
    if huge:
        _json.HUGE, _json.BLOCK = 16, 32
    try:
        _read_score_write(path, out, fmt, policy, limit)
    finally:
        _json.HUGE, _json.BLOCK = saved


def _read_score_write(path: Path, out: Path, fmt: str, policy: str, limit: int) -> None:
    import pyarrow.parquet as pq

    try:
        table = instructfast.read_table(path, format=fmt)
        assert isinstance(table, pa.Table)
        res = instructfast.score_file(
            path,
            out,
            input_format=fmt,
            indicators=["textstats"],
            options={"on_invalid_utf8": policy, "max_record_bytes": limit},
            restart=True,
            batch_rows=7,
        )
    except instructfast.InstructfastError:
        return
    back = pq.read_table(out)
    back.to_pylist()  # every string column reads back into Python: no invalid UTF-8 was written
    assert back.num_rows == res.rows
    if policy == "error":  # nothing was repaired, so no text column changed
        for name in table.column_names:
            if pa.types.is_string(table.schema.field(name).type):
                assert back.column(name).to_pylist() == table.column(name).to_pylist()


def seed_inputs() -> dict[str, dict[str, bytes]]:
    """Starting inputs for each fuzzer (``make fuzz`` writes them into its working corpus)."""
    import io

    import pyarrow.ipc as ipc
    import pyarrow.parquet as pq

    rows = [
        {"instruction": "Name a colour.", "input": "", "output": "Blue, like the sky."},
        {"instruction": "Say hi.", "input": None, "output": "hi \u03a3\u0130 \U0001f642"},
        {"instruction": "Empty.", "input": "", "output": ""},
    ]
    table = pa.Table.from_pylist(rows)
    files: dict[str, bytes] = {}
    buf = io.BytesIO()
    pq.write_table(table, buf)
    files["parquet"] = buf.getvalue()
    for name, opener in (("arrow", ipc.new_file), ("arrows", ipc.new_stream)):
        sink = pa.BufferOutputStream()
        with opener(sink, table.schema) as w:
            w.write_table(table)
        files[name] = sink.getvalue().to_pybytes()
    import json

    files["jsonl"] = (
        "".join(json.dumps(x) + "\n" for x in rows).encode() + b'{"instruction": "x", "output": "\\ud800 \xff"}\n'
    )
    files["json"] = json.dumps(rows, indent=1).encode()
    files["csv"] = b'instruction,input,output\nq,,"a, b\nc"\nr,x,\xff\xfe\n'
    readers = {f"{fmt}": bytes([FILE_FORMATS.index(fmt), 0, 0]) + body for fmt, body in files.items()}
    readers.update({f"{fmt}-replace": bytes([FILE_FORMATS.index(fmt), 1, 0]) + body for fmt, body in files.items()})
    # JSON Lines through the huge-record parser too (check_readers picks it by the input's hash)
    jsonl = bytes([FILE_FORMATS.index("jsonl"), 0, 0]) + files["jsonl"]
    readers["jsonl-huge"] = next(x for k in range(256) if zlib.crc32(x := jsonl + b"\n" * k) % 4 == 0)
    core_seeds = {
        f"mode{m}-{k}": bytes([m]) + bytes((k + i) % 256 for i in range(96)) for m in range(5) for k in (0, 7, 200)
    }
    return {"core": core_seeds, "readers": readers}


def replay(harness: str, data: bytes) -> None:
    """Run one kept input through its harness (what ``test_fuzz_corpus.py`` does)."""
    {"core": check_core, "readers": check_readers}[harness](data)


__all__ = ["PALETTE", "Reader", "check_core", "check_readers", "replay", "seed_inputs"]
