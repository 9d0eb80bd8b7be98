"""The one structured record of what a run ran: implementations, models, versions, options, time.

A :class:`RunRecord` travels inside :class:`instructfast.ScoreReport` (and so in the output's
schema metadata and Parquet footer). Sharded runs, the HTML report and reduced precision read
and extend this record rather than keeping facts of their own.

Examples
--------
>>> r = RunRecord.start()
>>> r.implementations["text core"] = "native"
>>> RunRecord.from_dict(r.to_dict()).implementations
{'text core': 'native'}
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import importlib.metadata
import platform
import sys
from dataclasses import dataclass, field
from typing import Any

# Distributions whose versions decide results or speed; those not installed are left out.
_DISTRIBUTIONS = (
    "instructfast",
    "pyarrow",
    "numpy",
    "torch",
    "transformers",
    "tokenizers",
    "onnxruntime",
    "triton",
    "faiss-cpu",
    "faiss-gpu",
    "ray",
)


def package_versions() -> dict[str, str]:
    """Python and the installed versions of the distributions that matter to a run."""
    out = {"python": platform.python_version()}
    for dist in _DISTRIBUTIONS:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


@dataclass
class RunRecord:
    """What ran, for whoever reads the output later.

    Attributes
    ----------
    started
        UTC start time, ISO 8601.
    seconds
        Wall time of the scoring work (model loading included).
    implementations
        Each implementation choice and why: ``text core`` (native/python), ``logprob``
        (triton/torch), ``onnx provider``, ``device``, ``lm dtype``, ``knn search`` ...
    models
        One entry per model used: slot, kind, location, how it was chosen, sha256 of its content.
    versions
        Python and the packages that decide results (:func:`package_versions`).
    precision
        The numeric precision each model slot ran at and why (``{"lm": "bf16 (asked, AVX-512 BF16)",
        "embedder": "fp32 (default)"}``); see :mod:`instructfast.models.precision`.
    options
        The run's settings: threads, batch_rows, device, and every option that differs from its default.
    platform
        Machine and OS (``platform.platform()``, processor).
    serving
        Set by :class:`~instructfast.BatchingScorer` (and so ``instructfast serve``): its batching
        settings and counts (requests, batches, mean batch size, requests retried alone, refusals);
        in one request's report, the batch that request was merged into and how long it queued.
    """

    started: str = ""
    seconds: float = 0.0
    implementations: dict[str, str] = field(default_factory=dict)
    models: list[dict[str, Any]] = field(default_factory=list)
    precision: dict[str, str] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    platform: dict[str, str] = field(default_factory=dict)
    serving: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def start(cls) -> RunRecord:
        """A record stamped with the current time, versions and platform."""
        return cls(
            started=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            versions=package_versions(),
            platform={
                "platform": platform.platform(),
                "machine": platform.machine(),
                "python_implementation": sys.implementation.name,
            },
        )

    def add_model(self, entry: dict[str, Any]) -> None:
        """Record a model once (by slot and location)."""
        key = (entry.get("slot"), entry.get("location"))
        if all((m.get("slot"), m.get("location")) != key for m in self.models):
            self.models.append(dict(entry))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> RunRecord:
        """Read a stored record; keys a newer version added are ignored, missing ones take defaults."""
        if not data:
            return cls()
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


__all__ = ["RunRecord", "package_versions"]
