"""instructfast: native-accelerated InstructMining quality indicators and data selection.

>>> import pyarrow as pa, instructfast
>>> t = pa.table({"instruction": ["Say hello."], "output": ["Hello, world!"]})
>>> instructfast.score(t, indicators="mtld").column("mtld").to_pylist()
[2.0]

``__all__`` holds what users call and the types those calls return; everything else is
internal and may change.
"""

from __future__ import annotations

from ._native import IMPL, IMPL_REASON
from ._version import __version__
from .batcher import BatchingScorer
from .errors import (
    ArgumentError,
    ArgumentTypeError,
    ArrowDataError,
    ExportError,
    ExportVerificationError,
    ImplementationFallbackWarning,
    IndicatorUnavailableError,
    InputFormatError,
    InstructfastDeprecationWarning,
    InstructfastError,
    InstructfastWarning,
    InvalidTextError,
    MissingDependencyError,
    ModelError,
    ModelFileError,
    ModelIntegrityError,
    ModelNotFoundError,
    NullValuesWarning,
    OptionError,
    OutputExistsError,
    Overloaded,
    PrecisionError,
    RecordError,
    ResumeError,
    RuleError,
    SchemaError,
    UnavailableIndicatorWarning,
)
from .indicators import IndicatorInfo
from .indicators import describe as describe_indicators
from .indicators.base import Availability
from .io import FileSource, read_table, scan_file, write_table
from .models.embedder import Embedder, load_embedder
from .models.embedder_torch import TorchEmbedder
from .models.export import export
from .neighbors import NeighborIndex, SearchReport, knn_distances
from .ops.textstats import mtld, text_stats, tokenize
from .options import ScoreOptions, describe_options
from .pipeline import FileRunResult, ShardedRunResult, ShardResult, score_file, score_files
from .pool_index import ReferencePool, build_pool
from .report import ReportResult, report
from .rules import RULES, Rule, get_rule
from .run_record import RunRecord
from .scoring import RowResult, Scorer, ScoreReport, score
from .selection import SelectionResult, SubsetSearchResult, fit_rule, search_subset_size, select
from .shards import join_files

__all__ = [
    "IMPL",
    "IMPL_REASON",
    "RULES",
    "ArgumentError",
    "ArgumentTypeError",
    "ArrowDataError",
    "Availability",
    "BatchingScorer",
    "Embedder",
    "ExportError",
    "ExportVerificationError",
    "FileRunResult",
    "FileSource",
    "ImplementationFallbackWarning",
    "IndicatorInfo",
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
    "NeighborIndex",
    "NullValuesWarning",
    "OptionError",
    "OutputExistsError",
    "Overloaded",
    "PrecisionError",
    "RecordError",
    "ReferencePool",
    "ReportResult",
    "ResumeError",
    "Rule",
    "RuleError",
    "RowResult",
    "RunRecord",
    "SchemaError",
    "ScoreOptions",
    "ScoreReport",
    "Scorer",
    "SearchReport",
    "SelectionResult",
    "ShardResult",
    "ShardedRunResult",
    "SubsetSearchResult",
    "TorchEmbedder",
    "UnavailableIndicatorWarning",
    "__version__",
    "build_pool",
    "describe_indicators",
    "describe_options",
    "export",
    "fit_rule",
    "get_rule",
    "join_files",
    "knn_distances",
    "load_embedder",
    "mtld",
    "read_table",
    "report",
    "scan_file",
    "score",
    "score_file",
    "score_files",
    "search_subset_size",
    "select",
    "text_stats",
    "tokenize",
    "write_table",
]
