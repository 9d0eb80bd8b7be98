"""Texts far longer than a model's window, tokenised in bounded time and memory.

A 256 MiB record is a valid input (books, code files, long conversations), but a tokenizer asked
for all of its tokens builds tens of millions of them (ids, offsets, token strings): gigabytes,
for a row whose fate is decided by its first (or last) few thousand tokens. So before tokenising,
a text longer than ``(keep + 2) * chars_per_token`` characters is cut to a prefix (or suffix) that
still holds more than ``keep + 2`` tokens; the window check and the overflow policy (null with a
reason, or truncate) then see the same answer as on the whole text:

* the cut text has more than ``keep + 1`` tokens, so the whole text has more than ``keep`` (at most
  the one token that straddles the cut differs), and is just as much over the window;
* the first ``keep`` tokens of a prefix are those of the whole text (tokenisers are local: only
  tokens near the cut can change), and so are the last ``keep`` of a suffix, after its first.

``chars_per_token`` is the longest vocabulary entry (:func:`chars_per_token`), so ``n`` characters
hold at least ``n / chars_per_token`` tokens, except where a tokenizer drops text (whitespace
under WordPiece): the prefix then doubles until it holds enough, or is the whole text.

Token *counts* (``output_tokens``) have no window: a long text is counted in pieces split where
whitespace starts a new word (:func:`count_long`), which every whitespace-splitting pre-tokenizer
treats as a boundary.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

PIECE_CHARS = 1 << 20
"""Characters per piece when a long text is counted in pieces (:func:`count_long`)."""
PIECES_AT_ONCE = 8
"""Pieces tokenised per call: bounds the tokenizer's working memory (about 8 MiB of text)."""


def chars_per_token(vocab: Sequence[str]) -> int:
    """The longest vocabulary entry in characters (byte-level entries count bytes): an upper bound
    on the characters one token covers.

    >>> chars_per_token(["a", "the", "##ing"])
    5
    """
    return max((len(t) for t in vocab), default=1) or 1


def cut_texts(
    texts: Sequence[str],
    keep: int,
    count: Callable[[str], int],
    per_token: int,
    *,
    tail: bool = False,
) -> tuple[list[str], list[bool]]:
    """Each text, or for a text too long to matter past ``keep`` tokens, a prefix (``tail``: a suffix)
    holding more than ``keep + 2`` tokens; and which texts were cut.

    ``count(text)`` is the tokenizer's token count (no special tokens).

    >>> words = lambda s: len(s.split())
    >>> cut, was = cut_texts(["a b c", "w " * 100], 3, words, 2)
    >>> cut[0], len(cut[1].split()), was
    ('a b c', 10, [False, True])
    """
    out = list(texts)
    cut = [False] * len(texts)
    first = (keep + 2) * max(per_token, 1)
    for i, t in enumerate(texts):
        if len(t) <= first:
            continue
        n = first
        while n < len(t):
            part = t[-n:] if tail else t[:n]
            if count(part) > keep + 2:
                out[i], cut[i] = part, True
                break
            n *= 2  # a tokenizer that drops text (whitespace): look further
    return out, cut


def split_at_words(text: str, size: int = PIECE_CHARS) -> list[str]:
    """``text`` in pieces of about ``size`` characters, each cut just before a space that follows a
    non-space character (where a word starts). A piece grows past ``size`` until there is such a place.

    >>> split_at_words("one two three four", 5)
    ['one two', ' three', ' four']
    """
    pieces = []
    start = 0
    n = len(text)
    while n - start > size:
        cut = start + size
        while cut < n and not (text[cut] == " " and not text[cut - 1].isspace()):
            cut += 1
        if cut >= n:
            break
        pieces.append(text[start:cut])
        start = cut
    pieces.append(text[start:])
    return pieces


def count_long(text: str, encode: Callable[[list[str]], list[list[int]]], size: int = PIECE_CHARS) -> int:
    """Tokens of a long text, counted in word-aligned pieces (:func:`split_at_words`), a few at a time."""
    pieces = split_at_words(text, size)
    total = 0
    for k in range(0, len(pieces), PIECES_AT_ONCE):
        total += sum(len(ids) for ids in encode(pieces[k : k + PIECES_AT_ONCE]))
    return total


__all__ = ["PIECE_CHARS", "chars_per_token", "count_long", "cut_texts", "split_at_words"]
