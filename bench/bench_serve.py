"""Load test of ``instructfast serve`` on the loopback interface: dynamic batching against one request at a time.

    flock /tmp/instructfast-bench.lock .venv/bin/python bench/bench_serve.py            # ~15 min on 2 busy cores
    .venv/bin/python bench/bench_serve.py --smoke                                        # text statistics, seconds

Workload: Alpaca records (``../shared/data/alpaca_5000.json``, shuffled with a seed) of at most
``--max-chars`` characters, scored with the offline indicators: text statistics, perplexity
(SmolLM2-135M) and ``knn_6`` against a reference pool of ``--pool`` other records (MiniLM).

1. **Closed loop.** ``c`` clients (1, 8, 32), each sending requests of ``s`` records (1, 16) and
   waiting for the answer before the next, for ``--duration`` seconds (then the requests in flight
   finish); rows/s, p50/p95/p99 latency, errors, and the mean merged batch from the server's
   Prometheus counters. Each configuration runs against the batching server and at once against
   the same server with batching off (``--max-wait-ms 0 --max-batch-rows 1``: one ``score_batch``
   per request, the unbatched baseline), both up side by side, so a pair sees the same machine load.
   After the 32 x 1 pair, ``instructfast.score()`` in this process on the rows that run scored
   (offline, the ceiling).
2. **Open loop.** Requests of one record at fixed rates (``--rates`` times the best closed-loop
   1-record rate, up to 2x) for ``--open-duration`` seconds each against a server with a small queue
   (``--open-queue-rows``): below saturation every request should succeed; above it the excess
   should be refused at once with 503 (not time out), and the server's memory should stay flat.

Everything runs on 127.0.0.1, every phase is bounded in time (clients stop issuing at their
deadline; in-flight requests time out after ``--closed-timeout`` / ``--timeout`` s) and the servers are stopped at the
end. torch runs ``--torch-threads`` threads (OMP_NUM_THREADS) in every process: on a shared 2-core
machine two threads that spin-wait for each other are many times slower than one.
Writes ``serve.md`` and ``serve.csv`` into ``--out`` (default bench/results).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _common import RESULTS_DIR, SHARED_DATA, append_results, config_json, machine_info

INDICATORS = "textstats,perplexity,knn_6"


def load(args: argparse.Namespace) -> tuple[list[dict], list[dict]]:
    rows = json.loads((SHARED_DATA / "alpaca_5000.json").read_text(encoding="utf-8"))
    rows = [r for r in rows if len(r["instruction"]) + len(r["input"]) + len(r["output"]) <= args.max_chars]
    random.Random(args.seed).shuffle(rows)
    return rows[: args.pool], rows[args.pool :]


class Server:
    """``instructfast serve`` in a child process on 127.0.0.1 (port picked by the OS)."""

    def __init__(self, args: argparse.Namespace, extra: list[str], log: Path) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": str(args.torch_threads), "HF_HUB_OFFLINE": "1"}
        cmd = [sys.executable, "-m", "instructfast", "serve", "--host", "127.0.0.1", "--port", "0",
               "-i", args.indicators, "--no-access-log", "--log-level", "info", *extra]  # fmt: skip
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            self._wait_ready()
        except BaseException:
            self.proc.kill()  # never leave a server behind
            self.proc.wait()
            raise

    def _wait_ready(self) -> None:
        log = self.log
        deadline = time.monotonic() + 300
        while not (m := re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", log.read_text())):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start:\n{log.read_text()}")
            time.sleep(0.1)
        self.url = m.group(1)
        import httpx

        while httpx.get(self.url + "/readyz", timeout=10).status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not ready:\n{log.read_text()}")
            time.sleep(0.2)

    def metrics(self) -> dict[str, float]:
        import httpx
        from prometheus_client.parser import text_string_to_metric_families

        out = {}
        for fam in text_string_to_metric_families(httpx.get(self.url + "/metrics", timeout=30).text):
            for s in fam.samples:
                key = s.name + "".join(f"|{k}={v}" for k, v in sorted(s.labels.items()))
                out[key] = s.value
        return out

    def rss_mib(self) -> float:
        import psutil

        return psutil.Process(self.proc.pid).memory_info().rss / 2**20

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))]


def closed_loop(server: Server, records: list[dict], clients: int, size: int, args: argparse.Namespace) -> dict:
    import httpx

    cursor = iter(range(10**9))
    lock = threading.Lock()
    lat: list[float] = []
    used: list[int] = []
    errors: dict[str, int] = {}
    before = server.metrics()
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    stop_at = t0 + args.duration

    def client() -> None:
        with httpx.Client(base_url=server.url, timeout=args.timeout) as c:
            while time.perf_counter() < stop_at:
                with lock:
                    start = next(cursor) * size
                body = [records[(start + k) % len(records)] for k in range(size)]
                t = time.perf_counter()
                try:
                    r = c.post("/score", json=body, timeout=args.closed_timeout)
                    status = str(r.status_code)
                except httpx.TimeoutException:
                    status = "timeout"
                with lock:
                    if status == "200":
                        lat.append(time.perf_counter() - t)
                        used.extend(range(start, start + size))
                    else:
                        errors[status] = errors.get(status, 0) + 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    after = server.metrics()

    def d(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    batches = d("instructfast_batch_rows_count")
    return {
        "clients": clients,
        "size": size,
        "requests": len(lat),
        "rows": len(used),
        "seconds": wall,
        "rows_s": len(used) / wall,
        "p50_ms": 1000 * pct(lat, 50),
        "p95_ms": 1000 * pct(lat, 95),
        "p99_ms": 1000 * pct(lat, 99),
        "mean_batch_rows": d("instructfast_batch_rows_sum") / batches if batches else float("nan"),
        "mean_batch_requests": d("instructfast_batch_requests_sum") / batches if batches else float("nan"),
        "errors": errors,
        "load": [round(x, 2) for x in (*load0, *os.getloadavg())],
        "used": sorted(set(i % len(records) for i in used)),
    }


async def _open_rate(server: Server, records: list[dict], rate: float, args: argparse.Namespace) -> dict:
    import httpx

    n = max(1, round(rate * args.open_duration))
    outcome: dict[str, int] = {}
    lat: list[float] = []
    limits = httpx.Limits(max_connections=512, max_keepalive_connections=512)
    async with httpx.AsyncClient(base_url=server.url, timeout=args.timeout, limits=limits) as c:

        async def one(i: int) -> None:
            t = time.perf_counter()
            try:
                r = await c.post("/score", json=[records[i % len(records)]])
                key = str(r.status_code)
                if r.status_code == 503 and "retry-after" not in r.headers:
                    key = "503 without Retry-After"
            except httpx.TimeoutException:
                key = "timeout"
            except httpx.TransportError as e:
                key = type(e).__name__
            outcome[key] = outcome.get(key, 0) + 1
            if key == "200":
                lat.append(time.perf_counter() - t)

        t0 = time.perf_counter()
        tasks = []
        for i in range(n):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
        wall = time.perf_counter() - t0
    return {
        "sent": n,
        "outcome": outcome,
        "seconds": wall,
        "p50_ms": 1000 * pct(lat, 50),
        "p99_ms": 1000 * pct(lat, 99),
    }


def open_loop(server: Server, records: list[dict], peak: float, args: argparse.Namespace) -> list[dict]:
    out = []
    rss0 = server.rss_mib()
    for f in args.rates:
        load0 = os.getloadavg()
        res = asyncio.run(_open_rate(server, records, f * peak, args))
        res.update(factor=f, rate=f * peak, rss_before=rss0 if not out else out[-1]["rss_after"],
                   rss_after=server.rss_mib(), load=[round(x, 2) for x in (*load0, *os.getloadavg())])  # fmt: skip
        out.append(res)
        print(f"  open loop {f:.2f}x peak ({f * peak:.1f} req/s): {res['outcome']} p99 {res['p99_ms']:.0f} ms "
              f"rss {res['rss_after']:.0f} MiB", flush=True)  # fmt: skip
    return out


def offline(records: list[dict], used: list[int], pool: str, args: argparse.Namespace) -> dict:
    import instructfast

    rows = [records[i] for i in used]
    kw = {"indicators": args.indicators.split(","), "options": {"knn_pool": pool} if "knn" in args.indicators else {}}
    instructfast.score(rows[:4], **kw)  # models loaded and warm, as the servers' are
    load0 = os.getloadavg()
    t = time.perf_counter()
    instructfast.score(rows, **kw)
    dt = time.perf_counter() - t
    return {"rows": len(rows), "seconds": dt, "rows_s": len(rows) / dt, "load": [*load0, *os.getloadavg()]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--max-chars", type=int, default=300, help="records at most this long (instruction+input+output)")
    p.add_argument("--pool", type=int, default=500, help="records in the knn reference pool (not scored)")
    p.add_argument("--clients", default="1,8,32")
    p.add_argument("--sizes", default="1,16")
    p.add_argument("--duration", type=float, default=20.0, help="seconds each closed-loop run issues requests")
    p.add_argument("--rates", default="0.5,1,1.5,2", help="open-loop rates as multiples of the closed-loop peak")
    p.add_argument("--open-duration", type=float, default=15.0)
    p.add_argument("--open-queue-rows", type=int, default=32, help="the open-loop server's queue (rows)")
    p.add_argument("--timeout", type=float, default=60.0, help="open-loop client timeout per request, seconds")
    p.add_argument(
        "--closed-timeout", type=float, default=600.0, help="closed-loop client timeout (a 32 x 16 round is long)"
    )
    p.add_argument("--torch-threads", type=int, default=1)
    p.add_argument("--max-wait-ms", type=float, default=5.0, help="the batching servers' serve_max_wait_ms")
    p.add_argument("--name", default="serve", help="results go to NAME.md and NAME.csv")
    p.add_argument("--indicators", default=INDICATORS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=RESULTS_DIR)
    p.add_argument("--smoke", action="store_true", help="text statistics only, 2 s runs, results to a temporary folder")
    args = p.parse_args()
    if args.smoke:
        args.indicators, args.duration, args.open_duration, args.pool = "textstats", 2.0, 2.0, 0
        args.clients, args.rates = "1,8", "0.5,2"
        args.out = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    args.clients = [int(x) for x in args.clients.split(",")]
    args.sizes = [int(x) for x in args.sizes.split(",")]
    args.rates = [float(x) for x in args.rates.split(",")]
    os.environ["OMP_NUM_THREADS"] = str(args.torch_threads)  # this process's offline run; before torch loads
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    pool_rows, records = load(args)
    work = Path(tempfile.mkdtemp(prefix="bench-serve-work-"))
    extra: list[str] = []
    pool = ""
    if "knn" in args.indicators:
        import instructfast

        pool = str(work / "pool")
        instructfast.build_pool(pool_rows).save(pool)
        extra = ["--option", f"knn_pool={pool}"]
    print(f"{len(records)} records of <= {args.max_chars} chars; pool {len(pool_rows)}; indicators {args.indicators}")

    closed: dict[str, list[dict]] = {"batched": [], "unbatched": []}
    modes = {"batched": ["--max-queue-rows", "8192", "--max-wait-ms", str(args.max_wait_ms)],
             "unbatched": ["--max-queue-rows", "8192", "--max-wait-ms", "0", "--max-batch-rows", "1"]}  # fmt: skip
    # Both servers stay up and each configuration runs on one, then at once on the other, so the two
    # numbers of a pair see the same load from the rest of this shared machine.
    servers = {}
    off: dict[str, Any] = {}
    try:
        for mode, flags in modes.items():
            servers[mode] = Server(args, extra + flags, work / f"{mode}.log")
        for size in args.sizes:
            for clients in args.clients:
                for mode, server in servers.items():
                    res = closed_loop(server, records, clients, size, args)
                    closed[mode].append(res)
                    print(f"  {mode:<9} {clients:>2} clients x {size:>2} records: {res['rows_s']:7.2f} rows/s "
                          f"p50 {res['p50_ms']:7.0f} ms p99 {res['p99_ms']:7.0f} ms batch {res['mean_batch_rows']:.1f} "
                          f"rows errors {res['errors']} load {res['load']}", flush=True)  # fmt: skip
                if (clients, size) == (max(args.clients), 1):  # the offline ceiling on those rows, right after
                    off = offline(records, closed["batched"][-1]["used"], pool, args)
                    print(f"  offline score(): {off['rows']} rows, {off['rows_s']:.2f} rows/s", flush=True)
    finally:
        for server in servers.values():
            server.stop()
    peak = max(r["requests"] / r["seconds"] for r in closed["batched"] if r["size"] == 1)
    open_flags = ["--max-queue-rows", str(args.open_queue_rows), "--max-wait-ms", str(args.max_wait_ms)]
    server = Server(args, [*extra, *open_flags], work / "open.log")
    try:
        opened = open_loop(server, records, peak, args)
    finally:
        server.stop()
    write(args, closed, off, peak, opened)


def write(args: argparse.Namespace, closed: dict[str, list[dict]], off: dict, peak: float, opened: list[dict]) -> None:
    info = machine_info()
    big = max(args.clients)
    base = {(r["clients"], r["size"]): r for r in closed["unbatched"]}
    b = next(r for r in closed["batched"] if (r["clients"], r["size"]) == (big, 1))
    vs_unbatched = b["rows_s"] / base[(big, 1)]["rows_s"]
    vs_offline = b["rows_s"] / off["rows_s"]
    cmd = " ".join(["bench/bench_serve.py", *sys.argv[1:]])
    lines = [
        "# instructfast serve under load (loopback): dynamic batching vs one request at a time",
        "",
        f"`flock /tmp/instructfast-bench.lock .venv/bin/python {cmd}`",
        "",
        f"Indicators `{args.indicators}` (SmolLM2-135M perplexity, knn_6 against a MiniLM pool of {args.pool} records); "
        f"Alpaca records of <= {args.max_chars} characters; closed-loop runs issue requests for {args.duration:g} s "
        f"each; batching servers wait `serve_max_wait_ms` = {args.max_wait_ms:g}; torch threads {args.torch_threads} "
        "in every process; servers and clients share this machine.",
        "",
        "## Closed loop",
        "",
        "| server | clients | records/request | rows/s | p50 ms | p95 ms | p99 ms | mean batch rows | mean batch requests"
        " | requests | errors | load before (1/5/15 min) | load after |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|",
    ]
    for mode, runs in closed.items():
        for r in runs:
            lines.append(
                f"| {mode} | {r['clients']} | {r['size']} | {r['rows_s']:.2f} | {r['p50_ms']:.0f} | {r['p95_ms']:.0f} "
                f"| {r['p99_ms']:.0f} | {r['mean_batch_rows']:.1f} | {r['mean_batch_requests']:.1f} | {r['requests']} "
                f"| {r['errors'] or 0} | {r['load'][:3]} | {r['load'][3:]} |"
            )
    ok_u = "PASS" if vs_unbatched >= 1.5 else "FAIL"
    ok_o = "PASS" if vs_offline >= 0.7 else "FAIL"
    lines += [
        "",
        f"Offline `instructfast.score()` on the {off['rows']} rows the batched {big} x 1 run scored: "
        f"**{off['rows_s']:.2f} rows/s** (load {[round(x, 2) for x in off['load']]}).",
        "",
        f"- {big} clients x 1 record, batched vs unbatched: **{vs_unbatched:.2f}x** (target >= 1.5x): {ok_u}",
        f"- {big} clients x 1 record, batched vs offline score(): **{vs_offline:.0%}** (target >= 70%): {ok_o}",
        "",
        f"## Open loop (1-record requests; peak = best closed-loop 1-record rate, {peak:.2f} req/s; "
        f"queue {args.open_queue_rows} rows)",
        "",
        "| rate | req/s | sent | outcomes | p50 ms (200s) | p99 ms (200s) | server RSS before -> after MiB | load before | load after |",
        "|---:|---:|---:|---|---:|---:|---|---|---|",
    ]
    for r in opened:
        lines.append(
            f"| {r['factor']:g}x | {r['rate']:.2f} | {r['sent']} | {r['outcome']} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} "
            f"| {r['rss_before']:.0f} -> {r['rss_after']:.0f} | {r['load'][:3]} | {r['load'][3:]} |"
        )
    timeouts = sum(r["outcome"].get("timeout", 0) for r in opened)
    growth = opened[-1]["rss_after"] - opened[0]["rss_after"]  # the first rate warms the models up
    lines += [
        "",
        f"- timeouts in the open loop: {timeouts}; refusals are 503 with Retry-After: "
        f"{'yes' if not any('without' in k for r in opened for k in r['outcome']) else 'NO'}",
        f"- server RSS after the first open-loop rate (models warm) to after the last: {growth:+.0f} MiB",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()),
        "",
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.md").write_text("\n".join(lines), encoding="utf-8")
    cfg = {"indicators": args.indicators, "max_chars": args.max_chars, "torch_threads": args.torch_threads,
           "max_wait_ms": args.max_wait_ms}  # fmt: skip
    rows: list[dict[str, Any]] = []
    for mode, runs in closed.items():
        for r in runs:
            for metric, unit in (("rows_s", "rows/s"), ("p50_ms", "ms"), ("p99_ms", "ms"), ("mean_batch_rows", "rows")):
                rows.append({"indicator": "serve", "provider": mode, "mode": f"closed-{r['size']}", "metric": metric,
                             "unit": unit, "x": r["clients"], "p50": r[metric], "config_json": config_json(cfg)})  # fmt: skip
    rows.append({"indicator": "serve", "provider": "offline", "mode": "score", "metric": "rows_s", "unit": "rows/s",
                 "x": off["rows"], "p50": off["rows_s"], "config_json": config_json(cfg)})  # fmt: skip
    for r in opened:
        for metric in ("200", "503", "timeout"):
            rows.append({"indicator": "serve", "provider": "batched", "mode": "open-1", "metric": f"share_{metric}",
                         "unit": "fraction", "x": r["factor"], "p50": r["outcome"].get(metric, 0) / r["sent"],
                         "config_json": config_json(cfg)})  # fmt: skip
    append_results(args.out / f"{args.name}.csv", rows)
    print(f"wrote {args.out / args.name}.md and .csv")


if __name__ == "__main__":
    main()
