"""Concurrent load: one Scorer shared by 8 threads against the same work on one thread, peak RSS and values.

Usage::

    python bench/bench_concurrency.py [--rows 2000] [--threads 8] [--batch-rows 32] [--out bench/results]
    python bench/bench_concurrency.py --small      # tiny random models, a few hundred rows (tests run this)

Workload: records of ../shared/data (alpaca_5000, dolly_filtered_3k, alpaca_gpt4_demo_1k; the in-repo
sample without them), shuffled with a fixed seed, cut into batches of ``--batch-rows``; each thread
owns every ``threads``-th batch. Every indicator runs: text statistics, token counts, perplexity and
IFD on the packaged SmolLM2-135M, ``knn_6`` against a reference pool of the first 1,000 other records
embedded by the packaged all-MiniLM-L6-v2, and reward and UniEval on tiny random models of their
architectures (no weights for them can be had here). ``--small``: tiny models for every slot.

Each run is its own child process (fresh ``ru_maxrss``): ``one`` scores every batch on one thread;
``shared`` gives one Scorer to ``--threads`` threads, each scoring its own batches. The parent checks
that the text statistics are identical and the model values within 1e-4 (relative), and reports
peak RSS of both (target: shared <= 1.5x one). Results go to ``<out>/concurrency.csv`` and
``concurrency.md`` (not in ``--small`` mode, which prints one JSON line).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common

TEXT = ["output_words", "output_unique_words", "output_ttr", "mtld", "output_chars", "output_bytes", "input_chars"]


def load_records(n: int, seed: int, max_chars: int | None) -> list[dict]:
    pool: list[dict] = []
    for name in ("alpaca_5000.json", "dolly_filtered_3k.json", "alpaca_gpt4_demo_1k.json"):
        path = _common.SHARED_DATA / name
        if path.exists():
            pool += json.loads(path.read_text())
    if not pool:
        pool = [json.loads(line) for line in _common.SAMPLE_RECORDS.read_text().splitlines() if line.strip()]
    if max_chars:
        pool = [r for r in pool if len(r["instruction"] + (r.get("input") or "") + r["output"]) < max_chars]
    random.Random(seed).shuffle(pool)
    return [{"instruction": r["instruction"], "input": r.get("input") or "", "output": r["output"]} for r in pool[:n]]


def prepare_models(small: bool, workdir: Path, pool_records: list[dict]) -> dict[str, str]:
    """Model folders for every slot, and a reference pool for knn_6 (built here, once)."""
    import pyarrow as pa

    import instructfast
    from tests.tiny_models import exported, tiny_llama

    models: dict[str, str] = {}
    if small:
        models["lm"] = str(tiny_llama(workdir / "lm"))
    if small:  # no ONNX export: the pool comes from vectors, the embedder slot is not needed
        return models
    models["reward"] = str(exported("reward-pair"))
    models["unieval"] = str(exported("unieval"))
    pool = workdir / "pool"
    instructfast.build_pool(pa.Table.from_pylist(pool_records)).save(pool)
    models["pool"] = str(pool)
    return models


def worker(mode: str, records_path: str, models_json: str, threads: int, batch_rows: int, out: str) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    import instructfast

    records = json.loads(Path(records_path).read_text())
    models = json.loads(models_json)
    options = {"knn_pool": models["pool"]} if "pool" in models else {}
    slots = {k: v for k, v in models.items() if k != "pool"}
    table = pa.Table.from_pylist(records)
    batches = table.to_batches(max_chunksize=batch_rows)
    indicators = None if "pool" in models else ["textstats", "tokens", "logprob"]
    opts = instructfast.ScoreOptions.build(models=slots, options=options)
    warnings.simplefilter("ignore", instructfast.InstructfastWarning)
    scorer = instructfast.Scorer(table.schema, indicators=indicators, options=opts)
    scorer.start()
    base = _common.proc_status_mib("VmRSS")
    t0 = time.perf_counter()
    if mode == "one":
        results = [scorer.score_batch(b) for b in batches]
    else:
        shares = [list(range(k, len(batches), threads)) for k in range(threads)]
        results = [None] * len(batches)

        def run(share: list[int]) -> None:
            for i in share:
                results[i] = scorer.score_batch(batches[i])

        with ThreadPoolExecutor(threads) as ex:
            for f in [ex.submit(run, s) for s in shares]:
                f.result(timeout=3600)
    seconds = time.perf_counter() - t0
    pq.write_table(pa.Table.from_batches(results).replace_schema_metadata(None), out)
    return {
        "mode": mode,
        "rows": table.num_rows,
        "seconds": seconds,
        # VmHWM, not ru_maxrss: Linux carries that one over from the parent, which loaded the embedder
        "peak_rss": _common.proc_status_mib("VmHWM") * 2**20,
        "rss_after_load": base * 2**20,
        "columns": [c for c in scorer.plan.columns()],
        "report_rows": scorer.report.rows,
    }


def run_child(args: list[str]) -> dict:
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"child {args[:2]} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def compare(one: Path, shared: Path) -> tuple[bool, float]:
    import numpy as np
    import pyarrow.parquet as pq

    a, b = pq.read_table(one), pq.read_table(shared)
    identical = all(a.column(c).to_pylist() == b.column(c).to_pylist() for c in TEXT if c in a.column_names)
    worst = 0.0
    for c in a.column_names:
        if (
            c in TEXT
            or not a.schema.field(c).type.equals(b.schema.field(c).type)
            or c in ("instruction", "input", "output")
        ):
            continue
        x = np.array(a.column(c).to_pylist(), dtype=float)
        y = np.array(b.column(c).to_pylist(), dtype=float)
        if not np.array_equal(np.isnan(x), np.isnan(y)):
            return identical, float("inf")
        ok = ~np.isnan(x)
        if ok.any():
            worst = max(worst, float(np.max(np.abs(x[ok] - y[ok]) / np.maximum(np.abs(x[ok]), 1e-12))))
    return identical, worst


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--batch-rows", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--small", action="store_true", help="tiny models and few rows (what the test suite runs)")
    ap.add_argument("--out", type=Path, default=_common.RESULTS_DIR)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--records", help=argparse.SUPPRESS)
    ap.add_argument("--models", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.records, args.models, args.threads, args.batch_rows, args.result)))
        return 0

    rows = 256 if args.small else args.rows
    batch_rows = 8 if args.small else args.batch_rows
    machine = _common.machine_info()
    machine["load_start"] = " / ".join(f"{v:.2f}" for v in os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="bench-concurrency-") as tmp:
        work = Path(tmp)
        records = load_records(rows + (0 if args.small else 1000), args.seed, 400 if args.small else 1500)
        models = prepare_models(args.small, work, records[rows:])
        (work / "records.json").write_text(json.dumps(records[:rows]))
        common = ["--records", str(work / "records.json"), "--models", json.dumps(models)]
        common += ["--threads", str(args.threads), "--batch-rows", str(batch_rows)]
        one = run_child(["--worker", "one", *common, "--result", str(work / "one.parquet")])
        shared = run_child(["--worker", "shared", *common, "--result", str(work / "shared.parquet")])
        identical, worst = compare(work / "one.parquet", work / "shared.parquet")
    result = {
        "rows": rows,
        "threads": args.threads,
        "columns": one["columns"],
        "identical_text_stats": identical,
        "max_rel_diff": worst,
        "rss_one_mib": one["peak_rss"] / 2**20,
        "rss_shared_mib": shared["peak_rss"] / 2**20,
        "rss_ratio": shared["peak_rss"] / one["peak_rss"],
        "seconds_one": one["seconds"],
        "seconds_shared": shared["seconds"],
        "load_end": " / ".join(f"{v:.2f}" for v in os.getloadavg()),
        "batch_rows": batch_rows,
    }
    if not args.small:
        cfg = {
            "rows": rows,
            "threads": args.threads,
            "batch_rows": batch_rows,
            "models": sorted(models),
            "seed": args.seed,
        }
        csv_rows = []
        for mode, r in (("one", one), ("shared", shared)):
            base = {"indicator": "concurrency", "provider": "instructfast", "mode": mode, "x": rows, "config_json": cfg}
            csv_rows.append({**base, "metric": "peak_rss", "unit": "MiB", "p50": r["peak_rss"] / 2**20})
            csv_rows.append({**base, "metric": "rows_per_s", "unit": "rows/s", "p50": r["rows"] / r["seconds"]})
        _common.append_results(args.out / "concurrency.csv", csv_rows)
        (args.out / "concurrency.md").write_text(render(result, machine), encoding="utf-8")
    print(json.dumps(result))
    return 0


def render(r: dict, machine: dict) -> str:
    return "\n".join(
        [
            "# Concurrent load: one Scorer, 8 threads\n",
            f"Generated by `python bench/bench_concurrency.py --rows {r['rows']} --threads {r['threads']} "
            f"--batch-rows {r['batch_rows']}`; raw rows in `concurrency.csv`.\n",
            f"Machine: {machine['cpu']}, {machine['cores']} cores, load {machine['load_start']} at start, {r['load_end']} at end.\n",
            f"Work: {r['rows']:,} records of ../shared/data in batches of {r['batch_rows']}, every indicator "
            f"({', '.join(r['columns'])}): perplexity, IFD and token counts on the packaged SmolLM2-135M, knn_6 "
            "against a reference pool of 1,000 other records embedded by the packaged all-MiniLM-L6-v2, reward "
            "and UniEval on tiny random models of their architectures (no weights for them here). Each run is "
            "a fresh child process; peak RSS is its VmHWM. Seconds are wall time on cores shared with other "
            "work (see the load), so only the memory and the values are comparable.\n",
            "| run | peak RSS (MiB) | seconds | rows/s |",
            "|---|---:|---:|---:|",
            f"| one thread | {r['rss_one_mib']:,.0f} | {r['seconds_one']:.1f} | {r['rows'] / r['seconds_one']:,.1f} |",
            f"| one Scorer, {r['threads']} threads | {r['rss_shared_mib']:,.0f} | {r['seconds_shared']:.1f} | {r['rows'] / r['seconds_shared']:,.1f} |",
            "",
            f"Peak RSS ratio: {r['rss_ratio']:.2f}x (target <= 1.5x). Text statistics identical: {r['identical_text_stats']}; "
            f"largest relative difference of a model value: {r['max_rel_diff']:.2g} (tolerance 1e-4).\n",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
