"""Scale: a 1M-row sharded run's peak memory, and the Ray engine against the local one.

Two parts (``--part memory``, ``--part engines``, default both):

* **memory** (issue 13, item 5): a sharded run of text statistics + ``knn_6`` over ``--rows``
  rows (default 1,000,000) in ``--shards`` Parquet shards. Embedding a million rows on two cores
  takes hours, so each shard carries synthetic 384-d vectors in a ``vec`` column and the run reads
  them with ``knn_vectors=vec``: they go through the same per-part embedding checkpoints, the same
  memory-mapped union pool and the same approximate (IVF) search as embedder vectors would. The
  vectors are clustered (4,096 centres, noise of the same order as the spacing of real sentence
  embeddings' nearest neighbours) so that approximate search has real neighbourhoods to find;
  isotropic random vectors would have none. The whole ``instructfast score`` process is measured:
  wall time and peak RSS (``VmHWM``, polled), as ``/usr/bin/time -v`` would report them.
* **engines** (item 7): the same ``--engine-rows`` records (default 500, real Alpaca-style records
  from ../shared/data) scored for ``perplexity`` with the packaged SmolLM2 by the local engine
  (two threads) and by Ray with one actor holding both cores (``num_cpus=2``, threads set to 2:
  Ray sets ``OMP_NUM_THREADS=1`` for one-CPU actors) and with two one-core actors. Ray's start-up
  (``ray.init``) is timed apart from the scoring, and so is each call's fixed cost (the same call on
  ``--fixed-rows`` rows: a Ray call starts its actors, and each loads the model); the local engine
  and each Ray layout run in the same process, alternating, so contention from other work on the
  machine lands on all of them.

Results: ``bench/results/scale.md`` and ``scale.csv``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import _common

DIM = 384
CENTRES = 4096


# ----------------------------------------------------------------------------- memory


def build_shards(root: Path, rows: int, shards: int, seed: int = 0) -> dict[str, Any]:
    """``shards`` Parquet files of the workload's records repeated to ``rows``, each with a ``vec`` column."""
    cols, source = _common.load_records()
    n_src = len(cols["output"])
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((CENTRES, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    per = -(-rows // shards)
    written = 0
    for s in range(shards):
        n = min(per, rows - written)
        idx = (np.arange(written, written + n) % n_src).tolist()
        vec = centres[rng.integers(0, CENTRES, n)] + rng.standard_normal((n, DIM), dtype=np.float32) * 0.02
        vec /= np.linalg.norm(vec, axis=1, keepdims=True)
        table = pa.table(
            {
                "instruction": [cols["instruction"][i] for i in idx],
                "input": [cols["input"][i] for i in idx],
                "output": [cols["output"][i] for i in idx],
                "vec": pa.FixedSizeListArray.from_arrays(pa.array(vec.reshape(-1)), DIM).cast(pa.list_(pa.float32())),
            }
        )
        pq.write_table(table, root / f"part-{s:03d}.parquet", row_group_size=65_536)
        written += n
        del table, vec
    return {"rows": rows, "shards": shards, "source": source, "vector_gib": rows * DIM * 4 / 2**30}


def memory_part(rows: int, shards: int, work: Path, extra: list[str]) -> dict[str, Any]:
    data, out = work / "data", work / "out"
    data.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    facts = build_shards(data, rows, shards)
    facts["build_seconds"] = time.perf_counter() - t0
    cmd = [
        sys.executable, "-m", "instructfast", "score", str(data), "-o", str(out),
        "-i", "textstats,knn_6", "--option", "knn_vectors=vec", "--sidecar", "--threads", "2", *extra,
    ]  # fmt: skip
    res = _common.run_measured(cmd)
    manifest = json.loads((out / "_instructfast_manifest.json").read_text())
    first = sorted(out.glob("*.parquet"))[0]
    report = json.loads(pq.read_metadata(first).metadata[b"instructfast.report"])
    res.update(facts, command=" ".join(["instructfast", *cmd[3:]]).replace(str(work), "$WORK"))
    res["knn_method"] = report.get("run", {}).get("implementations", {}).get("knn search")
    res["notes"] = report.get("notes", {})
    res["manifest_status"] = sorted({s["status"] for s in manifest["shards"]})
    res["output_rows"] = sum(pq.read_metadata(p).num_rows for p in out.glob("*.parquet"))
    res["input_gib"] = sum(p.stat().st_size for p in data.iterdir()) / 2**30
    return res


# ----------------------------------------------------------------------------- engines


def _engine_table(rows: int) -> pa.Table:
    cols, source = _common.load_records()
    return pa.table({c: cols[c][:rows] for c in ("instruction", "input", "output")}), source


def engines_part(rows: int, repeats: int, fixed_rows: int = 4) -> dict[str, Any]:
    import ray

    import instructfast
    from instructfast import ray as if_ray

    table, source = _engine_table(rows)
    scorer_args: dict[str, Any] = {"indicators": ["perplexity"]}
    # Ray's raylet starts workers at niceness 15: on a machine shared with other work (as this one
    # is) its actors would get only leftover CPU while the local engine competes at 0, so the
    # comparison would measure the scheduler. Equal niceness measures the engines.
    os.environ.setdefault("RAY_worker_niceness", "0")
    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    startup = time.perf_counter() - t0
    layouts = {
        "local, 2 threads": None,
        "ray, 1 actor x 2 CPUs": {"workers": 1, "cpus_per_worker": 2, "threads": 2},
        "ray, 2 actors x 1 CPU": {"workers": 2, "cpus_per_worker": 1, "threads": 1},
    }
    times: dict[str, list[float]] = {k: [] for k in layouts}
    fixed: dict[str, list[float]] = {k: [] for k in layouts}
    ref = None  # the first local run's values: every run must match them

    def run(name: str, part: pa.Table) -> pa.Table:
        cfg = layouts[name]
        if cfg is None:
            return instructfast.score(part, threads=2, **scorer_args)
        # One batch per actor, as a corpus of thousands of rows gets with the default batch_rows (4096):
        # the LM sorts rows by length within a batch, so smaller batches pad more (one 2-CPU actor took
        # 88 s with one 500-row batch, 99 s with two of 250 and 112 s with 64-row batches here).
        blocks = min(cfg["workers"], part.num_rows)
        ds = ray.data.from_arrow(part).repartition(blocks)
        out = if_ray.score(
            ds, workers=cfg["workers"], cpus_per_worker=cfg["cpus_per_worker"], threads=cfg["threads"],
            batch_rows=-(-part.num_rows // blocks), **scorer_args,
        )  # fmt: skip
        return pa.concat_tables(ray.get(out.to_arrow_refs()))

    for r in range(repeats):
        order = list(layouts) if r % 2 == 0 else [*reversed(list(layouts)[1:]), "local, 2 threads"]
        for name in order:
            # The fixed cost of one call: Ray starts its actors and each loads the model again, the local
            # engine reuses the model this process loaded. Timed on a few rows, next to the full run.
            t = time.perf_counter()
            run(name, table.slice(0, fixed_rows))
            fixed[name].append(time.perf_counter() - t)
            t = time.perf_counter()
            out = run(name, table)
            times[name].append(time.perf_counter() - t)
            ref = ref if ref is not None else out
            got = np.asarray(out.column("perplexity").to_pylist(), dtype=float)
            want = np.asarray(ref.column("perplexity").to_pylist(), dtype=float)
            rel = float(np.nanmax(np.abs(got - want) / np.abs(want)))
            if rel > 1e-4:
                raise SystemExit(f"{name}: perplexity differs from the local engine by {rel:.2e} relative")
    ray.shutdown()
    return {"rows": rows, "source": source, "ray_startup_seconds": startup, "times": times, "repeats": repeats,
            "fixed": fixed, "fixed_rows": fixed_rows}  # fmt: skip


# ----------------------------------------------------------------------------- results


def write_results(
    mem: dict[str, Any] | None, eng: dict[str, Any] | None, info: dict[str, Any], name: str = "scale"
) -> None:
    lines = ["# Scale: a sharded million-row run, and Ray against the local engine", ""]
    lines += [f"Generated by `python bench/bench_scale.py {' '.join(sys.argv[1:])}`.", ""]
    lines += [f"Machine: {info['cpu']}, {info['cores']} cores, {info['ram_gib']} GiB; commit {info['git_sha']}.", ""]
    rows_csv: list[dict[str, Any]] = []
    if mem:
        lo, la = mem["load_before"], mem["load_after"]
        lines += [
            "## Memory: 1M rows, text statistics + knn_6 over stored vectors",
            "",
            f"Input: {mem['rows']:,} rows ({mem['source']}, repeated) in {mem['shards']} Parquet shards, "
            f"{mem['input_gib']:.2f} GiB, each row with a synthetic 384-d float32 vector "
            f"({mem['vector_gib']:.2f} GiB of vectors in all).",
            "",
            f"Command: `{mem['command']}` (whole process; load average {lo[0]:.2f} / {lo[1]:.2f} / {lo[2]:.2f} "
            f"before, {la[0]:.2f} / {la[1]:.2f} / {la[2]:.2f} after).",
            "",
            "| rows out | wall (s) | peak RSS (MiB) | target | knn_6 search |",
            "|---:|---:|---:|---:|---|",
            f"| {mem['output_rows']:,} | {mem['seconds']:.0f} | {mem['peak_rss_mib']:,.0f} | < 3,072 | "
            f"{mem['knn_method']} |",
            "",
            f"Shard status in the manifest: {', '.join(mem['manifest_status'])}. Notes: {json.dumps(mem['notes'])}.",
            "",
            f"At the largest sampled RSS ({mem['at_peak_mib'].get('VmRSS', 0):,.0f} MiB), "
            f"{mem['at_peak_mib'].get('RssFile', 0):,.0f} MiB were file pages (the memory-mapped pool vectors, "
            f"{mem['vector_gib'] * 1024:,.0f} MiB, and the libraries) and {mem['at_peak_mib'].get('RssAnon', 0):,.0f} "
            "MiB anonymous memory (the IVF index's 8-bit codes, "
            f"{mem['vector_gib'] * 256:,.0f} MiB, the training sample, search buffers, the interpreter and libraries).",
            "",
        ]
        rows_csv.append(
            {"indicator": "textstats+knn_6", "provider": "instructfast", "mode": "sharded-1M", "metric": "peak_rss",
             "unit": "MiB", "x": mem["rows"], "p50": mem["peak_rss_mib"], "config_json": {"shards": mem["shards"]}}
        )  # fmt: skip
        rows_csv.append(
            {"indicator": "textstats+knn_6", "provider": "instructfast", "mode": "sharded-1M", "metric": "wall",
             "unit": "s", "x": mem["rows"], "p50": mem["seconds"], "config_json": {"shards": mem["shards"]}}
        )  # fmt: skip
    if eng:
        med = {k: float(np.median(v)) for k, v in eng["times"].items()}
        fix = {k: float(np.median(v)) for k, v in eng.get("fixed", {}).items()}
        # the scoring phase of each run: its wall time less the fixed cost timed just before it
        phase = {k: float(np.median(np.subtract(eng["times"][k], eng["fixed"][k]))) for k in fix}
        local = med["local, 2 threads"]
        lines += [
            f"## Engines: {eng['rows']} records, perplexity with the packaged SmolLM2",
            "",
            f"Records: the first {eng['rows']} of {eng['source']}. Ray 2.60 local cluster of 2 CPUs; "
            f"`ray.init` took {eng['ray_startup_seconds']:.1f} s (not in the times below). Each layout ran "
            f"{eng['repeats']} times, alternating order; median wall time of the scoring call, actors' model "
            "loading included (a Ray run starts its actors each time). Each Ray actor gets its rows in one "
            "batch, as a corpus of thousands of rows does with the default `batch_rows` (4096).",
            "",
        ]
        if fix:
            lines += [
                f"Fixed cost: the same call on {eng['fixed_rows']} rows, just before each run (Ray starts its "
                "actors and each loads the model; the local engine reuses the model this process loaded). "
                "Scoring phase: each run's wall time less the fixed cost timed before it (median).",
                "",
                "| engine | median (s) | rows/s | vs local | fixed cost (s) | scoring phase (s) | vs local | runs (s) |",
                "|---|---:|---:|---:|---:|---:|---:|---|",
            ]
        else:
            lines += ["| engine | median (s) | rows/s | vs local | runs (s) |", "|---|---:|---:|---:|---|"]
        for layout, t in med.items():
            runs = ", ".join(f"{x:.1f}" for x in eng["times"][layout])
            if fix:
                p_local = phase["local, 2 threads"]
                lines.append(
                    f"| {layout} | {t:.1f} | {eng['rows'] / t:.1f} | {local / t:.2f}x | {fix[layout]:.1f} | "
                    f"{phase[layout]:.1f} | {p_local / phase[layout]:.2f}x | {runs} |"
                )
            else:
                lines.append(f"| {layout} | {t:.1f} | {eng['rows'] / t:.1f} | {local / t:.2f}x | {runs} |")
            rows_csv.append(
                {"indicator": "perplexity", "provider": layout, "mode": "engine", "metric": "wall", "unit": "s",
                 "x": eng["rows"], "p50": t, "config_json": {"repeats": eng["repeats"]}}
            )  # fmt: skip
            if fix:
                rows_csv.append(
                    {"indicator": "perplexity", "provider": layout, "mode": "engine", "metric": "fixed", "unit": "s",
                     "x": eng["fixed_rows"], "p50": fix[layout], "config_json": {"repeats": eng["repeats"]}}
                )  # fmt: skip
        lines += ["", "Target: Ray's scoring phase within 10% of local (vs local >= 0.91x)."]
    out = _common.RESULTS_DIR / f"{name}.md"
    if out.exists() and not (mem and eng):  # one part rerun: keep the other part's section
        old = out.read_text().split("\n## ")
        keep = [s for s in old[1:] if (mem is None and s.startswith("Memory")) or (eng is None and s.startswith("Eng"))]
        lines += ["", *("## " + s for s in keep)]
    out.write_text("\n".join(lines).rstrip() + "\n")
    _common.append_results(_common.RESULTS_DIR / f"{name}.csv", rows_csv)
    print(out.read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=["memory", "engines", "both"], default="both")
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--shards", type=int, default=10)
    p.add_argument("--engine-rows", type=int, default=500)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--fixed-rows", type=int, default=4, help="rows of the call that times each engine's fixed cost")
    p.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    p.add_argument("--option", action="append", default=[], help="extra --option for the memory run")
    p.add_argument(
        "--name", default="scale", help="results go to NAME.md and NAME.csv (e.g. a few engine rows: fixed costs)"
    )
    a = p.parse_args()
    info = _common.machine_info()
    mem = eng = None
    if a.part in ("memory", "both"):
        work = a.work or Path(tempfile.mkdtemp(prefix="bench_scale_"))
        try:
            extra = [x for o in a.option for x in ("--option", o)]
            mem = memory_part(a.rows, a.shards, work, extra)
        finally:
            if a.work is None:
                shutil.rmtree(work, ignore_errors=True)
        write_results(mem, None, info, a.name)  # each part's results are kept as soon as it ends
    if a.part in ("engines", "both"):
        eng = engines_part(a.engine_rows, a.repeats, a.fixed_rows)
        write_results(None, eng, info, a.name)


if __name__ == "__main__":
    main()
