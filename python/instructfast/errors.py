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
    ├── RuleError (ValueError)               a rule is malformed or its inputs are missing
    ├── IndicatorUnavailableError (RuntimeError)
    ├── MissingDependencyError (ImportError) an optional package is missing (pip command)
    ├── ModelNotFoundError (LookupError)     no model fills a slot
    ├── ModelError (ValueError)              a model is unusable (kind, architecture, manifest)
    │   ├── ModelFileError (FileNotFoundError) a file of it is missing
    │   └── ExportError (RuntimeError)       an ONNX export failed
    │       └── ExportVerificationError      ... or its outputs differ from torch
    ├── OutputExistsError (FileExistsError)  an output would be replaced without overwrite
    └── ResumeError (RuntimeError)           a partial run cannot be resumed

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
    "ExportError",
    "ExportVerificationError",
    "ImplementationFallbackWarning",
    "IndicatorUnavailableError",
    "InputFormatError",
    "InstructfastDeprecationWarning",
    "InstructfastError",
    "InstructfastWarning",
    "MissingDependencyError",
    "ModelError",
    "ModelFileError",
    "ModelNotFoundError",
    "NullValuesWarning",
    "OptionError",
    "OutputExistsError",
    "PrecisionError",
    "ResumeError",
    "RuleError",
    "SchemaError",
    "UnavailableIndicatorWarning",
]
