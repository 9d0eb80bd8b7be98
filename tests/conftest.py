"""Shared fixtures: the in-repo sample (always present) and the shared datasets (when present)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

HERE = Path(__file__).parent
SAMPLE = HERE / "data" / "sample_records.jsonl"
SHARED = HERE.parent.parent / "shared" / "data"


def load_sample_records() -> list[dict]:
    return [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="session")
def sample_records() -> list[dict]:
    return load_sample_records()


@pytest.fixture(scope="session")
def sample_table(sample_records) -> pa.Table:
    return pa.Table.from_pylist(sample_records)
