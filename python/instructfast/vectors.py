"""Embedding matrices from a list column or an array, and unit rows of the usable ones.

Shared by the kNN pool code and the diversity selectors (the embedder's own vectors come from
:mod:`instructfast.models.embedder`).

Rows that cannot take part are reported, never guessed: a null vector, a vector with
NaN/inf, or an all-zero vector (no direction to normalise) is left out and counted by
reason. Everything else is L2-normalised to the unit sphere, where Euclidean distance
is the SentenceBERT geometry (``||a - b||^2 = 2 - 2 cos``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import ArgumentError, SchemaError


def column_vectors(table: pa.Table, column: str) -> tuple[np.ndarray, np.ndarray]:
    """``(matrix [n, d] float32 with NaN rows for nulls, valid mask)`` from a list column."""
    if column not in table.column_names:
        msg = f"embeddings column `{column}` not found; found columns: {table.column_names}"
        raise SchemaError(msg)
    col = table.column(column)
    t = col.type
    if not (pa.types.is_fixed_size_list(t) or pa.types.is_list(t) or pa.types.is_large_list(t)):
        msg = f"embeddings column `{column}` must be a (fixed-size) list of numbers, got {t}"
        raise SchemaError(msg)
    vt = t.value_type
    if not (pa.types.is_floating(vt) or pa.types.is_integer(vt)):
        msg = f"embeddings column `{column}` must hold numbers, got lists of {vt}"
        raise SchemaError(msg)
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    n = len(arr)
    valid = arr.is_valid().to_numpy(zero_copy_only=False)
    if pa.types.is_fixed_size_list(t):
        d = t.list_size
    else:
        lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
        lv = lengths[valid]
        d = int(lv[0]) if lv.size else 0
        if lv.size and (lv != d).any():
            bad = int(np.flatnonzero(valid & (lengths != d))[0])
            msg = f"embeddings column `{column}`: row {bad} has {int(lengths[bad])} values, row 0 of the valid rows has {d}"
            raise SchemaError(msg)
    if valid.all():  # the common case: one float32 buffer, a view of Arrow's where the type allows
        values = arr.flatten().cast(pa.float32()).to_numpy(zero_copy_only=False)  # element nulls -> NaN
        return values.reshape(n, d), valid
    out = np.full((n, d), np.nan, dtype=np.float32)
    if valid.any():
        dense = arr.filter(pa.array(valid)).flatten()  # only the valid rows' values, in order
        values = dense.cast(pa.float32()).to_numpy(zero_copy_only=False)
        out[valid] = values.reshape(-1, d)
    return out, valid


def array_vectors(vectors: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """An ``[n, d]`` array the user passed (NaN rows count as missing)."""
    x = np.asarray(vectors, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] != n:
        msg = f"`embeddings` array must have shape [{n}, d] (one row per record), got {x.shape}"
        raise ArgumentError(msg)
    return x, np.ones(n, dtype=bool)


def unit_rows(
    x: np.ndarray, valid: np.ndarray, *, missing: str = "null embedding"
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Normalised rows of the usable records, their positions, and counts of the rest by reason.

    >>> x = np.array([[3.0, 4.0], [0.0, 0.0], [np.nan, 1.0]], dtype=np.float32)
    >>> u, pos, nulls = unit_rows(x, np.array([True, True, True]))
    >>> u.tolist(), pos.tolist(), nulls
    ([[0.6000000238418579, 0.800000011920929]], [0], {'zero vector': 1, 'NaN or inf in vector': 1})
    """
    nulls: dict[str, int] = {}
    if (~valid).any():
        nulls[missing] = int((~valid).sum())
    # One pass, no copies of x: a NaN/inf element makes the squared norm NaN/inf.
    sq = np.zeros(x.shape[0])
    with np.errstate(over="ignore", invalid="ignore"):
        for a in range(0, x.shape[0], 65_536):  # float64 sums in blocks: no full-size cast copy
            xb = x[a : a + 65_536].astype(np.float64)
            sq[a : a + 65_536] = np.einsum("ij,ij->i", xb, xb)
    finite = np.isfinite(sq)
    norms = np.sqrt(np.where(finite, sq, 0.0))
    zero = valid & finite & (norms == 0)
    nonfinite = valid & ~finite
    if zero.any():
        nulls["zero vector"] = int(zero.sum())
    if nonfinite.any():
        nulls["NaN or inf in vector"] = int(nonfinite.sum())
    keep = valid & finite & ~zero
    pos = np.flatnonzero(keep).astype(np.int64)
    u = np.ascontiguousarray(x[pos], dtype=np.float32)
    u /= norms[pos, None].astype(np.float32)
    return u, pos, nulls
