"""ONNX Runtime vs torch eager for the reward (pair and OASST formats) and UniEval graphs, CPU.

No reward-model or UniEval weights exist on this machine, so the graphs are the tiny
randomly initialised models of the same architectures that the tests use
(``tests/tiny_models.py``: DeBERTa-v2 pair classifier, GPT-NeoX + scalar head, T5 with the
Yes/No head), exported with ``instructfast export``. Both sides run the same wrapper
module on the same token ids in the same length-bucketed batches (instructfast's batching),
so the comparison is the runtime alone. Rows are Alpaca records built as the indicators
build them (pair, OASST string, UniEval coherence input). Tiny models make per-call
overhead a large share of the time: the ratios say little about 400M-parameter models.

    flock /tmp/instructfast-bench.lock python bench/bench_reward_unieval.py --records 400

Results: ``bench/results/reward_unieval.csv`` and ``bench/results/reward_unieval.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from _common import RESULTS_DIR, SHARED_DATA, append_results, machine_info  # noqa: E402


def items_for(kind: str, recs: list[dict]) -> list:
    from instructfast.prompts import oasst_text
    from instructfast.prompts import unieval_input as unieval_inputs

    out = []
    for r in recs:
        p = r["instruction"] + ("\n" + r["input"] if r.get("input") else "")
        if kind == "reward-pair":
            out.append((p, r["output"]))
        elif kind == "reward-oasst":
            out.append(oasst_text(p, r["output"]))
        else:
            out.append(unieval_inputs("coherence", r["output"], p))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=400)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--out", type=Path, default=RESULTS_DIR)
    a = ap.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    import torch

    from instructfast.batching import length_buckets
    from instructfast.models.graphs import BUILDERS
    from instructfast.models.onnx_runtime import OnnxModel, padded_feed
    from tests.tiny_models import exported, hf_folder

    torch.set_num_threads(a.threads)
    recs = json.loads((SHARED_DATA / "alpaca_5000.json").read_text())
    random.Random(0).shuffle(recs)
    recs = [r for r in recs if r["output"].strip()][: a.records]
    rows, table = [], []
    info = machine_info()
    for kind in ("reward-pair", "reward-oasst", "unieval"):
        folder = exported(kind)
        ort_model = OnnxModel(folder, device="cpu", threads=a.threads)
        module = BUILDERS[kind](str(hf_folder(kind))).module.eval()
        ids, types = ort_model.encode(items_for(kind, recs), truncate=True)
        lengths = np.array([len(x) for x in ids])
        batches = length_buckets(lengths, ort_model.token_budget, ort_model.max_rows, ort_model.slack)
        feeds = [
            padded_feed(
                [ids[i] for i in b],
                None if types is None else [types[i] for i in b],
                pad_id=ort_model.pad_id,
                token_types="token_type_ids" in ort_model.input_names,
            )
            for b in batches
        ]
        names = ort_model.input_names

        def run_ort(ort_model=ort_model, feeds=feeds):
            return [ort_model.session.run(ort_model.output_names[:1], f)[0] for f in feeds]

        def run_torch(module=module, names=names, feeds=feeds):
            with torch.inference_mode():
                return [module(*(torch.from_numpy(f[n]) for n in names)).numpy() for f in feeds]

        run_ort(), run_torch()  # warm-up
        times: dict[str, list[float]] = {"onnxruntime": [], "torch-eager": []}
        loads = []
        for _ in range(a.repeats):
            loads.append(os.getloadavg()[0])
            for name, fn in (("onnxruntime", run_ort), ("torch-eager", run_torch)):
                t0 = time.perf_counter()
                res = fn()
                times[name].append(time.perf_counter() - t0)
        diff = float(max(np.abs(x - y).max() for x, y in zip(run_ort(), run_torch())))
        cfg = {"records": len(recs), "threads": a.threads, "graph": f"tiny {kind}", "batches": len(batches)}
        med = {k: len(recs) / statistics.median(v) for k, v in times.items()}
        for k, v in times.items():
            rps = [len(recs) / t for t in v]
            rows.append(
                dict(
                    indicator=kind,
                    provider=k,
                    mode="cpu",
                    metric="rows_per_s",
                    unit="rows/s",
                    x=len(recs),
                    p50=med[k],
                    p20=min(rps),
                    p80=max(rps),
                    config_json=cfg,
                )
            )
        rows.append(
            dict(
                indicator=kind,
                provider="onnxruntime",
                mode="cpu",
                metric="max_abs_diff_vs_torch",
                unit="abs",
                x=len(recs),
                p50=diff,
                config_json=cfg,
            )
        )
        rows.append(
            dict(
                indicator=kind,
                provider="both",
                mode="cpu",
                metric="load_avg_1min",
                unit="load",
                x=len(recs),
                p50=statistics.median(loads),
                config_json=cfg,
            )
        )
        m = json.loads((folder / "manifest.json").read_text())
        n_params = sum(p.numel() for p in module.parameters())
        table.append(
            (
                kind,
                n_params,
                int(lengths.sum()),
                len(batches),
                med["onnxruntime"],
                med["torch-eager"],
                diff,
                statistics.median(loads),
                m.get("graph_fusions"),
            )
        )
        print(table[-1], flush=True)
        del res
    a.out.mkdir(parents=True, exist_ok=True)
    append_results(a.out / "reward_unieval.csv", rows)
    lines = [
        "# ONNX Runtime vs torch eager: tiny reward / UniEval graphs, CPU",
        "",
        f"`flock /tmp/instructfast-bench.lock python bench/bench_reward_unieval.py --records {a.records} --repeats {a.repeats}`",
        "",
        f"{len(recs)} Alpaca records (alpaca_5000.json, seed 0), inputs built as the indicators build them; "
        f"the same token ids and length buckets for both runtimes; {a.threads} threads; median of {a.repeats}. "
        "Tiny random models (tests/tiny_models.py): per-call overhead is a large share, so these ratios do not "
        "predict the full-size models.",
        "",
        "| graph | params | tokens | batches | ORT rows/s | torch eager rows/s | ORT / torch | max abs diff | 1-min load | ORT fusions |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for kind, n_params, toks, nb, o, t, d, ld, fus in table:
        lines.append(
            f"| {kind} | {n_params:,} | {toks:,} | {nb} | {o:.0f} | {t:.0f} | {o / t:.2f}x | {d:.1g} | {ld:.2f} | {fus} |"
        )
    lines += ["", "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items())]
    (a.out / "reward_unieval.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
