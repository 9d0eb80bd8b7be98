"""Long records: a JSON Lines file whose one record is 256 MiB, read and given text statistics; peak RSS.

Usage::

    python bench/bench_long_records.py [--mib 256] [--out bench/results]

The record's output is real text (the ``output`` fields of the shared datasets, repeated) of
``--mib`` MiB, between two short records. Three runs, each in a fresh child process:

* ``import only``: ``import instructfast`` (the floor every run starts from);
* ``read + text statistics``: ``read_table`` then ``text_stats`` of the output column;
* ``instructfast score FILE -o OUT.parquet -i textstats``: the command line's ``main()``, run in
  the child as the ``instructfast`` script runs it (read, score, checkpoint part, Parquet output).

Peaks are ``VmHWM`` of the child, not ``ru_maxrss`` (Linux carries that over from the parent a
child is started from). Target (issue 14): peak RSS at most 4x the largest record. Besides each
run's phases, the CLI run reports where its peak was (which phase). Results go to
``<out>/long_records.csv`` and ``long_records.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common

MiB = 2**20

# Each child prints one JSON line: its peak (VmHWM) and what it measured.
PRELUDE = """
import json, sys, time
sys.path.insert(0, {bench!r})
from _common import proc_status_mib
"""

IMPORT_ONLY = """
import instructfast
print(json.dumps({"peak": proc_status_mib("VmHWM") * 2**20}))
"""

READ_AND_STATS = """
import instructfast
t0 = time.perf_counter()
t = instructfast.read_table(sys.argv[1])
read_peak = proc_status_mib("VmHWM")
st = instructfast.text_stats(t.column("output"), threads=1)
print(json.dumps({"seconds": time.perf_counter() - t0, "peak": proc_status_mib("VmHWM") * 2**20,
                  "read_peak": read_peak * 2**20, "words": int(st["words"].sum())}))
"""

# The CLI's own main(), with the peak of the per-row phase noted on the way (the rest is the write).
CLI = """
import contextlib, io
from instructfast import pipeline
from instructfast.cli import main
phases = {}
rows_phase = pipeline._Run.rows_phase
def noted(self):
    rows_phase(self)
    phases["rows_phase_peak"] = proc_status_mib("VmHWM") * 2**20
    phases["rss_after_rows"] = proc_status_mib("VmRSS") * 2**20
pipeline._Run.rows_phase = noted
t0 = time.perf_counter()
with contextlib.redirect_stdout(io.StringIO()):
    rc = main(sys.argv[1:])
if rc:
    sys.exit(rc)
print(json.dumps({"seconds": time.perf_counter() - t0, "peak": proc_status_mib("VmHWM") * 2**20, **phases}))
"""


def make_file(path: Path, mib: int) -> int:
    """Write the file; returns the long record's size in bytes (its line, without the newline)."""
    texts, _ = _common.load_output_texts()
    unit = (" ".join(texts) + " ").encode()
    target = mib * MiB
    body = (unit * (target // len(unit) + 1))[:target].decode("utf-8", "ignore")
    record = json.dumps({"instruction": "Write a book.", "output": body}, ensure_ascii=False).encode()
    with open(path, "wb") as f:
        f.write(json.dumps({"instruction": "Summarise.", "output": "short"}).encode() + b"\n")
        f.write(record + b"\n")
        f.write(json.dumps({"instruction": "Say hi.", "output": "hi"}).encode() + b"\n")
    return len(record)


def child(code: str, *args: str) -> dict:
    script = PRELUDE.format(bench=str(Path(__file__).resolve().parent)) + code
    proc = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-4000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--out", type=Path, default=_common.RESULTS_DIR)
    args = ap.parse_args(argv)
    machine = _common.machine_info()
    machine["load_start"] = " / ".join(f"{v:.2f}" for v in os.getloadavg())
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-long-") as tmp:
        path = Path(tmp) / "book.jsonl"
        record = make_file(path, args.mib)
        base = child(IMPORT_ONLY)
        stats = child(READ_AND_STATS, str(path))
        out = str(Path(tmp) / "o.parquet")
        cli = child(CLI, "score", str(path), "-o", out, "-i", "textstats", "--no-progress")
        written = child(
            "import pyarrow.parquet as pq\n"
            "t = pq.read_table(sys.argv[1], columns=['output_words'])\n"
            "print(json.dumps({'peak': 0, 'words': t.column(0).to_pylist()}))\n",
            out,
        )["words"]
        cli["words"] = sum(written)
    elapsed = time.perf_counter() - t0
    machine["load_end"] = " / ".join(f"{v:.2f}" for v in os.getloadavg())
    if cli["words"] != stats["words"]:
        raise RuntimeError(f"the CLI's output counts {cli['words']} words, read + text_stats {stats['words']}")
    runs = [("import only", base), ("read + text statistics", stats), ("instructfast score -i textstats", cli)]
    cfg = {"record_mib": args.mib, "record_bytes": record, "peak": "VmHWM of a fresh child"}
    csv_rows = []
    for mode, r in runs:
        common = {"indicator": "textstats", "provider": "instructfast", "mode": mode, "x": record, "config_json": cfg}
        csv_rows.append({**common, "metric": "peak_rss_over_record", "unit": "x", "p50": r["peak"] / record})
        csv_rows.append({**common, "metric": "peak_rss", "unit": "MiB", "p50": r["peak"] / MiB})
    _common.append_results(args.out / "long_records.csv", csv_rows)
    title = f"# Long records: one {args.mib} MiB JSON Lines record\n"
    lines = [
        title,
        f"Generated by `python bench/bench_long_records.py --mib {args.mib}` in {elapsed:.0f} s; raw rows in "
        "`long_records.csv`.\n",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['ram_gib']} GiB; load average "
        f"{machine['load_start']} at start, {machine['load_end']} at end (other engineers' work shares these cores; "
        "memory figures do not depend on it).\n",
        f"File: three records; the second is {record / MiB:,.1f} MiB (its output: real text of the shared datasets, "
        "repeated). Peak RSS is `VmHWM` of a fresh child process per run.\n",
        "| run | peak RSS (MiB) | x the record | seconds | words |",
        "|---|---:|---:|---:|---:|",
    ]
    for mode, r in runs:
        secs = f"{r['seconds']:.1f}" if "seconds" in r else "—"
        words = f"{r['words']:,}" if "words" in r else "—"
        lines.append(f"| {mode} | {r['peak'] / MiB:,.0f} | {r['peak'] / record:.2f} | {secs} | {words} |")
    rows_peak = cli["rows_phase_peak"]
    later = (
        f"the final write (the part read back, the Parquet output) raises it to {cli['peak'] / MiB:,.0f} MiB"
        if cli["peak"] > rows_peak
        else "the final write (the part read back, the Parquet output) stays below it"
    )
    after_rows = cli["rss_after_rows"]
    lines += [
        "",
        f"Within the runs: reading alone peaks at {stats['read_peak'] / MiB:,.0f} MiB "
        f"({stats['read_peak'] / record:.2f}x); the CLI's per-row phase (read, text check, text statistics, "
        f"checkpoint part) at {rows_peak / MiB:,.0f} MiB ({rows_peak / record:.2f}x); {later}.",
        "",
        "Where the memory goes (the record is R):",
        "",
        "- reading: the record's bytes, read in one call once its end is found (R), and the string values "
        "decoded from them into the buffers their Arrow arrays use (R); the bytes are dropped once parsed;",
        "- text statistics: the lowercased text the tokenizer interns words from (R) and the token ids "
        "(4 bytes a word, 0.64R here), beside the text itself (R);",
        f"- the final write starts at {after_rows / MiB:,.0f} MiB: the checkpointed part read back (R) and "
        f"Parquet's writer, which for one value holds the plain-encoded values, the page assembled from them and "
        f"the compressed page: {(cli['peak'] - after_rows) / record - 1:.2f}R here. Min/max statistics, now "
        "off for text columns, cost five more copies (7.0R against 2.0R for one 256 MiB value, measured alone).",
        "",
        "Target: at most 4x the largest record.\n",
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "long_records.md").write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
