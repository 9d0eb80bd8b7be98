"""What the report reads: scored files (or tables), their stored run reports, the columns it charts.

A :class:`Dataset` is one input: a streaming source (:func:`instructfast.io.scan_file`, or a
table seen the same way), its label, the :class:`~instructfast.scoring.ScoreReport` stored in its
metadata when present, and how its text columns map onto instruction / input / output.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..columns import ResolvedColumns, resolve_columns
from ..errors import ArgumentError, ArgumentTypeError, SchemaError
from ..indicators import REGISTRY, provider_of
from ..io import scan_file
from ..scoring import REPORT_KEY, RULE_COLUMN, ScoreReport


class Source(Protocol):
    """A re-readable record source: :class:`instructfast.io.FileSource` or :class:`TableSource`."""

    schema: pa.Schema
    num_rows: int | None

    def batches(self, columns: Sequence[str] | None = None) -> Iterator[pa.RecordBatch]: ...

    def take(self, positions: Sequence[int] | np.ndarray, columns: Sequence[str] | None = None) -> pa.Table: ...


class TableSource:
    """An in-memory table read like a file."""

    def __init__(self, table: pa.Table, batch_rows: int = 65_536) -> None:
        self.table = table
        self.schema = table.schema
        self.num_rows: int | None = table.num_rows
        self.batch_rows = batch_rows

    def batches(self, columns: Sequence[str] | None = None) -> Iterator[pa.RecordBatch]:
        t = self.table if columns is None else self.table.select(list(columns))
        yield from t.to_batches(max_chunksize=self.batch_rows)

    def take(self, positions: Sequence[int] | np.ndarray, columns: Sequence[str] | None = None) -> pa.Table:
        t = self.table if columns is None else self.table.select(list(columns))
        return t.take(pa.array(np.asarray(positions, dtype=np.int64)))


@dataclass
class Dataset:
    """One input of the report."""

    label: str
    where: str  # the file path, or "table" for an in-memory input
    format: str
    source: Source
    report: ScoreReport | None
    resolved: ResolvedColumns | None  # None when no text layout is recognised (charts only, no texts)
    size_bytes: int | None = None
    rows: int = 0  # counted while reading

    @property
    def text_columns(self) -> list[str]:
        return self.resolved.source_columns() if self.resolved else []


@dataclass(frozen=True)
class ChartColumn:
    """A numeric column the report charts."""

    name: str
    integer: bool
    indicator: str | None  # the indicator key that makes it (``textstats``), None for other columns


def open_inputs(
    inputs: Sequence[str | os.PathLike[str] | pa.Table],
    labels: Sequence[str] | None,
    columns: Mapping[str, str] | None,
    batch_rows: int = 65_536,
) -> list[Dataset]:
    """One :class:`Dataset` per input, labelled by ``labels`` or the file names (made unique)."""
    if labels is not None:
        if isinstance(labels, str) or not all(isinstance(x, str) and x for x in labels):
            msg = f"`labels` must be a list of non-empty strings, got {labels!r}"
            raise ArgumentTypeError(msg)
        if len(labels) != len(inputs):
            msg = f"`labels` must name each of the {len(inputs)} inputs once, got {len(labels)} labels"
            raise ArgumentError(msg)
        if len(set(labels)) != len(labels):
            msg = f"`labels` must be distinct, got {list(labels)}"
            raise ArgumentError(msg)
    out: list[Dataset] = []
    for i, item in enumerate(inputs):
        if isinstance(item, pa.Table):
            src: Source = TableSource(item, batch_rows)
            where, fmt, size = "table", "arrow table", None
            default_label = f"table {i + 1}"
        elif isinstance(item, (str, os.PathLike)):
            fsrc = scan_file(item, batch_rows=batch_rows, text_columns=tuple((columns or {}).values()))
            src, where, fmt, size = fsrc, str(item), fsrc.format, Path(item).stat().st_size
            default_label = Path(item).name.split(".")[0] or Path(item).name
        else:
            msg = f"`inputs` must be file paths or pyarrow Tables, got {type(item).__name__}"
            raise ArgumentTypeError(msg)
        resolved = _resolve_text(src.schema, columns)
        label = labels[i] if labels is not None else default_label
        meta = dict(src.schema.metadata or {})
        if fmt == "parquet":  # score_file writes the report into the footer's key-value metadata only
            meta.update(pq.read_metadata(item).metadata or {})
        out.append(Dataset(label, where, fmt, src, stored_report(meta), resolved, size))
    if labels is None:
        _unique_labels(out)
    return out


def _resolve_text(schema: pa.Schema, columns: Mapping[str, str] | None) -> ResolvedColumns | None:
    if columns:  # an explicit mapping must fit
        return resolve_columns(schema, columns)
    try:
        return resolve_columns(schema, None)
    except SchemaError:
        return None


def _unique_labels(datasets: list[Dataset]) -> None:
    seen: dict[str, int] = {}
    for d in datasets:
        n = seen.get(d.label, 0)
        seen[d.label] = n + 1
        if n:
            d.label = f"{d.label} ({n + 1})"


def stored_report(meta: Mapping[bytes, bytes]) -> ScoreReport | None:
    """The :class:`ScoreReport` in schema or Parquet footer metadata (Parquet and Arrow files carry it)."""
    return ScoreReport.from_json(meta[REPORT_KEY]) if REPORT_KEY in meta else None


def _is_number(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)


def chart_columns(
    datasets: Sequence[Dataset], requested: Sequence[str] | None, exclude: Sequence[str]
) -> list[ChartColumn]:
    """The numeric columns to chart: ``requested``, or every numeric column of any input.

    Default order: indicator columns in registry order, then ``predicted_log_loss``, then the
    remaining numeric columns as they first appear. A column numeric in one input and not in
    another is an error naming it.
    """
    types: dict[str, pa.DataType] = {}
    for d in datasets:
        for f in d.source.schema:
            if f.name in types and _is_number(types[f.name]) != _is_number(f.type):
                msg = f"column `{f.name}` is {types[f.name]} in one input and {f.type} in `{d.label}`"
                raise SchemaError(msg)
            types.setdefault(f.name, f.type)
    if requested is not None:
        if isinstance(requested, str) or not all(isinstance(c, str) for c in requested):
            msg = f"`indicators` must be a list of column names, got {requested!r}"
            raise ArgumentTypeError(msg)
        bad = [c for c in requested if c not in types or not _is_number(types[c])]
        if bad:
            numeric = [c for c, t in types.items() if _is_number(t)]
            msg = f"`indicators` names columns that are not numeric columns of the inputs: {bad}; numeric columns: {numeric}"
            raise SchemaError(msg)
        names = list(dict.fromkeys(requested))
    else:
        numeric = [c for c, t in types.items() if _is_number(t) and c not in exclude]
        order = {key: i for i, key in enumerate(REGISTRY)}

        def rank(c: str) -> tuple[int, int]:
            cls = provider_of(c)
            if cls is not None:
                return (0, order[cls.name])
            return (1 if c == RULE_COLUMN else 2, 0)

        names = sorted(numeric, key=lambda c: (rank(c), numeric.index(c)))
    out = []
    for c in names:
        cls = provider_of(c)
        out.append(ChartColumn(c, pa.types.is_integer(types[c]), cls.name if cls else None))
    return out


def vector_column(datasets: Sequence[Dataset], requested: str | None) -> str | None:
    """The embeddings column: ``requested`` (must be a list of numbers in every input), or the
    first such column found, or None."""

    def is_vec(t: pa.DataType) -> bool:
        return (pa.types.is_fixed_size_list(t) or pa.types.is_list(t) or pa.types.is_large_list(t)) and _is_number(
            t.value_type
        )

    if requested is not None:
        for d in datasets:
            names = d.source.schema.names
            if requested not in names:
                msg = f"`embeddings` column `{requested}` is not in `{d.label}`; found columns: {names}"
                raise SchemaError(msg)
            if not is_vec(d.source.schema.field(requested).type):
                msg = f"`embeddings` column `{requested}` must be a list of numbers, got {d.source.schema.field(requested).type}"
                raise SchemaError(msg)
        return requested
    for f in datasets[0].source.schema:
        if is_vec(f.type) and all(
            f.name in d.source.schema.names and is_vec(d.source.schema.field(f.name).type) for d in datasets
        ):
            return f.name
    return None


__all__ = [
    "ChartColumn",
    "Dataset",
    "Source",
    "TableSource",
    "chart_columns",
    "open_inputs",
    "stored_report",
    "vector_column",
]
