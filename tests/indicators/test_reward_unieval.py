"""reward / naturalness / coherence / understandability through score(), against independent torch forwards."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pytest
import torch

import instructfast
from instructfast.indicators import describe
from instructfast.models.onnx_runtime import shared_model
from instructfast.options import ScoreOptions
from instructfast.scoring import ScoreReport
from tests.common import load_sample_records
from tests.tiny_models import exported, hf_folder

pytestmark = pytest.mark.slow  # shares the tiny exports with test_export.py


def _records(n: int = 24) -> list[dict]:
    """Random real records (fresh each run) plus edge rows: null/empty output, empty input, long text."""
    # short enough for the tiny models' 256-token windows (the long edge row tests overflow)
    recs = [r for r in load_sample_records() if len(r["instruction"] + (r.get("input") or "") + r["output"]) < 500]
    rows = random.sample(recs, n)
    rows += [
        {"instruction": "Say hi.", "input": "", "output": None},
        {"instruction": "Say hi.", "input": None, "output": "   "},
        {"instruction": None, "input": "", "output": "An answer without a question."},
        {"instruction": "Repeat.", "input": "", "output": "word " * 400},  # past the tiny reward windows
    ]
    return [{"instruction": r["instruction"], "input": r.get("input"), "output": r["output"]} for r in rows]


def _prompt(r: dict) -> str | None:
    if r["instruction"] is None:
        return None
    return r["instruction"] + ("\n" + r["input"] if r.get("input") else "")


def test_reward_pair_matches_hf_sequence_classifier():
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    rows = _records()
    out = instructfast.score(
        pa.Table.from_pylist(rows), indicators="reward", models={"reward": str(exported("reward-pair"))}
    )
    got = out.column("reward").to_pylist()
    tok = AutoTokenizer.from_pretrained(str(hf_folder("reward-pair")))
    model = AutoModelForSequenceClassification.from_pretrained(str(hf_folder("reward-pair"))).eval()
    checked = 0
    for r, g in zip(rows, got):
        p = _prompt(r)
        if r["output"] is None or not r["output"].strip() or p is None:
            assert g is None
            continue
        enc = tok(p, r["output"], return_tensors="pt")
        if enc["input_ids"].shape[1] > 256:
            assert g is None  # on_overflow="null"
            continue
        with torch.no_grad():
            ref = model(**enc).logits[0, 0].item()
        assert g == pytest.approx(ref, abs=1e-4, rel=1e-4)
        checked += 1
    assert checked >= 10
    nulls = ScoreReport.from_table(out).nulls["reward"]
    assert nulls["output is null"] == sum(r["output"] is None for r in rows)
    assert nulls["output is empty"] == sum(r["output"] is not None and not r["output"].strip() for r in rows)
    assert nulls["instruction is null"] == 1
    assert nulls["text exceeds the reward model's window"] >= 1


def test_reward_pair_truncate_matches_hf_longest_first():
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    rows = [{"instruction": "Repeat the word.", "input": "", "output": "word " * 400}]
    out = instructfast.score(
        pa.Table.from_pylist(rows),
        indicators="reward",
        models={"reward": str(exported("reward-pair"))},
        options={"on_overflow": "truncate"},
    )
    tok = AutoTokenizer.from_pretrained(str(hf_folder("reward-pair")))
    model = AutoModelForSequenceClassification.from_pretrained(str(hf_folder("reward-pair"))).eval()
    enc = tok(_prompt(rows[0]), rows[0]["output"], truncation="longest_first", max_length=256, return_tensors="pt")
    with torch.no_grad():
        ref = model(**enc).logits[0, 0].item()
    assert out.column("reward")[0].as_py() == pytest.approx(ref, abs=1e-4)
    assert ScoreReport.from_table(out).notes["reward"]


def _oasst_reference(texts: list[str]) -> list[float]:
    """GPT-NeoX body + out_proj read straight from the checkpoint's tensors (no instructfast code)."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer, GPTNeoXConfig, GPTNeoXModel

    folder = hf_folder("reward-oasst")
    import json

    raw = json.loads((folder / "config.json").read_text())
    cfg = GPTNeoXConfig(**{k: v for k, v in raw.items() if k not in ("model_type", "architectures", "pooling")})
    state = load_file(str(folder / "model.safetensors"))
    body = GPTNeoXModel(cfg)
    body.load_state_dict(
        {k[len("gpt_neox.") :]: v for k, v in state.items() if k.startswith("gpt_neox.")}, strict=False
    )
    body.eval()
    tok = AutoTokenizer.from_pretrained(str(folder))
    out = []
    with torch.no_grad():
        for t in texts:
            ids = tok(t, return_tensors="pt")["input_ids"]
            h = body(input_ids=ids).last_hidden_state[0, -1]
            out.append(float(h @ state["out_proj.weight"][0] + state["out_proj.bias"][0]))
    return out


def test_reward_oasst_matches_last_token_head():
    rows = _records(16)
    out = instructfast.score(
        pa.Table.from_pylist(rows), indicators=["reward"], models={"reward": str(exported("reward-oasst"))}
    )
    got = out.column("reward").to_pylist()
    keep = [i for i, r in enumerate(rows) if r["output"] and r["output"].strip() and _prompt(r) is not None]
    texts = [f"<|prompter|>{_prompt(rows[i])}<|endoftext|><|assistant|>{rows[i]['output']}<|endoftext|>" for i in keep]
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(hf_folder("reward-oasst")))
    fits = [len(tok(t)["input_ids"]) <= 256 for t in texts]
    ref = _oasst_reference([t for t, f in zip(texts, fits) if f])
    ref_it = iter(ref)
    for i, f in zip(keep, fits):
        if f:
            assert got[i] == pytest.approx(next(ref_it), abs=1e-4, rel=1e-4)
        else:
            assert got[i] is None
    assert sum(fits) >= 8
    assert np.std([r for r in ref]) > 1e-3
    assert all(got[i] is None for i in range(len(rows)) if i not in keep)


def _unieval_reference(texts: list[str]) -> np.ndarray:
    from transformers import AutoTokenizer, T5ForConditionalGeneration

    folder = str(hf_folder("unieval"))
    tok = AutoTokenizer.from_pretrained(folder)
    model = T5ForConditionalGeneration.from_pretrained(folder).eval()
    yes, no = tok("Yes").input_ids[0], tok("No").input_ids[0]
    out = []
    with torch.no_grad():
        for t in texts:
            enc = tok(t, truncation=True, max_length=1024, return_tensors="pt")
            logits = model(**enc, decoder_input_ids=torch.zeros((1, 1), dtype=torch.long)).logits[0, 0]
            p = torch.softmax(logits.double(), -1)
            out.append(float(p[yes] / (p[yes] + p[no])))
    return np.array(out)


def test_unieval_matches_t5_forward():
    rows = _records(12)
    out = instructfast.score(
        pa.Table.from_pylist(rows), indicators="unieval", models={"unieval": str(exported("unieval"))}
    )
    q = {
        "naturalness": "question: Is this a natural response in the dialogue? </s> response: {o}",
        "coherence": "question: Is this a coherent response given the dialogue history? </s> response: {o} </s> dialogue history: {h}",
        "understandability": "question: Is this an understandable response in the dialogue? </s> response: {o}",
    }
    report = ScoreReport.from_table(out)
    for dim, tmpl in q.items():
        got = out.column(dim).to_pylist()
        keep = [i for i, r in enumerate(rows) if r["output"] and r["output"].strip()]
        if dim == "coherence":
            keep = [i for i in keep if rows[i]["instruction"] is not None]
        texts = [tmpl.format(o=rows[i]["output"], h=(_prompt(rows[i]) or "") + "\n\n") for i in keep]
        ref = _unieval_reference(texts)
        np.testing.assert_allclose([got[i] for i in keep], ref, atol=1e-5)
        assert all(got[i] is None for i in range(len(rows)) if i not in keep)
        assert report.nulls[dim]["output is null"] == 1
        assert report.nulls[dim]["output is empty"] == sum(
            r["output"] is not None and not r["output"].strip() for r in rows
        )
    assert report.nulls["coherence"]["instruction is null"] == 1


def test_shared_model_is_thread_safe():
    m = shared_model(exported("reward-pair"), device="cpu", threads=2)
    assert shared_model(exported("reward-pair"), device="cpu", threads=2) is m
    texts = [(_prompt(r) or "", r["output"] or "") for r in _records(40)]
    ids, _ = m.encode(texts, truncate=True)
    chunks = [ids[i::4] for i in range(4)]
    serial = [m.run(c) for c in chunks]
    with ThreadPoolExecutor(8) as ex:
        parallel = list(ex.map(m.run, chunks * 4))
    for k, res in enumerate(parallel):
        np.testing.assert_allclose(res, serial[k % 4], atol=1e-5)


def test_unavailable_without_models_says_how_to_get_them(monkeypatch):
    for v in ("INSTRUCTFAST_MODEL_REWARD", "INSTRUCTFAST_MODEL_UNIEVAL"):
        monkeypatch.delenv(v, raising=False)
    info = {i.name: i for i in describe(ScoreOptions())}
    for name, cmd in (("reward", "instructfast export reward"), ("unieval", "instructfast export unieval")):
        assert not info[name].availability.ok
        assert cmd in info[name].availability.explain()
    with pytest.raises(instructfast.IndicatorUnavailableError, match="reward"):
        instructfast.score(pa.table({"instruction": ["a"], "output": ["b"]}), indicators="reward")
    wrong = {"reward": str(exported("unieval"))}
    with pytest.raises(ValueError, match="unieval"):
        instructfast.score(pa.table({"instruction": ["a"], "output": ["b"]}), indicators="reward", models=wrong)


def test_rule_v3_end_to_end():
    rows = _records(10)[:10]
    models = {"reward": str(exported("reward-pair")), "unieval": str(exported("unieval"))}
    out = instructfast.score(
        pa.Table.from_pylist(rows), rule="instructmining-v3", models=models, indicators=["reward", "unieval"]
    )
    r = instructfast.get_rule("instructmining-v3")
    for row in out.to_pylist():
        if row["reward"] is None:
            assert row["predicted_log_loss"] is None
            continue
        want = r.intercept + sum(c * row[k] for k, c in r.coefficients.items())
        assert row["predicted_log_loss"] == pytest.approx(want, abs=1e-9)


def test_rule_v1_end_to_end_with_knn_and_lm_tokens():
    """v1 needs reward (tiny ONNX), output_tokens (the LM tokenizer) and knn_6 (packaged MiniLM + faiss)."""
    rows = [r for r in _records(16) if r["instruction"] and r["output"] and r["output"].strip()]
    models = {"reward": str(exported("reward-pair"))}
    out = instructfast.score(pa.Table.from_pylist(rows), rule="instructmining-v1", models=models, indicators=["reward"])
    r = instructfast.get_rule("instructmining-v1")
    assert set(r.coefficients) == {"reward", "output_tokens", "knn_6"}
    got = out.to_pylist()
    assert (
        sum(row["predicted_log_loss"] is not None for row in got) >= len(rows) // 2
    )  # rows past the tiny window are null
    for row in got:
        if any(row[k] is None for k in r.coefficients):
            assert row["predicted_log_loss"] is None
            continue
        want = r.intercept + sum(c * row[k] for k, c in r.coefficients.items())
        assert row["predicted_log_loss"] == pytest.approx(want, abs=1e-9)
        assert 0.0 <= row["knn_6"] <= 2.0 and row["output_tokens"] > 0
