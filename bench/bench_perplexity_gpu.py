"""Perplexity end to end on one GPU: instructfast's engine against a per-row Hugging Face loop.

Usage (one command on an H100/H200 machine with torch, triton and transformers)::

    python bench/bench_perplexity_gpu.py [--out bench/results] [--rows 2000]
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

Providers, timed on the same rows:

=======================  =====================================================================
``hf_loop``              one row per forward, ``model(ids, labels=labels).loss`` with the prompt
                         labels at -100 (what data-juicer does); losses stay on the device until
                         the end (one sync), which only helps the loop
``hf_unsorted_batch8``   batches of 8 rows in input order, right-padded with an attention mask,
                         full logits, ``log_softmax(logits.float())`` gathered (ODA-DataScorer)
``instructfast_engine``  ``LMScorer(LoadedLM(model, stub_tokenizer, ...), slack=0.5,
                         token_budget=65536).logprob_sums(rows)``: length buckets, model body on
                         the batch, fused LM head (Triton kernel) on the output positions only
=======================  =====================================================================

Each provider gets a warm-up call (a subset of the rows, so the Triton kernel's variants are
compiled before timing), then timed passes (``torch.cuda.synchronize`` around each) until
``--repeats`` passes or 60 s, at least one. Peak memory is ``torch.cuda.max_memory_allocated``
over the timed passes; ``working`` is that minus the memory held before (the weights).
Agreement: max relative difference of the per-row perplexities from ``hf_loop`` (bf16, so
reported, not asserted).

Results: ``<out>/perplexity_gpu.csv`` in the long format of ``bench/_common.py`` (the ``cpu``
column holds the GPU's name) and a table on stdout. The SPEC section 5 target is a speedup of
at least 10x over ``hf_loop``. Expected run time on an H100: about 2-4 minutes.

The package need not be installed: ``<repo>/python`` is put on ``sys.path`` and only the
modules the engine needs are loaded (no pyarrow, no C++ extension); the Triton kernels come
from ``<repo>/kernels``. Exit codes: 3 when transformers (or numpy) is missing, 2 without CUDA
(outside ``--dry-run``).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import math
import os
import sys
import tempfile
import time
import types
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
LENGTHS = BENCH / "data" / "alpaca_token_lengths.json"
sys.path.insert(0, str(BENCH))
import _common  # noqa: E402  (standard library only)

INDICATOR = "perplexity"
SPEEDUP_TARGET = 10.0
MiB = 2**20
FULL = dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
            num_key_value_heads=4, vocab_size=32000, max_position_embeddings=2048)
TINY = dict(hidden_size=64, intermediate_size=172, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=32000, max_position_embeddings=2048)
MAX_PASS_TIME_S = 60.0


def _import_engine():
    """``LMScorer``, ``LoadedLM``, ``resolve_impl`` from <repo>/python without the package's __init__.

    ``instructfast/__init__.py`` imports the Arrow facade (pyarrow, the C++ extension); the
    engine needs none of it. Empty parent packages pointing at the source folders let the
    engine's own modules (lm_scorer, batching, causal_lm, registry, errors, indicators.logprob,
    logprob_torch) import as usual.
    """
    src = REPO / "python" / "instructfast"
    for name, folder in (("instructfast", src), ("instructfast.indicators", src / "indicators")):
        if name not in sys.modules:
            pkg = types.ModuleType(name)
            pkg.__path__ = [str(folder)]
            pkg.__package__ = name
            sys.modules[name] = pkg
    lm_scorer = importlib.import_module("instructfast.models.lm_scorer")
    causal_lm = importlib.import_module("instructfast.models.causal_lm")
    logprob = importlib.import_module("instructfast.indicators.logprob")
    return lm_scorer.LMScorer, lm_scorer.Encoded, causal_lm.LoadedLM, logprob.resolve_impl


# ----------------------------------------------------------------------------- workload


def write_lengths(path: Path = LENGTHS) -> None:
    """[prompt_len, output_len] of every record of alpaca_5000.json with SmolLM2's tokenizer."""
    from instructfast.models import registry
    from instructfast.models.causal_lm import load_causal_lm
    from instructfast.models.lm_scorer import PromptTemplate

    recs = json.loads((_common.SHARED_DATA / "alpaca_5000.json").read_text(encoding="utf-8"))
    tok = load_causal_lm(registry.resolve("lm")).tokenizer
    template = PromptTemplate()
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
    desc = {"rows": n, "seed": seed, "lengths": "bench/data/alpaca_token_lengths.json", "prompt_tokens": ctx,
            "output_tokens": tgt, "tokens": ctx + tgt, "mean_prompt_tokens": round(ctx / n, 1),
            "mean_output_tokens": round(tgt / n, 1), "max_row_tokens": max(len(a) + len(b) for a, b in rows),
            "truncated_rows": truncated}
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


def hf_loop(model, rows, device):
    import torch

    losses = []
    for ctx, tgt in rows:
        ids = torch.tensor([ctx + tgt], device=device)
        labels = torch.tensor([[-100] * len(ctx) + tgt], device=device)
        losses.append(model(input_ids=ids, labels=labels).loss)
    return torch.stack(losses).float().exp().tolist()


def hf_unsorted_batch8(model, rows, device, size: int = 8):
    import torch

    out = []
    for k in range(0, len(rows), size):
        batch = rows[k : k + size]
        width = max(len(c) + len(t) for c, t in batch)
        ids = torch.zeros((len(batch), width), dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        for j, (c, t) in enumerate(batch):
            ids[j, : len(c) + len(t)] = torch.tensor(c + t)
            mask[j, : len(c) + len(t)] = 1
            labels[j, len(c) : len(c) + len(t)] = torch.tensor(t)
        ids, mask, labels = ids.to(device), mask.to(device), labels.to(device)
        logits = model(input_ids=ids, attention_mask=mask).logits
        logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        shifted = labels[:, 1:]
        scored = shifted != -100
        tok_lp = logp.gather(-1, shifted.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        out.append((-(tok_lp * scored).sum(1) / scored.sum(1)).exp())
        del logits, logp
    return torch.cat(out).tolist()


def time_provider(name, fn, warm_rows, rows, device, repeats):
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
        while len(samples) < repeats and (not samples or spent < MAX_PASS_TIME_S):
            sync()
            t0 = time.perf_counter()
            ppl = fn(rows)
            sync()
            samples.append(time.perf_counter() - t0)
            spent += samples[-1]
        peak = torch.cuda.max_memory_allocated() if cuda else 0
    print(f"  {name:<20} {len(rows):>6} rows: best {min(samples):8.3f} s over {len(samples)} pass(es)", flush=True)
    return {"samples": samples, "ppl": ppl, "peak_mb": peak / MiB, "before_mb": before / MiB}


# ----------------------------------------------------------------------------- main


def _q(values, q):
    v = sorted(values)
    pos = q * (len(v) - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--out", type=Path, default=None, help="folder for perplexity_gpu.csv (default bench/results; "
                    "a temporary folder with --dry-run)")
    ap.add_argument("--rows", type=int, default=None, help="rows scored by every provider (default 2000; 20 dry)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3, help="timed passes per provider, within 60 s (default 3)")
    ap.add_argument("--skip-batch8", action="store_true", help="do not time hf_unsorted_batch8")
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny config (hidden 64, 2 layers), 20 rows")
    ap.add_argument("--write-lengths", action="store_true", help=f"regenerate {LENGTHS.relative_to(REPO)} and exit")
    args = ap.parse_args(argv)

    if args.write_lengths:
        write_lengths()
        return 0
    missing = [m for m in ("torch", "numpy", "transformers") if importlib.util.find_spec(m) is None]
    if missing:
        print(f"bench_perplexity_gpu.py needs {', '.join(missing)}, which this Python ({sys.executable}) "
              f"does not have: pip install {' '.join(missing)} (the Llama model is built with transformers)",
              file=sys.stderr)
        return 3
    import torch

    device = "cpu" if args.dry_run else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: run on a GPU machine, or pass --dry-run for the CPU plumbing check", file=sys.stderr)
        return 2
    rows_n = args.rows or (20 if args.dry_run else 2000)
    out_dir = args.out or (Path(tempfile.mkdtemp(prefix="bench_perplexity_gpu_dry_")) if args.dry_run
                           else _common.RESULTS_DIR)
    shape = TINY if args.dry_run else FULL
    dtype = torch.bfloat16

    LMScorer, Encoded, LoadedLM, resolve_impl = _import_engine()
    rows, workload = make_rows(rows_n, args.seed, shape["vocab_size"], shape["max_position_embeddings"])
    t0 = time.perf_counter()
    model = build_model(shape, device, dtype)
    n_params = sum(p.numel() for p in model.parameters())
    gpu = torch.cuda.get_device_name() if device == "cuda" else f"CPU dry run: {_common.cpu_model()}"
    print(f"{gpu}; model {n_params / 1e9:.3f}B parameters, bf16, sdpa (built in {time.perf_counter() - t0:.1f} s); "
          f"{workload['rows']} rows, {workload['tokens']:,} tokens (mean {workload['mean_prompt_tokens']} prompt + "
          f"{workload['mean_output_tokens']} output)", flush=True)

    tok_stub = types.SimpleNamespace(pad_token_id=0, bos_token_id=None)
    lm = LoadedLM(model, tok_stub, None, "random-init")
    scorer = LMScorer(lm, slack=0.5, token_budget=65536)
    head_impl = resolve_impl(torch.device(device), "fused_linear_logprob")[1]
    encoded = [Encoded(c, t) for c, t in rows]

    def engine(sub):
        s, c = scorer.logprob_sums(sub)
        return [math.exp(-a / b) for a, b in zip(s.tolist(), c.tolist())]

    warm_small = rows[: min(8, len(rows))]
    warm_engine = encoded[: min(256, len(encoded))]  # enough batch shapes to compile the kernel's variants
    providers = {"hf_loop": (lambda sub: hf_loop(model, sub, device), warm_small, rows)}
    if not args.skip_batch8:
        providers["hf_unsorted_batch8"] = (lambda sub: hf_unsorted_batch8(model, sub, device), warm_small, rows)
    providers["instructfast_engine"] = (engine, warm_engine, encoded)
    res = {}
    for name, (fn, warm, data) in providers.items():
        res[name] = time_provider(name, fn, warm, data, device, 1 if name == "hf_loop" else args.repeats)

    ref = res["hf_loop"]["ppl"]
    n, tokens = workload["rows"], workload["tokens"]
    config = {"model": "llama-random-init", "shape": shape, "params": n_params, "dtype": "bfloat16",
              "attention": "sdpa", **{k: workload[k] for k in ("rows", "seed", "lengths", "tokens")},
              "engine": {"slack": 0.5, "token_budget": 65536, "head": head_impl}, "dry_run": args.dry_run,
              "torch": torch.__version__}
    mode = "cuda_bf16" if device == "cuda" else "cpu_dry_run"
    csv_rows, table = [], []
    for name, r in res.items():
        t = r["samples"]
        rel = max(abs(a - b) / abs(b) for a, b in zip(r["ppl"], ref))
        metrics = {
            "time": ("s", _q(t, 0.5), _q(t, 0.2), _q(t, 0.8)),
            "rows_per_s": ("rows/s", n / _q(t, 0.5), n / _q(t, 0.8), n / _q(t, 0.2)),
            "tokens_per_s": ("tokens/s", tokens / _q(t, 0.5), tokens / _q(t, 0.8), tokens / _q(t, 0.2)),
            "peak_gpu_mb": ("MiB", r["peak_mb"], None, None),
            "working_gpu_mb": ("MiB", r["peak_mb"] - r["before_mb"], None, None),
            "max_rel_diff": ("ratio", rel, None, None),
        }
        if name != "hf_loop":
            metrics["speedup_vs_hf_loop"] = ("x", (n / _q(t, 0.5)) / (n / _q(res["hf_loop"]["samples"], 0.5)),
                                             None, None)
        for metric, (unit, p50, p20, p80) in metrics.items():
            csv_rows.append({"indicator": INDICATOR, "provider": name, "mode": mode, "metric": metric, "unit": unit,
                             "x": n, "p50": p50, "p20": p20, "p80": p80, "config_json": config, "cpu": gpu})
        table.append((name, metrics))
    out_dir.mkdir(parents=True, exist_ok=True)
    path = _common.append_results(out_dir / "perplexity_gpu.csv", csv_rows)

    print()
    print(f"| provider | rows/s | tokens/s | time (s) | peak GPU MiB | working MiB | max rel diff vs hf_loop "
          f"| speedup vs hf_loop |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, m in table:
        sp = m.get("speedup_vs_hf_loop", ("x", 1.0))[1]
        print(f"| {name} | {m['rows_per_s'][1]:,.1f} | {m['tokens_per_s'][1]:,.0f} | {m['time'][1]:.3f} "
              f"| {m['peak_gpu_mb'][1]:,.0f} | {m['working_gpu_mb'][1]:,.0f} | {m['max_rel_diff'][1]:.2e} | {sp:.2f} |")
    speedup = dict(table)["instructfast_engine"]["speedup_vs_hf_loop"][1]
    verdict = "PASS" if speedup >= SPEEDUP_TARGET else "FAIL"
    note = " (dry run on CPU: numbers mean nothing)" if args.dry_run else ""
    print(f"\ninstructfast_engine / hf_loop = {speedup:.2f}x (target >= {SPEEDUP_TARGET:g}x): {verdict}{note}")
    print(f"LM head: {head_impl}")
    print(f"workload: {json.dumps(workload)}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
