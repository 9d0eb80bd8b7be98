"""kNN for ``knn_6`` on one GPU with torch only (GPU machines have no faiss): the torch matmul path.

Usage (one command on a CUDA machine with torch, numpy and instructfast installed;
``bench/gpu/run.sh`` runs it with ``--n 100000``)::

    python bench/bench_knn_gpu.py --out DIR [--n 100000,1000000] [--dim 384] [--repeats 3] [--numpy-queries 5000]

and, to check the plumbing on any machine (its numbers mean nothing)::

    python bench/bench_knn_gpu.py --out /tmp/knn_gpu --device cpu --n 2000

Workload: ``n`` random unit vectors x ``dim`` (Gaussian, L2-normalised, seed 0; 1% of the rows
exact copies of others), k = 6, each row its own query with self excluded by position.

Providers:

* ``instructfast_torch``: :class:`instructfast.neighbors.NeighborIndex` with ``backend="torch"``:
  blocked ``queries @ pool.T`` + ``topk`` on the device, exact float64 re-ranking on the device,
  self exclusion. ``first`` includes moving the pool to the device; ``warm`` is a repeat search.
* ``torch_topk_floor``: the same blocked matmul + topk alone (no re-ranking, no exclusion): the floor.
* ``numpy_bruteforce``: ``tests.references.knn_numpy`` on the CPU, on the same vectors: blocked
  float32 matmul + ``argpartition``, float64 re-ranking, self excluded by position. It runs on
  ``--numpy-queries`` sampled rows (all rows when 0 or >= n): ``seconds`` is that sample's time,
  ``seconds_extrapolated`` scales it to all n queries (what ``speedup_vs_numpy`` divides by).

Checked: the 6th-neighbour distance of 500 sampled rows against a float64 brute force on the
device (fraction within 1e-6), and the numpy sample's neighbour ids: ``ids_equal_numpy`` is the
fraction of its rows whose 6 ids equal the engine's up to ties at equal distance
(``tests.references.same_neighbours``), ``max_distance_diff_numpy`` the largest distance
difference; ``target:ids_equal_numpy`` (unit ``pass``) is 1.0 when every row agrees. Also
recorded: peak device memory (``torch.cuda.max_memory_allocated``).

Results: ``<out>/knn_gpu.csv`` in the long format of ``bench/_common.py`` (the ``cpu`` column holds
the device name) and a table on stdout. The engine comes from the installed package through
``bench/gpu/_engine.py``; nothing on this path imports faiss.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH / "gpu"))
sys.path.insert(0, str(BENCH))
import _common  # noqa: E402  (standard library only)

K = 6
SAMPLE = 500


def _vectors(n: int, dim: int):
    import numpy as np

    rng = np.random.default_rng(0)
    x = np.empty((n, dim), dtype=np.float32)
    for s in range(0, n, 65_536):  # float32 chunks: no n x dim float64 temporary
        x[s : s + 65_536] = rng.standard_normal((min(65_536, n - s), dim), dtype=np.float32)
    dup = rng.choice(n, n // 100, replace=False)
    x[dup] = x[rng.integers(0, n, dup.size)]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--n", default="100000,1000000", help="comma-separated pool sizes")
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--memory-mb", type=int, default=8192, help="bytes for one block's [rows, n] similarities")
    ap.add_argument(
        "--numpy-queries", type=int, default=5000, help="rows searched by the numpy brute force (0: all); default 5000"
    )
    a = ap.parse_args()

    import _engine
    import numpy as np
    import torch

    from tests.references import knn_numpy, same_neighbours

    dev = torch.device(a.device)
    cuda = dev.type == "cuda"
    if cuda and not torch.cuda.is_available():
        print("no CUDA device visible to torch", file=sys.stderr)
        return 2

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(dev)

    name = torch.cuda.get_device_name(dev) if cuda else f"CPU dry run: {_common.cpu_model()}"
    info = {
        "device": name,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "git_sha": _common.git_sha(),
        "load1": os.getloadavg()[0],
        "cores": _common.cores(),
    }
    print(json.dumps(info))
    rows, table = [], []
    for n in [int(s) for s in a.n.split(",")]:
        x = _vectors(n, a.dim)
        cfg = {
            "dim": a.dim,
            "k": K,
            "device": a.device,
            "memory_mb": a.memory_mb,
            "workload": "random unit vectors, 1% duplicates",
        }
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(dev)
        index = _engine.NeighborIndex(x, backend="torch", device=a.device, memory_mb=a.memory_mb)
        ids = np.arange(n)
        t0 = time.perf_counter()
        d, got_ids, _ = index.search(x, K, exclude="position", query_ids=ids)
        sync()
        first = time.perf_counter() - t0
        warm = []
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            d, got_ids, _ = index.search(x, K, exclude="position", query_ids=ids)
            sync()
            warm.append(time.perf_counter() - t0)
        peak = torch.cuda.max_memory_allocated(dev) / 2**20 if cuda else float("nan")

        # floor: the same blocked matmul + topk, nothing else
        pool = index._torch_pool
        block = max(1, (a.memory_mb << 20) // (4 * n))
        floor = []
        for _ in range(a.repeats):
            sync()
            t0 = time.perf_counter()
            with torch.inference_mode():
                for s in range(0, n, block):
                    torch.topk(pool[s : s + block] @ pool.T, K + 1 + index.margin, dim=1)
            sync()
            floor.append(time.perf_counter() - t0)

        # check: 6th distance of sampled rows against float64 brute force on the device
        pick = np.sort(np.random.default_rng(1).choice(n, min(SAMPLE, n), replace=False))
        with torch.inference_mode():
            p64 = pool.double()
            dd = torch.cdist(p64[torch.from_numpy(pick).to(dev)], p64)
            dd[torch.arange(pick.size, device=dev), torch.from_numpy(pick).to(dev)] = float("inf")
            truth = torch.topk(dd, K, dim=1, largest=False).values[:, K - 1].cpu().numpy()
            del p64, dd
        ok = float((np.abs(d[pick, K - 1] - truth) <= 1e-6).mean())

        # numpy brute force on the CPU, same vectors, a sample of the queries
        m = n if a.numpy_queries <= 0 else min(n, a.numpy_queries)
        rows_np = np.arange(n) if m == n else np.sort(np.random.default_rng(2).choice(n, m, replace=False))
        t0 = time.perf_counter()
        np_ids, np_d = knn_numpy(x, rows_np, K)
        np_s = time.perf_counter() - t0
        agree = float(same_neighbours(got_ids[rows_np], d[rows_np], np_ids, np_d).mean())
        d_diff = float(np.abs(d[rows_np] - np_d).max())

        w = np.array(warm)
        f = np.array(floor)
        base = {"indicator": "knn", "mode": "exact", "x": n, "config_json": cfg, "cpu": name}
        rows += [
            {**base, "provider": "instructfast_torch", "metric": "seconds_first", "unit": "s", "p50": first},
            {
                **base,
                "provider": "instructfast_torch",
                "metric": "seconds",
                "unit": "s",
                "p50": float(np.median(w)),
                "p20": float(np.quantile(w, 0.2)),
                "p80": float(np.quantile(w, 0.8)),
            },
            {
                **base,
                "provider": "instructfast_torch",
                "metric": "kth_within_1e-6_of_float64",
                "unit": "fraction",
                "p50": ok,
            },
            {**base, "provider": "instructfast_torch", "metric": "peak_device_memory", "unit": "MiB", "p50": peak},
            {
                **base,
                "provider": "torch_topk_floor",
                "metric": "seconds",
                "unit": "s",
                "p50": float(np.median(f)),
                "p20": float(np.quantile(f, 0.2)),
                "p80": float(np.quantile(f, 0.8)),
            },
        ]
        np_cfg = {**cfg, "numpy_queries": m, "threads": _common.cores(), "sample_seed": 2}
        np_base = {**base, "config_json": np_cfg}
        rows += [
            {**np_base, "provider": "numpy_bruteforce", "metric": "seconds", "unit": "s", "p50": np_s},
            {
                **np_base,
                "provider": "numpy_bruteforce",
                "metric": "seconds_extrapolated",
                "unit": "s",
                "p50": np_s * n / m,
            },
            {
                **np_base,
                "provider": "instructfast_torch",
                "metric": "speedup_vs_numpy",
                "unit": "x",
                "p50": np_s * n / m / float(np.median(w)),
            },
            {
                **np_base,
                "provider": "instructfast_torch",
                "metric": "ids_equal_numpy",
                "unit": "fraction",
                "p50": agree,
            },
            {
                **np_base,
                "provider": "instructfast_torch",
                "metric": "max_distance_diff_numpy",
                "unit": "distance",
                "p50": d_diff,
            },
            {
                **np_base,
                "provider": "instructfast_torch",
                "metric": "target:ids_equal_numpy",
                "unit": "pass",
                "p50": 1.0 if agree == 1.0 else 0.0,
                "config_json": {**np_cfg, "value": agree, "target": "== 1"},
            },
        ]
        line = {
            "n": n,
            "first_s": round(first, 3),
            "warm_s": round(float(np.median(w)), 3),
            "floor_s": round(float(np.median(f)), 3),
            "kth_ok": ok,
            "peak_mib": round(peak, 1),
            "numpy_queries": m,
            "numpy_s": round(np_s, 3),
            "ids_equal_numpy": agree,
            "max_d_diff": d_diff,
        }
        table.append(line)
        print(json.dumps(line), flush=True)
        del index, pool, x
    a.out.mkdir(parents=True, exist_ok=True)
    path = _common.append_results(a.out / "knn_gpu.csv", rows)
    print(f"wrote {path}")
    print(
        "| n | first search s | warm search s | matmul+topk floor s | 6th dist ok | peak MiB | numpy queries "
        "| numpy s | ids = numpy | max dist diff |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for t in table:
        print(
            f"| {t['n']:,} | {t['first_s']} | {t['warm_s']} | {t['floor_s']} | {t['kth_ok']:.4f} | {t['peak_mib']} "
            f"| {t['numpy_queries']:,} | {t['numpy_s']} | {t['ids_equal_numpy']:.4f} | {t['max_d_diff']:.2e} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
