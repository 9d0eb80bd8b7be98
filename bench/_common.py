"""Helpers shared by the benchmark scripts: machine details, the text workload, the results CSV.

Results follow Liger-Kernel's long format: one row per (indicator, provider, mode, metric, x,
config) with p50/p20/p80, upserted by that key, so re-running a benchmark replaces its rows
instead of piling up duplicates.
"""

from __future__ import annotations

import csv
import datetime as _dt
import importlib
import importlib.metadata
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
if str(REPO_ROOT) not in sys.path:  # the oracles the benchmarks share with the tests: tests/references.py
    sys.path.insert(0, str(REPO_ROOT))
CACHE_DIR = BENCH_DIR / ".cache"
RESULTS_DIR = BENCH_DIR / "results"
# Same location tests/conftest.py uses: the shared, unmodified public datasets beside the checkout.
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
SAMPLE_RECORDS = REPO_ROOT / "tests" / "data" / "sample_records.jsonl"
# The three instruction sets whose `output` fields make up the text workload, in this order.
WORKLOAD_FILES = ("alpaca_5000.json", "alpaca_gpt4_demo_1k.json", "dolly_filtered_3k.json")

COLUMNS = (
    "indicator",
    "provider",
    "mode",
    "metric",
    "unit",
    "x",
    "p50",
    "p20",
    "p80",
    "config_json",
    "cpu",
    "cores",
    "git_sha",
    "timestamp",
)
KEY = ("indicator", "provider", "mode", "metric", "x", "config_json")


# ----------------------------------------------------------------------------- machine


def cpu_model() -> str:
    """``model name`` from /proc/cpuinfo (falls back to :func:`platform.processor`)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def cores() -> int:
    """CPUs this process may run on (affinity, cgroup cpusets included), not the host's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def ram_gib() -> float:
    """Total memory from /proc/meminfo, GiB (NaN where unavailable)."""
    try:
        with open("/proc/meminfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return math.nan


def _cpu_times() -> tuple[int, int]:
    with open("/proc/stat", encoding="ascii") as fh:
        v = [int(x) for x in fh.readline().split()[1:]]
    return sum(v) - v[3] - v[4], sum(v)  # busy (all but idle and iowait), total


def proc_status_mib(field: str) -> float:
    """A memory line of /proc/self/status in MiB (``VmRSS`` now, ``VmHWM`` this process's peak);
    NaN where absent. Peaks come from ``VmHWM``, not ``ru_maxrss``: Linux carries that one
    across exec from the parent, so a benchmark child would report its parent's peak."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def pid_memory_mib(pid: int, fields: Sequence[str] = ("VmHWM",)) -> dict[str, float]:
    """Memory lines of another live process's /proc status in MiB (empty once it has exited)."""
    out: dict[str, float] = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                key = line.split(":", 1)[0]
                if key in fields:
                    out[key] = int(line.split()[1]) / 1024
    except OSError:
        pass
    return out


def pid_peak_rss_mib(pid: int) -> float:
    """Peak RSS (``VmHWM``) of another live process in MiB; NaN once it has exited."""
    return pid_memory_mib(pid).get("VmHWM", float("nan"))


def run_measured(cmd: Sequence[str], *, poll: float = 0.05, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Run ``cmd`` as its own process: wall seconds, peak RSS (``VmHWM`` polled every ``poll`` s, as
    ``/usr/bin/time -v`` reports it), load averages before and after, its stdout and stderr.
    Output goes to temporary files, not pipes, so a chatty command cannot block on a full pipe.
    Exits with the command's tail when it fails."""
    load = os.getloadavg()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(list(cmd), stdout=out, stderr=err, text=True, env=None if env is None else dict(env))
        peak = 0.0
        at_peak: dict[str, float] = {}  # what the largest sampled RSS was made of: anonymous vs file pages
        while proc.poll() is None:
            mem = pid_memory_mib(proc.pid, ("VmHWM", "VmRSS", "RssAnon", "RssFile"))
            peak = max(peak, mem.get("VmHWM", 0.0))
            if mem.get("VmRSS", 0.0) > at_peak.get("VmRSS", 0.0):
                at_peak = mem
            time.sleep(poll)
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{stderr[-4000:]}")
    return {"seconds": wall, "peak_rss_mib": peak, "load_before": load, "load_after": os.getloadavg(),
            "stdout": stdout, "stderr": stderr, "at_peak_mib": at_peak}  # fmt: skip


def busy_cpus(interval: float = 1.0) -> float:
    """CPUs kept busy by everything on the machine over ``interval`` s (NaN off Linux)."""
    try:
        b0, t0 = _cpu_times()
        time.sleep(interval)
        b1, t1 = _cpu_times()
    except OSError:
        return math.nan
    return (b1 - b0) / max(t1 - t0, 1) * (os.cpu_count() or 1)


def git_sha() -> str:
    """Short commit of the checkout, ``-dirty`` when tracked files differ.

    Without a git checkout (a copy of the tree sent to a GPU machine) the ``GIT_SHA`` environment
    variable names the commit, else "uncommitted".
    """
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        sha = ""
    if not sha:
        return os.environ.get("GIT_SHA") or "uncommitted"
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT, capture_output=True, text=True
    ).stdout.strip()
    return f"{sha}-dirty" if dirty else sha


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine_info() -> dict[str, Any]:
    """What a reader needs to compare numbers: CPU, cores, RAM, OS and library versions, commit."""
    return {
        "cpu": cpu_model(),
        "cores": cores(),
        "logical_cpus_host": os.cpu_count(),
        "ram_gib": round(ram_gib(), 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "numpy": _version("numpy"),
        "pyarrow": _version("pyarrow"),
        "instructfast": _version("instructfast"),
        "lexicalrichness": _version("lexicalrichness"),
        "lexical-diversity": _version("lexical-diversity"),
        "git_sha": git_sha(),
    }


# ----------------------------------------------------------------------------- workload


def load_records(data_dir: Path | None = None) -> tuple[dict[str, list[str]], str]:
    """Columns ``instruction``, ``input``, ``output`` of the workload's records and a description.

    Reads :data:`WORKLOAD_FILES` from ``data_dir`` (default :data:`SHARED_DATA`), in that
    order; when any is absent, the in-repo ``tests/data/sample_records.jsonl`` instead.
    """
    data_dir = SHARED_DATA if data_dir is None else Path(data_dir)
    cols: dict[str, list[str]] = {"instruction": [], "input": [], "output": []}

    def add(records: list[dict]) -> None:
        for r in records:
            for c in cols:
                v = r.get(c)
                cols[c].append("" if v is None else str(v))

    if all((data_dir / name).is_file() for name in WORKLOAD_FILES):
        parts = []
        for name in WORKLOAD_FILES:
            with open(data_dir / name, encoding="utf-8") as fh:
                records = json.load(fh)
            add(records)
            parts.append(f"{name} ({len(records):,})")
        return cols, " + ".join(parts)
    with open(SAMPLE_RECORDS, encoding="utf-8") as fh:
        records = [json.loads(line) for line in fh if line.strip()]
    add(records)
    return cols, f"tests/data/sample_records.jsonl ({len(records):,}; {data_dir} not found)"


def load_output_texts(data_dir: Path | None = None) -> tuple[list[str], str]:
    """The ``output`` texts of :func:`load_records` and the description of their source."""
    cols, source = load_records(data_dir)
    return cols["output"], source


def import_lexical_diversity():
    """``lexical_diversity.lex_div``, importable without ``pkg_resources``.

    lexical-diversity 0.1.1 calls ``pkg_resources.resource_filename`` once at import to find
    its lemma file; setuptools >= 81 no longer ships ``pkg_resources``. Where it is missing,
    a one-function stand-in built on :mod:`importlib.resources` is registered first. The
    MTLD code itself is untouched.
    """
    try:
        importlib.import_module("pkg_resources")
    except ImportError:
        from importlib.resources import files

        shim = types.ModuleType("pkg_resources")
        shim.resource_filename = lambda package, name: str(files(package) / name)  # type: ignore[attr-defined]
        sys.modules["pkg_resources"] = shim
    return importlib.import_module("lexical_diversity.lex_div")


# ----------------------------------------------------------------------------- results


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return repr(value)
    if isinstance(value, Mapping):
        return config_json(value)
    return str(value)


def config_json(config: Mapping[str, Any]) -> str:
    """Canonical JSON (sorted keys, no spaces), so equal configs give equal upsert keys."""
    return json.dumps(dict(config), sort_keys=True, separators=(",", ":"))


def append_results(path: str | os.PathLike[str], rows: Iterable[Mapping[str, Any]]) -> Path:
    """Upsert ``rows`` into the long-format CSV at ``path``; return the path.

    Each row needs indicator, provider, mode, metric, unit, x and p50 (p20/p80 may be
    missing); ``config_json`` may be a dict. ``cpu``, ``cores``, ``git_sha`` and
    ``timestamp`` are filled from this machine when absent. A row whose key (indicator,
    provider, mode, metric, x, config_json) is already in the file replaces it in place;
    others are appended. The file is rewritten atomically.
    """
    path = Path(path)
    fill = {
        "cpu": cpu_model(),
        "cores": cores(),
        "git_sha": git_sha(),
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    existing: list[dict[str, str]] = []
    if path.is_file():
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            unknown = set(reader.fieldnames or ()) - set(COLUMNS)
            if unknown:
                msg = f"{path} has columns {sorted(unknown)} not in the results format {list(COLUMNS)}"
                raise ValueError(msg)
            existing = [{c: r.get(c) or "" for c in COLUMNS} for r in reader]
    index = {tuple(r[k] for k in KEY): i for i, r in enumerate(existing)}
    for row in rows:
        missing = [c for c in ("indicator", "provider", "mode", "metric", "unit", "x", "p50") if c not in row]
        if missing:
            msg = f"result row lacks {missing}, got keys {sorted(row)}"
            raise ValueError(msg)
        out = {c: _cell(row.get(c, fill.get(c))) for c in COLUMNS}
        if not out["config_json"]:
            out["config_json"] = "{}"
        key = tuple(out[k] for k in KEY)
        if key in index:
            existing[index[key]] = out
        else:
            index[key] = len(existing)
            existing.append(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(existing)
    os.replace(tmp, path)
    return path
