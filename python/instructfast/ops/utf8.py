"""Invalid text in Arrow string data: find it (native core, or the twin :mod:`instructfast.ops.utf8_py`) and repair it.

Arrow string columns may hold bytes that are not UTF-8: pyarrow's JSON reader accepts them,
Parquet and IPC readers do not check, and other producers hand over whatever they have. A
Parquet *string* column written from them cannot be read back into Python. Everything that
reaches scoring is therefore checked here, every string leaf of every column (inside lists,
structs and dictionaries too), with CPython's notion of valid UTF-8 (no overlong forms, no
encoded surrogates such as a lone ``"\\ud800"`` escape, nothing above U+10FFFF).

Policy (option ``on_invalid_utf8``): ``"error"`` raises :class:`~instructfast.InvalidTextError`
naming the row, column and byte; ``"replace"`` replaces each maximal invalid subpart with U+FFFD
(as ``bytes.decode(errors="replace")``; an encoded surrogate is one unit) and counts the rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .._native import core
from .._typing import InvalidTextPolicy
from ..errors import ArgumentError, InvalidTextError
from . import utf8_py

REPLACED = "invalid UTF-8 replaced with U+FFFD"
"""The note (``report.notes[column]``) counting rows whose text was repaired."""
HINT = "pass on_invalid_utf8='replace' (CLI --on-invalid-utf8=replace) to replace invalid bytes with U+FFFD"


_is_view = getattr(pa.types, "is_string_view", lambda _: False)


def is_text(t: pa.DataType) -> bool:
    """string, large_string or string_view."""
    return pa.types.is_string(t) or pa.types.is_large_string(t) or _is_view(t)


def _as_binary(arr: pa.Array) -> pa.Array:
    """The same buffers seen as bytes (no copy, no UTF-8 check)."""
    t = arr.type
    target = pa.binary() if pa.types.is_string(t) else pa.large_binary() if pa.types.is_large_string(t) else None
    return arr.view(target if target is not None else pa.binary_view())


def raw_value(array: pa.Array, i: int) -> bytes:
    """The bytes of element ``i`` as stored (no UTF-8 check)."""
    return _as_binary(array)[i].as_py()


def invalid_utf8(array: pa.Array, *, threads: int | None = None) -> np.ndarray:
    """Byte offset of the first invalid UTF-8 sequence of each element (-1: valid text or null).

    Parameters
    ----------
    array
        A ``string``, ``large_string`` or ``string_view`` array (sliced arrays and nulls allowed).
    threads
        Native threads (None: every core).

    Examples
    --------
    >>> import pyarrow as pa
    >>> invalid_utf8(pa.array([b"ok", b"x\\xff", None, b"\\xed\\xa0\\x80"]).view(pa.string())).tolist()
    [-1, 1, -1, 0]
    """
    if len(array) == 0:
        return np.empty(0, dtype=np.int64)
    if core is not None:
        return core.utf8_check(*array.__arrow_c_array__(), threads=threads or 0)
    try:  # pyarrow's own check is fast; the per-row pass only runs when something is wrong
        array.validate(full=True)
        return np.full(len(array), -1, dtype=np.int64)
    except pa.ArrowInvalid:
        return utf8_py.check(_as_binary(array).to_pylist())


def replace_bytes(data: bytes) -> bytes:
    """``data`` with every invalid UTF-8 sequence replaced by U+FFFD (valid data comes back unchanged)."""
    if core is not None:
        return core.utf8_replace(data)
    return utf8_py.replace_invalid(data)


def replace_invalid_utf8(array: pa.Array, bad: np.ndarray | None = None) -> pa.Array:
    """``array`` with invalid sequences replaced by U+FFFD in the rows where ``bad`` (from :func:`invalid_utf8`) >= 0.

    >>> import pyarrow as pa
    >>> replace_invalid_utf8(pa.array([b"a\\xffb", b"ok"]).view(pa.string())).to_pylist()
    ['a\\ufffdb', 'ok']
    """
    bad = invalid_utf8(array) if bad is None else bad
    rows = np.flatnonzero(bad >= 0)
    if not len(rows):
        return array
    raw = _as_binary(array)
    fixed = [replace_bytes(raw[int(i)].as_py()) for i in rows]
    if _is_view(array.type):  # no replace_with_mask kernel for views: rebuild (a rare path)
        values = raw.to_pylist()
        for i, v in zip(rows, fixed):
            values[int(i)] = v
        return pa.array([None if v is None else v.decode("utf-8") for v in values], array.type)
    mask = np.zeros(len(array), dtype=bool)
    mask[rows] = True
    out = pc.replace_with_mask(raw, pa.array(mask), pa.array(fixed, raw.type))
    return out.cast(array.type)  # checks the repaired bytes


@dataclass(frozen=True)
class TextProblem:
    """The first invalid text found in a batch: column (a path inside nested columns), row, byte, value."""

    column: str
    row: int
    byte: int
    value: bytes

    def describe(self) -> str:
        """``column `output`: invalid UTF-8 at byte 5 (b'x\\xff\\xfey')`` (the value cut around the byte)."""
        lo = max(0, self.byte - 20)
        snippet = self.value[lo : self.byte + 20]
        dots = ("..." if lo else "", "..." if self.byte + 20 < len(self.value) else "")
        what = "invalid UTF-8"
        if self._surrogate():  # what a lone "\ud800" JSON escape becomes
            cp = self.value[self.byte : self.byte + 3].decode("utf-8", "surrogatepass")
            what = f"a lone surrogate (\\u{ord(cp):04x}, not valid Unicode)"
        where = f"column `{self.column}`: " if self.column else ""
        return f"{where}{what} at byte {self.byte} ({dots[0]}{snippet!r}{dots[1]})"

    def _surrogate(self) -> bool:
        b = self.value[self.byte : self.byte + 3]
        return len(b) == 3 and b[0] == 0xED and 0xA0 <= b[1] <= 0xBF and 0x80 <= b[2] <= 0xBF

    def error(self, where: str | None = None, *, row_offset: int = 0, hint: str = HINT) -> InvalidTextError:
        """The error users see: ``{where}: ...`` or ``row N: ...`` (``row_offset`` added), plus what to do."""
        place = where if where is not None else f"row {self.row + row_offset}"
        detail = f"{self.describe()}; {hint}"
        err = InvalidTextError(f"{place}: {detail}")
        err.row, err.column, err.byte, err.detail = self.row + row_offset, self.column or None, self.byte, detail
        return err


# A walker returns (the first problem or None, the repaired array or None when unchanged, rows repaired).
_Walk = tuple[TextProblem | None, pa.Array | None, np.ndarray]


def _walk(arr: pa.Array, path: str, policy: str, threads: int | None) -> _Walk:
    n = len(arr)
    none = np.zeros(n, dtype=bool)
    t = arr.type
    if is_text(t):
        bad = invalid_utf8(arr, threads=threads)
        hit = bad >= 0
        if not hit.any():
            return None, None, none
        if policy == "error":
            i = int(np.argmax(hit))
            return TextProblem(path, i, int(bad[i]), raw_value(arr, i)), None, hit
        return None, replace_invalid_utf8(arr, bad), hit
    if pa.types.is_struct(t):
        first: TextProblem | None = None
        children, changed, rows = [], False, none.copy()
        for k in range(t.num_fields):
            child = arr.field(k)
            p, fixed, hit = _walk(child, f"{path}.{t.field(k).name}", policy, threads)
            if p is not None and (first is None or p.row < first.row):
                first = p
            children.append(child if fixed is None else fixed)
            changed |= fixed is not None
            rows |= hit
        if first is not None or not changed:
            return first, None, rows
        mask = arr.is_null() if arr.null_count else None
        return None, pa.StructArray.from_arrays(children, fields=list(t), mask=mask), rows
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        flat = arr.flatten()
        p, fixed, hit = _walk(flat, f"{path}[]", policy, threads)
        parents = pc.list_parent_indices(arr).to_numpy(zero_copy_only=False) if len(flat) else np.zeros(0, np.int64)
        rows = none.copy()
        rows[parents[hit]] = True
        if p is not None:
            return TextProblem(p.column, int(parents[p.row]), p.byte, p.value), None, rows
        if fixed is None:
            return None, None, rows
        mask = arr.is_null() if arr.null_count else None
        if pa.types.is_fixed_size_list(t):
            return None, pa.FixedSizeListArray.from_arrays(fixed, t.list_size, mask=mask), rows
        offsets = pc.subtract(arr.offsets, arr.offsets[0])
        cls = pa.LargeListArray if pa.types.is_large_list(t) else pa.ListArray
        return None, cls.from_arrays(offsets, fixed, type=t, mask=mask), rows
    if pa.types.is_dictionary(t):
        p, fixed, hit = _walk(arr.dictionary, f"{path}(dictionary)", policy, threads)
        idx = arr.indices.to_numpy(zero_copy_only=False)
        valid = arr.is_valid().to_numpy(zero_copy_only=False)
        rows = valid & np.isin(idx, np.flatnonzero(hit))
        if p is not None:
            users = np.flatnonzero(valid & (idx == p.row))
            if not len(users):  # an unused dictionary entry: nothing in the table holds it
                return None, None, none
            return TextProblem(path, int(users[0]), p.byte, p.value), None, rows
        if fixed is None:
            return None, None, rows
        return None, pa.DictionaryArray.from_arrays(arr.indices, fixed), rows
    if _may_hold_text(t):  # maps, unions, list views ...: pyarrow's own check, no repair
        try:
            arr.validate(full=True)
        except pa.ArrowInvalid as e:
            msg = (
                f"column `{path}` ({t}) holds invalid UTF-8 ({e}); text inside {t} columns is checked "
                "but not repaired: fix it at the source or drop the column"
            )
            raise InvalidTextError(msg) from None
    return None, None, none


def _may_hold_text(t: pa.DataType) -> bool:
    if is_text(t):
        return True
    return any(_may_hold_text(t.field(i).type) for i in range(t.num_fields)) if t.num_fields else False


def check_batch(
    batch: pa.RecordBatch,
    *,
    policy: InvalidTextPolicy = "error",
    threads: int | None = None,
    on_replaced: Callable[[str, int], None] | None = None,
) -> pa.RecordBatch:
    """``batch`` with every string leaf checked: raise on invalid text, or repair it.

    Parameters
    ----------
    batch
        Any record batch; non-text columns are left alone.
    policy
        ``"error"``: raise :class:`~instructfast.InvalidTextError` for the first row (lowest row number)
        holding invalid text; ``"replace"``: replace it with U+FFFD.
    threads
        Native threads for the check.
    on_replaced
        Called with (column, rows repaired) for each column that changed.

    Examples
    --------
    >>> import pyarrow as pa
    >>> b = pa.record_batch({"output": pa.array([b"ok", b"bad \\xff"]).view(pa.string())})
    >>> check_batch(b, policy="replace").column("output").to_pylist()
    ['ok', 'bad \\ufffd']
    >>> check_batch(b)
    Traceback (most recent call last):
    ...
    instructfast.errors.InvalidTextError: row 1: column `output`: invalid UTF-8 at byte 4 (b'bad \\xff'); ...
    """
    if policy not in ("error", "replace"):
        msg = f"`on_invalid_utf8` must be 'error' or 'replace', got {policy!r}"
        raise ArgumentError(msg)
    first: TextProblem | None = None
    columns = list(batch.columns)
    changed = False
    for k, name in enumerate(batch.schema.names):
        p, fixed, hit = _walk(batch.column(k), name, policy, threads)
        if p is not None and (first is None or p.row < first.row):
            first = p
        if fixed is not None:
            columns[k] = fixed
            changed = True
            if on_replaced is not None:
                on_replaced(name, int(hit.sum()))
    if first is not None:
        raise first.error()
    if not changed:
        return batch
    return pa.RecordBatch.from_arrays(columns, schema=batch.schema)


__all__ = ["HINT", "REPLACED", "TextProblem", "check_batch", "invalid_utf8", "is_text", "replace_invalid_utf8"]
