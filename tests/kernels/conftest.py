"""Shared setup of the Triton kernel tests: interpreter mode, imports, seeds, comparisons.

``TRITON_INTERPRET=1`` must be in the environment before a ``@triton.jit`` decorator runs (triton
reads it at decoration time), so it is set here, at conftest import, before any test module
imports a kernel. The interpreter runs the kernels on CPU tensors with numpy: slow, so the tests
use few rows and big blocks. On a GPU machine the same tests still run interpreted on CPU;
``bench/bench_logprob_gpu.py`` checks the compiled kernels.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import time
import types
from pathlib import Path

os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[2]

try:
    import triton  # noqa: F401, E402

    HAVE_TRITON = True
except ImportError:  # the torch-path tests still run
    HAVE_TRITON = False


def import_kernel(name: str):
    """``instructfast.kernels.<name>`` when the package is installed, else ``kernels.<name>`` of this checkout."""
    if not HAVE_TRITON:
        pytest.skip("triton is not installed")
    module = importlib.import_module(f"instructfast.kernels.{name}")
    if not module.INTERPRETED:
        pytest.skip(f"{module.__name__} was imported before TRITON_INTERPRET=1 was set; run tests/kernels alone")
    return module


def import_indicator(name: str):
    """``instructfast.ops.<name>`` (``logprob`` / ``logprob_torch``) and ``instructfast.errors``."""
    return importlib.import_module(f"instructfast.ops.{name}"), importlib.import_module("instructfast.errors")


@pytest.fixture
def seed() -> int:
    """A fresh seed per test (``INSTRUCTFAST_TEST_SEED`` replays one); printed, so shown on failure."""
    value = int(os.environ.get("INSTRUCTFAST_TEST_SEED", time.time_ns() % 2**31))
    torch.manual_seed(value)
    print(f"seed = {value} (replay with INSTRUCTFAST_TEST_SEED={value})")
    return value


def _assert_close(actual: torch.Tensor, expected: torch.Tensor, *, atol: float, rtol: float, seed: int, what: str = "") -> None:
    """allclose in float64 with NaN == NaN; on failure name the worst indices and the seed."""
    actual = actual.detach().to(torch.float64).cpu()
    expected = expected.detach().to(torch.float64).cpu()
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    both_nan = torch.isnan(actual) & torch.isnan(expected)
    same_inf = torch.isinf(actual) & (actual == expected)
    err = (actual - expected).abs()
    bad = ~(both_nan | same_inf | (err <= atol + rtol * expected.abs()))
    if bad.any():
        idx = torch.nonzero(bad).flatten()
        worst = idx[torch.argsort(torch.nan_to_num(err[idx], nan=float("inf")), descending=True)][:5]
        lines = [f"  [{i}] got {actual[i].item()!r} expected {expected[i].item()!r}" for i in worst.tolist()]
        pytest.fail(
            f"{what}: {int(bad.sum())}/{bad.numel()} mismatches (atol={atol}, rtol={rtol}, seed={seed}):\n"
            + "\n".join(lines)
        )


@pytest.fixture
def check(seed):
    """``check(actual, expected, atol=, rtol=, what=)``: :func:`_assert_close` bound to this test's seed."""

    def run(actual, expected, *, atol: float, rtol: float, what: str = "") -> None:
        _assert_close(actual, expected, atol=atol, rtol=rtol, seed=seed, what=what)

    return run


@pytest.fixture(scope="session")
def logprob_kernel():
    """Kernel (a) module (``logprob_forward``), interpreted."""
    return import_kernel("logprob")


@pytest.fixture(scope="session")
def fused_kernel():
    """Kernel (b) module (``fused_linear_logprob_forward``), interpreted."""
    return import_kernel("fused_linear_logprob")


@pytest.fixture(scope="session")
def torch_path():
    """The shipped torch twin, ``instructfast.ops.logprob_torch``."""
    return import_indicator("logprob_torch")[0]


@pytest.fixture(scope="session")
def dispatch():
    """``(instructfast.ops.logprob, instructfast.errors)``: the public dispatcher and its errors."""
    return import_indicator("logprob")
