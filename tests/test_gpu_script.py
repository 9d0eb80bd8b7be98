"""``bench/gpu/run.sh --dry-run`` end to end, so the prepared GPU check cannot rot between GPU sessions.

The dry run is the real script on the CPU with tiny sizes (Triton interpreter, tiny models): every
step, every figure and the summary are produced; the numbers mean nothing, so only the plumbing
and the parity verdicts (exact on any device) are asserted. One run (about 40 s on 2 cores) serves
every test here.
"""

from __future__ import annotations

import csv
import hashlib
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
STEPS = ("build", "env", "parity", "kernels", "perplexity", "embedder", "knn")

pytestmark = pytest.mark.slow

# (indicator, provider, metric) that must hold a finite number even on the CPU (device memory
# counters do not exist there, so peak-memory metrics are not listed).
FINITE = [
    ("logprob", "triton", "max_abs_err"),
    ("fused_linear_logprob", "triton", "max_abs_err"),
    ("copy", "torch", "bandwidth"),
    ("logprob", "triton", "fraction_of_copy_bandwidth"),
    ("logprob", "triton", "speedup_vs_torch"),
    ("fused_linear_logprob", "triton", "throughput"),
    ("fused_linear_logprob", "triton", "speedup_vs_torch"),
    ("perplexity", "instructfast_engine", "speedup_vs_hf_loop"),
    ("perplexity", "instructfast_engine", "speedup_vs_sorted_padded"),
    ("perplexity", "instructfast_engine", "tokens_per_s"),
    ("perplexity", "instructfast_engine", "mfu_vs_matmul"),
    ("perplexity", "hf_sorted_padded", "rows_per_s"),
    ("perplexity", "hf_unsorted_batch8", "rows_per_s"),
    ("perplexity", "device", "matmul_tflops"),
    ("embedder", "sentence_transformers", "rows_per_s"),
    ("embedder", "instructfast_torch", "rows_per_s"),
    ("embedder", "instructfast_torch", "speedup_vs_sentence_transformers"),
    ("knn", "instructfast_torch", "seconds"),
    ("knn", "numpy_bruteforce", "seconds"),
    ("knn", "instructfast_torch", "max_distance_diff_numpy"),
]


def _snapshot(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_dry_run")
    before = _snapshot(RESULTS)
    # Settings go to the child only; the interpreter flag must precede its first triton import.
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(out), "TRITON_INTERPRET": "1"}
    proc = subprocess.run(
        ["bash", "bench/gpu/run.sh", "--dry-run"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    rows = list(csv.DictReader(open(out / "gpu_results.csv", newline="", encoding="utf-8")))
    summary = (out / "gpu_summary.md").read_text(encoding="utf-8")
    return proc, out, rows, summary, before


def test_exits_zero_with_every_step_ok(dry_run):
    proc, out, _, summary, _ = dry_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["gpu_results.csv", "gpu_run.log", "gpu_summary.md"]
    table = summary.split("## Parts", 1)[1].split("## Targets", 1)[0]
    status = {
        cells[1]: cells[2]
        for line in table.splitlines()
        if (cells := [c.strip() for c in line.split("|")])[1:2] and cells[1] in STEPS
    }
    assert status == dict.fromkeys(STEPS, "ok")
    assert "Dry run on CPU" in summary and "build step: skipped" in summary


def test_every_part_wrote_finite_figures(dry_run):
    _, _, rows, _, _ = dry_run
    assert {r["indicator"] for r in rows} == {
        "logprob",
        "fused_linear_logprob",
        "copy",
        "perplexity",
        "embedder",
        "knn",
        "parity",
    }
    assert {r["mode"] for r in rows if r["indicator"] == "logprob"} == {"parity", "forward"}
    values: dict[tuple, list[float]] = {}
    for r in rows:
        values.setdefault((r["indicator"], r["provider"], r["metric"]), []).append(float(r["p50"] or "nan"))
    for key in FINITE:
        assert key in values, f"no {key} row"
        assert all(math.isfinite(v) for v in values[key]), f"{key}: {values[key]}"
    assert all(r["cpu"].startswith("CPU dry run") for r in rows)
    # equal results where the dry run can tell: vectors, neighbours
    assert max(values[("embedder", "instructfast_torch", "max_abs_diff")]) <= 1e-5
    assert values[("knn", "instructfast_torch", "ids_equal_numpy")] == [1.0]


def test_parity_rows_all_pass(dry_run):
    _, _, rows, summary, _ = dry_run
    verdicts = [r for r in rows if r["mode"] == "parity" and r["metric"] == "target:within_tolerance"]
    # 2 kernels x 2 shapes x 3 dtypes x (Triton kernel, torch twin)
    assert len(verdicts) == 24 and all(float(r["p50"]) == 1.0 for r in verdicts)
    errors = [float(r["p50"]) for r in rows if r["mode"] == "parity" and r["metric"] == "max_abs_err"]
    assert len(errors) == 24 and max(errors) < 1e-4
    assert "| parity | logprob / triton: within_tolerance | all 6 cases | 6/6 pass | | PASS |" in summary
    assert [float(r["p50"]) for r in rows if r["metric"] == "cases_skipped"] == [0.0]  # none left out by the budget


def test_nothing_written_under_bench_results(dry_run):
    *_, before = dry_run
    assert _snapshot(RESULTS) == before
    assert not list(RESULTS.glob("gpu_*"))
