"""k-center greedy (farthest-first traversal): instructfast against the usual numpy KCenterGreedy.

Usage::

    flock /tmp/instructfast-bench.lock .venv/bin/python bench/bench_kcenter.py [--cases ...] [--out bench/results]

Workload: ``n`` unit vectors of dimension 384 (numpy ``default_rng(seed)``). ``clustered``: 1,000
random topic directions, each row one of them plus Gaussian noise of the same norm, then
L2-normalised (within a topic cosine ~0.5, across ~0: the shape of sentence-embedding pools);
``uniform``: Gaussian rows, L2-normalised (the hardest case for distance bounds in high
dimension, where all distances concentrate near sqrt(2)). Real embeddings at 1M rows would need
hours of embedding on 2 cores first; the traversal's cost depends on n, d, k and the geometry.

Providers, each in its own subprocess (clean peak RSS, no shared thread pools), first pick row 0:

* ``instructfast_lazy``: :func:`instructfast.selection.kcenter.kcenter_greedy` (default
  ``strategy="lazy"``: exact distance bounds, a pool of candidates kept exact, GEMM catch-ups);
* ``instructfast_full``: the same with ``strategy="full"``: one blocked float32 GEMV pass over
  all rows per pick, in-place minimum, ``||x||^2`` precomputed;
* ``naive_numpy``: the usual KCenterGreedy update written with numpy: vectors cast to float64,
  per pick ``min_dist = minimum(min_dist, sqrt(((X - X[c])**2).sum(1)))`` (full broadcasts).

Measured per run: wall seconds of the selection call (data generation excluded), the peak of
memory allocated during the call (``tracemalloc``, which sees numpy buffers: the working memory
beyond the input vectors), and the process's peak RSS (input included). All providers of one
case must return the same picks; the script checks and records it. The 1-minute load average
is recorded before each run (other work shares this machine). Results are upserted into
``<out>/kcenter.csv`` and summarised in ``<out>/kcenter.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common
from tests.references import naive_kcenter

DIM = 384
PROVIDERS = ("instructfast_lazy", "instructfast_full", "naive_numpy")
# (data, n, k, providers): the 1M x 384 / 5,000 target runs the default path only (the full
# per-pick pass would take ~20 min there, the naive one hours): all three meet on 50k and on
# 1M with k=10, lazy and full on 1M with k=200 (same picks checked at scale).
DEFAULT_CASES = (
    ("clustered", 50_000, 500, PROVIDERS),
    ("clustered", 1_000_000, 10, PROVIDERS),
    ("clustered", 1_000_000, 200, ("instructfast_lazy", "instructfast_full")),
    ("clustered", 1_000_000, 5_000, ("instructfast_lazy",)),
    ("uniform", 1_000_000, 5_000, ("instructfast_lazy",)),
)


def make_vectors(kind: str, n: int, d: int = DIM, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "uniform":
        x = rng.standard_normal((n, d), dtype=np.float32)
    elif kind == "clustered":
        topics = rng.standard_normal((1000, d), dtype=np.float32)
        topics /= np.linalg.norm(topics, axis=1, keepdims=True)
        x = rng.standard_normal((n, d), dtype=np.float32)
        x *= 1.0 / np.sqrt(d)
        x += topics[rng.integers(0, 1000, n)]
    else:
        msg = f"unknown data kind {kind!r}"
        raise ValueError(msg)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


# ============================================================================ worker (subprocess)


def _worker(provider: str, kind: str, n: int, k: int, out: Path) -> None:
    import tracemalloc

    import instructfast.selection.kcenter as kc  # imported before the clock starts

    x = make_vectors(kind, n)
    load = os.getloadavg()[0]
    tracemalloc.start()
    t0 = time.perf_counter()
    if provider == "naive_numpy":
        picks = naive_kcenter(x, k, 0)
        stats = {}
    else:
        strategy = "lazy" if provider == "instructfast_lazy" else "full"
        picks = kc.kcenter_greedy(x, k, start=0, backend="numpy", strategy=strategy)
        stats = dict(kc._LAST_STATS) if strategy == "lazy" else {}
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    out.write_text(
        json.dumps(
            {
                "seconds": seconds,
                "working_mib": peak / 2**20,
                "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "load1_before": load,
                "picks": picks.tolist(),
                "stats": stats,
            }
        )
    )


# ============================================================================ driver


def run_case(kind: str, n: int, k: int, providers, python: str) -> dict[str, dict]:
    results = {}
    for prov in providers:
        with tempfile.TemporaryDirectory() as tmp:
            res_path = Path(tmp) / "r.json"
            cmd = [
                python,
                __file__,
                "--worker",
                prov,
                "--kind",
                kind,
                "--n",
                str(n),
                "--k",
                str(k),
                "--result",
                str(res_path),
            ]
            print(f"[kcenter] {kind} n={n:,} k={k:,} {prov} ...", flush=True)
            subprocess.run(cmd, check=True)
            r = json.loads(res_path.read_text())
        print(
            f"    {r['seconds']:.2f} s, working {r['working_mib']:.0f} MiB, peak RSS {r['rss_mib']:.0f} MiB, "
            f"load {r['load1_before']:.2f} {r['stats'] or ''}",
            flush=True,
        )
        results[prov] = r
    ref = next(iter(results.values()))["picks"]
    for r in results.values():
        same = r["picks"] == ref
        first = next((i for i, (a, b) in enumerate(zip(r["picks"], ref)) if a != b), None)
        r["same_picks"] = same
        r["first_divergence"] = first
        r["picks_sha1"] = hashlib.sha1(json.dumps(r.pop("picks")).encode()).hexdigest()[:12]
    return results


def write_results(all_results, out_dir: Path, info: dict) -> None:
    rows = []
    for (kind, n, k), res in all_results.items():
        cfg = {"data": kind, "n": n, "dim": DIM, "k": k}
        x = f"{n}x{DIM}/k={k}"
        for prov, r in res.items():
            for metric, unit, val in (
                ("seconds", "s", r["seconds"]),
                ("working_memory", "MiB", r["working_mib"]),
                ("peak_rss", "MiB", r["rss_mib"]),
                ("load1_before", "load", r["load1_before"]),
            ):
                rows.append(
                    {
                        "indicator": "kcenter",
                        "provider": prov,
                        "mode": kind,
                        "metric": metric,
                        "unit": unit,
                        "x": x,
                        "p50": val,
                        "p20": val,
                        "p80": val,
                        "config_json": cfg,
                    }
                )
    _common.append_results(out_dir / "kcenter.csv", rows)

    lines = [
        "# k-center greedy (farthest-first traversal)",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['ram_gib']} GiB RAM, {info['os']}; Python "
        f"{info['python']}, numpy {info['numpy']}; commit {info['git_sha']}. One run per cell (n=1), each provider in "
        "its own process; the machine is shared with other work, so the 1-minute load average before each run is "
        "listed.",
        "",
        "Workload: unit vectors, dimension 384 (see `bench/bench_kcenter.py`): `clustered` = 1,000 topic "
        "directions plus equal-norm noise, `uniform` = normalised Gaussian rows. First pick row 0. `working` = peak "
        "memory allocated during the call (tracemalloc: buffers beyond the input vectors); `RSS` = process peak, "
        "input included.",
        "",
        "| data | n | k | provider | seconds | vs naive | vs full | working MiB | RSS MiB | load | same picks |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (kind, n, k), res in all_results.items():
        for prov, r in res.items():
            naive = res.get("naive_numpy", {}).get("seconds")
            full = res.get("instructfast_full", {}).get("seconds")
            vs_naive = f"{naive / r['seconds']:.1f}x" if naive and prov != "naive_numpy" else ""
            vs_full = f"{full / r['seconds']:.1f}x" if full and prov == "instructfast_lazy" else ""
            if len(res) == 1:
                same = "(no peer)"
            else:
                same = "yes" if r["same_picks"] else f"no (from pick {r['first_divergence']})"
            lines.append(
                f"| {kind} | {n:,} | {k:,} | {prov} | {r['seconds']:.2f} | {vs_naive} | {vs_full} | "
                f"{r['working_mib']:.0f} | {r['rss_mib']:.0f} | {r['load1_before']:.2f} | {same} |"
            )
    lines += [
        "",
        'Ratios are taken only between providers measured on the same case in the same run; "same picks" '
        "compares each provider's whole pick sequence with the first provider's of its case. The 1M x 384 / "
        "5,000 cases ran the default (lazy) path only; the other paths' cost at that n is in the k=10 and k=200 "
        "rows (no totals for k=5,000 are extrapolated here).",
        "",
    ]
    (out_dir / "kcenter.md").write_text("\n".join(lines), encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", choices=PROVIDERS)
    ap.add_argument("--kind", default="clustered")
    ap.add_argument("--n", type=int, default=0)
    ap.add_argument("--k", type=int, default=0)
    ap.add_argument("--result", type=Path)
    ap.add_argument("--cases", help="semicolon-separated DATA,N,K[,PROVIDER...] (default: the four documented cases)")
    ap.add_argument("--out", type=Path, default=_common.RESULTS_DIR)
    args = ap.parse_args()
    if args.worker:
        _worker(args.worker, args.kind, args.n, args.k, args.result)
        return
    cases = DEFAULT_CASES
    if args.cases:
        cases = []
        for part in args.cases.split(";"):
            f = part.split(",")
            cases.append((f[0], int(f[1]), int(f[2]), tuple(f[3:]) or PROVIDERS))
    info = _common.machine_info()
    print(json.dumps(info))
    all_results = {}
    for kind, n, k, provs in cases:
        all_results[(kind, n, k)] = run_case(kind, n, k, provs, sys.executable)
    args.out.mkdir(parents=True, exist_ok=True)
    write_results(all_results, args.out, info)
    print(f"wrote {args.out / 'kcenter.csv'} and {args.out / 'kcenter.md'}")


if __name__ == "__main__":
    main()
