"""Closed choices and protocols shared by the public API."""

from __future__ import annotations

from typing import Any, Literal, Protocol, runtime_checkable

FileFormat = Literal["json", "jsonl", "parquet", "arrow", "arrows", "csv"]
"""File formats the CLI and :func:`instructfast.read_table` understand (``arrow`` = IPC file, ``arrows`` = IPC stream)."""


@runtime_checkable
class ArrowStreamExportable(Protocol):
    """Anything exporting the Arrow PyCapsule stream interface (polars, pandas>=2.2, pyarrow, duckdb...)."""

    def __arrow_c_stream__(self, requested_schema: Any = None) -> Any: ...


@runtime_checkable
class ArrowArrayExportable(Protocol):
    """Anything exporting one Arrow array/record batch through the PyCapsule interface."""

    def __arrow_c_array__(self, requested_schema: Any = None) -> Any: ...
