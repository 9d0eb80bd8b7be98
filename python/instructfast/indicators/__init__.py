"""The indicator registry: one place that knows every indicator and the columns it makes.

Users ask for indicators by indicator name (``"textstats"``) or by output column
(``"mtld"``, ``"knn_10"``). :func:`plan` turns such a request into indicator
instances plus the columns each must emit.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..errors import ArgumentError, ArgumentTypeError, IndicatorUnavailableError
from ..options import ScoreOptions
from .base import Availability, Indicator
from .knn import Knn
from .logprob import LogProb
from .reward import Reward
from .textstats import TextStats
from .tokens import Tokens
from .unieval import UniEval

REGISTRY: dict[str, type[Indicator]] = {cls.name: cls for cls in (TextStats, Tokens, LogProb, Reward, UniEval, Knn)}
"""Indicator key -> class; the keys are the file stems of every piece of each group (STYLE.md section 4)."""


@dataclass(frozen=True)
class IndicatorInfo:
    """One indicator as :func:`describe` lists it: key, columns, model slots, scope and availability."""

    name: str
    columns: tuple[str, ...]
    models: tuple[str, ...]
    scope: str
    availability: Availability


def describe(options: ScoreOptions | None = None) -> list[IndicatorInfo]:
    """Every registered indicator with its columns, models and availability."""
    if options is not None and not isinstance(options, ScoreOptions):
        msg = f"`options` must be a ScoreOptions or None, got {type(options).__name__}"
        raise ArgumentTypeError(msg)
    options = options or ScoreOptions()
    return [
        IndicatorInfo(n, tuple(c.name for c in cls.columns), cls.models, cls.scope, cls.availability(options))
        for n, cls in REGISTRY.items()
    ]


def provider_of(column: str) -> type[Indicator] | None:
    """The indicator class that makes ``column`` (a family member such as ``knn_10`` included)."""
    for cls in REGISTRY.values():
        if any(c.matches(column) for c in cls.columns):
            return cls
    return None


def all_columns() -> list[str]:
    """Every column name (families by their default member and pattern, e.g. ``knn_6 (knn_<i>)``)."""
    return [c.name for cls in REGISTRY.values() for c in cls.columns]


@dataclass
class Plan:
    """What one run computes: indicator instances, and what was left out and why."""

    indicators: list[Indicator]
    unavailable: dict[str, str]  # indicator name -> reason (only for indicators=None runs)
    skipped_present: list[str]  # columns already in the input, kept as they are

    def columns(self) -> list[str]:
        return [c for ind in self.indicators for c in ind.wanted]


def plan(
    requested: Sequence[str] | None,
    options: ScoreOptions,
    *,
    present: Iterable[str] = (),
    required: Iterable[str] = (),
) -> Plan:
    """Decide which indicators run and which columns each emits.

    ``requested=None`` means every available indicator (unavailable ones are reported,
    not silently skipped); explicit names that are unavailable raise. Columns already
    ``present`` in the input are kept and not recomputed unless asked for explicitly.
    ``required`` columns (from a rule) are added to the plan.
    """
    present = set(present)
    wanted: dict[str, list[str]] = {}
    unavailable: dict[str, str] = {}
    explicit = requested is not None

    def add(cls: type[Indicator], cols: Iterable[str]) -> None:
        lst = wanted.setdefault(cls.name, [])
        for c in cols:
            if c not in lst:
                lst.append(c)

    if (
        requested is not None
        and not isinstance(requested, str)
        and not (isinstance(requested, Sequence) and all(isinstance(x, str) for x in requested))
    ):
        msg = f"`indicators` must be None, a name or a list of names, got {requested!r}"
        raise ArgumentTypeError(msg)
    if requested is None:
        for cls in REGISTRY.values():
            av = cls.availability(options)
            if av.ok:
                add(cls, [c.name for c in cls.columns])
            else:
                unavailable[cls.name] = av.explain()
    else:
        if isinstance(requested, str):
            requested = [requested]
        for item in requested:
            cls = REGISTRY.get(item) or provider_of(item)
            if cls is None:
                near = difflib.get_close_matches(item, [*REGISTRY, *all_columns()], n=1)
                hint = f" (did you mean {near[0]!r}?)" if near else ""
                msg = (
                    f"`indicators`: unknown indicator {item!r}{hint}; known indicators: {sorted(REGISTRY)}; "
                    f"known columns: {all_columns()} (and knn_<i> for any i >= 1)"
                )
                raise ArgumentError(msg)
            add(cls, [c.name for c in cls.columns] if item == cls.name else [item])
    for col in required:
        cls = provider_of(col)
        if cls is not None and col not in present:
            add(cls, [col])

    skipped = []
    indicators: list[Indicator] = []
    for name, cols in wanted.items():
        cls = REGISTRY[name]
        if not explicit:
            skipped += [c for c in cols if c in present]
            cols = [c for c in cols if c not in present]
        if not cols:
            continue
        av = cls.availability(options)
        if not av.ok:
            if explicit:
                msg = f"indicator `{name}` (columns {cols}) is unavailable: {av.explain()}"
                raise IndicatorUnavailableError(msg)
            unavailable[name] = av.explain()
            continue
        indicators.append(cls(options, tuple(cols)))
    return Plan(indicators, unavailable, skipped)


__all__ = ["REGISTRY", "IndicatorInfo", "Plan", "all_columns", "describe", "plan", "provider_of"]
