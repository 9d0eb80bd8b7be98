"""Pure-Python twin of the native JSON string decoder (``csrc/jsonstr.cpp``): the reference it is held equal to.

Public documentation lives in :mod:`instructfast.io.jsonstr`. Errors are :class:`ValueError` with the
native core's messages, word for word (``"<what> at byte <offset>"``).
"""

from __future__ import annotations

import re

_SIMPLE = {
    ord('"'): b'"',
    ord("\\"): b"\\",
    ord("/"): b"/",
    ord("b"): b"\b",
    ord("f"): b"\f",
    ord("n"): b"\n",
    ord("r"): b"\r",
    ord("t"): b"\t",
}
_HEX4 = re.compile(rb"[0-9a-fA-F]{4}")
_CONTROL = re.compile(rb"[\x00-\x1f]")


def _error(what: str, at: int) -> ValueError:
    return ValueError(f"{what} at byte {at}")


def string_end(data: bytes, start: int) -> int:
    """One past the closing quote of the string literal whose opening quote is ``data[start]``."""
    if start >= len(data) or data[start] != 0x22:
        raise _error("expected a string", start)
    i = start + 1
    while True:
        j = data.find(b'"', i)
        if j < 0:
            raise _error("unterminated string", start)
        backslashes = 0  # the quote ends the string unless an odd run of backslashes escapes it
        while j - backslashes > start + 1 and data[j - 1 - backslashes] == 0x5C:
            backslashes += 1
        if backslashes % 2 == 0:
            return j + 1
        i = j + 1


def _hex4(data: bytes, i: int, stop: int) -> int:
    """The code unit of the four hex digits at ``data[i:i + 4]``, or -1."""
    if i + 4 > stop or not _HEX4.fullmatch(data, i, i + 4):
        return -1
    return int(data[i : i + 4], 16)


def decode(data: bytes, start: int, end: int) -> bytes:
    """The value of the literal ``data[start:end]`` (quotes included); see :func:`json_string`."""
    out = bytearray()
    i, stop = start + 1, end - 1
    while i < stop:
        bs = data.find(b"\\", i, stop)
        run_end = stop if bs < 0 else bs
        bad = _CONTROL.search(data, i, run_end)
        if bad is not None:
            raise _error("control character in a string", bad.start())
        out += data[i:run_end]
        i = run_end
        if i >= stop:
            break
        if i + 1 >= stop:
            raise _error("unfinished escape", i)
        e = data[i + 1]
        if e in _SIMPLE:
            out += _SIMPLE[e]
            i += 2
            continue
        if e != ord("u"):
            raise _error("invalid escape", i)
        hi = _hex4(data, i + 2, stop)
        if hi < 0:
            raise _error("invalid \\u escape", i)
        if 0xD800 <= hi <= 0xDBFF and i + 12 <= stop and data[i + 6 : i + 8] == b"\\u":
            lo = _hex4(data, i + 8, stop)
            if 0xDC00 <= lo <= 0xDFFF:  # a surrogate pair: one astral character
                out += chr(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)).encode("utf-8")
                i += 12
                continue
        # a lone surrogate becomes the three bytes it would encode to (invalid UTF-8, as the scorer expects)
        out += chr(hi).encode("utf-8", "surrogatepass")
        i += 6
    return bytes(out)


def json_string(data: bytes, start: int) -> tuple[bytes, int]:
    """(value, end) of the JSON string literal whose opening quote is ``data[start]``."""
    end = string_end(data, start)
    return decode(data, start, end), end


__all__ = ["decode", "json_string", "string_end"]
