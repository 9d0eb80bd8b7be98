"""Shared setup of the Triton kernel tests: interpreted kernels, imports, comparisons.

The kernels run here on CPU tensors through Triton's interpreter, which needs
``TRITON_INTERPRET=1`` in the environment *before triton is imported* (triton's own library
functions are decorated at that import). So this folder runs in its own process with the variable
set, ``TRITON_INTERPRET=1 pytest tests/kernels`` (``make test`` does that after the main suite,
which leaves this folder out); no test module sets it. On a GPU machine, ``bench/gpu/run.sh``
checks the compiled kernels on CUDA.
"""

from __future__ import annotations

import importlib
import os

import pytest
import torch

from tests.references import compare

try:
    import triton  # noqa: F401

    HAVE_TRITON = True
except ImportError:  # the torch-path tests still run
    HAVE_TRITON = False


def import_kernel(name: str):
    """``instructfast.kernels.<name>``, which must be interpreted (see the module docstring)."""
    if not HAVE_TRITON:
        pytest.skip("triton is not installed")
    module = importlib.import_module(f"instructfast.kernels.{name}")
    if not module.INTERPRETED:
        pytest.fail(
            "the Triton kernels are compiled in this process: run this folder as "
            f"`TRITON_INTERPRET=1 pytest tests/kernels` (TRITON_INTERPRET={os.environ.get('TRITON_INTERPRET')!r})"
        )
    return module


def import_indicator(name: str):
    """``instructfast.ops.<name>`` (``logprob`` / ``logprob_torch``) and ``instructfast.errors``."""
    return importlib.import_module(f"instructfast.ops.{name}"), importlib.import_module("instructfast.errors")


def _assert_close(
    actual: torch.Tensor, expected: torch.Tensor, *, atol: float, rtol: float, seed: int, what: str = ""
) -> None:
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
    """The shipped torch twin, ``instructfast.ops.logprob_torch``."""
    return import_indicator("logprob_torch")[0]


@pytest.fixture(scope="session")
def dispatch():
    """``(instructfast.ops.logprob, instructfast.errors)``: the public dispatcher and its errors."""
    return import_indicator("logprob")
