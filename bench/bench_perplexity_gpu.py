"""Perplexity end to end on one GPU: instructfast's engine against a per-row Hugging Face loop.

Usage (one command on an H100/H200 machine with torch, triton, transformers and instructfast
installed; ``bench/gpu/run.sh`` installs the package and runs this with ``--rows 1000``)::

    python bench/bench_perplexity_gpu.py [--out bench/results] [--rows 2000] [--max-pass-s 60]
    python bench/bench_perplexity_gpu.py --dry-run          # CPU, tiny model, 20 rows: plumbing only
    python bench/bench_perplexity_gpu.py --write-lengths    # regenerate bench/data/alpaca_token_lengths.json

Model: a Llama-architecture causal LM of 1.1B parameters built from a config (TinyLlama-1.1B's
shape: hidden 2048, 22 layers, 32 heads, 4 KV heads, intermediate 5632, vocabulary 32,000,
window 2048), random init, bfloat16, ``sdpa`` attention, no weights to download. Perplexities of
a random model are meaningless; the cost of computing them is what is measured.

Rows: ``--rows`` (prompt, output) token lengths drawn with a fixed seed from
``bench/data/alpaca_token_lengths.json`` (the lengths of all 5,000 records of the shared
``alpaca_5000.json``: Alpaca prompt template and output, each tokenised with SmolLM2's tokenizer,
no special tokens; ``--write-lengths`` remakes it on a machine with that tokenizer), filled with
random token ids. Rows with an empty output are not drawn; a row longer than the window loses
prompt tokens from the left (then output tokens).

Providers, timed on the same rows (in this order: the loop is every ratio's reference):

=======================  =====================================================================
``hf_loop``              one row per forward, ``model(ids, labels=labels).loss`` with the prompt
                         labels at -100 (what data-juicer does; ``tests.references.hf_loop``);
                         losses stay on the device until the end (one sync), which only helps the loop
``instructfast_engine``  ``LMScorer(LoadedLM(model, stub_tokenizer, ...), slack=0.5,
                         token_budget=65536).logprob_sums(rows)``: length buckets, model body on
                         the batch, fused LM head (Triton kernel) on the output positions only
``hf_sorted_padded``     rows sorted by length into batches of at most ``SORTED_TOKEN_BUDGET``
                         padded tokens (``instructfast.batching.length_buckets``, no slack
                         limit), right-padded with an attention mask, full logits,
                         ``log_softmax(logits.float())`` gathered (``tests.references.hf_sorted_batches``):
                         the plain batched alternative
``hf_unsorted_batch8``   the same on batches of 8 rows in input order (ODA-DataScorer)
=======================  =====================================================================

Each provider gets a warm-up call (the engine on all rows, so every Triton kernel variant is
compiled before timing; the others on 8 rows), then timed passes (``torch.cuda.synchronize`` around each) until
``--repeats`` passes or ``--max-pass-s`` seconds, at least one; ``--budget-s`` starts no further
provider after that many seconds. Peak memory is
``torch.cuda.max_memory_allocated`` over the timed passes; ``working`` is that minus the memory
held before (the weights). Agreement: max relative difference of the per-row perplexities from
``hf_loop`` (bf16, so reported, not asserted).

Model FLOP utilisation (``mfu``): model FLOPs of the workload per second over the card's dense
bf16 peak (:data:`BF16_PEAK_TFLOPS`, from the device name; empty for unknown cards) and over a
measured 8192^3 bf16 matmul rate (``mfu_vs_matmul``, the practical peak). Model FLOPs, the same
for every provider: ``2 * non-embedding parameters * tokens`` (the body's matmuls) plus causal
attention ``2 * layers * L^2 * hidden`` per row of L tokens plus the LM head on the scored
tokens only, ``2 * V * hidden`` each (work the loop and padded batches spend on prompt
positions and padding is not counted; the engine's shared template prefix is counted per row).

Results: ``<out>/perplexity_gpu.csv`` in the long format of ``bench/_common.py`` (the ``cpu``
column holds the GPU's name), written after each provider, and a table on stdout. The SPEC
section 5 target, a speedup of at least 10x over ``hf_loop``, is a row of its own (metric
``target:speedup_vs_hf_loop``, unit ``pass``, p50 1.0 or 0.0). Expected run time on an H100:
about 1-2 minutes for 1,000 rows.

Engine code comes from the installed package through ``bench/gpu/_engine.py``. Exit codes: 3 when
transformers (or numpy) is missing, 2 without CUDA (outside ``--dry-run``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
import tempfile
import time
import types
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
LENGTHS = BENCH / "data" / "alpaca_token_lengths.json"
sys.path.insert(0, str(BENCH / "gpu"))
sys.path.insert(0, str(BENCH))
import _common  # noqa: E402  (standard library only)

INDICATOR = "perplexity"
SPEEDUP_TARGET = 10.0
MiB = 2**20
FULL = dict(
    hidden_size=2048,
    intermediate_size=5632,
    num_hidden_layers=22,
    num_attention_heads=32,
    num_key_value_heads=4,
    vocab_size=32000,
    max_position_embeddings=2048,
)
TINY = dict(
    hidden_size=64,
    intermediate_size=172,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    vocab_size=32000,
    max_position_embeddings=2048,
)
# Padded tokens per batch of hf_sorted_padded: its full bf16 logits, their fp32 copy and the fp32
# log-softmax hold 10 bytes x 32,000 per token, 5 GiB at 16,384 tokens.
SORTED_TOKEN_BUDGET = 16384
# Dense (no sparsity) bf16 tensor-core peaks, TFLOP/s, from NVIDIA's data sheets; matched against
# torch.cuda.get_device_name() in order (first hit), so the PCIe/NVL variants come before "H100".
BF16_PEAK_TFLOPS = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.4),  # SXM5 ("NVIDIA H100 80GB HBM3")
    ("H200", 989.4),
    ("GH200", 989.4),
    ("A100", 312.0),
)


def bf16_peak_tflops(device_name: str) -> float | None:
    """The data-sheet dense bf16 peak of the card named ``device_name``, or None when not in the table."""
    for key, tflops in BF16_PEAK_TFLOPS:
        if key in device_name:
            return tflops
    return None


# ----------------------------------------------------------------------------- workload


def write_lengths(path: Path = LENGTHS) -> None:
    """[prompt_len, output_len] of every record of alpaca_5000.json with SmolLM2's tokenizer."""
    import _engine

    recs = json.loads((_common.SHARED_DATA / "alpaca_5000.json").read_text(encoding="utf-8"))
    tok = _engine.load_causal_lm(_engine.resolve_model("lm")).tokenizer
    template = _engine.PromptTemplate()
    prompts = [template.render(r["instruction"], r.get("input") or "", None) for r in recs]
    ctx = tok(prompts, add_special_tokens=False)["input_ids"]
    out = tok([r["output"] or "" for r in recs], add_special_tokens=False)["input_ids"]
    path.parent.mkdir(parents=True, exist_ok=True)
    body = ",\n".join(f"[{len(c)},{len(o)}]" for c, o in zip(ctx, out))
    path.write_text(f"[\n{body}\n]\n", encoding="utf-8")
    print(f"wrote {path}: {len(recs)} records")


def make_rows(n: int, seed: int, vocab: int, window: int) -> tuple[list[tuple[list[int], list[int]]], dict]:
    """``n`` rows of random ids with (prompt, output) lengths drawn from the Alpaca lengths."""
    import numpy as np

    pairs = [p for p in json.loads(LENGTHS.read_text(encoding="utf-8")) if p[1] > 0]
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(pairs), size=n, replace=n > len(pairs))
    rows, truncated = [], 0
    for k in pick:
        c, t = pairs[k]
        if c + t > window:
            truncated += 1
            t = min(t, window - 1)
            c = window - t
        ids = rng.integers(1, vocab, size=c + t).tolist()  # 0 is the pad id
        rows.append((ids[:c], ids[c:]))
    ctx = sum(len(r[0]) for r in rows)
    tgt = sum(len(r[1]) for r in rows)
    desc = {
        "rows": n,
        "seed": seed,
        "lengths": "bench/data/alpaca_token_lengths.json",
        "prompt_tokens": ctx,
        "output_tokens": tgt,
        "tokens": ctx + tgt,
        "mean_prompt_tokens": round(ctx / n, 1),
        "mean_output_tokens": round(tgt / n, 1),
        "max_row_tokens": max(len(a) + len(b) for a, b in rows),
        "truncated_rows": truncated,
    }
    return rows, desc


def build_model(shape: dict, device: str, dtype):
    import torch
    import transformers

    cfg = transformers.LlamaConfig(**shape, rms_norm_eps=1e-5, tie_word_embeddings=False)
    torch.manual_seed(0)
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # initialise in the target dtype: no fp32 copy of 1.1B weights
    try:
        with torch.device(device):
            model = transformers.AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa")
    finally:
        torch.set_default_dtype(old)
    model.to(device=device, dtype=dtype).eval()
    return model


# ----------------------------------------------------------------------------- providers


def unsorted_batches(n: int, size: int = 8) -> list[list[int]]:
    return [list(range(k, min(n, k + size))) for k in range(0, n, size)]


def sorted_batches(rows, token_budget: int = SORTED_TOKEN_BUDGET) -> list[list[int]]:
    from _engine import length_buckets

    lengths = [len(c) + len(t) for c, t in rows]
    return [b.tolist() for b in length_buckets(lengths, token_budget, max_rows=len(rows) or 1)]


def time_provider(name, fn, warm_rows, rows, device, repeats, max_pass_s):
    import torch

    cuda = device.startswith("cuda")

    def sync():
        if cuda:
            torch.cuda.synchronize()

    with torch.inference_mode():
        fn(warm_rows)
        sync()
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated() if cuda else 0
        samples, spent = [], 0.0
        while len(samples) < repeats and (not samples or spent < max_pass_s):
            sync()
            t0 = time.perf_counter()
            ppl = fn(rows)
            sync()
            samples.append(time.perf_counter() - t0)
            spent += samples[-1]
        peak = torch.cuda.max_memory_allocated() if cuda else 0
    print(f"  {name:<20} {len(rows):>6} rows: best {min(samples):8.3f} s over {len(samples)} pass(es)", flush=True)
    return {"samples": samples, "ppl": ppl, "peak_mb": peak / MiB, "before_mb": before / MiB}


# ----------------------------------------------------------------------------- model FLOPs


def model_flops(model, rows) -> float:
    """Model FLOPs of scoring ``rows`` (see the module docstring): body matmuls, causal attention,
    the LM head on scored tokens."""
    cfg = model.config
    emb = model.get_input_embeddings().weight.numel()
    head = model.get_output_embeddings().weight
    non_embedding = sum(p.numel() for p in model.parameters()) - emb - head.numel()
    d, layers, vocab = cfg.hidden_size, cfg.num_hidden_layers, head.shape[0]
    total = 0.0
    for c, t in rows:
        length = len(c) + len(t)
        total += 2.0 * non_embedding * length + 2.0 * layers * length * length * d + 2.0 * vocab * d * len(t)
    return total


def matmul_tflops(device: str) -> tuple[float, dict]:
    """Measured bf16 matmul rate (TFLOP/s): 8192^3 on CUDA (mean of 10 after 3 warm-ups), 256^3 on the CPU."""
    import torch

    n = 8192 if device.startswith("cuda") else 256
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    if device.startswith("cuda"):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record()
        for _ in range(10):
            a @ b
        end.record()
        torch.cuda.synchronize()
        seconds = start.elapsed_time(end) / 1e3 / 10
    else:
        t0 = time.perf_counter()
        for _ in range(10):
            a @ b
        seconds = (time.perf_counter() - t0) / 10
    return 2.0 * n**3 / seconds / 1e12, {"n": n, "dtype": str(dtype).removeprefix("torch."), "runs": 10, "warmup": 3}


# ----------------------------------------------------------------------------- main


def _q(values, q):
    v = sorted(values)
    pos = q * (len(v) - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for perplexity_gpu.csv (default bench/results; a temporary folder with --dry-run)",
    )
    ap.add_argument("--rows", type=int, default=None, help="rows scored by every provider (default 2000; 20 dry)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3, help="timed passes per provider, within --max-pass-s (default 3)")
    ap.add_argument(
        "--max-pass-s",
        type=float,
        default=60.0,
        help="no further timed pass of a provider once its passes took this long (default 60)",
    )
    ap.add_argument("--skip-batch8", action="store_true", help="do not time hf_unsorted_batch8")
    ap.add_argument(
        "--budget-s",
        type=float,
        default=None,
        help="start no further provider after this many seconds (those timed are kept)",
    )
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny config (hidden 64, 2 layers), 20 rows")
    ap.add_argument("--write-lengths", action="store_true", help=f"regenerate {LENGTHS.relative_to(REPO)} and exit")
    args = ap.parse_args(argv)

    if args.write_lengths:
        write_lengths()
        return 0
    missing = [m for m in ("torch", "numpy", "transformers") if importlib.util.find_spec(m) is None]
    if missing:
        print(
            f"bench_perplexity_gpu.py needs {', '.join(missing)}, which this Python ({sys.executable}) "
            f"does not have: pip install {' '.join(missing)} (the Llama model is built with transformers)",
            file=sys.stderr,
        )
        return 3
    started = time.monotonic()
    import _engine
    import torch

    from tests.references import hf_loop, hf_sorted_batches

    device = "cpu" if args.dry_run else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: run on a GPU machine, or pass --dry-run for the CPU plumbing check", file=sys.stderr)
        return 2
    rows_n = args.rows or (20 if args.dry_run else 2000)
    out_dir = args.out or (
        Path(tempfile.mkdtemp(prefix="bench_perplexity_gpu_dry_")) if args.dry_run else _common.RESULTS_DIR
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "perplexity_gpu.csv"
    shape = TINY if args.dry_run else FULL
    dtype = torch.bfloat16

    rows, workload = make_rows(rows_n, args.seed, shape["vocab_size"], shape["max_position_embeddings"])
    gpu = torch.cuda.get_device_name() if device == "cuda" else f"CPU dry run: {_common.cpu_model()}"
    matmul, matmul_cfg = matmul_tflops(device)
    spec_peak = bf16_peak_tflops(gpu) if device == "cuda" else None
    print(
        f"{gpu}: measured {matmul_cfg['n']}^3 {matmul_cfg['dtype']} matmul {matmul:.1f} TFLOP/s; data-sheet bf16 "
        f"peak {spec_peak or 'unknown'} TFLOP/s",
        flush=True,
    )
    t0 = time.perf_counter()
    model = build_model(shape, device, dtype)
    n_params = sum(p.numel() for p in model.parameters())
    flops = model_flops(model, rows)
    print(
        f"model {n_params / 1e9:.3f}B parameters, bf16, sdpa (built in {time.perf_counter() - t0:.1f} s); "
        f"{workload['rows']} rows, {workload['tokens']:,} tokens (mean {workload['mean_prompt_tokens']} prompt + "
        f"{workload['mean_output_tokens']} output), {flops / 1e12:.1f} model TFLOP",
        flush=True,
    )

    tok_stub = types.SimpleNamespace(pad_token_id=0, bos_token_id=None)
    lm = _engine.LoadedLM(model, tok_stub, None, "random-init")
    scorer = _engine.LMScorer(lm, slack=0.5, token_budget=65536)
    head_impl = _engine.resolve_impl(torch.device(device), "fused_linear_logprob")[1]
    encoded = [_engine.Encoded(c, t) for c, t in rows]

    def engine(sub):
        s, c = scorer.logprob_sums(sub)
        return [math.exp(-a / b) for a, b in zip(s.tolist(), c.tolist())]

    warm_small = rows[: min(8, len(rows))]
    # The fused head's kernel is compiled per tile shape, which follows each batch's row count:
    # warming the engine on every row compiles all of them before timing (one extra pass).
    warm_engine = encoded
    providers = {
        "hf_loop": (lambda sub: hf_loop(model, sub), warm_small, rows, 1),
        "instructfast_engine": (engine, warm_engine, encoded, args.repeats),
        "hf_sorted_padded": (
            lambda sub: hf_sorted_batches(model, sub, sorted_batches(sub), 0),
            warm_small,
            rows,
            args.repeats,
        ),
    }
    if not args.skip_batch8:
        providers["hf_unsorted_batch8"] = (
            lambda sub: hf_sorted_batches(model, sub, unsorted_batches(len(sub)), 0),
            warm_small,
            rows,
            args.repeats,
        )

    n, tokens = workload["rows"], workload["tokens"]
    config = {
        "model": "llama-random-init",
        "shape": shape,
        "params": n_params,
        "dtype": "bfloat16",
        "attention": "sdpa",
        **{k: workload[k] for k in ("rows", "seed", "lengths", "tokens")},
        "engine": {"slack": 0.5, "token_budget": 65536, "head": head_impl},
        "dry_run": args.dry_run,
        "sorted_token_budget": SORTED_TOKEN_BUDGET,
        "model_flops": flops,
        "torch": torch.__version__,
    }
    mode = "cuda_bf16" if device == "cuda" else "cpu_dry_run"
    base = {"indicator": INDICATOR, "mode": mode, "x": n, "config_json": config, "cpu": gpu}
    peak_cfg = {**config, "matmul": matmul_cfg, "bf16_peak_tflops": spec_peak}
    _common.append_results(
        path,
        [
            {
                **base,
                "provider": "device",
                "metric": "matmul_tflops",
                "unit": "TFLOP/s",
                "p50": matmul,
                "config_json": peak_cfg,
            },
            {
                **base,
                "provider": "device",
                "metric": "bf16_peak_tflops",
                "unit": "TFLOP/s",
                "p50": spec_peak,
                "config_json": peak_cfg,
            },
        ],
    )
    res, table = {}, []
    for name, (fn, warm, data, repeats) in providers.items():
        if args.budget_s is not None and res and time.monotonic() - started > args.budget_s:
            print(f"skip {name}: --budget-s {args.budget_s:g} s spent", flush=True)
            continue
        r = res[name] = time_provider(name, fn, warm, data, device, repeats, args.max_pass_s)
        t, ref = r["samples"], res["hf_loop"]["ppl"]
        median = _q(t, 0.5)
        metrics = {
            "time": ("s", median, _q(t, 0.2), _q(t, 0.8)),
            "rows_per_s": ("rows/s", n / median, n / _q(t, 0.8), n / _q(t, 0.2)),
            "tokens_per_s": ("tokens/s", tokens / median, tokens / _q(t, 0.8), tokens / _q(t, 0.2)),
            "model_tflops": ("TFLOP/s", flops / median / 1e12, None, None),
            "mfu": ("ratio", flops / median / 1e12 / spec_peak if spec_peak else None, None, None),
            "mfu_vs_matmul": ("ratio", flops / median / 1e12 / matmul, None, None),
            "peak_gpu_mb": ("MiB", r["peak_mb"], None, None),
            "working_gpu_mb": ("MiB", r["peak_mb"] - r["before_mb"], None, None),
            "max_rel_diff": ("ratio", max(abs(a - b) / abs(b) for a, b in zip(r["ppl"], ref)), None, None),
        }
        if name != "hf_loop":
            metrics["speedup_vs_hf_loop"] = ("x", _q(res["hf_loop"]["samples"], 0.5) / median, None, None)
        csv_rows = [
            {**base, "provider": name, "metric": metric, "unit": unit, "p50": p50, "p20": p20, "p80": p80}
            for metric, (unit, p50, p20, p80) in metrics.items()
        ]
        if name == "instructfast_engine":
            speedup = metrics["speedup_vs_hf_loop"][1]
            csv_rows.append(
                {
                    **base,
                    "provider": name,
                    "metric": "target:speedup_vs_hf_loop",
                    "unit": "pass",
                    "p50": 1.0 if speedup >= SPEEDUP_TARGET else 0.0,
                    "config_json": {**config, "value": speedup, "target": f">= {SPEEDUP_TARGET:g}"},
                }
            )
        if name == "hf_sorted_padded" and "instructfast_engine" in res:  # the plain batched alternative: reported
            csv_rows.append(
                {
                    **base,
                    "provider": "instructfast_engine",
                    "metric": "speedup_vs_sorted_padded",
                    "unit": "x",
                    "p50": median / _q(res["instructfast_engine"]["samples"], 0.5),
                }
            )
        _common.append_results(path, csv_rows)  # after each provider: a stopped run keeps what it measured
        table.append((name, metrics))

    print()
    print(
        "| provider | rows/s | tokens/s | time (s) | model TFLOP/s | MFU | peak GPU MiB | working MiB "
        "| max rel diff vs hf_loop | speedup vs hf_loop |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, m in table:
        sp = m.get("speedup_vs_hf_loop", ("x", 1.0))[1]
        mfu = m["mfu"][1]
        print(
            f"| {name} | {m['rows_per_s'][1]:,.1f} | {m['tokens_per_s'][1]:,.0f} | {m['time'][1]:.3f} "
            f"| {m['model_tflops'][1]:.1f} | {'n/a' if mfu is None else f'{mfu:.1%}'} | {m['peak_gpu_mb'][1]:,.0f} "
            f"| {m['working_gpu_mb'][1]:,.0f} | {m['max_rel_diff'][1]:.2e} | {sp:.2f} |"
        )
    note = " (dry run on CPU: numbers mean nothing)" if args.dry_run else ""
    if "instructfast_engine" in res:
        speedup = dict(table)["instructfast_engine"]["speedup_vs_hf_loop"][1]
        verdict = "PASS" if speedup >= SPEEDUP_TARGET else "FAIL"
        print(f"\ninstructfast_engine / hf_loop = {speedup:.2f}x (target >= {SPEEDUP_TARGET:g}x): {verdict}{note}")
    if "hf_sorted_padded" in res:
        ratio = _q(res["hf_sorted_padded"]["samples"], 0.5) / _q(res["instructfast_engine"]["samples"], 0.5)
        print(f"instructfast_engine / hf_sorted_padded = {ratio:.2f}x (reported)")
    print(f"LM head: {head_impl}")
    print(f"workload: {json.dumps(workload)}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
