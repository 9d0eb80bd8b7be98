"""Typed options: every setting of a run, in frozen groups that validate themselves.

Users pass settings three ways, all landing here: keyword parameters of :func:`instructfast.score`
(``threads``, ``batch_rows``, ``mtld_threshold``, ``models``, ``device``), a flat ``options=``
mapping (``{"lm_token_budget": 4096}``), and the CLI's ``--option KEY=VALUE``. A flat key names one
field of one group: ``<prefix>_<field>`` by default (``knn_exact_max`` is :class:`KnnOptions`'s
``exact_max``), or the key the field declares (``prompt_template``, ``on_overflow``). An unknown
key is an :class:`~instructfast.OptionError` that lists the valid keys and the nearest match;
values given as strings (the CLI's) are parsed by the field's type, booleans by one parser
(:func:`parse_bool`).

Adding an option is one line: a field with a default and :func:`option` metadata in its group.
Its key, parsing, validation, the CLI help and ``instructfast options`` follow from it.

Examples
--------
>>> o = ScoreOptions.build(options={"lm_token_budget": "4096", "knn_table_in_pool": "no"})
>>> o.lm.token_budget, o.knn.table_in_pool
(4096, False)
>>> ScoreOptions.build(options={"knn_exact_max": -1})
Traceback (most recent call last):
...
instructfast.errors.OptionError: option `knn_exact_max` must be >= 1, got -1
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypedDict

from ._cores import available_cores
from ._typing import (
    EmbedderBackend,
    InvalidTextPolicy,
    IvfStorage,
    KnnBackend,
    KnnScope,
    OnFull,
    Overflow,
    Precision,
    VectorDtype,
    VerifyModels,
)
from .errors import ArgumentError, ArgumentTypeError, InstructfastDeprecationWarning, OptionError

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def parse_bool(value: object, name: str) -> bool:
    """The one boolean parser: ``True``/``False``, 1/0, and the words true/false, yes/no, on/off.

    >>> parse_bool("Yes", "x"), parse_bool(0, "x")
    (True, False)
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    s = str(value).strip().lower()
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    msg = f"option `{name}` must be true or false (or one of {_TRUE + _FALSE}), got {value!r}"
    raise OptionError(msg)


def option(
    default: Any,
    doc: str,
    *,
    key: str | None = None,
    min: float | None = None,
    max: float | None = None,
    open_interval: bool = False,
) -> Any:
    """A group field: its default, one line of documentation, an explicit flat key, numeric bounds.

    ``open_interval`` excludes the bounds themselves (``mtld_threshold`` lies in (0, 1)).
    """
    meta = {"doc": doc, "key": key, "min": min, "max": max, "open": open_interval}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class OptionGroup:
    """Base of the option groups: coerces and checks every field against its annotation."""

    prefix: ClassVar[str]
    title: ClassVar[str]

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = _coerce(getattr(self, f.name), hints[f.name], f, _key(type(self), f))
            object.__setattr__(self, f.name, value)

    @classmethod
    def keys(cls) -> dict[str, str]:
        """Flat key -> field name."""
        return {_key(cls, f): f.name for f in dataclasses.fields(cls)}


def _key(group: type[OptionGroup], f: dataclasses.Field) -> str:
    return f.metadata.get("key") or f"{group.prefix}_{f.name}"


def _coerce(value: Any, hint: Any, f: dataclasses.Field, key: str) -> Any:
    """``value`` as the annotated type (strings parsed), or an OptionError naming ``key``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        hint = next(a for a in args if a is not type(None))
        # "auto" means the default (None) unless the choices name it (precision="auto" is a choice)
        unset = ("", "none") if "auto" in typing.get_args(hint) else ("", "none", "auto")
        if value is None or (isinstance(value, str) and value.strip().lower() in unset):
            return None
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        text = str(value).strip().lower() if isinstance(value, str) else value
        if text not in args:
            msg = f"option `{key}` must be one of {list(args)}, got {value!r}"
            raise OptionError(msg)
        return text
    if hint is bool:
        return parse_bool(value, key)
    if hint in (int, float):
        if isinstance(value, bool):
            msg = f"option `{key}` must be a number, got {value!r}"
            raise OptionError(msg)
        try:
            num = hint(value) if not isinstance(value, str) or hint is float else int(value.strip())
        except (TypeError, ValueError):
            msg = f"option `{key}` must be {'an integer' if hint is int else 'a number'}, got {value!r}"
            raise OptionError(msg) from None
        if hint is int and isinstance(value, float) and not value.is_integer():
            msg = f"option `{key}` must be an integer, got {value!r}"
            raise OptionError(msg)
        lo, hi, is_open = f.metadata.get("min"), f.metadata.get("max"), f.metadata.get("open")
        below = lo is not None and (num <= lo if is_open else num < lo)
        above = hi is not None and (num >= hi if is_open else num > hi)
        if below or above:
            if lo is not None and hi is not None:
                where = f"in ({lo:g}, {hi:g})" if is_open else f"in [{lo:g}, {hi:g}]"
            else:
                where = f"{'>' if is_open else '>='} {lo:g}" if lo is not None else f"{'<' if is_open else '<='} {hi:g}"
            msg = f"option `{key}` must be {where}, got {value!r}"
            raise OptionError(msg)
        return num
    if hint is str:
        if not isinstance(value, str):
            msg = f"option `{key}` must be a string, got {type(value).__name__} {value!r}"
            raise OptionError(msg)
        return value
    return value


# ---------------------------------------------------------------------------------------- groups


@dataclass(frozen=True)
class TextOptions(OptionGroup):
    """The text core (word statistics, MTLD)."""

    prefix: ClassVar[str] = "text"
    title: ClassVar[str] = "text statistics"
    mtld_threshold: float = option(
        0.72,
        "MTLD factor threshold (lexicalrichness' default)",
        key="mtld_threshold",
        min=0.0,
        max=1.0,
        open_interval=True,
    )
    on_invalid_utf8: InvalidTextPolicy = option(
        "error",
        "invalid UTF-8 or a lone surrogate in any text column: an error naming file, line and column, "
        "or 'replace' with U+FFFD (rows counted in the report's notes)",
        key="on_invalid_utf8",
    )


@dataclass(frozen=True)
class InputOptions(OptionGroup):
    """Reading input files."""

    prefix: ClassVar[str] = "input"
    title: ClassVar[str] = "input files"
    max_record_bytes: int = option(
        1 << 30,
        "largest JSON Lines record (one line) read, in bytes; a longer line is an error naming it",
        key="max_record_bytes",
        min=1,
        max=(1 << 31) - (1 << 20),  # pyarrow's JSON block size is an int32; a block holds the record and a margin
    )


@dataclass(frozen=True)
class ModelOptions(OptionGroup):
    """Settings every model indicator shares."""

    prefix: ClassVar[str] = "model"
    title: ClassVar[str] = "all model indicators"
    on_overflow: Overflow = option(
        "null", "text beyond a model's window: null with a counted reason, or score its first tokens", key="on_overflow"
    )
    precision: Precision | None = option(
        None,
        "fp32, bf16, fp16, int8 or auto for every model slot whose runtime has it (bf16/fp16: the torch LM; "
        "int8: ONNX models); default fp32 (the LM on CUDA: bf16)",
        key="precision",
    )
    verify_models: VerifyModels = option(
        "cached",
        "model file hashes: checked at every load against the manifest (or the hashes recorded at first use), "
        "re-hashed when size or mtime change ('cached'), or at every load ('full')",
        key="verify_models",
    )


@dataclass(frozen=True)
class LMOptions(OptionGroup):
    """The causal LM behind ``input_tokens``/``output_tokens``, ``perplexity`` and ``ifd``."""

    prefix: ClassVar[str] = "lm"
    title: ClassVar[str] = "causal LM (tokens, perplexity, ifd)"
    prompt_template: str = option(
        "alpaca", "'alpaca', 'plain' or a format string with {instruction} and {input}", key="prompt_template"
    )
    token_budget: int | None = option(None, "padded tokens per batch (default 8192 on CPU, 65536 on CUDA)", min=1)
    max_rows: int = option(64, "rows per batch at most", min=1)
    max_length: int | None = option(None, "token window (default: the model's)", min=2)
    pad_slack: float | None = option(
        None, "padding allowed per batch as a fraction of real tokens (default 0.05 on CPU, 0.5 on CUDA)", min=0.0
    )
    precision: Precision | None = option(
        None, "fp32, bf16 (CPUs with AVX-512 BF16/AMX, CUDA), fp16 (CUDA) or auto (default: `precision`)"
    )
    share_prefix: bool = option(True, "run the prompt template's shared preamble once per group of rows (exact)")


@dataclass(frozen=True)
class OnnxOptions(OptionGroup):
    """ONNX Runtime settings for every ONNX model; the per-model groups override them."""

    prefix: ClassVar[str] = "onnx"
    title: ClassVar[str] = "ONNX Runtime (all ONNX models)"
    token_budget: int | None = option(None, "padded tokens per batch (default: per model and device)", min=1)
    max_rows: int | None = option(None, "rows per batch at most", min=1)
    slack: float | None = option(None, "padding allowed per batch as a fraction of real tokens", min=0.0)
    inter_threads: int | None = option(None, "ORT inter-op threads", min=1)
    spin: bool | None = option(None, "let ORT's worker threads spin between ops")


@dataclass(frozen=True)
class OnnxModelOptions(OptionGroup):
    """Batching settings of one ONNX model slot (unset: the ``onnx_*`` value, then the model's default)."""

    token_budget: int | None = option(None, "padded tokens per batch", min=1)
    max_rows: int | None = option(None, "rows per batch at most", min=1)
    slack: float | None = option(None, "padding allowed per batch as a fraction of real tokens", min=0.0)
    inter_threads: int | None = option(None, "ORT inter-op threads", min=1)
    precision: Precision | None = option(
        None, "fp32, int8 (dynamic quantisation, CPUs with VNNI/AMX) or auto (default: `precision`)"
    )

    def runtime(self, shared: OnnxOptions) -> dict[str, Any]:
        """Keyword settings for :class:`~instructfast.models.onnx_runtime.OnnxModel` (only those set)."""
        out: dict[str, Any] = {}
        for name in ("token_budget", "max_rows", "slack", "inter_threads"):
            v = getattr(self, name)
            v = getattr(shared, name) if v is None else v
            if v is not None:
                out[name] = v
        if shared.spin is not None:
            out["spin"] = shared.spin
        return out


@dataclass(frozen=True)
class RewardOptions(OnnxModelOptions):
    prefix: ClassVar[str] = "reward"
    title: ClassVar[str] = "reward model"


@dataclass(frozen=True)
class UniEvalOptions(OnnxModelOptions):
    prefix: ClassVar[str] = "unieval"
    title: ClassVar[str] = "UniEval (naturalness, coherence, understandability)"


@dataclass(frozen=True)
class EmbedderOptions(OnnxModelOptions):
    prefix: ClassVar[str] = "embedder"
    title: ClassVar[str] = "sentence embedder (knn_<i>)"
    backend: EmbedderBackend = option(
        "auto", "onnx, torch, or auto (torch on CUDA when onnxruntime has no CUDA provider, else ONNX Runtime)"
    )


@dataclass(frozen=True)
class KnnOptions(OptionGroup):
    """``knn_<i>``: where vectors come from, the pool, and the search."""

    prefix: ClassVar[str] = "knn"
    title: ClassVar[str] = "kNN (knn_<i>)"
    vectors: str | None = option(None, "a list column of precomputed embeddings to use instead of the embedder")
    pool: str | None = option(None, "a reference pool folder (`instructfast index build`) to measure against")
    table_in_pool: bool = option(False, "with knn_pool: the scored rows are pool members (each skips its own copy)")
    self_tol: float = option(
        1e-4, "with knn_table_in_pool: distance under which the nearest member is the row's copy", min=0.0
    )
    exact_max: int = option(
        200_000, "pools up to this size are searched exactly; larger ones approximately (IVF)", min=1
    )
    nprobe: int | None = option(None, "IVF lists probed at first (doubled until the recall target is met)", min=1)
    nlist: int | None = option(None, "IVF lists (default 4 * sqrt(pool))", min=1)
    ivf_storage: IvfStorage = option(
        "sq8", "how the IVF index holds the pool: sq8 (1 byte per value; candidates re-ranked exactly) or flat"
    )
    recall_target: float = option(
        0.95, "recall@i the approximate search must reach on the sample (0, 1]", min=0.0, max=1.0
    )
    recall_sample: int = option(1000, "rows whose exact neighbours check the approximate search", min=1)
    backend: KnnBackend = option("auto", "auto (torch on CUDA, else faiss), faiss or torch")
    scope: KnnScope = option("union", "sharded runs: the pool is every shard together (union) or each shard alone")
    embedding_dtype: VectorDtype = option(
        "float32", "how file runs store embedding checkpoints (float16 halves the disk, values shift by ~1e-3)"
    )
    seed: int = option(0, "seed of the IVF training sample and the recall sample")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.table_in_pool and not self.pool:
            msg = (
                "option `knn_table_in_pool` only applies with `knn_pool=DIR` "
                "(the scored table is always its own pool otherwise)"
            )
            raise OptionError(msg)


@dataclass(frozen=True)
class ServeOptions(OptionGroup):
    """Dynamic batching of :class:`~instructfast.BatchingScorer` and ``instructfast serve``."""

    prefix: ClassVar[str] = "serve"
    title: ClassVar[str] = "serving (BatchingScorer, instructfast serve)"
    max_wait_ms: float = option(
        5.0, "how long the oldest queued request waits for others to merge with (milliseconds)", min=0.0
    )
    rejoin_fraction: float = option(
        0.05,
        "after a batch, wait up to this fraction of its run time for the callers it answered to send again "
        "(while fewer requests are queued than it answered plus those queued as it ended; 0: only max_wait_ms)",
        min=0.0,
        max=1.0,
    )
    max_batch_rows: int = option(256, "rows merged into one batch at most (a larger request runs alone)", min=1)
    max_queue_rows: int = option(
        4096, "rows waiting at most; beyond, requests are refused (Overloaded, HTTP 503) or wait", min=1
    )
    on_full: OnFull = option(
        "reject", "a request that finds the queue full: refused with Overloaded (HTTP 503), or waits for room"
    )
    max_schemas: int = option(16, "Scorers kept for distinct request schemas (least recently used dropped)", min=1)
    max_body_mb: float = option(16.0, "instructfast serve: largest request body; larger ones get HTTP 413", min=0.0)


class _Groups(TypedDict):
    """One instance of each option group, keyed by its :class:`ScoreOptions` attribute (as in ``GROUPS``)."""

    text: TextOptions
    input: InputOptions
    model: ModelOptions
    lm: LMOptions
    onnx: OnnxOptions
    reward: RewardOptions
    unieval: UniEvalOptions
    embedder: EmbedderOptions
    knn: KnnOptions
    serve: ServeOptions


# The one list of groups: the TypedDict above (which types ScoreOptions(**groups)); ScoreOptions
# declares one field per entry, and tests/test_options.py checks the two agree.
GROUPS: dict[str, type[OptionGroup]] = dict(typing.get_type_hints(_Groups))
"""Attribute of :class:`ScoreOptions` -> group class."""

ALIASES: dict[str, str] = {"lm_dtype": "lm_precision"}
"""Deprecated flat keys -> their replacement (warned once per use with InstructfastDeprecationWarning)."""

ALIAS_VALUES: dict[str, dict[str, str]] = {"lm_dtype": {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}}
"""Values a deprecated key spelled differently -> the replacement key's spelling."""


def option_keys() -> dict[str, tuple[str, str]]:
    """Every flat key -> (group attribute, field name)."""
    out: dict[str, tuple[str, str]] = {}
    for attr, group in GROUPS.items():
        for key, name in group.keys().items():
            out[key] = (attr, name)
    return out


def describe_options() -> list[dict[str, Any]]:
    """One dict per option key: ``key``, ``group``, ``type``, ``default``, ``doc`` (for help texts)."""
    rows = []
    for group in GROUPS.values():
        hints = typing.get_type_hints(group)
        for f in dataclasses.fields(group):
            hint = hints[f.name]
            rows.append(
                {
                    "key": _key(group, f),
                    "group": group.title,
                    "type": _type_name(hint),
                    "default": f.default,
                    "doc": f.metadata.get("doc", ""),
                }
            )
    return rows


def _type_name(hint: Any) -> str:
    args = typing.get_args(hint)
    if typing.get_origin(hint) is Literal:
        return "|".join(map(str, args))
    if args and type(None) in args:
        return _type_name(next(a for a in args if a is not type(None)))
    return getattr(hint, "__name__", str(hint))


@dataclass(frozen=True)
class ScoreOptions:
    """Settings of one run, validated once, here.

    Parameters
    ----------
    threads
        Worker threads for native code and model runtimes; ``None``: the cores available to the process.
    batch_rows
        Rows per record batch pulled from the input (the streaming unit; bounds memory).
    models
        Model slots to paths or ids, e.g. ``{"lm": "/models/llama", "reward": "/models/rm"}``.
    device
        ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``None`` (CUDA when available).
    text, input, model, lm, onnx, reward, unieval, embedder, knn
        The option groups (see :func:`describe_options`); build them from flat keys with
        :meth:`build`.
    serve
        Dynamic batching for services (:class:`~instructfast.BatchingScorer`, ``instructfast serve``).
    """

    threads: int | None = None
    batch_rows: int = 65_536
    models: Mapping[str, str] = field(default_factory=dict)
    device: str | None = None
    text: TextOptions = field(default_factory=TextOptions)
    input: InputOptions = field(default_factory=InputOptions)
    model: ModelOptions = field(default_factory=ModelOptions)
    lm: LMOptions = field(default_factory=LMOptions)
    onnx: OnnxOptions = field(default_factory=OnnxOptions)
    reward: RewardOptions = field(default_factory=RewardOptions)
    unieval: UniEvalOptions = field(default_factory=UniEvalOptions)
    embedder: EmbedderOptions = field(default_factory=EmbedderOptions)
    knn: KnnOptions = field(default_factory=KnnOptions)
    serve: ServeOptions = field(default_factory=ServeOptions)

    def __post_init__(self) -> None:
        if self.threads is not None and (
            isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1
        ):
            msg = f"`threads` must be a positive integer or None, got {self.threads!r}"
            raise ArgumentError(msg)
        if isinstance(self.batch_rows, bool) or not isinstance(self.batch_rows, int) or self.batch_rows < 1:
            msg = f"`batch_rows` must be a positive integer, got {self.batch_rows!r}"
            raise ArgumentError(msg)
        if self.device is not None and not isinstance(self.device, str):
            msg = f"`device` must be a string or None, got {type(self.device).__name__}"
            raise ArgumentTypeError(msg)
        if self.device not in (None, "cpu", "cuda") and not (
            self.device.startswith("cuda:") and self.device[5:].isdigit()
        ):
            msg = f"`device` must be 'cpu', 'cuda', 'cuda:N' or None, got {self.device!r}"
            raise ArgumentError(msg)
        if not isinstance(self.models, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.models.items()
        ):
            msg = f"`models` must map slot names to path or hub-id strings, got {self.models!r}"
            raise ArgumentTypeError(msg)
        object.__setattr__(self, "models", dict(self.models))

    @classmethod
    def build(
        cls,
        *,
        threads: int | None = None,
        batch_rows: int = 65_536,
        mtld_threshold: float | None = None,
        models: Mapping[str, str] | None = None,
        device: str | None = None,
        options: Mapping[str, object] | None = None,
    ) -> ScoreOptions:
        """Options from :func:`instructfast.score`'s keywords and a flat ``options`` mapping."""
        if options is not None and not isinstance(options, Mapping):
            msg = f"`options` must be a mapping of option keys to values, got {type(options).__name__}"
            raise ArgumentTypeError(msg)
        flat = dict(options or {})
        if mtld_threshold is not None:
            if "mtld_threshold" in flat and flat["mtld_threshold"] != mtld_threshold:
                msg = "`mtld_threshold` given both as a parameter and in `options`"
                raise ArgumentError(msg)
            flat["mtld_threshold"] = mtld_threshold
        groups = _groups_from_flat(flat)
        if models is not None and not isinstance(models, Mapping):
            msg = f"`models` must map slot names to path or hub-id strings, got {type(models).__name__}"
            raise ArgumentTypeError(msg)
        return cls(threads=threads, batch_rows=batch_rows, models=dict(models or {}), device=device, **groups)

    def to_flat(self, *, changed_only: bool = True) -> dict[str, Any]:
        """Flat keys of the group settings (only those that differ from the defaults by default)."""
        out: dict[str, Any] = {}
        for attr, group in GROUPS.items():
            g = getattr(self, attr)
            for f in dataclasses.fields(group):
                v = getattr(g, f.name)
                if not changed_only or v != f.default:
                    out[_key(group, f)] = v
        return out

    @property
    def resolved_threads(self) -> int:
        return self.threads if self.threads is not None else available_cores()

    @property
    def mtld_threshold(self) -> float:
        return self.text.mtld_threshold

    def resolved_device(self) -> str:
        """The torch device model indicators run on: ``device``, else ``cuda`` when torch sees one, else ``cpu``."""
        if self.device:
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"


def _groups_from_flat(flat: Mapping[str, object]) -> _Groups:
    keys = option_keys()
    # Raw values (strings from the CLI): each group coerces them to its fields' types, hence Any.
    values: dict[str, dict[str, Any]] = {attr: {} for attr in GROUPS}
    for key, value in flat.items():
        if not isinstance(key, str):
            msg = f"option keys must be strings, got {key!r}"
            raise OptionError(msg)
        if key in ALIASES:
            warnings.warn(
                f"option `{key}` is deprecated: use `{ALIASES[key]}`", InstructfastDeprecationWarning, stacklevel=4
            )
            old = ALIAS_VALUES.get(key, {})
            if isinstance(value, str) and value.strip().lower() in old:
                value = old[value.strip().lower()]
            key = ALIASES[key]
        if key not in keys:
            near = difflib.get_close_matches(key, list(keys), n=1, cutoff=0.6)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            msg = f"unknown option {key!r}{hint}\nvalid options: {', '.join(sorted(keys))}"
            raise OptionError(msg)
        attr, name = keys[key]
        values[attr][name] = value
    return typing.cast(_Groups, {attr: GROUPS[attr](**kw) for attr, kw in values.items()})


__all__ = [
    "ALIASES",
    "ALIAS_VALUES",
    "GROUPS",
    "EmbedderOptions",
    "InputOptions",
    "KnnOptions",
    "LMOptions",
    "ModelOptions",
    "OnnxModelOptions",
    "OnnxOptions",
    "OptionGroup",
    "RewardOptions",
    "ScoreOptions",
    "ServeOptions",
    "TextOptions",
    "UniEvalOptions",
    "describe_options",
    "option",
    "option_keys",
    "parse_bool",
]
