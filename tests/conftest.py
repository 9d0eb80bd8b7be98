"""Shared fixtures: the in-repo sample, the shared datasets, and one seed per test.

Every test runs under the autouse :func:`seed` fixture: ``random``, numpy's global generator and
torch (when imported) are seeded with a fresh value per test, which a failure report prints;
``INSTRUCTFAST_TEST_SEED=<value>`` replays it. Tests that want a generator take :func:`rng`.
"""

from __future__ import annotations

import os
import random
import secrets
import sys

import numpy as np
import pyarrow as pa
import pytest

from tests.common import load_sample_records

SEED_ENV = "INSTRUCTFAST_TEST_SEED"
_SUITE_ENV = {
    # No model hub here: Hugging Face loaders must never try the network. huggingface_hub reads this
    # once, when it is first imported (during collection), so it is set before collection and
    # restored when the session ends, rather than by any test module.
    "HF_HUB_OFFLINE": "1",
}
_saved_env: dict[str, str | None] = {}


def pytest_configure(config: pytest.Config) -> None:
    for key, value in _SUITE_ENV.items():
        _saved_env[key] = os.environ.get(key)
        os.environ[key] = value


def pytest_unconfigure(config: pytest.Config) -> None:
    for key, old in _saved_env.items():
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


@pytest.fixture(autouse=True)
def seed(request: pytest.FixtureRequest) -> int:
    """This test's seed: fresh each run, or ``INSTRUCTFAST_TEST_SEED``; printed when the test fails."""
    value = int(os.environ[SEED_ENV]) if os.environ.get(SEED_ENV) else secrets.randbits(31)
    random.seed(value)
    np.random.seed(value)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(value)
    request.node.user_properties.append(("seed", value))
    return value


@pytest.fixture
def rng(seed: int) -> np.random.Generator:
    """A numpy generator seeded with this test's seed."""
    return np.random.default_rng(seed)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if report.failed:
        for key, value in item.user_properties:
            if key == "seed":
                report.sections.append(("seed", f"replay with {SEED_ENV}={value} pytest '{item.nodeid}'"))
    return report


@pytest.fixture(scope="session")
def sample_records() -> list[dict]:
    return load_sample_records()


@pytest.fixture(scope="session")
def sample_table(sample_records) -> pa.Table:
    return pa.Table.from_pylist(sample_records)
