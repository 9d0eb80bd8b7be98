"""Linear quality rules: a rule is data (name, intercept, coefficients by column, provenance).

A rule predicts the log evaluation loss of a model fine-tuned on data like the row;
**lower is better**. Coefficients apply to raw indicator units (no standardisation),
and a reward coefficient is on the raw logit scale of the reward model the rule was
fitted with (``instructmining-v1``: OpenAssistant reward models; see the README).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from .errors import RuleError


@dataclass(frozen=True)
class Rule:
    """A linear rule ``intercept + sum(coef * column)``.

    Examples
    --------
    >>> r = Rule("toy", 1.0, {"mtld": -0.01})
    >>> r.apply({"mtld": pa.array([10.0, None])}).to_pylist()
    [0.9, None]
    """

    name: str
    intercept: float
    coefficients: Mapping[str, float]
    provenance: str = ""
    target: str = "log eval loss (lower is better)"
    notes: str = ""
    stats: Mapping[str, Any] = field(default_factory=dict)  # fit statistics, when fitted

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            msg = f"rule `name` must be a non-empty string, got {self.name!r}"
            raise RuleError(msg)
        if not _finite(self.intercept):
            msg = f"rule {self.name!r}: `intercept` must be a finite number, got {self.intercept!r}"
            raise RuleError(msg)
        if not isinstance(self.coefficients, Mapping) or not self.coefficients:
            msg = f"rule {self.name!r}: `coefficients` must be a non-empty mapping column -> number"
            raise RuleError(msg)
        for col, c in self.coefficients.items():
            if not isinstance(col, str) or not _finite(c):
                msg = f"rule {self.name!r}: coefficient for {col!r} must be a finite number, got {c!r}"
                raise RuleError(msg)
        object.__setattr__(self, "coefficients", {k: float(v) for k, v in self.coefficients.items()})
        object.__setattr__(self, "intercept", float(self.intercept))

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(self.coefficients)

    def apply(self, data: pa.Table | pa.RecordBatch | Mapping[str, Any]) -> pa.Array:
        """Vectorised rule value per row (float64); null where any input is null or NaN."""
        missing = [c for c in self.columns if c not in _names(data)]
        if missing:
            msg = f"rule {self.name!r} needs columns {missing} that are not in the data; found {_names(data)}"
            raise RuleError(msg)
        # Left to right from the intercept: the same rounding as writing the rule out by hand.
        acc = None
        invalid = None
        for col, coef in self.coefficients.items():
            arr = _column(data, col)
            if not (pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type) or pa.types.is_null(arr.type)):
                msg = f"rule {self.name!r}: column `{col}` must be numeric, got {arr.type}"
                raise RuleError(msg)
            values = arr.cast(pa.float64()).to_numpy(zero_copy_only=False)  # nulls -> NaN
            bad = np.isnan(values)
            invalid = bad if invalid is None else invalid | bad
            acc = (self.intercept if acc is None else acc) + coef * values
        assert acc is not None and invalid is not None
        out = acc
        return pa.array(out, type=pa.float64(), mask=invalid if invalid.any() else None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"coefficients": dict(self.coefficients), "stats": dict(self.stats)}

    def to_json(self, path: str | os.PathLike[str]) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Rule:
        unknown = set(d) - {"name", "intercept", "coefficients", "provenance", "target", "notes", "stats"}
        if unknown:
            msg = f"unknown rule fields {sorted(unknown)}; expected name, intercept, coefficients[, provenance, target, notes, stats]"
            raise RuleError(msg)
        for k in ("name", "intercept", "coefficients"):
            if k not in d:
                msg = f"rule is missing required field `{k}`; got fields {sorted(d)}"
                raise RuleError(msg)
        return cls(**dict(d))

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> Rule:
        try:
            d = json.loads(Path(path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            msg = f"{path}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno})"
            raise RuleError(msg) from e
        if not isinstance(d, dict):
            msg = f"{path}: a rule file must hold one JSON object, got {type(d).__name__}"
            raise RuleError(msg)
        return cls.from_dict(d)


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _names(data: Any) -> list[str]:
    if isinstance(data, (pa.Table, pa.RecordBatch)):
        return list(data.schema.names)
    return list(data)


def _column(data: Any, col: str) -> pa.Array:
    arr = data[col] if not isinstance(data, (pa.Table, pa.RecordBatch)) else data.column(col)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if not isinstance(arr, pa.Array):
        arr = pa.array(arr)
    return arr


RULES: dict[str, Rule] = {
    r.name: r
    for r in (
        Rule(
            "instructmining-v1",
            1.0694,
            {"reward": -0.1498, "output_tokens": 8.257e-5, "knn_6": -0.9350},
            provenance="InstructMining v1 (Cao et al., arXiv 2307.06290v1, July 2023), Eq. for LLaMA-7B",
            notes=(
                "reward on the raw logit scale of an OpenAssistant reward model; output_tokens with the LLaMA "
                "tokenizer; knn_6 on unit-normalised SentenceBERT embeddings. The authors' public code uses "
                "intercept 1.0684 (preset instructmining-v1-code)."
            ),
        ),
        Rule(
            "instructmining-v1-code",
            1.0684,
            {"reward": -0.1498, "output_tokens": 8.257e-5, "knn_6": -0.9350},
            provenance="InstructMining authors' public code (intercept differs from the v1 paper's 1.0694)",
        ),
        Rule(
            "instructmining-v3",
            0.0274,
            {"reward": -0.0078, "understandability": 0.4421, "naturalness": -0.3212, "coherence": -0.1520},
            provenance="InstructMining v2/v3 (arXiv 2307.06290v2+), LLaMA-2-7B, R^2 = 0.522",
            notes="reward on the raw logit scale of the reward model; UniEval dialog scores in [0, 1].",
            stats={"r2": 0.522},
        ),
    )
}


def get_rule(rule: str | os.PathLike[str] | Rule | Mapping[str, Any]) -> Rule:
    """A :class:`Rule` from a preset name, a JSON file path, a dict, or a Rule.

    Examples
    --------
    >>> get_rule("instructmining-v3").coefficients["naturalness"]
    -0.3212
    """
    if isinstance(rule, Rule):
        return rule
    if isinstance(rule, Mapping):
        return Rule.from_dict(rule)
    if isinstance(rule, str) and rule in RULES:
        return RULES[rule]
    p = Path(rule)
    if p.suffix == ".json" or p.exists():
        if not p.exists():
            msg = f"rule file {str(p)!r} does not exist"
            raise RuleError(msg)
        return Rule.from_json(p)
    msg = f"unknown rule {str(rule)!r}; presets: {sorted(RULES)}, or pass a path to a rule JSON file"
    raise RuleError(msg)
