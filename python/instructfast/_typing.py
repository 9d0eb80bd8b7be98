"""Closed choices and protocols shared by the public API."""

from __future__ import annotations

from typing import Any, Literal, Protocol, runtime_checkable

FileFormat = Literal["json", "jsonl", "parquet", "arrow", "arrows", "csv"]
"""File formats the CLI and :func:`instructfast.read_table` understand (``arrow`` = IPC file, ``arrows`` = IPC stream)."""

Overflow = Literal["null", "truncate"]
"""Text beyond a model's window: null with a counted reason, or score its first tokens."""

Precision = Literal["fp32", "bf16", "fp16", "int8", "auto"]
"""Numeric precision of a model slot (see :mod:`instructfast.models.precision`)."""

InvalidTextPolicy = Literal["error", "replace"]
"""Invalid UTF-8 or a lone surrogate in input text: an error naming file, line and column, or U+FFFD (counted)."""

VerifyModels = Literal["cached", "full"]
"""Model file hashes: checked once per size and mtime (hashes cached), or re-hashed at every load."""

KnnBackend = Literal["auto", "faiss", "torch"]
"""kNN search engine: faiss on the CPU, blocked torch matmul (CUDA), or auto."""

EmbedderBackend = Literal["auto", "onnx", "torch"]
"""Embedder runtime: ONNX Runtime, torch (CUDA without onnxruntime-gpu), or auto."""

Exclude = Literal["none", "position", "match"]
"""How a kNN search leaves a query's own row out of its neighbours."""

KnnScope = Literal["union", "shard"]
"""The pool of a sharded run's ``knn_<i>``: every shard together (the dataset, as the paper), or each shard alone."""

VectorDtype = Literal["float32", "float16"]
IvfStorage = Literal["sq8", "flat"]
"""How a run stores embedding checkpoints (float16 halves the disk; rows are re-normalised when read)."""

OnFull = Literal["reject", "wait"]
"""What a request that finds a service's queue full does: refused with ``Overloaded`` (HTTP 503), or waits."""

SelectionMethod = Literal["rule", "kcenter", "kmeans-kcenter", "random"]
"""How :func:`instructfast.select` chooses rows."""


@runtime_checkable
class ArrowStreamExportable(Protocol):
    """Anything exporting the Arrow PyCapsule stream interface (polars, pandas>=2.2, pyarrow, duckdb...)."""

    def __arrow_c_stream__(self, requested_schema: Any = None) -> Any: ...


@runtime_checkable
class ArrowArrayExportable(Protocol):
    """Anything exporting one Arrow array/record batch through the PyCapsule interface."""

    def __arrow_c_array__(self, requested_schema: Any = None) -> Any: ...
