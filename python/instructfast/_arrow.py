"""Arrow by protocol: turn whatever the user hands us into a RecordBatchReader.

Nothing here copies string data: tables are re-chunked by slicing, protocol objects
are imported through the Arrow C stream interface.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from .errors import ArgumentTypeError


def to_reader(data: Any) -> pa.RecordBatchReader:
    """Coerce ``data`` to a :class:`pyarrow.RecordBatchReader`.

    Accepts a Table, RecordBatch, RecordBatchReader, any object with
    ``__arrow_c_stream__`` (polars, pandas >= 2.2, duckdb, ...) or ``__arrow_c_array__``,
    a Hugging Face ``datasets.Dataset`` (its Arrow table, zero-copy), a dict of columns
    or a list of row dicts.
    """
    if isinstance(data, pa.RecordBatchReader):
        return data
    if isinstance(data, pa.Table):
        return data.to_reader()
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data]).to_reader()
    hf = _hf_dataset_table(data)
    if hf is not None:
        return hf.to_reader()
    if hasattr(data, "__arrow_c_stream__"):
        return pa.RecordBatchReader.from_stream(data)
    if hasattr(data, "__arrow_c_array__"):
        batch = pa.record_batch(data)
        return pa.Table.from_batches([batch]).to_reader()
    if isinstance(data, dict):
        return pa.table(data).to_reader()
    if isinstance(data, list) and all(isinstance(r, dict) for r in data):
        return pa.Table.from_pylist(data).to_reader()
    msg = (
        "`data` must be a pyarrow Table/RecordBatch/RecordBatchReader, an object exporting "
        f"`__arrow_c_stream__` (polars, pandas, datasets), a dict of columns or a list of dicts; got {type(data).__name__}"
    )
    raise ArgumentTypeError(msg)


def _hf_dataset_table(data: Any) -> pa.Table | None:
    """A `datasets.Dataset` keeps its rows in `.data.table` (possibly behind an indices mapping)."""
    mod = type(data).__module__ or ""
    if not mod.startswith("datasets"):
        return None
    if getattr(data, "_indices", None) is not None:
        # A shuffled/selected view: materialise rows in view order (one take, no Python rows).
        return data.with_format("arrow")[:]
    inner = getattr(getattr(data, "data", None), "table", None)
    return inner if isinstance(inner, pa.Table) else None


def rebatch(reader: pa.RecordBatchReader, max_rows: int) -> Iterator[pa.RecordBatch]:
    """Yield the reader's batches split to at most ``max_rows`` rows (slices, no copies).

    Small batches are passed through as they come: merging would copy, and each
    indicator has its own inner batching policy for model passes.
    """
    for batch in reader:
        n = batch.num_rows
        if n <= max_rows:
            if n:
                yield batch
            continue
        for start in range(0, n, max_rows):
            yield batch.slice(start, min(max_rows, n - start))


def total_rows(data: Any) -> int | None:
    """Row count when known up front (for progress bars), else None."""
    if isinstance(data, (pa.Table, pa.RecordBatch)):
        return data.num_rows
    hf = _hf_dataset_table(data) if not isinstance(data, dict) else None
    if hf is not None:
        return len(data)
    n = getattr(data, "num_rows", None) or getattr(data, "height", None)
    if isinstance(n, int):
        return n
    try:
        return len(data) if hasattr(data, "__arrow_c_stream__") and hasattr(data, "__len__") else None
    except TypeError:
        return None
