"""``INSTRUCTFAST_IMPL`` (text core) and ``INSTRUCTFAST_KERNELS`` (log-prob kernels), each in a fresh process.

The switches are read once per process (at import, or at the first kernel call), so every case
runs in a subprocess with its own environment: a missing symbol in one implementation cannot
hide behind the other, as RapidFuzz's fallback tests check.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

SCRIPT_IMPL = """
import json, warnings
warnings.simplefilter("error", DeprecationWarning)
import pyarrow as pa, instructfast
from instructfast.ops.textstats_py import mtld as twin
t = pa.table({"instruction": ["q"], "output": ["The cat sat on the mat, and the dog sat too."]})
out = instructfast.score(t, indicators=["mtld", "output_words"])
print(json.dumps({"impl": instructfast.IMPL, "reason": instructfast.IMPL_REASON,
                  "run": instructfast.ScoreReport.from_table(out).run.implementations["text core"],
                  "mtld": out.column("mtld")[0].as_py(), "twin": twin(t.column("output")[0].as_py()),
                  "words": out.column("output_words")[0].as_py()}))
"""

SCRIPT_KERNELS = """
import json, torch
from instructfast.ops import logprob
impl, reason = logprob.resolve_impl("cpu")
logits = torch.tensor([[0.0, 0.0], [3.0, 1.0]])
value = logprob.token_logprobs(logits, torch.tensor([1, 0])).tolist()
print(json.dumps({"impl": impl, "reason": reason, "value": value}))
"""


def _run(script: str, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k not in ("INSTRUCTFAST_IMPL", "INSTRUCTFAST_KERNELS")}
    full.update(env)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=full, timeout=300)


@pytest.mark.parametrize("choice", ["python", "native", "auto", ""])
def test_text_core_switch(choice):
    p = _run(SCRIPT_IMPL, INSTRUCTFAST_IMPL=choice)
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout)
    want = "python" if choice == "python" else "native"
    assert got["impl"] == want
    assert got["run"] == got["reason"] and got["reason"].startswith(want)
    if choice == "python":
        assert "forced by INSTRUCTFAST_IMPL=python" in got["reason"]
    # either implementation gives the twin's double, bit for bit
    assert got["mtld"] == got["twin"] and got["words"] == 11


def test_text_core_switch_rejects_an_unknown_value():
    p = _run(SCRIPT_IMPL, INSTRUCTFAST_IMPL="bogus")
    assert p.returncode != 0
    assert "ArgumentError: `INSTRUCTFAST_IMPL` must be one of ('auto', 'native', 'python'), got 'bogus'" in p.stderr


@pytest.mark.parametrize(
    "env,impl,reason",
    [
        ({}, "torch", "torch (cpu tensors)"),
        ({"INSTRUCTFAST_KERNELS": "torch"}, "torch", "torch (forced by INSTRUCTFAST_KERNELS=torch)"),
        (
            {"INSTRUCTFAST_KERNELS": "triton", "TRITON_INTERPRET": "1"},
            "triton",
            "forced by INSTRUCTFAST_KERNELS=triton",
        ),
    ],
)
def test_kernel_switch(env, impl, reason):
    if env.get("INSTRUCTFAST_KERNELS") == "triton":
        pytest.importorskip("triton")
    p = _run(SCRIPT_KERNELS, **env)
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout)
    assert got["impl"] == impl and reason in got["reason"]
    assert got["value"] == pytest.approx([-0.6931472, -0.126928], abs=1e-6)


def test_kernel_switch_refuses_cpu_tensors_without_the_interpreter_and_unknown_values():
    pytest.importorskip("triton")
    p = _run(SCRIPT_KERNELS, INSTRUCTFAST_KERNELS="triton", TRITON_INTERPRET="0")
    assert p.returncode != 0 and "IndicatorUnavailableError" in p.stderr and "TRITON_INTERPRET=1" in p.stderr
    p = _run(SCRIPT_KERNELS, INSTRUCTFAST_KERNELS="cuda")
    assert p.returncode != 0
    assert "ArgumentError: `INSTRUCTFAST_KERNELS` must be one of ('auto', 'triton', 'torch'), got 'cuda'" in p.stderr
