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
if str(REPO) not in sys.path:  # tests.references, whichever test directory pytest collects first
    sys.path.insert(0, str(REPO))

from tests.references import compare  # noqa: E402

try:
    import triton  # noqa: F401, E402

    HAVE_TRITON = True
except ImportError:  # the torch-path tests still run
    HAVE_TRITON = False


def import_kernel(name: str):
    """``instructfast.kernels.<name>`` when the package is installed, else ``kernels.<name>`` of this checkout."""
    if not HAVE_TRITON:
        pytest.skip("triton is not installed")
    try:
        module = importlib.import_module(f"instructfast.kernels.{name}")
    except Exception:  # not installed, or the package __init__ is broken mid-development
        module = importlib.import_module(f"kernels.{name}")  # REPO is on sys.path (above)
    if not module.INTERPRETED:
        pytest.skip(f"{module.__name__} was imported before TRITON_INTERPRET=1 was set; run tests/kernels alone")
    return module


def _source_package() -> types.ModuleType:
    """Load python/instructfast/indicators/logprob*.py under a private package name.

    Used only when ``import instructfast`` fails (the package is built in parallel and its
    ``__init__`` may import modules that do not exist yet, or raise while half-written): the files under test are the same,
    and the real ``instructfast`` entry in sys.modules is left untouched for other tests.
    """
    root = REPO / "python" / "instructfast"
    name = "_instructfast_src_for_kernel_tests"
    if name not in sys.modules:
        for pkg, path in ((name, root), (f"{name}.indicators", root / "indicators")):
            module = types.ModuleType(pkg)
            module.__path__ = [str(path)]
            sys.modules[pkg] = module
    return sys.modules[name]


def import_indicator(name: str):
    """``instructfast.indicators.<name>`` (``logprob`` / ``logprob_torch``) and the matching errors module."""
    try:
        module = importlib.import_module(f"instructfast.indicators.{name}")
        errors = importlib.import_module("instructfast.errors")
    except Exception:  # see _source_package
        pkg = _source_package().__name__
        module = importlib.import_module(f"{pkg}.indicators.{name}")
        errors = importlib.import_module(f"{pkg}.errors")
    return module, errors


@pytest.fixture
def seed() -> int:
    """A fresh seed per test (``INSTRUCTFAST_TEST_SEED`` replays one); printed, so shown on failure."""
    value = int(os.environ.get("INSTRUCTFAST_TEST_SEED", time.time_ns() % 2**31))
    torch.manual_seed(value)
    print(f"seed = {value} (replay with INSTRUCTFAST_TEST_SEED={value})")
    return value


def _assert_close(actual: torch.Tensor, expected: torch.Tensor, *, atol: float, rtol: float, seed: int, what: str = "") -> None:
    """:func:`tests.references.compare` (NaN == NaN); on failure name the worst indices and the seed."""
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    res = compare(actual, expected, atol=atol, rtol=rtol)
    if not res.ok:
        a, e = actual.detach().double().cpu(), expected.detach().double().cpu()
        lines = [f"  [{i}] got {a[i].item()!r} expected {e[i].item()!r}" for i in res.worst]
        pytest.fail(
            f"{what}: {res.n_bad}/{res.n} mismatches (atol={atol}, rtol={rtol}, seed={seed}):\n" + "\n".join(lines)
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
    """The shipped torch twin, ``instructfast.indicators.logprob_torch``."""
    return import_indicator("logprob_torch")[0]


@pytest.fixture(scope="session")
def dispatch():
    """``(instructfast.indicators.logprob, instructfast.errors)``: the public dispatcher and its errors."""
    return import_indicator("logprob")
