"""The GPU check's bookkeeping: what ran where (``env``), and the merged results and summary (``report``).

Usage (``bench/gpu/run.sh`` calls both; standard library only, plus torch etc. for ``env``)::

    python bench/gpu/summary.py env --out RUN/env.json [--dry-run]
    python bench/gpu/summary.py report --run RUN --out DIR [--results bench/results] [--dry-run]

``env`` records the device, library versions, the commit, which native text core loaded and why,
how the build step went (``BUILD_STATUS``, ``BUILD_SECONDS``, ``BUILD_DETAIL`` from run.sh) and the
log-prob kernels' implementation.

``report`` reads ``RUN/parts.tsv`` (one line per part: name, status, exit code, seconds, budget,
log), every ``RUN/parts/*.csv`` (long format of ``bench/_common.py``) and ``RUN/env.json``, and
writes ``DIR/gpu_results.csv`` (all rows) and ``DIR/gpu_summary.md``: the card, versions and build,
each part's status (with the tail of its log when it failed or ran out of time), every target row
(metric ``target:<what>``, unit ``pass``) as PASS/FAIL, and each part's figures. With
``--results`` (a run on a CUDA device only) the same two files are also written to that folder
(``bench/results``), replacing the previous run's; the card is named inside both.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import _common  # noqa: E402

# Config keys shown as a case's "where" in the tables, in this order (the rest stays in the CSV).
WHERE_KEYS = ("N", "V", "d", "bias", "dtype", "rows", "texts", "numpy_queries", "bytes")
TAIL_LINES = 25
# A target checked at more cases than this (parity: shapes x dtypes) is one line, failures listed.
GROUP_LISTED = 4


# ----------------------------------------------------------------------------- env


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def collect_env(dry_run: bool) -> dict:
    """Device, versions, commit, native core and kernel implementation of this run."""
    import _engine
    import torch

    env: dict = {
        "dry_run": dry_run,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "git_sha": _common.git_sha(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        **{
            k: _version(k)
            for k in ("triton", "transformers", "sentence-transformers", "onnxruntime", "numpy", "pyarrow", "faiss-cpu")
        },
        "cpu": _common.cpu_model(),
        "cores": _common.cores(),
        "build": {k.lower(): os.environ.get(k, "") for k in ("BUILD_STATUS", "BUILD_SECONDS", "BUILD_DETAIL")},
    }
    if not dry_run and torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        env.update(
            device=torch.cuda.get_device_name(0),
            sms=p.multi_processor_count,
            memory_gib=round(p.total_memory / 2**30, 1),
            device_count=torch.cuda.device_count(),
        )
        if shutil.which("nvidia-smi"):
            q = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True, text=True
            )
            env["driver"] = q.stdout.strip().splitlines()[0] if q.returncode == 0 and q.stdout.strip() else "?"
    else:
        env["device"] = f"CPU dry run: {env['cpu']}" if dry_run else f"no CUDA device (CPU: {env['cpu']})"
    if importlib.util.find_spec("onnxruntime"):
        import onnxruntime

        env["onnxruntime_providers"] = onnxruntime.get_available_providers()
    import instructfast

    env["instructfast_from"] = str(Path(instructfast.__file__).parent)
    env["native_impl"], env["native_reason"] = _engine.native_impl()
    device = torch.device("cpu" if dry_run else "cuda")
    try:
        env["kernels"] = _engine.resolve_impl(device, "fused_linear_logprob")[1]
    except Exception as exc:  # reported, not fatal: the parts say what failed
        env["kernels"] = f"error: {type(exc).__name__}: {exc}"
    if dry_run:
        env["kernels"] += "; the dry run drives the kernels through TRITON_INTERPRET=1"
    return env


# ----------------------------------------------------------------------------- report


def read_parts(run: Path) -> list[dict]:
    parts = []
    path = run / "parts.tsv"
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            name, status, rc, seconds, budget, log = line.split("\t")
            parts.append(
                {
                    "name": name,
                    "status": status,
                    "rc": int(rc),
                    "seconds": float(seconds),
                    "budget": float(budget),
                    "log": Path(log),
                }
            )
    return parts


def read_rows(run: Path) -> dict[str, list[dict]]:
    """Rows of every part's CSVs, by part (the CSV's folder name)."""
    out: dict[str, list[dict]] = {}
    for path in sorted((run / "parts").glob("*/*.csv")):
        with open(path, newline="", encoding="utf-8") as fh:
            out.setdefault(path.parent.name, []).extend(csv.DictReader(fh))
    return out


def _num(v: str) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _fmt(v: str) -> str:
    x = _num(v)
    if x is None:
        return v or ""
    if math.isnan(x):
        return "n/a"
    if x != 0 and (abs(x) >= 1e5 or abs(x) < 1e-3):
        return f"{x:.3g}"
    return f"{x:,.4g}" if abs(x) < 1000 else f"{x:,.0f}"


def _where(row: dict) -> str:
    cfg = json.loads(row.get("config_json") or "{}")
    parts = [f"{k}={cfg[k]}" for k in WHERE_KEYS if k in cfg]
    return ", ".join(parts) or f"x={row['x']}"


def targets_table(rows_by_part: dict[str, list[dict]]) -> list[str]:
    """Markdown lines: every target row as PASS/FAIL; large groups (parity) summarised, failures listed."""
    lines = ["| part | target | where | value | threshold | verdict |", "|---|---|---|---:|---|---|"]
    for part, rows in rows_by_part.items():
        groups: dict[tuple, list[dict]] = {}
        for r in rows:
            if r["metric"].startswith("target:"):
                groups.setdefault((r["indicator"], r["provider"], r["metric"]), []).append(r)
        for (ind, prov, metric), grp in groups.items():
            what = f"{ind} / {prov}: {metric.removeprefix('target:')}"
            show = grp if len(grp) <= GROUP_LISTED else [r for r in grp if _num(r["p50"]) != 1.0]
            if len(grp) > GROUP_LISTED:
                n_pass = sum(_num(r["p50"]) == 1.0 for r in grp)
                verdict = "PASS" if n_pass == len(grp) else "FAIL"
                lines.append(f"| {part} | {what} | all {len(grp)} cases | {n_pass}/{len(grp)} pass | | {verdict} |")
            for r in show:
                cfg = json.loads(r["config_json"] or "{}")
                verdict = "PASS" if _num(r["p50"]) == 1.0 else "FAIL"
                lines.append(
                    f"| {part} | {what} | {_where(r)} | {_fmt(str(cfg.get('value', '')))} "
                    f"| {cfg.get('target', '')} | {verdict} |"
                )
    return lines if len(lines) > 2 else ["No target rows: no part that checks a target finished."]


def figures_table(rows: list[dict]) -> list[str]:
    """Markdown lines: one line per (indicator, provider, mode, case), one column per metric."""
    metrics: dict[str, str] = {}
    cases: dict[tuple, dict[str, str]] = {}
    for r in rows:
        if r["metric"].startswith("target:"):
            continue
        metrics.setdefault(r["metric"], r["unit"])
        key = (r["indicator"], r["provider"], r["mode"], _where(r))
        cases.setdefault(key, {})[r["metric"]] = r["p50"]
    cols = list(metrics)
    head = "| indicator | provider | mode | where | " + " | ".join(f"{m} ({u})" for m, u in metrics.items()) + " |"
    lines = [head, "|" + "---|" * 4 + "---:|" * len(cols)]
    for (ind, prov, mode, where), vals in cases.items():
        lines.append(f"| {ind} | {prov} | {mode} | {where} | " + " | ".join(_fmt(vals.get(c, "")) for c in cols) + " |")
    return lines


def _tail(log: Path, n: int = TAIL_LINES) -> str:
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-n:])


def write_report(run: Path, out: Path, results: Path | None, dry_run: bool) -> tuple[Path, Path]:
    env = json.loads((run / "env.json").read_text(encoding="utf-8")) if (run / "env.json").is_file() else {}
    parts = read_parts(run)
    rows_by_part = read_rows(run)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out / "gpu_results.csv", out / "gpu_summary.md"
    csv_path.unlink(missing_ok=True)  # one run per file: no rows of an earlier run
    _common.append_results(csv_path, [r for rows in rows_by_part.values() for r in rows])

    device = env.get("device", "unknown device")
    build = env.get("build", {})
    lines = [f"# GPU check: {device}", ""]
    if dry_run:
        lines += [
            "**Dry run on CPU** (Triton interpreter, tiny models): it checks the plumbing; its numbers mean nothing.",
            "",
        ]
    total = sum(p["seconds"] for p in parts)
    hw = (
        device
        if dry_run
        else (
            f"{device}, {env.get('sms', '?')} SMs, {env.get('memory_gib', '?')} GiB, "
            f"driver {env.get('driver', '?')}; host {env.get('cpu', '?')}, {env.get('cores', '?')} cores"
        )
    )
    lines += [
        "| | |",
        "|---|---|",
        f"| device | {hw} |",
        f"| software | Python {env.get('python', '?')}, torch {env.get('torch', '?')} (CUDA {env.get('cuda', '-')}), "
        f"triton {env.get('triton', '?')}, transformers {env.get('transformers', '?')}, sentence-transformers "
        f"{env.get('sentence-transformers', '?')}, onnxruntime {env.get('onnxruntime', '?')} "
        f"({', '.join(env.get('onnxruntime_providers', [])) or 'no providers'}), faiss {env.get('faiss-cpu', '?')} |",
        f"| commit | {env.get('git_sha', '?')} |",
        f"| date | {env.get('date', '?')} |",
        f"| native text core | {env.get('native_impl', '?')} ({env.get('native_reason', '?')}); build step: "
        f"{build.get('build_status', '?')} in {build.get('build_seconds', '?')} s"
        + (f" ({build['build_detail']})" if build.get("build_detail") else "")
        + " |",
        f"| instructfast imported from | {env.get('instructfast_from', '?')} |",
        f"| log-prob kernels | {env.get('kernels', '?')} |",
        f"| wall time | {total:.0f} s over {len(parts)} steps |",
        "",
        "## Parts",
        "",
        "| part | status | exit code | seconds | budget (s) | result rows |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for p in parts:
        lines.append(
            f"| {p['name']} | {p['status']} | {p['rc']} | {p['seconds']:.0f} | {p['budget']:.0f} "
            f"| {len(rows_by_part.get(p['name'], []))} |"
        )
    lines += ["", "## Targets", ""] + targets_table(rows_by_part)
    for p in parts:
        if p["name"] in rows_by_part:
            lines += ["", f"## {p['name']}", ""] + figures_table(rows_by_part[p["name"]])
        if p["status"] != "ok":
            lines += [
                "",
                f"### {p['name']}: {p['status']} (exit code {p['rc']}), last lines of its log",
                "",
                "```",
                _tail(p["log"]),
                "```",
            ]
    md_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    if results is not None and not dry_run and env.get("device_count"):  # a real card's run only
        results.mkdir(parents=True, exist_ok=True)
        for path in (csv_path, md_path):
            shutil.copyfile(path, results / path.name)
            print(f"copied {path.name} to {results}")
    return csv_path, md_path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("env")
    e.add_argument("--out", type=Path, required=True)
    e.add_argument("--dry-run", action="store_true")
    r = sub.add_parser("report")
    r.add_argument("--run", type=Path, required=True)
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--results", type=Path, default=None)
    r.add_argument("--dry-run", action="store_true")
    a = ap.parse_args(argv)
    if a.cmd == "env":
        env = collect_env(a.dry_run)
        a.out.write_text(json.dumps(env, indent=2) + "\n", encoding="utf-8")
        print(json.dumps(env, indent=2))
        return 0
    csv_path, md_path = write_report(a.run, a.out, a.results, a.dry_run)
    print(f"wrote {csv_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
