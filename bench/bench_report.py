"""``instructfast report`` at scale: wall time, peak RSS and page size of the whole process.

Usage::

    flock /tmp/instructfast-bench.lock .venv/bin/python bench/bench_report.py [--rows 1000000] [--out bench/results]

Workload: the bundled 200 Alpaca-GPT4 records (``python/instructfast/data/alpaca_gpt4_sample.jsonl``)
tiled to ``rows`` rows with a synthetic numeric column (``synthetic``: log-normal, spanning decades,
``default_rng(0)``), scored for text statistics (``instructfast.score_file``, indicators ``textstats``:
7 numeric columns) into Parquet. Building takes minutes on 2 cores, so the tiled and scored files are
cached under ``bench/.cache/`` (git-ignored) and reused.

Measured per mode, one run each, ``instructfast report`` as its own process (``python -m instructfast
report``): wall seconds (interpreter start included), peak RSS (``VmHWM`` of the child, polled every
20 ms; it only grows, so the last reading is the peak up to within 20 ms of the exit) and the HTML size.
Modes: ``plain`` (the scored file alone) and ``selected`` (plus a positions file of 0.5% of the rows,
drawn with ``default_rng(1)``: the selection section adds a third histogram pass's worth of series).
The 1-minute load average before each run is recorded: the machine is shared. Results are upserted
into ``<out>/report.csv`` and summarised in ``<out>/report.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common

SAMPLE = _common.REPO_ROOT / "python" / "instructfast" / "data" / "alpaca_gpt4_sample.jsonl"
CHUNK = 50_000


def build(rows: int) -> Path:
    """The scored file of ``rows`` tiled records (cached)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    import instructfast

    _common.CACHE_DIR.mkdir(parents=True, exist_ok=True)
    scored = _common.CACHE_DIR / f"report_scored_{rows}.parquet"
    if scored.exists():
        return scored
    tiled = _common.CACHE_DIR / f"report_tiled_{rows}.parquet"
    if not tiled.exists():
        base = instructfast.read_table(SAMPLE).select(["instruction", "input", "output"])
        rng = np.random.default_rng(0)
        tmp = tiled.with_suffix(".tmp")
        with pq.ParquetWriter(tmp, base.schema.append(pa.field("synthetic", pa.float64())), compression="zstd") as w:
            for start in range(0, rows, CHUNK):
                idx = np.arange(start, min(rows, start + CHUNK)) % base.num_rows
                part = base.take(pa.array(idx)).append_column("synthetic", pa.array(rng.lognormal(1.0, 2.0, idx.size)))
                w.write_table(part)
        os.replace(tmp, tiled)
    t0 = time.perf_counter()
    instructfast.score_file(tiled, scored, indicators=["textstats"])
    print(f"scored {rows:,} rows in {time.perf_counter() - t0:.1f} s -> {scored}", flush=True)
    return scored


def positions(rows: int) -> Path:
    """0.5% of the rows as a positions file (as ``instructfast select --positions`` writes)."""
    import pyarrow as pa

    import instructfast

    path = _common.CACHE_DIR / f"report_selected_{rows}.csv"
    if not path.exists():
        pos = np.sort(np.random.default_rng(1).choice(rows, size=max(1, rows // 200), replace=False))
        instructfast.write_table(pa.table({"position": pa.array(pos, pa.int64())}), path)
    return path


def run_once(scored: Path, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "report.html"
        cmd = [sys.executable, "-m", "instructfast", "report", str(scored), "-o", str(out), *extra]
        res = _common.run_measured(cmd, poll=0.02)
        return {
            "seconds": res["seconds"],
            "peak_rss_mib": res["peak_rss_mib"],
            "html_mib": out.stat().st_size / 2**20,
            "load1_before": res["load_before"][0],
            "said": res["stdout"].strip().splitlines()[0],
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    ap.add_argument("--out", type=Path, default=_common.RESULTS_DIR)
    args = ap.parse_args()
    info = _common.machine_info()
    print(json.dumps(info), flush=True)
    results = {}
    for rows in args.rows:
        scored = build(rows)
        for mode, extra in (("plain", []), ("selected", ["--selected", str(positions(rows))])):
            r = run_once(scored, extra)
            print(f"{rows:,} rows, {mode}: {json.dumps(r)}", flush=True)
            results[(rows, mode)] = r
    write_results(results, args.out, info)
    print(f"wrote {args.out / 'report.csv'} and {args.out / 'report.md'}")


def write_results(results: dict, out_dir: Path, info: dict) -> None:
    rows = []
    for (n, mode), r in results.items():
        cfg = {"rows": n, "columns": "textstats (7) + synthetic", "selected": "0.5%" if mode == "selected" else None}
        for metric, unit in (("seconds", "s"), ("peak_rss_mib", "MiB"), ("html_mib", "MiB"), ("load1_before", "load")):
            v = r[metric]
            rows.append(
                {
                    "indicator": "report",
                    "provider": "instructfast",
                    "mode": mode,
                    "metric": metric,
                    "unit": unit,
                    "x": n,
                    "p50": v,
                    "p20": v,
                    "p80": v,
                    "config_json": cfg,
                }
            )
    out_dir.mkdir(parents=True, exist_ok=True)
    _common.append_results(out_dir / "report.csv", rows)
    lines = [
        "# `instructfast report` at scale",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['ram_gib']} GiB RAM, {info['os']}; Python "
        f"{info['python']}, numpy {info['numpy']}, pyarrow {info['pyarrow']}; commit {info['git_sha']}. One run per "
        "cell, the whole process timed (interpreter start included); the machine is shared, so the 1-minute load "
        "average before each run is listed.",
        "",
        "Workload (`bench/bench_report.py`): the bundled 200 Alpaca-GPT4 records tiled to n rows plus a synthetic "
        "log-normal column, scored for text statistics into Parquet (8 charted columns). `selected`: a positions "
        "file of 0.5% of the rows. Targets: under 60 s on 2 cores, memory bounded by histograms and samples, page "
        "under 5 MB. The tiled records repeat, so the ends of the text-statistic columns tie and go to the earliest "
        "rows (the first row group); the synthetic column's ends lie anywhere in the file, so the text read still "
        "visits row groups across it.",
        "",
        "| rows | mode | seconds | peak RSS MiB | page MiB | load before |",
        "|---|---|---|---|---|---|",
    ]
    for (n, mode), r in results.items():
        lines.append(
            f"| {n:,} | {mode} | {r['seconds']:.1f} | {r['peak_rss_mib']:.0f} | {r['html_mib']:.2f} | "
            f"{r['load1_before']:.2f} |"
        )
    lines.append("")
    (out_dir / "report.md").write_text("\n".join(lines), encoding="utf-8")


if __name__ == "__main__":
    main()
