"""MTLD + word statistics: instructfast against lexicalrichness and lexical_diversity, and streaming memory.

Usage::

    python bench/bench_textstats.py [--rows 1000000] [--peer-rows 200000] [--repeats 5] [--out bench/results]

Workload: the ``output`` texts of alpaca_5000, alpaca_gpt4_demo_1k and dolly_filtered_3k
(../shared/data; the in-repo tests/data sample when absent), tiled to ``--rows`` rows and
shuffled with a fixed seed, cached as Parquet under bench/.cache/. Tokens are lexicalrichness
words, counted once with instructfast's ``words`` column after checking that column (and
``unique_words`` and ``mtld``) equal to lexicalrichness on every distinct text.

Each provider runs in its own subprocess (as RapidFuzz's bench/benchmark.py), so imports,
memory and GIL state do not leak between them; timings are per pass over the rows, gc off.
Results are upserted into ``<out>/textstats.csv`` (long format, see _common.py) and summarised in
``<out>/textstats.md``.

The cost of UTF-8 validation in the scan (issue 14: at most 2% of tokens/s)::

    python bench/bench_textstats.py --utf8-cost e462f49 [--rows 1000000] [--repeats 5]

builds the core twice with the same compiler command (``c++ -O3 -flto``, no CMake), from the sources
at that commit (before) and from this checkout (after), loads both into one process and times them
interleaved on the same rows, one thread, median of ``--repeats`` passes each; results go to
``<out>/textstats.csv`` (provider ``core@<ref>`` / ``core@worktree``) and ``<out>/utf8_cost.md``.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common
from tests.references import lexicalrichness_pass

INDICATOR = "mtld"
THRESHOLD = 0.72
ROW_GROUP_ROWS = 65_536  # Parquet row groups of the cached files; the CLI's default batch size too.
MIN_PASS_S = 0.05  # a timed sample repeats the call until it lasts at least this long (RapidFuzz: 50 ms)
WARMUP_LIMIT_S = 2.0  # a first pass longer than this is kept as a sample instead of discarded as warm-up
POLL_S = 0.02  # RSS polling period of the CLI child
PEERS = ("instructfast_py", "lexicalrichness", "lexical_diversity")
MiB = 2**20
QUIET_CPUS = 0.3  # before each measurement, wait until other processes use fewer CPUs than this


# ============================================================================ workers (subprocesses)


def _time_passes(fn, repeats: int) -> tuple[list[float], list[float], int]:
    """Wall and process-CPU seconds per call of ``fn``: ``repeats`` samples, each looping until >= MIN_PASS_S."""
    gc.collect()
    gc.disable()
    try:
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        first, first_cpu = time.perf_counter() - t0, time.process_time() - c0
        loops = 1 if first >= MIN_PASS_S else math.ceil(MIN_PASS_S / max(first, 1e-9))
        samples, cpu = ([first], [first_cpu]) if first > WARMUP_LIMIT_S else ([], [])
        while len(samples) < repeats:
            c0, t0 = time.process_time(), time.perf_counter()
            for _ in range(loops):
                fn()
            samples.append((time.perf_counter() - t0) / loops)
            cpu.append((time.process_time() - c0) / loops)
        return samples, cpu, loops
    finally:
        gc.enable()


def _worker(provider: str, parquet: str, n: int, repeats: int, threads: int) -> dict:
    import pyarrow.parquet as pq

    col = pq.read_table(parquet, columns=["output"]).slice(0, n).column("output")
    extra: dict = {}
    if provider == "instructfast":
        from instructfast._native import IMPL
        from instructfast.ops.textstats import text_stats

        if IMPL != "native":
            raise RuntimeError(f"expected the native core, got {IMPL}")
        arr = col.combine_chunks()  # one contiguous Arrow array, read in place by the core

        def fn():
            return text_stats(arr, threshold=THRESHOLD, threads=threads)

        extra["words"] = int(fn()["words"].sum())
    else:
        texts = col.to_pylist()  # the peers take Python str; conversion is not timed
        if provider == "instructfast_py":
            from instructfast.ops import textstats_py as mtld_py

            def fn():
                return mtld_py.text_stats(texts, threshold=THRESHOLD)

            extra["words"] = int(fn()["words"].sum())
        elif provider == "lexicalrichness":

            def fn():
                return lexicalrichness_pass(texts)

            extra["words"] = fn()
        elif provider == "lexical_diversity":
            ld = _common.import_lexical_diversity()

            def fn():
                words = 0
                for t in texts:
                    tokens = ld.tokenize(t)
                    ld.mtld(tokens)  # threshold 0.72 is fixed inside lexical_diversity
                    words += len(tokens)
                return words

            extra["own_tokens"] = fn()  # its own tokenizer's count (differs from lexicalrichness)
        else:
            raise ValueError(f"unknown provider {provider!r}")
    samples, cpu, loops = _time_passes(fn, repeats)
    return {
        "provider": provider,
        "rows": n,
        "threads": threads,
        "samples": samples,
        "cpu": cpu,
        "loops": loops,
        **extra,
    }


def wait_quiet(max_wait: float, limit: float = QUIET_CPUS) -> float:
    """Wait (at most ``max_wait`` s) until other work uses under ``limit`` CPUs; return the last reading."""
    deadline = time.monotonic() + max_wait
    busy = _common.busy_cpus()
    while busy >= limit and time.monotonic() < deadline:
        busy = _common.busy_cpus()
    return busy


def run_worker(provider: str, parquet: Path, n: int, repeats: int, threads: int = 1, quiet_wait: float = 0.0) -> dict:
    env = dict(os.environ)
    # Force the implementation explicitly: an explicit request that cannot load raises (no silent fallback).
    env["INSTRUCTFAST_IMPL"] = "python" if provider == "instructfast_py" else "native"
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        provider,
        "--parquet",
        str(parquet),
        "--worker-rows",
        str(n),
        "--repeats",
        str(repeats),
        "--worker-threads",
        str(threads),
    ]
    busy = wait_quiet(quiet_wait) if quiet_wait > 0 else math.nan
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {provider} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["busy_before"] = busy
    best = min(res["samples"])
    i = res["samples"].index(best)
    print(
        f"  {provider:<18} threads={threads} rows={n:>9,}: best {best:8.3f} s/pass "
        f"(CPU/wall {res['cpu'][i] / best:.2f}), {len(res['samples'])} samples x {res['loops']} loops, "
        f"{busy:.2f} CPUs busy before ({time.perf_counter() - t0:.0f} s wall)",
        flush=True,
    )
    return res


# ============================================================================ workload


def build_workload(rows: int, seed: int, data_dir: Path | None) -> tuple[Path, dict]:
    """The cached Parquet workload (instruction, input, output) and its description."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols, source = _common.load_records(data_dir)
    base = pa.table(cols)
    digest = hashlib.sha1(json.dumps(cols["output"]).encode("utf-8")).hexdigest()[:10]
    _common.CACHE_DIR.mkdir(parents=True, exist_ok=True)
    path = _common.CACHE_DIR / f"mtld_{digest}_{rows}r_seed{seed}.parquet"
    idx = np.random.default_rng(seed).permutation(np.arange(rows) % base.num_rows)
    if not path.is_file():
        table = base.take(pa.array(idx))
        tmp = path.with_name(path.name + ".tmp")
        pq.write_table(table, tmp, row_group_size=ROW_GROUP_ROWS)
        os.replace(tmp, path)
    desc = {
        "source": source,
        "distinct_texts": base.num_rows,
        "rows": rows,
        "seed": seed,
        "base_index": idx,
        "base_outputs": cols["output"],
        "digest": digest,
    }
    return path, desc


def prefix_file(path: Path, n: int) -> Path:
    """The first ``n`` rows of the workload as their own Parquet file (cached)."""
    import pyarrow.parquet as pq

    if n == pq.ParquetFile(path).metadata.num_rows:
        return path
    out = path.with_name(path.stem + f"_first{n}.parquet")
    if not out.is_file():
        table = pq.read_table(path).slice(0, n)
        tmp = out.with_name(out.name + ".tmp")
        pq.write_table(table, tmp, row_group_size=ROW_GROUP_ROWS)
        os.replace(tmp, out)
    return out


def verify_and_count(parquet: Path, desc: dict) -> dict:
    """Check instructfast against lexicalrichness on every distinct text; count tokens per row."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from lexicalrichness import LexicalRichness

    from instructfast.ops.textstats import text_stats

    base = desc["base_outputs"]
    st = text_stats(pa.array(base), threshold=THRESHOLD)
    mismatch = {"words": 0, "unique_words": 0, "mtld": 0}
    for i, t in enumerate(base):
        lr = LexicalRichness(t)
        mismatch["words"] += int(lr.words != st["words"][i])
        mismatch["unique_words"] += int(lr.terms != st["unique_words"][i])
        ref = lr.mtld(threshold=THRESHOLD) if lr.words else math.nan
        same = (math.isnan(ref) and math.isnan(st["mtld"][i])) or ref == st["mtld"][i]
        mismatch["mtld"] += int(not same)
    # The count itself: instructfast's words column over the whole workload, once.
    col = pq.read_table(parquet, columns=["output"]).column("output")
    words = text_stats(col, threshold=THRESHOLD, mtld=False)["words"]
    if not np.array_equal(words, st["words"][desc["base_index"]]):
        raise RuntimeError("words per row of the workload differ from those of its distinct texts")
    lengths = np.array([len(t.encode("utf-8")) for t in base], dtype=np.int64)[desc["base_index"]]
    return {"mismatch": mismatch, "checked": len(base), "cum_words": np.cumsum(words), "cum_bytes": np.cumsum(lengths)}


# ============================================================================ streaming memory


def _cli_command() -> list[str]:
    exe = Path(sys.executable).parent / "instructfast"
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "instructfast"]


# ru_maxrss has to come from a small, fresh parent: Linux carries the forking process's resident
# high-water mark into the child across exec (exec_mmap -> setmax_mm_hiwater_rss), so a child
# spawned straight from this process, which holds the workload, would report our RSS, not its own.
_RSS_WRAPPER = r"""
import json, resource, subprocess, sys, time
cmd = json.loads(sys.argv[1])
t0 = time.perf_counter()
p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
wall = time.perf_counter() - t0
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"rc": p.returncode, "maxrss": ru.ru_maxrss * 1024, "wall": wall,
                  "out": p.stdout.decode(errors="replace")[-4000:]}))
"""


def measure_peak_rss(cmd: list[str]) -> dict:
    """Run ``cmd`` under a fresh wrapper; its peak RSS from the kernel and from psutil polling every 20 ms."""
    import psutil

    wrapper = subprocess.Popen([sys.executable, "-c", _RSS_WRAPPER, json.dumps(cmd)], stdout=subprocess.PIPE)
    polled = 0
    stop = threading.Event()

    def poll():
        nonlocal polled
        try:
            parent = psutil.Process(wrapper.pid)
        except psutil.Error:
            return
        while not stop.is_set():
            try:
                rss = sum(c.memory_info().rss for c in parent.children(recursive=True))
            except psutil.Error:  # a child exited between listing and reading
                rss = 0
            polled = max(polled, rss)
            time.sleep(POLL_S)

    th = threading.Thread(target=poll, daemon=True)
    th.start()
    out, _ = wrapper.communicate()
    stop.set()
    th.join()
    if wrapper.returncode != 0:
        raise RuntimeError(f"RSS wrapper failed ({wrapper.returncode})")
    res = json.loads(out.decode().strip().splitlines()[-1])
    if res["rc"] != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({res['rc']}):\n{res['out']}")
    return {"maxrss": res["maxrss"], "polled": polled, "wall": res["wall"], "stdout": res["out"]}


def stream_memory(workload: Path, sizes: list[int], quiet_wait: float = 0.0) -> list[dict]:
    import pyarrow.parquet as pq

    results = []
    base = measure_peak_rss([sys.executable, "-c", "import instructfast.cli, instructfast.pipeline, pyarrow.parquet"])
    results.append({"rows": 0, **base, "file_bytes": 0})
    print(f"  import only: peak RSS {base['maxrss'] / MiB:7.1f} MiB", flush=True)
    for n in sizes:
        src = prefix_file(workload, n)
        dst = _common.CACHE_DIR / f"scored_{n}r.parquet"
        cmd = _cli_command() + ["score", str(src), "-o", str(dst), "-i", "textstats", "--no-progress", "--restart"]
        if quiet_wait > 0:
            wait_quiet(quiet_wait)
        r = measure_peak_rss(cmd)
        got = pq.ParquetFile(dst).metadata.num_rows
        if got != n:
            raise RuntimeError(f"CLI wrote {got} rows for {n} input rows")
        dst.unlink()
        r.update(rows=n, file_bytes=src.stat().st_size, cmd=cmd)
        results.append(r)
        print(
            f"  cli {n:>9,} rows: peak RSS {r['maxrss'] / MiB:7.1f} MiB (polled {r['polled'] / MiB:7.1f}), "
            f"{r['wall']:.1f} s",
            flush=True,
        )
    return results


# ============================================================================ report


def _q(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q))


def _fmt(v: float, digits: int = 3) -> str:
    if v >= 1e6:
        return f"{v / 1e6:,.{digits - 1}f} M"
    if v >= 1e3:
        return f"{v / 1e3:,.{digits - 1}f} k"
    return f"{v:,.{digits - 1}f}"


# ============================================================================ UTF-8 validation cost

_CORE_FLAGS = ["-O3", "-DNDEBUG", "-std=c++17", "-fPIC", "-shared", "-fvisibility=hidden", "-flto"]


def build_core(ref: str | None, dest: Path) -> Path:
    """The native core of git ``ref`` (None: this checkout) compiled by one fixed command into ``dest``."""
    import sysconfig
    import tarfile

    so = dest / f"_core{sysconfig.get_config_var('EXT_SUFFIX')}"
    if so.is_file() and ref is not None:
        return so
    src = dest / "src"
    if ref is None:
        src = _common.REPO_ROOT
    else:
        src.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(_common.REPO_ROOT), "archive", ref, "csrc", "tools"], capture_output=True, check=True
        ).stdout
        import io

        tarfile.open(fileobj=io.BytesIO(archive)).extractall(src, filter="data")
    gen = dest / "generated"
    gen.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, str(src / "tools" / "gen_unicode_tables.py"), str(gen / "unicode_tables.inc")], check=True
    )
    try:
        includes = subprocess.run(
            [sys.executable, "-m", "pybind11", "--includes"], capture_output=True, text=True, check=True
        ).stdout.split()
    except subprocess.CalledProcessError as e:
        raise SystemExit("--utf8-cost needs pybind11's headers: pip install pybind11") from e
    sources = sorted(str(f) for f in (src / "csrc").glob("*.cpp"))
    cmd = ["c++", *_CORE_FLAGS, *includes, f"-I{src / 'csrc'}", f"-I{gen}", *sources, "-o", str(so), "-lpthread"]
    subprocess.run(cmd, check=True)
    return so


def _load_core(path: Path, name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location("_core", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _utf8_cost_worker(before: str, after: str, parquet: str, n: int, repeats: int) -> dict:
    """Interleaved passes of both cores over the same contiguous Arrow array (one thread)."""
    import pyarrow.parquet as pq

    arr = pq.read_table(parquet, columns=["output"]).slice(0, n).column("output").combine_chunks()
    capsules = arr.__arrow_c_array__()
    cores = {"before": _load_core(Path(before), "before"), "after": _load_core(Path(after), "after")}
    words = {k: int(c.text_stats(*capsules, threshold=THRESHOLD, threads=1)["words"].sum()) for k, c in cores.items()}
    if words["before"] != words["after"]:
        raise RuntimeError(f"the two cores count different words: {words}")
    times: dict[str, list[float]] = {"before": [], "after": []}
    gc.disable()
    for k in range(repeats):
        for name in ("before", "after") if k % 2 == 0 else ("after", "before"):  # alternate who goes first
            t0 = time.perf_counter()
            cores[name].text_stats(*capsules, threshold=THRESHOLD, threads=1)
            times[name].append(time.perf_counter() - t0)
    gc.enable()
    return {"times": times, "words": words["after"], "bytes": int(arr.buffers()[2].size)}


def utf8_cost(ref: str, rows: int, repeats: int, seed: int, data: Path | None, out: Path, quiet_wait: float) -> int:
    machine = _common.machine_info()
    machine["load_start"] = " / ".join(f"{v:.2f}" for v in os.getloadavg())
    workload, desc = build_workload(rows, seed, data)
    dest = _common.CACHE_DIR / "cores"
    before = build_core(ref, dest / f"ref-{ref}")
    after = build_core(None, dest / "worktree")
    if quiet_wait > 0:
        wait_quiet(quiet_wait)
    cmd = [sys.executable, __file__, "--utf8-cost-worker", str(before), str(after), "--parquet", str(workload)]
    cmd += ["--worker-rows", str(rows), "--repeats", str(repeats)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-4000:])
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    machine["load_end"] = " / ".join(f"{v:.2f}" for v in os.getloadavg())
    med = {k: float(np.median(v)) for k, v in res["times"].items()}
    tps = {k: res["words"] / v for k, v in med.items()}
    cost = 1 - tps["after"] / tps["before"]
    cfg = {
        "workload_rows": rows,
        "seed": seed,
        "threads": 1,
        "repeats": repeats,
        "flags": " ".join(_CORE_FLAGS),
        "ref": ref,
    }
    csv_rows = []
    for name, label in (("before", f"core@{ref}"), ("after", "core@worktree")):
        tok = [res["words"] / t for t in res["times"][name]]
        base = {"indicator": INDICATOR, "provider": label, "mode": "threads=1", "x": rows, "config_json": cfg}
        csv_rows.append(
            {
                **base,
                "metric": "tokens_per_s",
                "unit": "tokens/s",
                "p50": _q(tok, 50),
                "p20": _q(tok, 20),
                "p80": _q(tok, 80),
            }
        )
    csv_rows.append(
        {"indicator": INDICATOR, "provider": "core@worktree", "mode": "threads=1", "x": rows, "config_json": cfg,
         "metric": "utf8_validation_cost", "unit": "fraction of tokens/s", "p50": cost}
    )  # fmt: skip
    _common.append_results(out / "textstats.csv", csv_rows)
    lines = [
        "# UTF-8 validation in the text core: cost\n",
        f"Generated by `python bench/bench_textstats.py --utf8-cost {ref} --rows {rows} --repeats {repeats}`.\n",
        f"Machine: {machine['cpu']}, {machine['cores']} cores; load average {machine['load_start']} at start, "
        f"{machine['load_end']} at end (other engineers' work shares these cores).\n",
        f"Workload: the first {rows:,} rows of the MTLD workload ({desc['source']}): {res['words']:,} tokens, "
        f"{res['bytes'] / 2**20:,.1f} MiB of output text, one contiguous Arrow array, one thread.\n",
        f"Both cores built by the same command (`c++ {' '.join(_CORE_FLAGS)}`), loaded into one process, "
        f"timed interleaved (who goes first alternates), {repeats} passes each.\n",
        "| core | median s/pass | median tokens/s | passes (s) |",
        "|---|---:|---:|---|",
    ]
    for name, label in (("before", f"`{ref}` (no validation)"), ("after", "this checkout (validates while it scans)")):
        passes = ", ".join(f"{t:.3f}" for t in res["times"][name])
        lines.append(f"| {label} | {med[name]:.3f} | {_fmt(tps[name])} | {passes} |")
    lines.append(f"\nCost: **{cost * 100:.2f}%** of tokens/s (target: at most 2%).\n")
    (out / "utf8_cost.md").write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="workload rows (default 1,000,000)")
    ap.add_argument(
        "--peer-rows",
        type=int,
        default=200_000,
        help="rows timed for the Python peers and the pure-Python twin (default 200,000; "
        "0 = all rows). The first rows of the same shuffled workload.",
    )
    ap.add_argument("--repeats", type=int, default=5, help="timed passes for instructfast native (default 5)")
    ap.add_argument("--peer-repeats", type=int, default=3, help="timed passes for each peer (default 3)")
    ap.add_argument("--threads", default="1,2", help="native thread counts to time (default 1,2)")
    ap.add_argument(
        "--stream-rows",
        default="100000,300000,1000000",
        help="row counts for the CLI streaming-memory runs (capped at --rows)",
    )
    ap.add_argument(
        "--quiet-wait",
        type=float,
        default=60.0,
        help=f"seconds to wait, before each measurement, for other work to drop under {QUIET_CPUS} "
        "busy CPUs (default 60; 0 = do not wait)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", type=Path, default=None, help="folder of the shared datasets")
    ap.add_argument("--out", type=Path, default=_common.RESULTS_DIR)
    ap.add_argument("--skip-peers", action="store_true", help="time instructfast only")
    ap.add_argument("--skip-stream", action="store_true", help="skip the streaming-memory runs")
    ap.add_argument("--utf8-cost", metavar="REF", help="time the core of git REF against this checkout's (see above)")
    ap.add_argument("--utf8-cost-worker", nargs=2, help=argparse.SUPPRESS)
    # internal: one provider in a subprocess
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--parquet", help=argparse.SUPPRESS)
    ap.add_argument("--worker-rows", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--worker-threads", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        res = _worker(args.worker, args.parquet, args.worker_rows, args.repeats, args.worker_threads)
        print(json.dumps(res))
        return 0
    if args.utf8_cost_worker:
        before, after = args.utf8_cost_worker
        print(json.dumps(_utf8_cost_worker(before, after, args.parquet, args.worker_rows, args.repeats)))
        return 0
    if args.utf8_cost:
        return utf8_cost(args.utf8_cost, args.rows, args.repeats, args.seed, args.data, args.out, args.quiet_wait)

    t_start = time.perf_counter()
    command = "python bench/bench_textstats.py" + (
        "" if argv is None and len(sys.argv) == 1 else " " + " ".join(sys.argv[1:] if argv is None else argv)
    )
    machine = _common.machine_info()
    machine["load_start"] = " / ".join(f"{v:.2f}" for v in os.getloadavg())
    print("machine:", json.dumps(machine), flush=True)
    rows = args.rows
    peer_rows = rows if args.peer_rows <= 0 else min(args.peer_rows, rows)
    thread_counts = [int(t) for t in args.threads.split(",") if t.strip()]
    stream_sizes = sorted({min(int(s), rows) for s in args.stream_rows.split(",") if s.strip()})

    print(f"workload: {rows:,} rows ...", flush=True)
    workload, desc = build_workload(rows, args.seed, args.data)
    check = verify_and_count(workload, desc)
    cum_words, cum_bytes = check["cum_words"], check["cum_bytes"]
    tokens = lambda n: int(cum_words[n - 1])  # noqa: E731
    print(
        f"  {workload.name}: {tokens(rows):,} tokens, {int(cum_bytes[-1]) / MiB:,.0f} MiB of output text; "
        f"lexicalrichness mismatches on {check['checked']:,} distinct texts: {check['mismatch']}",
        flush=True,
    )
    if any(check["mismatch"].values()):
        print("  WARNING: instructfast differs from lexicalrichness; timings compare different work", flush=True)

    workload_cfg = {
        "workload": f"outputs of {desc['source']}, tiled to rows and shuffled",
        "seed": args.seed,
        "threshold": THRESHOLD,
        "workload_rows": rows,
    }

    # ---- timings, one subprocess per provider and thread count
    print("timing ...", flush=True)
    timed = []  # (provider, mode, rows, result)
    sizes = [rows] + ([peer_rows] if peer_rows != rows and not args.skip_peers else [])
    for n in sizes:
        for t in thread_counts:
            timed.append(
                (
                    "instructfast",
                    f"threads={t}",
                    n,
                    run_worker("instructfast", workload, n, args.repeats, t, args.quiet_wait),
                )
            )
    if not args.skip_peers:
        for peer in PEERS:
            timed.append(
                (
                    peer,
                    "threads=1",
                    peer_rows,
                    run_worker(peer, workload, peer_rows, args.peer_repeats, 1, args.quiet_wait),
                )
            )

    csv_rows = []
    summary = {}  # (provider, mode, rows) -> dict of numbers
    for provider, mode, n, res in timed:
        samples = res["samples"]
        tok = tokens(n)
        tps = [tok / s for s in samples]
        rps = [n / s for s in samples]
        repeats = args.repeats if provider == "instructfast" else args.peer_repeats
        cfg = {**workload_cfg, "repeats": repeats, "tokens": tok}
        if provider == "lexical_diversity":
            cfg["own_tokens"] = res["own_tokens"]
        if "words" in res and res["words"] != tok:
            raise RuntimeError(f"{provider} counted {res['words']} words, instructfast {tok}")
        util = [c / w for c, w in zip(res["cpu"], samples)]
        base = {"indicator": INDICATOR, "provider": provider, "mode": mode, "x": n, "config_json": cfg}
        csv_rows.append(
            {
                **base,
                "metric": "cpu_per_wall",
                "unit": "CPUs",
                "p50": _q(util, 50),
                "p20": _q(util, 20),
                "p80": _q(util, 80),
            }
        )
        for metric, unit, vals, best in (
            ("time", "s", samples, min(samples)),
            ("tokens_per_s", "tokens/s", tps, max(tps)),
            ("rows_per_s", "rows/s", rps, max(rps)),
        ):
            base = {
                "indicator": INDICATOR,
                "provider": provider,
                "mode": mode,
                "unit": unit,
                "x": n,
                "config_json": cfg,
            }
            csv_rows.append({**base, "metric": metric, "p50": _q(vals, 50), "p20": _q(vals, 20), "p80": _q(vals, 80)})
            csv_rows.append({**base, "metric": metric + "_best", "p50": best, "p20": None, "p80": None})
        summary[(provider, mode, n)] = {
            "best_tps": max(tps),
            "p20": _q(tps, 20),
            "p50": _q(tps, 50),
            "p80": _q(tps, 80),
            "best_rps": max(rps),
            "best_s": min(samples),
            "samples": len(samples),
            "loops": res["loops"],
            "tokens": tok,
            "util_best": util[samples.index(min(samples))],
            "busy_before": res["busy_before"],
            "own_tokens": res.get("own_tokens"),
        }

    # ---- ratios, each on identical texts
    ratios = []

    def ratio(name, num_key, den_key, note):
        if num_key in summary and den_key in summary:
            r = summary[num_key]["best_tps"] / summary[den_key]["best_tps"]
            ratios.append((name, r, num_key, den_key, note))
            csv_rows.append(
                {
                    "indicator": INDICATOR,
                    "provider": num_key[0],
                    "mode": num_key[1],
                    "metric": name,
                    "unit": "x",
                    "x": num_key[2],
                    "p50": r,
                    "p20": None,
                    "p80": None,
                    "config_json": {
                        **workload_cfg,
                        "vs": f"{den_key[0]} {den_key[1]}",
                        "repeats": args.repeats,
                        "peer_repeats": args.peer_repeats,
                    },
                }
            )

    lr_key = ("lexicalrichness", "threads=1", peer_rows)
    for t in thread_counts:
        ratio(
            "speedup_vs_lexicalrichness",
            ("instructfast", f"threads={t}", peer_rows),
            lr_key,
            f"instructfast {t} thread{'s' if t > 1 else ''} / lexicalrichness 1 thread",
        )
    for peer in ("instructfast_py", "lexical_diversity"):
        ratio("speedup_vs_lexicalrichness", (peer, "threads=1", peer_rows), lr_key, f"{peer} / lexicalrichness")
    for t in thread_counts:
        if t != 1:
            for n in sorted({rows, peer_rows}, reverse=True):
                ratio(
                    "scaling_vs_threads=1",
                    ("instructfast", f"threads={t}", n),
                    ("instructfast", "threads=1", n),
                    f"instructfast {t} threads / 1 thread ({n:,} rows; ideal {t}.0)",
                )

    # ---- streaming memory through the CLI
    stream = []
    if not args.skip_stream:
        print("streaming memory (CLI) ...", flush=True)
        stream = stream_memory(workload, stream_sizes, args.quiet_wait)
        cfg = {
            "command": "instructfast score IN.parquet -o OUT.parquet -i textstats --no-progress --restart",
            "threads": f"default (all {machine['cores']})",
            "batch_rows": 65_536,
            "row_group_rows": ROW_GROUP_ROWS,
            "seed": args.seed,
            "workload": workload_cfg["workload"],
        }
        for r in stream:
            mode = "import_only" if r["rows"] == 0 else "cli_score"
            base = {
                "indicator": INDICATOR,
                "provider": "instructfast",
                "mode": mode,
                "x": r["rows"],
                "config_json": cfg,
            }
            csv_rows.append({**base, "metric": "peak_rss", "unit": "MiB", "p50": r["maxrss"] / MiB})
            csv_rows.append({**base, "metric": "peak_rss_polled", "unit": "MiB", "p50": r["polled"] / MiB})
            if r["rows"]:
                csv_rows.append({**base, "metric": "wall_rows_per_s", "unit": "rows/s", "p50": r["rows"] / r["wall"]})

    machine["load_end"] = " / ".join(f"{v:.2f}" for v in os.getloadavg())
    args.out.mkdir(parents=True, exist_ok=True)
    csv_path = _common.append_results(args.out / "textstats.csv", csv_rows)
    md_path = args.out / "textstats.md"
    md_path.write_text(
        render_md(
            command,
            machine,
            desc,
            check,
            rows,
            peer_rows,
            args,
            summary,
            ratios,
            stream,
            tokens,
            cum_bytes,
            time.perf_counter() - t_start,
        ),
        encoding="utf-8",
    )
    print(f"wrote {csv_path} and {md_path} ({time.perf_counter() - t_start:.0f} s)", flush=True)
    print(md_path.read_text(encoding="utf-8"))
    return 0


def render_md(
    command, machine, desc, check, rows, peer_rows, args, summary, ratios, stream, tokens, cum_bytes, elapsed
) -> str:
    L = []
    L.append("# MTLD + word statistics benchmark\n")
    L.append(f"Generated by `{command}` (total {elapsed / 60:.1f} min); raw rows in `textstats.csv` (long format).\n")
    L.append("## Machine\n")
    L.append("| | |\n|---|---|")
    for k in (
        "cpu",
        "cores",
        "logical_cpus_host",
        "ram_gib",
        "os",
        "python",
        "numpy",
        "pyarrow",
        "instructfast",
        "lexicalrichness",
        "lexical-diversity",
        "git_sha",
        "load_start",
        "load_end",
    ):
        label = {
            "cores": "cores (affinity)",
            "logical_cpus_host": "logical CPUs (host)",
            "ram_gib": "RAM (GiB)",
            "load_start": "load average 1/5/15 min, start",
            "load_end": "load average, end",
        }.get(k, k)
        L.append(f"| {label} | {machine[k]} |")
    L.append("")
    L.append("## Workload\n")
    L.append(
        f"- Texts: the `output` field of {desc['source']} = {desc['distinct_texts']:,} distinct texts, "
        f"tiled to {rows:,} rows and shuffled (numpy `default_rng({args.seed})`), "
        f"written to Parquet with {ROW_GROUP_ROWS:,}-row row groups (cached in `bench/.cache/`)."
    )
    L.append(
        f"- Size: {tokens(rows):,} tokens, {int(cum_bytes[rows - 1]) / MiB:,.1f} MiB of UTF-8 output text "
        f"({tokens(rows) / rows:.1f} tokens/row); the first {peer_rows:,} rows, timed for every provider, "
        f"hold {tokens(peer_rows):,} tokens."
    )
    mm = check["mismatch"]
    L.append(
        f"- Tokens are lexicalrichness 0.5.1 words, counted once with instructfast's `words` column. "
        f"Checked on all {check['checked']:,} distinct texts against `LexicalRichness(t)`: mismatches "
        f"words {mm['words']}, terms {mm['unique_words']}, mtld (exact doubles) {mm['mtld']}."
    )
    L.append(
        "- Every provider's tokens/s divides the same lexicalrichness token count by its time, so rates "
        "compare work on identical texts. lexical_diversity tokenizes differently (it strips a fixed list "
        "of punctuation strings, splits on single spaces, keeps digits; MTLD with a 10-token minimum "
        "factor) and so does different work: "
        + (
            f"{summary[('lexical_diversity', 'threads=1', peer_rows)]['own_tokens']:,} of its own tokens "
            f"on the same rows."
            if ("lexical_diversity", "threads=1", peer_rows) in summary
            else "not run."
        )
    )
    L.append(
        "- What each provider computes per text: words, distinct words and MTLD (threshold 0.72). "
        "instructfast `text_stats(arrow_array, threads=T)` also returns TTR, chars and bytes; "
        "lexicalrichness `LexicalRichness(t)`, `.words`, `.terms`, `.mtld()`; lexical_diversity "
        "`lex_div.mtld(lex_div.tokenize(t))`; instructfast_py is the shipped pure-Python twin "
        "`instructfast.ops.textstats_py.text_stats(list_of_str)` (the `INSTRUCTFAST_IMPL=python` path)."
    )
    L.append(
        f"- Method: each provider in its own subprocess; gc off while timed; the first pass is a discarded "
        f"warm-up unless it lasts over {WARMUP_LIMIT_S:g} s; instructfast reads one contiguous Arrow array "
        f"in place, the peers a Python list of str built beforehand (neither the Parquet read nor that "
        f"conversion is timed). instructfast: {args.repeats} passes over all {rows:,} rows "
        + (f"and over the first {peer_rows:,}; " if peer_rows != rows else "; ")
        + f"peers: {args.peer_repeats} passes over the first {peer_rows:,} rows"
        + (
            f" (a subset: at the rates measured, one pass over all {rows:,} rows would take "
            + ", ".join(
                f"{p} {rows / summary[(p, 'threads=1', peer_rows)]['best_rps']:,.0f} s"
                for p in PEERS
                if (p, "threads=1", peer_rows) in summary
            )
            + ")."
            if peer_rows != rows
            else "."
        )
    )
    L.append("")
    L.append("## Throughput (one process; best of the passes, and p20/p50/p80 over passes)\n")
    L.append(
        "| provider | mode | rows | best tokens/s | p20 | p50 | p80 | best rows/s | best s/pass | CPU/wall | "
        "vs lexicalrichness |"
    )
    L.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    lr = summary.get(("lexicalrichness", "threads=1", peer_rows))
    for (prov, mode, n), s in sorted(summary.items(), key=lambda kv: (-kv[0][2], -kv[1]["best_tps"])):
        vs = f"{s['best_tps'] / lr['best_tps']:.1f}x" if lr and n == peer_rows else "—"
        L.append(
            f"| {prov} | {mode} | {n:,} | {_fmt(s['best_tps'])} | {_fmt(s['p20'])} | {_fmt(s['p50'])} | "
            f"{_fmt(s['p80'])} | {_fmt(s['best_rps'])} | {s['best_s']:.3f} | {s['util_best']:.2f} | {vs} |"
        )
    L.append("")
    busy = [s["busy_before"] for s in summary.values() if not math.isnan(s["busy_before"])]
    L.append(
        "CPU/wall: process CPU seconds over wall seconds in the best pass (1.00 = one core fully used; "
        "with T threads, up to T). "
        + (
            f"Before each provider started, other processes kept {min(busy):.2f}-{max(busy):.2f} of the "
            f"{machine['logical_cpus_host']} CPUs busy (waiting up to {args.quiet_wait:g} s for under "
            f"{QUIET_CPUS})."
            if busy
            else ""
        )
        + "\n"
    )
    starved = [
        f"{p} {mode} ({n:,} rows, {v['util_best']:.2f})"
        for (p, mode, n), v in summary.items()
        if v["util_best"] < 0.9 * int(mode.split("=")[1])
    ]
    if starved:
        L.append(
            f"**Caution:** the best pass of {'; '.join(starved)} used under 90% of the CPUs its threads "
            "could use: other work on the machine took CPU time, or a pass was too short to keep every "
            "thread busy. Those rates are lower bounds, and thread-scaling ratios built on them are "
            "off in the same direction.\n"
        )
    if ratios:
        L.append("## Ratios (best tokens/s over best tokens/s, identical texts)\n")
        L.append("| ratio | value |")
        L.append("|---|---:|")
        for _name, r, _, _, note in ratios:
            L.append(f"| {note} | {r:.2f}x |")
        L.append("")
        one = [
            r
            for name, r, num, _, _ in ratios
            if name == "speedup_vs_lexicalrichness" and num[:2] == ("instructfast", "threads=1")
        ]
        if one:
            L.append(
                f"SPEC target (>= 30x lexicalrichness tokens/s, one thread): "
                f"{'met' if one[0] >= 30 else 'NOT met'} ({one[0]:.1f}x).\n"
            )
    if stream:
        L.append("## Streaming memory: `instructfast score IN.parquet -o OUT.parquet -i textstats --no-progress`\n")
        L.append(
            "Peak resident memory of the CLI process: the kernel's `ru_maxrss`, read with "
            "`getrusage(RUSAGE_CHILDREN)` in a fresh wrapper process, and psutil polling "
            f"every {POLL_S * 1000:.0f} ms beside it. Inputs are the first N rows of the workload "
            f"(instruction, input, output), default threads and batch size (65,536 rows).\n"
        )
        L.append(
            "| rows | input file (MiB) | peak RSS (MiB) | peak RSS polled (MiB) | wall s | rows/s (wall, with start-up) |"
        )
        L.append("|---:|---:|---:|---:|---:|---:|")
        for r in stream:
            if r["rows"] == 0:
                L.append(
                    f"| import only | — | {r['maxrss'] / MiB:,.1f} | {r['polled'] / MiB:,.1f} | {r['wall']:.2f} | — |"
                )
            else:
                L.append(
                    f"| {r['rows']:,} | {r['file_bytes'] / MiB:,.1f} | {r['maxrss'] / MiB:,.1f} | "
                    f"{r['polled'] / MiB:,.1f} | {r['wall']:.2f} | {_fmt(r['rows'] / r['wall'])} |"
                )
        runs = [r for r in stream if r["rows"]]
        if len(runs) >= 2:
            a, b = runs[0], runs[-1]
            L.append(
                f"\nFrom {a['rows']:,} to {b['rows']:,} rows ({b['rows'] / a['rows']:.0f}x) peak RSS goes "
                f"from {a['maxrss'] / MiB:,.0f} to {b['maxrss'] / MiB:,.0f} MiB "
                f"({b['maxrss'] / a['maxrss']:.2f}x)."
            )
        L.append("")
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    sys.exit(main())
