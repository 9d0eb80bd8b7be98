"""Pure-Python twin of the native MTLD core (``csrc/mtld.cpp``, ``csrc/textstats.cpp``).

It is the reference the native code is held equal to and the fallback when the
extension is unavailable (``INSTRUCTFAST_IMPL=python``). It reproduces lexicalrichness
0.5.1 ``LexicalRichness(text).mtld()`` and its tokenizer exactly, without importing it.
Public documentation lives in :mod:`instructfast.ops.textstats`.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Sequence

import numpy as np

from ..errors import ArgumentError

_DIGITS = re.compile(r"[0-9]+")
# Deleting digits and dashes first matters: "well-known" -> "wellknown", not two words.
_DASHES = str.maketrans("", "", "\u2013\u2014-")
_PUNCTUATION = str.maketrans({p: " " for p in string.punctuation})


def _check_threshold(threshold: float) -> None:
    if not 0.0 < threshold < 1.0:
        msg = f"`threshold` must be in (0, 1), got {float(threshold)!r}"
        raise ArgumentError(msg)


def tokenize(text: str) -> list[str]:
    """Split ``text`` into lexicalrichness 0.5.1 tokens.

    Parameters
    ----------
    text : str
        Any text.

    Returns
    -------
    list of str
        Lowercased tokens: ASCII digits and dashes deleted, punctuation as separators.

    Examples
    --------
    >>> tokenize("Well-known: 3 ÉTÉS, 42 cats!")
    ['wellknown', 'étés', 'cats']
    """
    text = _DIGITS.sub("", text.lower()).translate(_DASHES)
    return text.translate(_PUNCTUATION).split()


def _direction(tokens: Sequence[str], terms: int, threshold: float) -> float:
    # lexicalrichness' sub_mtld, operation for operation, so the doubles agree.
    types: set[str] = set()
    count = 0
    factors: float = 0
    ttr = 0.0
    for token in tokens:
        count += 1
        types.add(token)
        ttr = len(types) / count
        if ttr <= threshold:
            count = 0
            types = set()
            factors += 1
    if count > 0:
        factors += (1 - ttr) / (1 - threshold)
    if factors == 0:
        ttr = terms / len(tokens)
        factors += 1 if ttr == 1 else (1 - ttr) / (1 - threshold)
    return len(tokens) / factors


def _mtld_tokens(tokens: list[str], threshold: float) -> float | None:
    if not tokens:
        return None
    terms = len(set(tokens))
    forward = _direction(tokens, terms, threshold)
    backward = _direction(tokens[::-1], terms, threshold)
    # statistics.mean of two floats == correctly rounded (f + r) / 2 == (f + r) / 2.
    return (forward + backward) / 2


def mtld(text: str, threshold: float = 0.72) -> float | None:
    """MTLD of ``text`` exactly as lexicalrichness 0.5.1 computes it.

    Parameters
    ----------
    text : str
        Any text.
    threshold : float, default 0.72
        Factor TTR threshold, in (0, 1).

    Returns
    -------
    float or None
        Mean of forward and reverse MTLD; None when the text has no tokens.

    Raises
    ------
    instructfast.ArgumentError
        If ``threshold`` is not in (0, 1).

    Examples
    --------
    >>> mtld("the cat sat on the mat the cat")
    8.0
    >>> mtld("-- 42 --") is None
    True
    """
    _check_threshold(threshold)
    return _mtld_tokens(tokenize(text), threshold)


def text_stats(texts: Sequence[str | None], threshold: float = 0.72, mtld: bool = True) -> dict[str, np.ndarray]:
    """Per-text word statistics, MTLD and lengths; one row per element of ``texts``.

    Parameters
    ----------
    texts : sequence of str or None
        Texts; None marks a null row.
    threshold : float, default 0.72
        MTLD factor threshold, in (0, 1).
    mtld : bool, default True
        Compute MTLD (otherwise the ``mtld`` column is all NaN).

    Returns
    -------
    dict of str to numpy.ndarray
        ``valid`` (bool), ``words``, ``unique_words`` (int64), ``ttr``, ``mtld``
        (float64, NaN without words), ``chars`` (code points), ``bytes`` (UTF-8), int64.
        Null rows have ``valid`` False, zeros and NaN.

    Examples
    --------
    >>> st = text_stats(["a b a", None, "!"])
    >>> st["words"].tolist(), st["valid"].tolist(), st["chars"].tolist()
    ([3, 0, 0], [True, False, True], [5, 0, 1])
    """
    _check_threshold(threshold)
    n = len(texts)
    out = {
        "valid": np.zeros(n, dtype=bool),
        "words": np.zeros(n, dtype=np.int64),
        "unique_words": np.zeros(n, dtype=np.int64),
        "ttr": np.full(n, math.nan),
        "mtld": np.full(n, math.nan),
        "chars": np.zeros(n, dtype=np.int64),
        "bytes": np.zeros(n, dtype=np.int64),
    }
    for i, text in enumerate(texts):
        if text is None:
            continue
        tokens = tokenize(text)
        terms = len(set(tokens))
        out["valid"][i] = True
        out["words"][i] = len(tokens)
        out["unique_words"][i] = terms
        out["chars"][i] = len(text)
        out["bytes"][i] = len(text.encode("utf-8", "surrogatepass"))
        if tokens:
            out["ttr"][i] = terms / len(tokens)
            if mtld:
                out["mtld"][i] = _mtld_tokens(tokens, threshold)
    return out


__all__ = ["tokenize", "mtld", "text_stats"]
