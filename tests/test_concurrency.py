"""Concurrent load: one Scorer shared by 8 threads, and score() called from 8 threads at once.

Every indicator runs, on tiny random models of the real architectures (the benchmark,
``bench/bench_concurrency.py``, runs the packaged models and measures peak RSS): text statistics
must equal the one-thread run's exactly, model values within the batch-invariance tolerance, each
``score_batch`` call's own report must add up to the Scorer's, and nothing may deadlock.
"""

from __future__ import annotations

import json
import random
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import instructfast
from instructfast.scoring import ScoreReport
from tests.common import SHARED, load_sample_records

pytestmark = pytest.mark.slow  # shares the tiny exports with tests/indicators/test_reward_unieval.py

THREADS = 8
BATCHES_PER_THREAD = 2
ROWS = 10
TEXT_COLUMNS = [
    "output_words",
    "output_unique_words",
    "output_ttr",
    "mtld",
    "output_chars",
    "output_bytes",
    "input_chars",
]
MODEL_COLUMNS = [
    "input_tokens",
    "output_tokens",
    "perplexity",
    "ifd",
    "reward",
    "naturalness",
    "coherence",
    "understandability",
    "knn_6",
]
TIMEOUT_S = 300  # a deadlock fails the test instead of hanging the suite


def _records(n: int) -> list[dict]:
    """Records from ../shared/data (the in-repo sample without it), short enough for the tiny models' windows."""
    pool: list[dict] = []
    for name in ("alpaca_5000.json", "dolly_filtered_3k.json", "alpaca_gpt4_demo_1k.json"):
        path = SHARED / name
        if path.exists():
            pool += json.loads(path.read_text())
    pool = pool or load_sample_records()
    pool = [r for r in pool if len(r["instruction"] + (r.get("input") or "") + r["output"]) < 400]
    rows = random.sample(pool, n)  # fresh each run (the seed fixture prints it on failure)
    rows[3]["output"] = None  # a null and an empty output in every run
    rows[5]["output"] = ""
    return [{"instruction": r["instruction"], "input": r.get("input") or "", "output": r["output"]} for r in rows]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, str]:
    from tests.tiny_models import exported, hf_folder

    records = load_sample_records()[:120]
    pool_dir = tmp_path_factory.mktemp("pool") / "pool"
    embedder = {"embedder": str(exported("embedder-bert"))}
    instructfast.build_pool(pa.Table.from_pylist(records), models=embedder).save(pool_dir)
    return {
        "lm": str(hf_folder("lm")),
        "reward": str(exported("reward-pair")),
        "unieval": str(exported("unieval")),
        **embedder,
        "pool": str(pool_dir),
    }


def _options(models: dict[str, str]) -> dict:
    return {"knn_pool": models["pool"]}


def _slots(models: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in models.items() if k != "pool"}


def _assert_same(got: pa.Table | pa.RecordBatch, want: pa.Table | pa.RecordBatch) -> None:
    for col in TEXT_COLUMNS:  # native text statistics: identical
        assert got.column(col).to_pylist() == want.column(col).to_pylist(), col
    for col in MODEL_COLUMNS:  # model values: the batch-invariance tolerance
        g, w = got.column(col).to_pylist(), want.column(col).to_pylist()
        assert [x is None for x in g] == [x is None for x in w], col
        np.testing.assert_allclose(
            [x for x in g if x is not None], [x for x in w if x is not None], rtol=1e-4, atol=1e-6, err_msg=col
        )


def test_one_scorer_shared_by_eight_threads(models):
    batches = [[pa.RecordBatch.from_pylist(_records(ROWS)) for _ in range(BATCHES_PER_THREAD)] for _ in range(THREADS)]
    opts = instructfast.ScoreOptions.build(models=_slots(models), options=_options(models))
    schema = batches[0][0].schema
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", instructfast.InstructfastWarning)
        alone = instructfast.Scorer(schema, options=opts)
        want = [[alone.score_batch(b) for b in mine] for mine in batches]
        shared = instructfast.Scorer(schema, options=opts)
        assert not shared.has_pool_indicators and "knn_6" in shared.plan.columns()
        with ThreadPoolExecutor(THREADS) as ex:
            futures = [ex.submit(lambda mine: [shared.score_batch(b) for b in mine], mine) for mine in batches]
            got = [f.result(timeout=TIMEOUT_S) for f in futures]
    assert set(MODEL_COLUMNS + TEXT_COLUMNS) <= set(got[0][0].schema.names)
    reports = []
    for g_list, w_list in zip(got, want):
        for g, w in zip(g_list, w_list):
            _assert_same(g, w)
            reports.append(ScoreReport.from_table(g))
    # each call's report is its own, and the Scorer's counts are their sum
    assert [r.rows for r in reports] == [ROWS] * THREADS * BATCHES_PER_THREAD
    total: dict[str, dict[str, int]] = {}
    for r in reports:
        for col, reasons in r.nulls.items():
            for reason, n in reasons.items():
                total.setdefault(col, {}).setdefault(reason, 0)
                total[col][reason] += n
    assert shared.report.rows == sum(r.rows for r in reports) == alone.report.rows
    assert shared.report.nulls == total == alone.report.nulls
    assert total["mtld"]["output is null"] == THREADS * BATCHES_PER_THREAD  # one null output per batch
    assert shared.report.notes == alone.report.notes


def test_score_from_eight_threads_at_once(models):
    tables = [pa.Table.from_pylist(_records(ROWS)) for _ in range(THREADS)]
    kw = {"models": _slots(models), "rule": "instructmining-v1"}

    def run(t: pa.Table) -> pa.Table:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", instructfast.InstructfastWarning)
            return instructfast.score(t, **kw)

    want = [run(t) for t in tables]
    with ThreadPoolExecutor(THREADS) as ex:
        got = [f.result(timeout=TIMEOUT_S) for f in [ex.submit(run, t) for t in tables]]
    for g, w in zip(got, want):
        _assert_same(g, w)  # knn_6 here: over each table itself (a pool indicator, per call)
        np.testing.assert_allclose(
            np.array(g.column("predicted_log_loss").to_pylist(), dtype=float),
            np.array(w.column("predicted_log_loss").to_pylist(), dtype=float),
            rtol=1e-4,
        )
        assert ScoreReport.from_table(g).nulls == ScoreReport.from_table(w).nulls


def test_bench_script_measures_rss_in_its_small_mode():
    # bench/bench_concurrency.py --small: the same comparison in child processes, with peak RSS
    import subprocess
    import sys

    script = Path(__file__).parents[1] / "bench" / "bench_concurrency.py"
    proc = subprocess.run([sys.executable, str(script), "--small"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["identical_text_stats"] and result["max_rel_diff"] <= 1e-4
    assert result["rss_ratio"] <= 1.5, result
