"""Reduced precision, measured: what bf16 and int8 do to every indicator's values, rankings and selections.

On ``--records`` Alpaca records (``alpaca_5000.json``, shuffled with seed 0), each precision is
compared with fp32 on the same rows:

* ``knn_6`` with the all-MiniLM-L6-v2 embedder at fp32 and int8 (ONNX Runtime dynamic
  quantisation, :mod:`instructfast.models.quantize`), on every record;
* ``perplexity`` and ``ifd`` with SmolLM2-135M-Instruct at fp32 and bf16, on the first
  ``--lm-records`` records (a CPU forward pass at ~4 rows/s makes 5,000 rows per precision
  take over 40 minutes on 2 shared cores; the rows used are stated in the results);
* ``reward`` and ``naturalness`` / ``coherence`` / ``understandability`` at fp32 and int8 with
  the **tiny random** models of the tests (no reward or UniEval weights can be had here): what
  quantisation does to these graphs' arithmetic, not a fidelity claim for the real checkpoints.

Per indicator and precision: Spearman and Kendall correlation with fp32, median and max absolute
and relative error. For selection: the Jaccard overlap of the top 5% by each rule (and by each
indicator alone), and of 1% k-center picks on the embeddings, each next to a **noise floor**:
the same overlap for fp32 against fp32 vectors moved by a tiny perturbation (N(0, ``--noise``)
per coordinate, renormalised; three seeds), since farthest-first picks shift under any change.

Speed, in this process, alternating providers over ``--repeats`` rounds so load drifts hit all
alike, with the 1-minute load average at each run: the embedder (sentence-transformers
``encode``, instructfast fp32, instructfast int8) on ``--speed-records`` records, and the LM
(fp32 vs bf16 ``score(indicators=["perplexity"])``) on the LM rows split in two halves. A
roofline puts the ratios in context: torch's fp32, bf16 and int8 (``torch._int_mm``) GEMM rates
at the models' weight shapes on this CPU.

    flock /tmp/instructfast-bench.lock python bench/bench_precision.py

Results: ``bench/results/precision.md`` and ``bench/results/precision.csv``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import RESULTS_DIR, SHARED_DATA, append_results, machine_info


def load1() -> float:
    return round(os.getloadavg()[0], 2)


def records(n: int, seed: int = 0) -> list[dict]:
    recs = json.loads((SHARED_DATA / "alpaca_5000.json").read_text())
    random.Random(seed).shuffle(recs)
    return recs[:n]


def as_table(recs: list[dict]):
    import pyarrow as pa

    return pa.table({k: [r.get(k) for r in recs] for k in ("instruction", "input", "output")})


# ------------------------------------------------------------------------------ fidelity metrics


def compare(ref: np.ndarray, got: np.ndarray) -> dict[str, float]:
    """Rank correlation and errors of ``got`` against ``ref`` on rows where both are finite."""
    from scipy.stats import kendalltau, spearmanr

    ok = np.isfinite(ref) & np.isfinite(got)
    a, b = ref[ok], got[ok]
    err = np.abs(b - a)
    rel = err / np.maximum(np.abs(a), 1e-12)
    return {
        "rows": int(ok.sum()),
        "spearman": float(spearmanr(a, b)[0]),
        "kendall": float(kendalltau(a, b)[0]),
        "abs_median": float(np.median(err)),
        "abs_max": float(err.max()),
        "rel_median": float(np.median(rel)),
        "rel_max": float(rel.max()),
    }


def top_set(values: np.ndarray, frac: float, *, lowest: bool) -> set[int]:
    """Row positions of the best ``frac`` (lowest predicted loss for rules); ties broken by position."""
    ok = np.flatnonzero(np.isfinite(values))
    k = max(1, round(frac * len(ok)))
    order = np.argsort(values[ok] if lowest else -values[ok], kind="stable")
    return set(ok[order[:k]].tolist())


def jaccard(a: set[int], b: set[int]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def perturbed(v: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    x = v.astype(np.float64) + np.random.default_rng(seed).normal(0.0, sigma, v.shape)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def knn6(v: np.ndarray) -> np.ndarray:
    from instructfast import knn_distances

    return knn_distances(v, [6])[0][6]


def kcenter(v: np.ndarray, k: int) -> set[int]:
    from instructfast.selection.kcenter import kcenter_greedy

    return set(kcenter_greedy(v, k, seed=0).tolist())


# ------------------------------------------------------------------------------ roofline


def gemm_rates(shapes: list[tuple[int, int]], rows: int, repeats: int = 5) -> dict[str, float]:
    """Whole-model GFLOP/s of torch's fp32, bf16 and int8 (``torch._int_mm``) products at ``shapes``."""
    import torch

    out = {}
    for fmt in ("fp32", "bf16", "int8"):
        total_s, flops = 0.0, 0.0
        for k, n in shapes:
            if fmt == "int8":
                a = torch.randint(-128, 127, (rows, k), dtype=torch.int8)
                b = torch.randint(-128, 127, (k, n), dtype=torch.int8)
                run = lambda a=a, b=b: torch._int_mm(a, b)  # noqa: E731
            else:
                dt = torch.float32 if fmt == "fp32" else torch.bfloat16
                a, b = torch.randn(rows, k).to(dt), torch.randn(k, n).to(dt)
                run = lambda a=a, b=b: a @ b  # noqa: E731
            run()
            best = min(_timed(run) for _ in range(repeats))
            total_s += best
            flops += 2.0 * rows * k * n
        out[fmt] = flops / total_s / 1e9
    return out


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# ------------------------------------------------------------------------------ parts


def embedder_part(recs, args, rows_out, md):
    import torch
    from sentence_transformers import SentenceTransformer

    from instructfast.models.embedder import load_embedder
    from instructfast.models.precision import Ask
    from instructfast.models.registry import resolve

    texts = ["\n".join(x for x in (r["instruction"], r.get("input") or "", r["output"]) if x) for r in recs]
    torch.set_num_threads(args.threads)
    fp32 = load_embedder(device="cpu", threads=args.threads, precision=Ask("fp32"))
    int8 = load_embedder(device="cpu", threads=args.threads, precision=Ask("int8"))
    st = SentenceTransformer(resolve("embedder").location, device="cpu")
    runners = {
        "sentence-transformers": lambda t: st.encode(t, batch_size=32, normalize_embeddings=True),
        "instructfast fp32": fp32.embed,
        "instructfast int8": int8.embed,
    }
    for run in runners.values():
        run(texts[:8])  # warm-up
    speed_texts = texts[: args.speed_records]
    speed: dict[str, list[tuple[float, float]]] = {k: [] for k in runners}
    names = list(runners)
    for r in range(args.repeats):
        for name in names[r % 3 :] + names[: r % 3]:  # rotate the order each round
            l0 = load1()
            dt = _timed(lambda name=name: runners[name](speed_texts))
            speed[name].append((len(speed_texts) / dt, l0))
            print(f"  {name}: {len(speed_texts) / dt:.1f} rows/s (load {l0})", flush=True)
    t0 = time.perf_counter()
    v32 = fp32.embed(texts)
    t32 = time.perf_counter() - t0
    t0 = time.perf_counter()
    v8 = int8.embed(texts)
    t8 = time.perf_counter() - t0
    med = {k: float(np.median([s for s, _ in v])) for k, v in speed.items()}
    st_med = med["sentence-transformers"]
    md.append("## Embedder speed (all-MiniLM-L6-v2, CPU)\n")
    md.append(
        f"{len(speed_texts):,} records per run, {args.repeats} rounds, order rotated each round, one process, "
        f"{args.threads} threads for every provider.\n"
    )
    md.append("| provider | rows/s (median) | runs (rows/s @ 1-min load) | vs sentence-transformers |")
    md.append("|---|---:|---|---:|")
    for k, v in speed.items():
        runs = ", ".join(f"{s:.1f} @ {lo}" for s, lo in v)
        md.append(f"| {k} | {med[k]:.1f} | {runs} | {med[k] / st_med:.2f}x |")
        rows_out.append(_row("embedder", k, "speed", "rows_per_s", "rows/s", len(speed_texts), med[k]))
    ratio_rounds = [s8 / sst for (s8, _), (sst, _) in zip(speed["instructfast int8"], speed["sentence-transformers"])]
    md.append(
        f"\nint8 / sentence-transformers per round: {', '.join(f'{x:.2f}x' for x in ratio_rounds)}; "
        f"int8 / fp32 per round: "
        f"{', '.join(f'{a / b:.2f}x' for (a, _), (b, _) in zip(speed['instructfast int8'], speed['instructfast fp32']))}. "
        f"Full {len(texts):,}-record passes (fidelity below): fp32 {len(texts) / t32:.1f} rows/s, "
        f"int8 {len(texts) / t8:.1f} rows/s ({t32 / t8:.2f}x).\n"
    )
    cos = (v32.astype(np.float64) * v8).sum(1)
    md.append(
        f"Vectors: cosine(int8, fp32) median {np.median(cos):.5f}, min {cos.min():.4f}; "
        f"max |diff| {np.abs(v8 - v32).max():.3g}.\n"
    )
    return v32, v8, med, ratio_rounds


def lm_part(recs, args, md):
    import instructfast

    table = as_table(recs)
    bounds = np.linspace(0, len(recs), args.lm_chunks + 1).astype(int)
    parts = [table.slice(a, b - a) for a, b in zip(bounds[:-1], bounds[1:])]
    out: dict[str, list] = {"fp32": [], "bf16": []}
    times: dict[str, list[tuple[float, int, float]]] = {"fp32": [], "bf16": []}
    for p in ("fp32", "bf16"):  # load both models before timing
        instructfast.score(table.slice(0, 2), indicators=["perplexity"], options={"lm_precision": p})
    for i, part in enumerate(parts):
        for p in ("fp32", "bf16") if i % 2 == 0 else ("bf16", "fp32"):
            l0 = load1()
            t0 = time.perf_counter()
            res = instructfast.score(part, indicators=["perplexity"], options={"lm_precision": p})
            dt = time.perf_counter() - t0
            times[p].append((dt, part.num_rows, l0))
            out[p].append(res["perplexity"].to_numpy(zero_copy_only=False))
            print(f"  perplexity {p}: {part.num_rows / dt:.2f} rows/s (load {l0})", flush=True)
    ppl = {p: np.concatenate(v) for p, v in out.items()}
    ifd = {}
    for p in ("fp32", "bf16"):
        res = instructfast.score(table, indicators=["ifd"], options={"lm_precision": p})
        ifd[p] = res["ifd"].to_numpy(zero_copy_only=False)
    rate = {p: sum(n for _, n, _ in v) / sum(d for d, _, _ in v) for p, v in times.items()}
    per_chunk = [a[0] / b[0] for a, b in zip(times["fp32"], times["bf16"])]
    md.append("## Perplexity speed (SmolLM2-135M-Instruct, CPU)\n")
    md.append(
        f"`score(indicators=['perplexity'])` on {len(recs):,} records in {len(parts)} chunks; on each chunk fp32 "
        "and bf16 run back to back, the order alternating from chunk to chunk, one process, models loaded "
        "before timing. The ratio is the median of the per-chunk ratios (each pair ran under the same load).\n"
    )
    md.append("| precision | rows/s (all chunks) | runs (s, rows, 1-min load) |")
    md.append("|---|---:|---|")
    for p, v in times.items():
        md.append(f"| {p} | {rate[p]:.2f} | {', '.join(f'{d:.1f} s / {n} @ {lo}' for d, n, lo in v)} |")
    ratio = float(np.median(per_chunk))
    md.append(f"\nbf16 / fp32: **{ratio:.2f}x** (per chunk: {', '.join(f'{x:.2f}x' for x in per_chunk)}).\n")
    return ppl, ifd, ratio, per_chunk


def onnx_tiny_part(recs, md):
    """reward and UniEval at fp32 and int8 on the tests' tiny random models."""
    import instructfast
    from tests.tiny_models import exported

    models = {"reward": str(exported("reward-pair")), "unieval": str(exported("unieval"))}
    table = as_table(recs)
    cols = ["reward", "naturalness", "coherence", "understandability"]
    out = {}
    for p in ("fp32", "int8"):
        res = instructfast.score(
            table,
            indicators=cols,
            models=models,
            options={"reward_precision": p, "unieval_precision": p},
        )
        out[p] = {c: res[c].to_numpy(zero_copy_only=False) for c in cols}
    return out


TINY_COLS = ("reward", "naturalness", "coherence", "understandability")


def _row(indicator, provider, mode, metric, unit, x, value, config=None):
    return {
        "indicator": indicator,
        "provider": provider,
        "mode": mode,
        "metric": metric,
        "unit": unit,
        "x": x,
        "p50": value,
        "config_json": config or {},
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=5000)
    ap.add_argument("--lm-records", type=int, default=600)
    ap.add_argument("--lm-chunks", type=int, default=4, help="LM rows are timed in this many alternating chunks")
    ap.add_argument("--speed-records", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--noise", type=float, default=1e-5)
    ap.add_argument("--out", type=Path, default=RESULTS_DIR / "precision.md")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    warnings.simplefilter("ignore")
    recs = records(args.records)
    start_load = os.getloadavg()
    t_start = time.perf_counter()
    rows_out: list[dict] = []
    md = [
        "# Reduced precision: fidelity and speed against fp32\n",
        f"`python bench/bench_precision.py --records {args.records} "
        f"--lm-records {args.lm_records} --lm-chunks {args.lm_chunks} --speed-records {args.speed_records} --repeats {args.repeats}`\n",
        f"Workload: alpaca_5000.json shuffled (seed 0): {len(recs):,} records for the embedder, kNN, k-center "
        f"and the tiny ONNX models; the first {args.lm_records:,} of them for perplexity and ifd. "
        f"Load average (1, 5, 15 min) at start: {', '.join(f'{x:.2f}' for x in start_load)}.\n",
    ]
    print("embedder ...", flush=True)
    v32, v8, emb_speed, emb_rounds = embedder_part(recs, args, rows_out, md)
    print("lm ...", flush=True)
    ppl, ifd, lm_ratio, lm_halves = lm_part(recs[: args.lm_records], args, md)
    print("tiny onnx ...", flush=True)
    tiny = onnx_tiny_part(recs, md)
    print("metrics ...", flush=True)
    import instructfast

    out_tokens = (
        instructfast.score(as_table(recs), indicators=["output_tokens"])["output_tokens"]
        .to_numpy(zero_copy_only=False)
        .astype(float)
    )
    k32, k8 = knn6(v32), knn6(v8)
    # noise floors: N(0, sigma) per coordinate, renormalised, three seeds each; sigma = --noise (about what
    # two exact fp32 implementations differ by), 1e-3, and int8's own per-coordinate RMS error
    sigma_int8 = float(np.sqrt(np.mean((v8.astype(np.float64) - v32) ** 2)))
    sigmas = [args.noise, 1e-3, sigma_int8]
    noise = {sg: [perturbed(v32, sg, s) for s in (1, 2, 3)] for sg in sigmas}
    kn = {sg: [knn6(v) for v in vs] for sg, vs in noise.items()}
    fidelity = [
        ("knn_6", "int8", compare(k32, k8)),
        *[
            ("knn_6", f"fp32 + N(0, {sg:.2g}) seed {s}", compare(k32, k))
            for sg, ks in kn.items()
            for s, k in zip((1, 2, 3), ks)
        ],
        ("perplexity", "bf16", compare(ppl["fp32"], ppl["bf16"])),
        ("ifd", "bf16", compare(ifd["fp32"], ifd["bf16"])),
        *[(c, "int8 (tiny random model)", compare(tiny["fp32"][c], tiny["int8"][c])) for c in tiny["fp32"]],
    ]
    md.append("## Fidelity per indicator\n")
    md.append(
        "| indicator | precision | rows | Spearman | Kendall | abs err median | abs err max | rel err median | rel err max |"
    )
    md.append("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for ind, prec, m in fidelity:
        md.append(
            f"| {ind} | {prec} | {m['rows']:,} | {m['spearman']:.5f} | {m['kendall']:.5f} | {m['abs_median']:.3g} | "
            f"{m['abs_max']:.3g} | {m['rel_median']:.3g} | {m['rel_max']:.3g} |"
        )
        for key, value in m.items():
            rows_out.append(_row(ind, prec, "fidelity", key, "", m["rows"], value))

    # selection: top 5% by each rule and each indicator, k-center 1%
    from instructfast.rules import get_rule

    def rule_values(rule: str, reward, nat, coh, und, knn):
        r = get_rule(rule)
        cols = {
            "reward": reward,
            "output_tokens": out_tokens,
            "knn_6": knn,
            "naturalness": nat,
            "coherence": coh,
            "understandability": und,
        }
        return r.apply({c: cols[c] for c in r.coefficients}).to_numpy(zero_copy_only=False)

    t32, t8 = tiny["fp32"], tiny["int8"]
    sel = []
    for rule in ("instructmining-v1", "instructmining-v3"):
        base = rule_values(rule, t32["reward"], t32["naturalness"], t32["coherence"], t32["understandability"], k32)
        q = rule_values(rule, t8["reward"], t8["naturalness"], t8["coherence"], t8["understandability"], k8)
        a = top_set(base, 0.05, lowest=True)
        floor = {
            sg: [jaccard(a, top_set(rule_values(rule, *(t32[c] for c in TINY_COLS), k), 0.05, lowest=True)) for k in ks]
            for sg, ks in kn.items()
        }
        sel.append((f"top 5% by {rule}", "int8 (ONNX models)", jaccard(a, top_set(q, 0.05, lowest=True)), floor))
    for name, ref, got, floors, lowest in (
        ("knn_6", k32, k8, kn, False),
        ("perplexity", ppl["fp32"], ppl["bf16"], {}, True),
        ("ifd", ifd["fp32"], ifd["bf16"], {}, True),
    ):
        a = top_set(ref, 0.05, lowest=lowest)
        prec = "int8" if name == "knn_6" else "bf16"
        floor = {sg: [jaccard(a, top_set(f, 0.05, lowest=lowest)) for f in fs] for sg, fs in floors.items()}
        label = f"top 5% by {name} ({'lowest' if lowest else 'highest'})"
        sel.append((label, prec, jaccard(a, top_set(got, 0.05, lowest=lowest)), floor))
    k = max(1, round(0.01 * len(recs)))
    picks32 = kcenter(v32, k)
    sel.append(
        (
            f"k-center 1% ({k} picks) on the embeddings",
            "int8",
            jaccard(picks32, kcenter(v8, k)),
            {sg: [jaccard(picks32, kcenter(v, k)) for v in vs] for sg, vs in noise.items()},
        )
    )
    md.append("\n## Selection overlap with fp32 (Jaccard)\n")
    md.append(
        "Noise floors: the same overlap for fp32 against fp32 vectors plus N(0, sigma) per coordinate "
        f"(renormalised), seeds 1, 2, 3, for sigma = {sigmas[0]:g} (what two exact fp32 implementations differ by), "
        f"1e-3, and {sigma_int8:.2g} (int8's own RMS error per coordinate, so the last floor is 'any change as "
        "large as int8's'); rules and knn_6 recomputed from the perturbed vectors. The tiny random reward/UniEval "
        "models stand in for the real ones in the rules (their int8 error is in the rule rows, not the floors).\n"
    )
    heads = " | ".join(f"floor sigma={sg:.2g}" for sg in sigmas)
    md.append(f"| selection | precision | Jaccard with fp32 | {heads} |")
    md.append("|---|---|---:|" + "---|" * len(sigmas))
    for name, prec, j, floor in sel:
        cells = " | ".join(", ".join(f"{x:.3f}" for x in floor.get(sg, [])) or "—" for sg in sigmas)
        md.append(f"| {name} | {prec} | {j:.3f} | {cells} |")
        rows_out.append(_row("selection", prec, "overlap", name, "jaccard", len(recs), j))

    # roofline
    import torch

    torch.set_num_threads(args.threads)
    minilm = [(384, 1152), (384, 384), (384, 1536), (1536, 384)]
    smol = [(576, 576), (576, 192), (576, 192), (576, 576), (576, 1536), (576, 1536), (1536, 576)]
    r_emb = gemm_rates(minilm, 4096)
    r_lm = gemm_rates(smol, 2048)
    md.append("\n## Roofline: GEMM rates on this CPU (torch, best of 5, GFLOP/s over the models' weight shapes)\n")
    md.append("| shapes | fp32 | bf16 | int8 (`torch._int_mm`) | bf16 / fp32 | int8 / fp32 |")
    md.append("|---|---:|---:|---:|---:|---:|")
    for name, r in (("all-MiniLM-L6-v2 layer, 4,096 rows", r_emb), ("SmolLM2-135M layer, 2,048 rows", r_lm)):
        md.append(
            f"| {name} | {r['fp32']:.0f} | {r['bf16']:.0f} | {r['int8']:.0f} | {r['bf16'] / r['fp32']:.2f}x | "
            f"{r['int8'] / r['fp32']:.2f}x |"
        )
        for f, v in r.items():
            rows_out.append(_row("roofline", f, "gemm", name, "GFLOP/s", 0, v))

    st = emb_speed["sentence-transformers"]
    md.append("\n## Targets\n")
    j_int8 = next(m for i, p, m in fidelity if i == "knn_6" and p == "int8")["spearman"]
    md.append(
        f"- int8 embedder >= 2.5x sentence-transformers rows/s: {emb_speed['instructfast int8'] / st:.2f}x "
        f"(rounds {', '.join(f'{x:.2f}x' for x in emb_rounds)}); knn_6 Spearman vs fp32 >= 0.99: {j_int8:.4f}."
    )
    sp = next(m for i, p, m in fidelity if i == "perplexity")["spearman"]
    md.append(
        f"- bf16 perplexity >= 1.3x the fp32 engine: {lm_ratio:.2f}x (chunks {', '.join(f'{x:.2f}x' for x in lm_halves)}); "
        f"Spearman vs fp32 >= 0.995: {sp:.5f}."
    )
    info = machine_info()
    import onnxruntime

    info.update(onnxruntime=onnxruntime.__version__, torch=torch.__version__)
    from instructfast.models.precision import cpu_bf16, cpu_int8

    info.update(bf16_isa=cpu_bf16(), int8_isa=cpu_int8())
    end_load = os.getloadavg()
    md.append(
        f"\nLoad average (1, 5, 15 min) at the end: {', '.join(f'{x:.2f}' for x in end_load)}; "
        f"whole run {time.perf_counter() - t_start:.0f} s.\n"
    )
    md.append("Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()) + "\n")
    md.append(
        "The machine is shared with other jobs (2 cores): the load average says how much of it each run got; "
        "ratios come from runs alternated in one process.\n"
    )
    args.out.write_text("\n".join(md) + "\n")
    append_results(RESULTS_DIR / "precision.csv", rows_out)
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
