"""MTLD and word statistics, exactly as lexicalrichness 0.5.1 computes them.

The public entry points dispatch to the native core (``instructfast._core``) and fall
back to the pure-Python twin :mod:`instructfast.ops.textstats_py` when the extension is
unavailable or ``INSTRUCTFAST_IMPL=python``. Both give bit-identical doubles.

Tokenisation (lexicalrichness' ``preprocess`` + ``tokenize``): ``str.lower()`` (full
Unicode mapping, Greek final sigma included); delete ASCII digit runs; delete "–", "—"
and "-"; replace each ASCII ``string.punctuation`` character by a space; ``str.split()``.
"""

from __future__ import annotations

import numbers

import numpy as np
import pyarrow as pa

from .._native import core
from ..errors import ArgumentError, ArgumentTypeError
from . import textstats_py
from .utf8 import TextProblem, invalid_utf8, raw_value

_KEYS = (
    ("valid", np.bool_),
    ("words", np.int64),
    ("unique_words", np.int64),
    ("ttr", np.float64),
    ("mtld", np.float64),
    ("chars", np.int64),
    ("bytes", np.int64),
)


def _check_threshold(threshold: float) -> float:
    if not isinstance(threshold, numbers.Real) or isinstance(threshold, bool):
        msg = f"`threshold` must be a float in (0, 1), got {type(threshold).__name__}"
        raise ArgumentTypeError(msg)
    threshold = float(threshold)
    if not 0.0 < threshold < 1.0:
        msg = f"`threshold` must be in (0, 1), got {threshold!r}"
        raise ArgumentError(msg)
    return threshold


def _check_text(text: str) -> None:
    if not isinstance(text, str):
        msg = f"`text` must be a str, got {type(text).__name__}"
        raise ArgumentTypeError(msg)


def _check_threads(threads: int | None) -> int:
    if threads is None:
        return 0  # the core's "all hardware threads"
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)):
        msg = f"`threads` must be None or a positive int, got {type(threads).__name__}"
        raise ArgumentTypeError(msg)
    if threads < 1:
        msg = f"`threads` must be None or a positive int, got {threads!r}"
        raise ArgumentError(msg)
    return int(threads)


def _is_string_type(t: pa.DataType) -> bool:
    is_view = getattr(pa.types, "is_string_view", lambda _: False)
    return pa.types.is_string(t) or pa.types.is_large_string(t) or is_view(t)


def _empty() -> dict[str, np.ndarray]:
    return {key: np.empty(0, dtype=dtype) for key, dtype in _KEYS}


def text_stats(
    array: pa.Array | pa.ChunkedArray,
    *,
    threshold: float = 0.72,
    threads: int | None = None,
    mtld: bool = True,
) -> dict[str, np.ndarray]:
    """Word statistics, MTLD and lengths of every string in an Arrow array.

    Strings are read in place through the Arrow C Data Interface (no copy), chunk by
    chunk; rows are spread over ``threads`` native threads with the GIL released.

    Parameters
    ----------
    array : pyarrow.Array or pyarrow.ChunkedArray
        Type ``string``, ``large_string`` or ``string_view``; may be sliced and hold nulls.
    threshold : float, default 0.72
        MTLD factor threshold, in (0, 1) exclusive.
    threads : int, optional
        Native worker threads; None uses every hardware thread.
    mtld : bool, default True
        Compute MTLD; when False the ``mtld`` column is all NaN (tokens are still counted).

    Returns
    -------
    dict of str to numpy.ndarray
        One entry per row of ``array``:

        - ``valid`` (bool): False where the input is null;
        - ``words``, ``unique_words`` (int64): tokens and distinct tokens;
        - ``ttr`` (float64): unique_words / words, NaN when words == 0;
        - ``mtld`` (float64): lexicalrichness 0.5.1 ``mtld(threshold)``, NaN when words == 0;
        - ``chars`` (int64): Unicode code points of the original text;
        - ``bytes`` (int64): UTF-8 bytes.

        Null rows have zeros and NaN besides ``valid``.

    Raises
    ------
    instructfast.ArgumentTypeError
        If ``array`` is not a pyarrow string array (the message names its type), or
        ``threshold`` / ``threads`` are not numbers.
    instructfast.ArgumentError
        If ``threshold`` is not in (0, 1) or ``threads`` is less than 1.
    instructfast.InvalidTextError
        If a string holds invalid UTF-8 (the native core finds it while tokenizing; the
        message names the element and the byte). Repair such arrays first with
        :func:`instructfast.ops.utf8.replace_invalid_utf8` (``score()`` does, with
        ``on_invalid_utf8="replace"``).
    instructfast.ArrowDataError
        If the array's buffers are malformed (offsets, view lengths; checked before reading).

    Examples
    --------
    >>> import pyarrow as pa
    >>> st = text_stats(pa.array(["The cat sat on the mat.", None, "42"]))
    >>> st["valid"].tolist(), st["words"].tolist(), st["unique_words"].tolist()
    ([True, False, True], [6, 0, 0], [5, 0, 0])
    >>> float(st["mtld"][0]), float(st["mtld"][1])  # bit-identical to lexicalrichness
    (10.080000000000004, nan)
    """
    threshold = _check_threshold(threshold)
    n_threads = _check_threads(threads)
    if isinstance(array, pa.Array):
        chunks = [array]
    elif isinstance(array, pa.ChunkedArray):
        chunks = array.chunks
    else:
        msg = f"`array` must be a pyarrow Array or ChunkedArray of strings, got {type(array).__name__}"
        raise ArgumentTypeError(msg)
    if not _is_string_type(array.type):
        msg = f"`array` must have type string, large_string or string_view, got {array.type}"
        raise ArgumentTypeError(msg)

    parts = []
    start = 0
    for chunk in chunks:
        if len(chunk) == 0:
            continue
        if core is not None:
            schema_capsule, array_capsule = chunk.__arrow_c_array__()
            got = core.text_stats(schema_capsule, array_capsule, threshold=threshold, threads=n_threads, mtld=mtld)
            bad = got.pop("utf8_error")  # found while tokenizing, at no extra pass
        else:
            bad = invalid_utf8(chunk)  # to_pylist would fail on it with a bare UnicodeDecodeError
        if (bad >= 0).any():
            i = int(np.argmax(bad >= 0))
            raise TextProblem("", start + i, int(bad[i]), raw_value(chunk, i)).error(
                f"`array` element {start + i}",
                hint="repair the array first (instructfast.ops.utf8.replace_invalid_utf8), "
                "or score() with on_invalid_utf8='replace'",
            )
        if core is None:
            got = textstats_py.text_stats(chunk.to_pylist(), threshold=threshold, mtld=mtld)
        parts.append(got)
        start += len(chunk)
    if not parts:
        return _empty()
    if len(parts) == 1:
        return parts[0]
    return {key: np.concatenate([p[key] for p in parts]) for key, _ in _KEYS}


def mtld(text: str, threshold: float = 0.72) -> float | None:
    """MTLD of one text, equal as a double to ``LexicalRichness(text).mtld(threshold)``.

    Parameters
    ----------
    text : str
        Any text.
    threshold : float, default 0.72
        Factor TTR threshold, in (0, 1) exclusive.

    Returns
    -------
    float or None
        Mean of forward and reverse MTLD; None when the text has no tokens (where
        lexicalrichness raises ZeroDivisionError).

    Raises
    ------
    instructfast.ArgumentTypeError
        If ``text`` is not a str.
    instructfast.ArgumentError
        If ``threshold`` is not in (0, 1).

    Examples
    --------
    >>> mtld("the cat sat on the mat the cat")
    8.0
    >>> mtld("1984 -- 2024") is None
    True
    """
    _check_text(text)
    threshold = _check_threshold(threshold)
    if core is not None:
        return core.mtld(text, threshold)
    return textstats_py.mtld(text, threshold)


def tokenize(text: str) -> list[str]:
    """Tokens of ``text`` under the lexicalrichness 0.5.1 tokenizer.

    Parameters
    ----------
    text : str
        Any text.

    Returns
    -------
    list of str
        Lowercased tokens; ASCII digits and dashes deleted, ASCII punctuation splits.

    Raises
    ------
    instructfast.ArgumentTypeError
        If ``text`` is not a str.

    Examples
    --------
    >>> tokenize("Well-known: 3 ÉTÉS, 42 cats!")
    ['wellknown', 'étés', 'cats']
    >>> tokenize("ΟΔΟΣ. ΣΟΦΟΣ")
    ['οδος', 'σοφος']
    """
    _check_text(text)
    if core is not None:
        return core.tokenize(text)
    return textstats_py.tokenize(text)


__all__ = ["text_stats", "mtld", "tokenize"]
