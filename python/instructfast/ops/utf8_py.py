"""Pure-Python twin of the native UTF-8 checks (``csrc/utf8.cpp``): the reference they are held equal to.

Public documentation lives in :mod:`instructfast.ops.utf8`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

# An encoded surrogate (what a lone "\ud800" JSON escape becomes when carried as bytes) is one
# unit: one U+FFFD, where bytes.decode(errors="replace") would give three.
_SURROGATE = re.compile(rb"\xed[\xa0-\xbf][\x80-\xbf]")
_REPLACEMENT = "\ufffd".encode()


def first_invalid(data: bytes) -> int:
    """Offset of the first byte of the first invalid UTF-8 sequence, or -1 (``UnicodeDecodeError.start``).

    >>> first_invalid(b"ok"), first_invalid(b"x\\xff"), first_invalid(b"\\xed\\xa0\\x80")
    (-1, 1, 0)
    """
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        return e.start
    return -1


def replace_invalid(data: bytes) -> bytes:
    """``data`` with each invalid sequence replaced by U+FFFD (maximal subparts; an encoded surrogate is one).

    >>> replace_invalid(b"a\\xff\\xfeb").decode(), replace_invalid(b"\\xed\\xa0\\x80!").decode()
    ('a\\ufffd\\ufffdb', '\\ufffd!')
    """
    return _SURROGATE.sub(_REPLACEMENT, data).decode("utf-8", "replace").encode("utf-8")


def check(values: Sequence[bytes | None]) -> np.ndarray:
    """:func:`first_invalid` of each value (-1 for None)."""
    return np.fromiter((-1 if v is None else first_invalid(v) for v in values), dtype=np.int64, count=len(values))


__all__ = ["check", "first_invalid", "replace_invalid"]
