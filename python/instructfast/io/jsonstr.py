"""JSON string literals decoded straight from a record's bytes (native core, or the twin :mod:`.jsonstr_py`).

The JSON Lines reader parses a record longer than :data:`instructfast.io._json.HUGE` field by field
with this instead of pyarrow's parser, which holds several copies of a record while it parses it:
a string value is decoded from the bytes of the record into one new ``bytes`` object, which then
backs an Arrow array without a further copy.

Values are bytes, not ``str``: raw bytes are copied as they are (invalid UTF-8 included) and a lone
surrogate escape (``"\\ud800"``, which ``json.loads`` accepts) becomes the three bytes it would
encode to, so that the scorer's one text check (:mod:`instructfast.ops.utf8`) sees every kind of
invalid text and applies ``on_invalid_utf8`` to it, as for records that pyarrow reads.
"""

from __future__ import annotations

from .._native import core
from . import jsonstr_py


def json_string(data: bytes, start: int) -> tuple[bytes, int]:
    """The value of the JSON string literal whose opening quote is ``data[start]``, and the offset past it.

    Parameters
    ----------
    data
        Bytes holding JSON text (a record).
    start
        Offset of the literal's opening quote.

    Returns
    -------
    (bytes, int)
        The decoded value (UTF-8, escapes resolved; see the module docstring for invalid text) and
        the offset one past the closing quote.

    Raises
    ------
    ValueError
        No string at ``start``, an unterminated string, a bad escape or a raw control character;
        the message ends with ``at byte N`` (an offset in ``data``).

    Examples
    --------
    >>> json_string(b'{"a": "x\\\\u00e9\\\\n\\\\ud83d\\\\ude00"}', 6)
    (b'x\\xc3\\xa9\\n\\xf0\\x9f\\x98\\x80', 29)
    >>> json_string(b'"\\\\ud800"', 0)  # a lone surrogate: its three (invalid) bytes
    (b'\\xed\\xa0\\x80', 8)
    """
    if core is not None:
        return core.json_string(data, start)
    return jsonstr_py.json_string(data, start)


__all__ = ["json_string"]
