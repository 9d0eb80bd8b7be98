"""Every input the fuzzers ever crashed on (and their seeds) replayed by the normal suite.

``make fuzz`` runs the harnesses of ``tests/fuzz/harness.py`` under atheris with the sanitizers; a
crashing input it finds is copied into ``tests/fuzz/corpus/<harness>/`` (as Arrow keeps every
crasher of its readers), so the bug it found cannot come back unnoticed. Here they run without
atheris and without sanitizers, against whatever build the suite uses.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from instructfast._native import core
from tests.fuzz.harness import replay, seed_inputs

CORPUS = Path(__file__).parent / "corpus"
KEPT = sorted((h.name, f) for h in CORPUS.iterdir() if h.is_dir() for f in h.iterdir() if f.is_file())
SEEDS = sorted((h, name, data) for h, seeds in seed_inputs().items() for name, data in seeds.items())


def _skip_without_core(harness: str) -> None:
    if harness == "core" and core is None:
        pytest.skip("the core harness needs the native extension")


@pytest.mark.parametrize("harness, path", KEPT, ids=[f"{h}/{p.name}" for h, p in KEPT])
def test_kept_inputs_pass(harness, path):
    _skip_without_core(harness)
    replay(harness, path.read_bytes())


@pytest.mark.parametrize("harness, name, data", SEEDS, ids=[f"{h}/{n}" for h, n, _ in SEEDS])
def test_seed_inputs_pass(harness, name, data):
    _skip_without_core(harness)
    replay(harness, data)
