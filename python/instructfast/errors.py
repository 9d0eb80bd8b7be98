"""The exception and warning tree: every error instructfast raises on purpose is here.

Every class derives from :class:`InstructfastError` and from the builtin a caller would
naturally catch (``SchemaError`` is also a ``ValueError``, ``MissingDependencyError`` an
``ImportError``, ``ModelNotFoundError`` a ``LookupError``), so ``except ValueError`` keeps
working. Messages say what was wrong (the parameter, column, file and line) and what to do.
Per-row problems are never exceptions: they become nulls with a counted reason.

::

    InstructfastError
    ├── ArgumentError (ValueError)           a parameter has a bad value
    │   ├── ArgumentTypeError (TypeError)    ... or the wrong type
    │   └── OptionError                      an unknown or invalid ``options=`` key
    │       └── PrecisionError               a precision this machine or runtime cannot run
    ├── SchemaError (ValueError)             a column is missing or of the wrong type
    ├── InputFormatError (ValueError)        a file cannot be read (file, line, field)
    │   └── RecordError                      a record sent to a service is malformed (index, field)
    ├── InvalidTextError (UnicodeError)      text holds invalid UTF-8 or a lone surrogate (file, line, column)
    ├── ArrowDataError (ValueError)          Arrow data from a producer is malformed (offsets, views, buffers)
    ├── RuleError (ValueError)               a rule is malformed or its inputs are missing
    ├── IndicatorUnavailableError (RuntimeError)
    ├── MissingDependencyError (ImportError) an optional package is missing (pip command)
    ├── ModelNotFoundError (LookupError)     no model fills a slot
    ├── ModelError (ValueError)              a model is unusable (kind, architecture, manifest)
    │   ├── ModelFileError (FileNotFoundError) a file of it is missing
    │   ├── ModelIntegrityError              a file of it differs from its recorded hash
    │   └── ExportError (RuntimeError)       an ONNX export failed
    │       └── ExportVerificationError      ... or its outputs differ from torch
    ├── OutputExistsError (FileExistsError)  an output would be replaced without overwrite
    ├── ResumeError (RuntimeError)           a partial run cannot be resumed
    └── Overloaded (RuntimeError)            a service's queue is full or it is shutting down (retry later)

Examples
--------
>>> import pyarrow as pa, instructfast
>>> try:
...     instructfast.score(pa.table({"text": ["hi"]}))
... except instructfast.SchemaError as e:
...     print(str(e).splitlines()[0])
missing required columns `instruction` and `output`; found columns: ['text']
>>> try:
...     instructfast.score(pa.table({"instruction": ["q"], "output": ["a"]}), options={"lm_token_budjet": 10})
... except instructfast.OptionError as e:
...     print(str(e).splitlines()[0])
unknown option 'lm_token_budjet' (did you mean 'lm_token_budget'?)
"""

from __future__ import annotations


class InstructfastError(Exception):
    """Root of all instructfast errors."""


class ArgumentError(InstructfastError, ValueError):
    """A parameter of a public function has a bad value; the message names the parameter."""


class ArgumentTypeError(ArgumentError, TypeError):
    """A parameter of a public function has the wrong type; the message names the parameter."""


class OptionError(ArgumentError):
    """An ``options=`` / ``--option`` key is unknown (the message lists the valid ones) or its value is invalid."""


class SchemaError(InstructfastError, ValueError):
    """A required column is missing or has the wrong type; the message names it and lists what was found."""


class InputFormatError(InstructfastError, ValueError):
    """An input file cannot be read: the message names the file and, where known, the line and field."""


class RecordError(InputFormatError):
    """A record handed to a service (:class:`~instructfast.BatchingScorer`, ``instructfast serve``) is malformed.

    The message starts with ``record <index>`` and names the field; both are also attributes, so a
    service can answer with them (``instructfast serve`` returns them in its 422 body).

    Attributes
    ----------
    index
        Position of the record in the request (``None``: the request as a whole).
    field
        The field at fault (``None``: the record as a whole).
    """

    def __init__(self, message: str, *, index: int | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.index = index
        self.field = field


class InvalidTextError(InstructfastError, UnicodeError):
    """Text holds invalid UTF-8 or a lone surrogate: the message names the file, line (or row), column and byte.

    ``on_invalid_utf8="replace"`` (CLI ``--on-invalid-utf8=replace``) replaces such bytes with U+FFFD
    instead and counts the rows in the report's notes. Also a ``UnicodeError`` (so a ``ValueError``).

    Attributes
    ----------
    row
        The row (of the table, batch or file) holding the text, when known.
    column
        The column (a path such as ``conversations[].value`` inside nested columns), when known.
    byte
        Offset of the first invalid byte within the value, when known.
    """

    row: int | None = None
    column: str | None = None
    byte: int | None = None
    detail: str | None = None  # the message after its "row N: " (what was found, what to do)

    def moved(self, rows: int) -> InvalidTextError:
        """The same error with its row ``rows`` further on (a batch's row, counted from the start of its stream)."""
        row = (self.row or 0) + rows
        err = InvalidTextError(f"row {row}: {self.detail}")
        err.row, err.column, err.byte, err.detail = row, self.column, self.byte, self.detail
        return err


class ArrowDataError(InstructfastError, ValueError):
    """Arrow data handed over through the C data interface is malformed (offsets, view lengths, buffers).

    Raised by the native core before it reads anything it cannot check; the producer of the array
    (not instructfast's caller) is at fault.
    """


class RuleError(InstructfastError, ValueError):
    """A rule is malformed, unknown, or needs indicator columns that are not available."""


class IndicatorUnavailableError(InstructfastError, RuntimeError):
    """An indicator was asked for explicitly but its model or dependency is not configured."""


class MissingDependencyError(InstructfastError, ImportError):
    """An optional dependency is not installed; the message carries the pip command."""


class ModelNotFoundError(InstructfastError, LookupError):
    """No model fills a slot: the message says where it looked and how to get one."""


class ModelError(InstructfastError, ValueError):
    """A model cannot be used (wrong kind, unsupported architecture, malformed manifest); the message names it."""


class ModelFileError(ModelError, FileNotFoundError):
    """A file a model needs is missing from its folder; the message names the folder and the file."""


class ModelIntegrityError(ModelError):
    """A model file's content differs from its recorded hash (truncated, partly copied or altered).

    The message names the file, the expected and the actual SHA-256, and the command that remakes it.
    The file is never loaded.
    """


class ExportError(ModelError, RuntimeError):
    """An ONNX export could not be made."""


class ExportVerificationError(ExportError):
    """ONNX Runtime's outputs on the exported graph differ from torch's beyond the tolerance."""


class PrecisionError(OptionError):
    """A precision this machine or this model's runtime cannot run (``precision='auto'`` falls back instead)."""


class OutputExistsError(InstructfastError, FileExistsError):
    """An output already exists and would be replaced; pass ``overwrite=True`` (``--overwrite``) to replace it."""


class ResumeError(InstructfastError, RuntimeError):
    """A partial run on disk belongs to other inputs or settings; rerun with them, or restart."""


class Overloaded(InstructfastError, RuntimeError):
    """A :class:`~instructfast.BatchingScorer` refused a request: its queue is full, or it is shutting down.

    ``instructfast serve`` answers 503 with a ``Retry-After`` header. Callers that would rather wait
    for room build the scorer with ``on_full="wait"`` (option ``serve_on_full``).

    Attributes
    ----------
    retry_after
        Seconds after which a retry is likely to be admitted (the queue drained at the measured
        rate), or ``None`` when the scorer is shutting down and will admit nothing more.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class InstructfastWarning(UserWarning):
    """Root of instructfast warnings (one summary per run, never one per row)."""


class NullValuesWarning(InstructfastWarning):
    """Some indicator values are null; the message counts them by reason."""


class UnavailableIndicatorWarning(InstructfastWarning):
    """Indicators that were not computed because their models are not configured."""


class ImplementationFallbackWarning(InstructfastWarning):
    """A faster implementation could not be loaded (native core, Triton kernels) and a fallback runs."""


class InstructfastDeprecationWarning(InstructfastWarning, DeprecationWarning):
    """A parameter or option spelling that still works but will be removed; the message names its replacement."""


__all__ = [
    "ArgumentError",
    "ArgumentTypeError",
    "ArrowDataError",
    "ExportError",
    "ExportVerificationError",
    "ImplementationFallbackWarning",
    "IndicatorUnavailableError",
    "InputFormatError",
    "InstructfastDeprecationWarning",
    "InstructfastError",
    "InstructfastWarning",
    "InvalidTextError",
    "MissingDependencyError",
    "ModelError",
    "ModelFileError",
    "ModelIntegrityError",
    "ModelNotFoundError",
    "NullValuesWarning",
    "OptionError",
    "OutputExistsError",
    "Overloaded",
    "PrecisionError",
    "RecordError",
    "ResumeError",
    "RuleError",
    "SchemaError",
    "UnavailableIndicatorWarning",
]
