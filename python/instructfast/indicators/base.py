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

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import ClassVar, Literal, Mapping

import pyarrow as pa

from .._cores import available_cores
from ..columns import CanonicalBatch


@dataclass(frozen=True)
class OutputColumn:
    name: str
    type: pa.DataType
    description: str


@dataclass(frozen=True)
class Availability:
    ok: bool
    reason: str = ""
    hint: str = ""

    def explain(self) -> str:
        return self.reason + (f" ({self.hint})" if self.hint else "")


@dataclass(frozen=True)
class ScoreOptions:
    """Settings shared by all indicators in one run; validated once, here.

    Parameters
    ----------
    threads
        Worker threads for native code; ``None`` means all cores available to the process.
    batch_rows
        Rows per record batch pulled from the input (the streaming unit; bounds memory).
    mtld_threshold
        MTLD factor threshold (lexicalrichness default 0.72).
    models
        Model slots to paths or ids, e.g. ``{"lm": "/models/llama", "reward": "/models/rm"}``.
    device
        ``"cpu"``, ``"cuda"`` or ``None`` (CUDA when available).
    extra
        Indicator-specific options by key (kept open so new indicators need no new parameters).
    """

    threads: int | None = None
    batch_rows: int = 65_536
    mtld_threshold: float = 0.72
    models: Mapping[str, str] = field(default_factory=dict)
    device: str | None = None
    extra: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            msg = f"`threads` must be a positive integer or None, got {self.threads!r}"
            raise ValueError(msg)
        if not isinstance(self.batch_rows, int) or self.batch_rows < 1:
            msg = f"`batch_rows` must be a positive integer, got {self.batch_rows!r}"
            raise ValueError(msg)
        if not (0.0 < float(self.mtld_threshold) < 1.0):
            msg = f"`mtld_threshold` must be in (0, 1), got {self.mtld_threshold!r}"
            raise ValueError(msg)
        if self.device not in (None, "cpu", "cuda") and not str(self.device).startswith("cuda:"):
            msg = f"`device` must be 'cpu', 'cuda', 'cuda:N' or None, got {self.device!r}"
            raise ValueError(msg)

    @property
    def resolved_threads(self) -> int:
        return self.threads if self.threads is not None else available_cores()


class NullCounter:
    """Counts null values per output column and reason (one summary, never per-row warnings)."""

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


class Indicator:
    """Base class. Subclasses set ``name``, ``columns`` and implement ``compute``."""

    name: ClassVar[str]
    columns: ClassVar[tuple[OutputColumn, ...]]
    scope: ClassVar[Literal["row", "pool"]] = "row"
    models: ClassVar[tuple[str, ...]] = ()  # model slots it needs (for `instructfast indicators`)

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

    def finalize(self, nulls: NullCounter) -> dict[str, pa.Array]:
        raise NotImplementedError

    def close(self) -> None:
        """Release models. Called once after the last batch, also on errors."""


class PlannedIndicator(Indicator):
    """An indicator whose engine is not part of this build: always reported unavailable."""

    reason: ClassVar[str] = ""
    hint: ClassVar[str] = ""

    @classmethod
    def availability(cls, options: ScoreOptions) -> Availability:
        return Availability(False, cls.reason, cls.hint)


def masked(values, invalid, type_: pa.DataType) -> pa.Array:
    """A pyarrow array from numpy ``values`` with nulls where the boolean mask ``invalid`` is set."""
    import numpy as np

    invalid = np.asarray(invalid, dtype=bool)
    return pa.array(values, type=type_, mask=invalid if invalid.any() else None)
