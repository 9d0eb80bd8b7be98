"""The indicator interface every indicator implements.

An indicator is a named producer of one or more output columns. ``score()`` only
talks to this interface, so model-based indicators slot in by registering a new
class in :mod:`instructfast.indicators` without touching ``score()``'s signature.

Two scopes:

* ``row``: each row's values depend only on that row (text stats, perplexity,
  reward, UniEval). ``compute(batch)`` is called per batch, in order.
* ``pool``: values depend on the whole table (KNN-i). ``observe(batch)`` is called
  per batch, then ``finalize()`` returns the columns for all rows at once.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import pyarrow as pa

from ..columns import CanonicalBatch
from ..models.precision import Resolved
from ..models.registry import SlotStatus
from ..options import ScoreOptions
from ..run_record import RunRecord

# Null reasons several indicators give: one spelling, so reports add up across indicators.
NULL_OUTPUT = "output is null"
EMPTY_OUTPUT = "output is empty"
NULL_INSTRUCTION = "instruction is null"


@dataclass(frozen=True)
class OutputColumn:
    """A column an indicator writes; ``pattern`` makes it a family (``knn_<i>`` for any i).

    ``name`` is the family's default member (``knn_6``); ``pattern`` a regular expression every
    member matches in full, with the family's parameter as its one group.
    """

    name: str
    type: pa.DataType
    description: str
    pattern: str | None = None

    def matches(self, column: str) -> bool:
        if column == self.name:
            return True
        return self.pattern is not None and re.fullmatch(self.pattern, column) is not None


@dataclass(frozen=True)
class Availability:
    ok: bool
    reason: str = ""
    hint: str = ""

    def explain(self) -> str:
        return self.reason + (f" ({self.hint})" if self.hint else "")

    @classmethod
    def of(cls, status: SlotStatus) -> Availability:
        """A model slot's status (:func:`instructfast.models.registry.slot_status`) as an availability."""
        return cls(status.ok, status.reason, status.hint)


class NullCounter:
    """Counts null values per output column and reason (one summary, never per-row warnings).

    Not locked: each call that scores rows counts into its own counter, and
    :class:`~instructfast.Scorer` adds those into its cumulative one under its lock (:meth:`merge`).
    """

    def __init__(self) -> None:
        self._counts: dict[str, Counter[str]] = defaultdict(Counter)
        self._notes: dict[str, Counter[str]] = defaultdict(Counter)

    def note(self, column: str, what: str, n: int) -> None:
        """Count rows whose value exists but was computed with a caveat (e.g. a truncated prompt)."""
        if n:
            self._notes[column][what] += int(n)

    def notes_dict(self) -> dict[str, dict[str, int]]:
        return {c: dict(r) for c, r in self._notes.items() if r}

    def add(self, column: str, reason: str, n: int) -> None:
        if n:
            self._counts[column][reason] += int(n)

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {c: dict(r) for c, r in self._counts.items() if r}

    def total(self) -> int:
        return sum(sum(r.values()) for r in self._counts.values())

    def merge(self, other: NullCounter) -> None:
        """Add another counter's nulls and notes (a batch's, a call's, a shard's) to this one."""
        self.extend(other.as_dict(), other.notes_dict())

    def extend(self, nulls: dict[str, dict[str, int]], notes: dict[str, dict[str, int]] | None = None) -> None:
        """Add counts in :meth:`as_dict` / :meth:`notes_dict` form (as a checkpoint stores them)."""
        for col, reasons in nulls.items():
            for reason, n in reasons.items():
                self.add(col, reason, n)
        for col, what in (notes or {}).items():
            for w, n in what.items():
                self.note(col, w, n)


class Indicator:
    """Base class. Subclasses set ``name``, ``columns`` and implement ``compute``."""

    name: ClassVar[str]
    columns: ClassVar[tuple[OutputColumn, ...]]
    # a class default that an instance may narrow (knn with a fixed reference pool is per row)
    scope: Literal["row", "pool"] = "row"
    models: ClassVar[tuple[str, ...]] = ()  # model slots it needs (for `instructfast indicators`)
    precision: Resolved | None = None  # the precision its model runs at, set by start()

    def __init__(self, options: ScoreOptions, wanted: tuple[str, ...] | None = None) -> None:
        self.options = options
        self.wanted = wanted or tuple(c.name for c in self.output_columns())

    def output_columns(self) -> tuple[OutputColumn, ...]:
        return self.columns

    @classmethod
    def availability(cls, options: ScoreOptions) -> Availability:
        return Availability(True)

    def start(self) -> None:
        """Load models etc. Called once before the first batch."""

    def compute(self, batch: CanonicalBatch, nulls: NullCounter) -> dict[str, pa.Array]:
        raise NotImplementedError

    def observe(self, batch: CanonicalBatch, nulls: NullCounter) -> None:
        raise NotImplementedError

    def embed(self, batch: CanonicalBatch, nulls: NullCounter) -> tuple[np.ndarray, np.ndarray]:
        """Pool scope: the vectors of the batch's usable rows and their positions in the batch."""
        raise NotImplementedError

    def search_pool(self, vectors: np.ndarray) -> np.ndarray:
        """Pool scope: each member's distances to its neighbours, once every row is embedded."""
        raise NotImplementedError

    def pool_columns(
        self,
        n: int,
        positions: np.ndarray,
        dist: np.ndarray,
        members: int,
        nulls: NullCounter,
        *,
        recall_notes: bool = True,
    ) -> dict[str, pa.Array]:
        """Pool scope: the columns of ``n`` rows from the distances of their members (at ``positions``)."""
        raise NotImplementedError

    def pool_search_facts(self, nulls: NullCounter) -> str | None:
        """Pool scope: count the last search's caveats (an approximate search's recall) in ``nulls``
        once, and say how it searched; ``None`` when there was no search."""
        return None

    def finalize(self, nulls: NullCounter) -> dict[str, pa.Array]:
        raise NotImplementedError

    def record(self, run: RunRecord) -> None:
        """Add this indicator's implementation choices and models to the run record (after start)."""

    def close(self) -> None:
        """Release models. Called once after the last batch, also on errors."""

    def note_precision(self, nulls: NullCounter, n: int) -> None:
        """Count ``n`` rows computed at a precision ``auto`` fell back to (a note per column, not a null)."""
        if self.precision is not None and self.precision.note:
            for c in self.wanted:
                nulls.note(c, self.precision.note, n)

    def record_precision(self, run: RunRecord) -> None:
        """The precision this indicator's model ran at, in the run record."""
        if self.precision is not None:
            run.precision[self.precision.slot] = self.precision.describe()


_NUMPY = {t: np.dtype(t.to_pandas_dtype()) for t in (pa.int32(), pa.int64(), pa.float32(), pa.float64())}


def masked(values, invalid, type_: pa.DataType) -> pa.Array:
    """A pyarrow array from numpy ``values`` with nulls where the boolean mask ``invalid`` is set.

    Built from buffers where it can be: ``pa.array(ndarray)`` imports pandas to ask whether the array
    is categorical (0.7 s and 40 MiB that a text-statistics run otherwise never loads).

    >>> import numpy as np
    >>> masked(np.array([1.5, 2.0, 3.0]), np.array([False, True, False]), pa.float64()).to_pylist()
    [1.5, None, 3.0]
    """
    invalid = np.asarray(invalid, dtype=bool)
    dtype = _NUMPY.get(type_)
    if dtype is not None and np.ndim(values) == 1:
        arr = np.ascontiguousarray(values, dtype=dtype)
        if not invalid.any():
            return pa.Array.from_buffers(type_, len(arr), [None, pa.py_buffer(arr)])
        valid = pa.py_buffer(np.packbits(~invalid, bitorder="little"))
        return pa.Array.from_buffers(type_, len(arr), [valid, pa.py_buffer(arr)], null_count=int(invalid.sum()))
    return pa.array(values, type=type_, mask=invalid if invalid.any() else None)
