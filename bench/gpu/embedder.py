"""The torch embedder against sentence-transformers on one device, on a MiniLM-shaped model built here.

Usage (on a CUDA machine with torch, transformers, sentence-transformers and instructfast
installed; ``bench/gpu/run.sh`` runs it)::

    python bench/gpu/embedder.py --out DIR [--texts 4000] [--dtypes float32,float16] [--budget-s S]
    python bench/gpu/embedder.py --out DIR --dry-run        # CPU, tiny BERT, 200 texts, float32

No weights travel to the GPU machine and there is no model hub there, so the model is built from
a config: all-MiniLM-L6-v2's shape (BERT, 6 layers, hidden 384, 12 heads, intermediate 1536,
vocabulary 30,522, 512 positions, ``max_seq_length`` 256), random weights, saved as a
sentence-transformers folder (``tests/tiny_models.sbert_folder``) with a lower-cased WordPiece
tokenizer trained offline on the texts (``tests/tiny_models.wordpiece_tokenizer``). Random
weights make the vectors meaningless; the cost of computing them is what is measured.

Texts: instruction, input and output joined by newlines (as ``instructfast`` embeds records) of
the bundled samples (``python/instructfast/data/alpaca_gpt4_sample.jsonl``, 200 records, and
``tests/data/sample_records.jsonl``, 232 Alpaca / Alpaca-GPT4 / Dolly records), tiled to
``--texts`` in a seeded shuffle.

Providers, same model, device and dtype (``float32``, then ``float16``):

* ``sentence_transformers``: ``SentenceTransformer(folder, device).encode(texts, batch_size=32,
  normalize_embeddings=True)`` (its default batch size; it sorts texts by length itself), the
  model cast with ``.to(dtype)``;
* ``instructfast_torch``: ``TorchEmbedder(folder, device=, dtype=).embed(texts)``
  (``instructfast.models.embedder_torch``): SDPA, length buckets under a token budget.

One warm-up call each, then ``--repeats`` timed passes (the call returns numpy, so each pass ends
synchronised). Rows: ``rows_per_s`` and ``tokens_per_s`` (p50/p20/p80 over passes, tokens after
truncation), ``speedup_vs_sentence_transformers``, ``max_abs_diff`` of the vectors, and for
float32 ``target:equal_vectors`` (unit ``pass``: max difference <= 1e-5, the CPU tests' bound).
Written to ``DIR/embedder_gpu.csv`` in the long format of ``bench/_common.py`` after each dtype.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "bench"))  # _common, which also puts the repository root on sys.path (tests.*)
import _common  # noqa: E402

SOURCES = (
    REPO / "python" / "instructfast" / "data" / "alpaca_gpt4_sample.jsonl",
    REPO / "tests" / "data" / "sample_records.jsonl",
)
MINILM = dict(
    vocab_size=30522,
    hidden_size=384,
    num_hidden_layers=6,
    num_attention_heads=12,
    intermediate_size=1536,
    max_position_embeddings=512,
)
EQUAL_TOL = 1e-5  # float32 vectors, as tests/models/test_embedder_torch.py demands on CPU


def record_texts() -> list[str]:
    """The distinct record texts of the bundled samples, in file order."""
    texts = []
    for path in SOURCES:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                r = json.loads(line)
                texts.append("\n".join(str(r[k]) for k in ("instruction", "input", "output") if r.get(k)))
    return list(dict.fromkeys(texts))


def build_folder(dest: Path, shape: dict, max_seq_length: int, texts: list[str]) -> Path:
    """A sentence-transformers folder: random BERT of ``shape``, WordPiece trained on ``texts``."""
    import torch
    from transformers import BertConfig, BertModel

    from tests.tiny_models import sbert_folder, wordpiece_tokenizer

    torch.manual_seed(0)
    tok = wordpiece_tokenizer(texts, vocab_size=shape["vocab_size"], model_max_length=shape["max_position_embeddings"])
    return sbert_folder(dest, BertModel(BertConfig(**shape)).eval(), tok, max_seq_length=max_seq_length)


def _timed(fn, repeats: int) -> tuple[list[float], object]:
    fn()  # warm-up: kernels chosen, allocator filled
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return sorted(times), out


def _q(v: list[float], q: float) -> float:
    import numpy as np

    return float(np.quantile(v, q))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--out", type=Path, required=True, help="folder for embedder_gpu.csv")
    ap.add_argument("--texts", type=int, default=None, help="texts embedded per pass (default 4000; 200 dry)")
    ap.add_argument("--dtypes", default=None, help="comma-separated (default float32,float16; float32 dry)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dry-run", action="store_true", help="CPU, tests.tiny_models.TINY_BERT, window 64")
    ap.add_argument("--budget-s", type=float, default=None, help="start no new dtype after this many seconds")
    args = ap.parse_args(argv)

    import _engine
    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    start = time.monotonic()
    if not args.dry_run and not torch.cuda.is_available():
        print("no CUDA device: run on a GPU machine, or pass --dry-run", file=sys.stderr)
        return 2
    device = "cpu" if args.dry_run else "cuda"
    name = torch.cuda.get_device_name() if device == "cuda" else f"CPU dry run: {_common.cpu_model()}"
    from tests.tiny_models import TINY_BERT

    shape, window = (TINY_BERT, 64) if args.dry_run else (MINILM, 256)
    n_texts = args.texts or (200 if args.dry_run else 4000)
    dtypes = (args.dtypes or ("float32" if args.dry_run else "float32,float16")).split(",")

    distinct = record_texts()
    rng = np.random.default_rng(0)
    texts = [distinct[i] for i in rng.permutation(np.resize(np.arange(len(distinct)), n_texts))]
    tmp = tempfile.TemporaryDirectory(prefix="instructfast-gpu-embedder-")
    t0 = time.perf_counter()
    folder = build_folder(Path(tmp.name) / "minilm-shaped", shape, window, distinct)
    print(
        f"{name}: model {shape} built with a WordPiece tokenizer in {time.perf_counter() - t0:.1f} s; "
        f"{n_texts} texts ({len(distinct)} distinct)",
        flush=True,
    )

    out_path = args.out / "embedder_gpu.csv"
    args.out.mkdir(parents=True, exist_ok=True)
    for dtype in dtypes:
        if args.budget_s is not None and time.monotonic() - start > args.budget_s:
            print(f"skip {dtype}: --budget-s {args.budget_s:g} s spent", flush=True)
            continue
        ours = _engine.TorchEmbedder(folder, device=device, dtype=dtype)
        st = SentenceTransformer(str(folder), device=device).to(getattr(torch, dtype))
        tokens = int(sum(map(len, st.tokenizer(texts, truncation=True, max_length=window)["input_ids"])))
        t_st, v_st = _timed(
            functools.partial(st.encode, texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True),
            args.repeats,
        )
        t_ours, v_ours = _timed(functools.partial(ours.embed, texts), args.repeats)
        diff = float(np.abs(np.asarray(v_ours, dtype=np.float32) - np.asarray(v_st, dtype=np.float32)).max())
        cfg = {
            "model": "minilm-shaped random BERT" if not args.dry_run else "tiny random BERT",
            "shape": shape,
            "max_seq_length": window,
            "dtype": dtype,
            "texts": n_texts,
            "distinct": len(distinct),
            "tokens": tokens,
            "st_batch_size": 32,
            "token_budget": ours.token_budget,
            "max_rows": ours.max_rows,
        }
        base = {"indicator": "embedder", "mode": f"{device}_{dtype}", "x": n_texts, "config_json": cfg, "cpu": name}
        rows = []
        for prov, t in (("sentence_transformers", t_st), ("instructfast_torch", t_ours)):
            rows += [
                {
                    **base,
                    "provider": prov,
                    "metric": "time",
                    "unit": "s",
                    "p50": _q(t, 0.5),
                    "p20": _q(t, 0.2),
                    "p80": _q(t, 0.8),
                },
                {
                    **base,
                    "provider": prov,
                    "metric": "rows_per_s",
                    "unit": "rows/s",
                    "p50": n_texts / _q(t, 0.5),
                    "p20": n_texts / _q(t, 0.8),
                    "p80": n_texts / _q(t, 0.2),
                },
                {**base, "provider": prov, "metric": "tokens_per_s", "unit": "tokens/s", "p50": tokens / _q(t, 0.5)},
            ]
        speedup = _q(t_st, 0.5) / _q(t_ours, 0.5)
        rows += [
            {
                **base,
                "provider": "instructfast_torch",
                "metric": "speedup_vs_sentence_transformers",
                "unit": "x",
                "p50": speedup,
            },
            {**base, "provider": "instructfast_torch", "metric": "max_abs_diff", "unit": "abs", "p50": diff},
        ]
        if dtype == "float32":
            rows.append(
                {
                    **base,
                    "provider": "instructfast_torch",
                    "metric": "target:equal_vectors",
                    "unit": "pass",
                    "p50": 1.0 if diff <= EQUAL_TOL else 0.0,
                    "config_json": {**cfg, "value": diff, "target": f"<= {EQUAL_TOL:g}"},
                }
            )
        _common.append_results(out_path, rows)
        print(
            f"  {dtype}: sentence-transformers {n_texts / _q(t_st, 0.5):,.0f} rows/s, instructfast "
            f"{n_texts / _q(t_ours, 0.5):,.0f} rows/s ({speedup:.2f}x), max abs diff {diff:.2e}",
            flush=True,
        )
        ours = st = None  # both models freed before the next dtype loads
        if device == "cuda":
            torch.cuda.empty_cache()
    tmp.cleanup()
    print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
