"""The one batching policy for model passes: sort by length, bucket under a token budget.

Padding costs compute proportional to (longest - length) per row, so rows are sorted by
length (longest first: a batch that does not fit in memory fails at once, not at the end)
and packed while ``rows * longest`` stays within ``token_budget``. Results are written back
by original position, so callers never see the order change.
"""

from __future__ import annotations

import numpy as np

from .errors import ArgumentError


def length_buckets(lengths, token_budget: int, max_rows: int = 256, slack: float | None = None) -> list[np.ndarray]:
    """Split row positions into batches of similar length.

    Parameters
    ----------
    lengths
        Padded cost of each row (tokens).
    token_budget
        Maximum ``rows * longest_row`` per batch; a single longer row gets a batch of its own.
    max_rows
        Maximum rows per batch.
    slack
        Largest allowed padding as a fraction of the real tokens in a batch (``None``: no
        limit). On a CPU the forward pass is compute-bound and batching buys little, so every
        padded token is lost time: there a small slack (0.05) is right; on a GPU, where a big
        batch is what makes it fast, a large one.

    Returns
    -------
    list of numpy.ndarray
        Original row positions per batch, longest rows first.

    Examples
    --------
    >>> [b.tolist() for b in length_buckets([5, 1, 9, 2], token_budget=10)]
    [[2], [0, 3], [1]]
    >>> [b.tolist() for b in length_buckets([100, 96, 50, 49], token_budget=1000, slack=0.05)]
    [[0, 1], [2, 3]]
    """
    if token_budget < 1 or max_rows < 1:
        msg = f"`token_budget` and `max_rows` must be positive, got {token_budget} and {max_rows}"
        raise ArgumentError(msg)
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-lengths, kind="stable")
    batches: list[np.ndarray] = []
    start = 0
    n = len(order)
    sorted_len = lengths[order]
    while start < n:
        longest = max(int(sorted_len[start]), 1)
        rows = max(1, min(max_rows, token_budget // longest, n - start))
        if slack is not None and rows > 1:
            # padded cost longest * k against real tokens cumsum(k): keep the largest k within slack
            real = np.cumsum(sorted_len[start : start + rows])
            k = np.arange(1, rows + 1)
            fits = longest * k <= (1.0 + slack) * real
            rows = int(np.nonzero(fits)[0].max()) + 1
        batches.append(order[start : start + rows])
        start += rows
    return batches
