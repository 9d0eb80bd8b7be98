"""instructfast: native-accelerated InstructMining quality indicators and data selection.

>>> import pyarrow as pa, instructfast
>>> t = pa.table({"instruction": ["Say hello."], "output": ["Hello, world!"]})
>>> instructfast.score(t, indicators="mtld").column("mtld").to_pylist()
[2.0]
"""

from __future__ import annotations

from ._native import IMPL, IMPL_REASON
from .errors import (
    ImplementationFallbackWarning,
    IndicatorUnavailableError,
    InputFormatError,
    InstructfastError,
    InstructfastWarning,
    MissingDependencyError,
    NullValuesWarning,
    RuleError,
    SchemaError,
    UnavailableIndicatorWarning,
)
from .indicators import describe as describe_indicators
from .indicators.base import ScoreOptions
from .indicators.mtld import mtld, text_stats, tokenize
from .io import read_table, scan_file, write_table
from .models.embedder import load_embedder
from .models.export import export
from .neighbors import NeighborIndex, knn_distances
from .pool_index import ReferencePool, build_pool
from .rules import RULES, Rule, get_rule
from .scoring import ScoreReport, Scorer, score
from .selection import SelectionResult, SubsetSearchResult, fit_rule, search_subset_size, select

try:
    from importlib.metadata import version as _version

    __version__ = _version("instructfast")
except Exception:  # pragma: no cover - running from a source tree without metadata
    __version__ = "0.0.0+unknown"

__all__ = [
    "score",
    "export",
    "load_embedder",
    "Scorer",
    "ScoreReport",
    "ScoreOptions",
    "Rule",
    "RULES",
    "get_rule",
    "select",
    "SelectionResult",
    "fit_rule",
    "search_subset_size",
    "SubsetSearchResult",
    "knn_distances",
    "NeighborIndex",
    "ReferencePool",
    "build_pool",
    "describe_indicators",
    "mtld",
    "tokenize",
    "text_stats",
    "read_table",
    "scan_file",
    "write_table",
    "IMPL",
    "IMPL_REASON",
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
