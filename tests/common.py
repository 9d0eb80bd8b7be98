"""Paths and loaders the test modules share: the in-repo sample (always present) and the shared datasets."""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).parent
SAMPLE = HERE / "data" / "sample_records.jsonl"
SHARED = HERE.parent.parent / "shared" / "data"  # ../shared/data beside the checkout, when present


def load_sample_records() -> list[dict]:
    """The 200 attributed records in tests/data (see tests/data/SOURCES.md)."""
    return [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines() if line.strip()]
