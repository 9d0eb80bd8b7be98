"""The exception and warning tree.

Every error instructfast raises on purpose derives from :class:`InstructfastError`;
builtin bases are added where they help callers (``SchemaError`` is also a
``ValueError``, ``MissingDependencyError`` also an ``ImportError``). Per-row problems
are never exceptions: they become nulls with a counted reason.

Examples
--------
>>> import pyarrow as pa, instructfast
>>> try:
...     instructfast.score(pa.table({"text": ["hi"]}))
... except instructfast.SchemaError as e:
...     print(str(e).splitlines()[0])
missing required columns `instruction` and `output`; found columns: ['text']
"""

from __future__ import annotations


class InstructfastError(Exception):
    """Root of all instructfast errors."""


class SchemaError(InstructfastError, ValueError):
    """A required column is missing or has the wrong type; the message names it and lists what was found."""


class InputFormatError(InstructfastError, ValueError):
    """An input file cannot be read: the message names the file and, where known, the line."""


class IndicatorUnavailableError(InstructfastError, RuntimeError):
    """An indicator was asked for explicitly but its model or dependency is not configured."""


class RuleError(InstructfastError, ValueError):
    """A rule is malformed, unknown, or needs indicator columns that are not available."""


class MissingDependencyError(InstructfastError, ImportError):
    """An optional dependency is not installed; the message carries the pip command."""


class InstructfastWarning(UserWarning):
    """Root of instructfast warnings (one summary per run, never one per row)."""


class NullValuesWarning(InstructfastWarning):
    """Some indicator values are null; the message counts them by reason."""


class UnavailableIndicatorWarning(InstructfastWarning):
    """Indicators that were not computed because their models are not configured."""


class ImplementationFallbackWarning(InstructfastWarning):
    """The native extension could not be loaded and the pure-Python twin is used."""


__all__ = [
    "InstructfastError",
    "SchemaError",
    "InputFormatError",
    "IndicatorUnavailableError",
    "RuleError",
    "MissingDependencyError",
    "InstructfastWarning",
    "NullValuesWarning",
    "UnavailableIndicatorWarning",
    "ImplementationFallbackWarning",
]
