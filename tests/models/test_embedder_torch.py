"""The torch embedder against sentence-transformers (CPU, fp32), and how load_embedder picks it."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from instructfast.errors import ArgumentError, ArgumentTypeError, ModelError
from instructfast.models import embedder_torch
from instructfast.models.embedder import load_embedder
from instructfast.models.embedder_torch import TorchEmbedder, use_torch
from instructfast.models.registry import ModelSource
from tests.common import load_sample_records
from tests.tiny_models import hf_folder, minilm_folder


def _texts(n: int, seed: int = 0) -> list[str]:
    """``n`` sample record texts (instruction, input, output joined as the embedder's callers do),
    the two longest first: they run past every window below, so truncation is exercised."""
    recs = load_sample_records()
    texts = ["\n".join(x for x in (r["instruction"], r.get("input") or "", r["output"]) if x) for r in recs]
    texts.sort(key=len, reverse=True)
    rest = random.Random(seed).sample(texts[2:], n - 2)
    return texts[:2] + rest


@pytest.fixture(scope="module")
def tiny_sbert():
    return hf_folder("embedder-sbert")


@pytest.fixture(scope="module")
def tiny(tiny_sbert):
    return TorchEmbedder(tiny_sbert, device="cpu")


def _st_encode(folder, texts):
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(folder), device="cpu")
    full = max(len(ids) for ids in st.tokenizer(texts)["input_ids"])
    return st.encode(texts, batch_size=8, normalize_embeddings=True, convert_to_numpy=True), st.max_seq_length, full


@pytest.mark.parametrize("which", ["minilm", "embedder-bert", "embedder-sbert"])
def test_matches_sentence_transformers(which):
    # The packaged all-MiniLM-L6-v2 (window 256 from its sentence_bert_config.json), a plain
    # Hugging Face BERT folder (window = its 128 positions) and a sentence-transformers folder
    # whose max_seq_length (40) is below its positions: same window, same vectors as ST.
    folder = minilm_folder() if which == "minilm" else hf_folder(which)
    texts = _texts(10 if which == "minilm" else 24) + [""]
    ref, st_window, longest = _st_encode(folder, texts)
    emb = TorchEmbedder(folder, device="cpu")
    assert emb.max_length == st_window == {"minilm": 256, "embedder-bert": 128, "embedder-sbert": 40}[which]
    assert longest > emb.max_length  # truncation happened
    got = emb.embed(texts)
    assert got.shape == (len(texts), emb.dim) and got.dtype == np.float32
    assert emb.dim == (384 if which == "minilm" else 48)
    assert np.abs(got - ref).max() < 1e-5
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)


def test_truncation_ignores_text_past_the_window(tiny):
    # Past max_seq_length nothing counts: appending words to an over-long text changes nothing,
    # while the same words on a short text do change its vector.
    long_text = _texts(2)[0]
    a, b, short, short_more = tiny.embed(
        [long_text, long_text + " and many more words here", "A cat.", "A cat. And a dog."]
    )
    np.testing.assert_array_equal(a, b)
    assert np.abs(short - short_more).max() > 1e-2


def test_batch_invariance_and_order(tiny):
    # A row's vector does not depend on its batch-mates (padding masked) nor on input order.
    texts = _texts(30, seed=1)
    together = tiny.embed(texts)
    alone = np.concatenate([tiny.embed([t]) for t in texts[:8]])
    np.testing.assert_allclose(together[:8], alone, atol=1e-6)
    small = TorchEmbedder(tiny.source, device="cpu", token_budget=64, max_rows=3)  # many small buckets
    np.testing.assert_allclose(small.embed(texts), together, atol=1e-6)
    perm = np.random.default_rng(0).permutation(len(texts))
    np.testing.assert_allclose(tiny.embed([texts[i] for i in perm]), together[perm], atol=1e-6)


def test_empty_inputs_progress_and_errors(tiny):
    assert tiny.embed([]).shape == (0, 48)
    seen: list[int] = []
    out = tiny.embed(["", "a", "b b"], progress=seen.append)
    assert sum(seen) == 3 and np.isfinite(out).all()
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)
    with pytest.raises(ArgumentTypeError, match=r"texts\[1\] is NoneType"):
        tiny.embed(["a", None])
    with pytest.raises(ArgumentTypeError, match="not one string"):
        tiny.embed("abc")
    with pytest.raises(ArgumentError, match="needs a CUDA device"):
        TorchEmbedder(tiny.source, device="cpu", dtype="float16")
    with pytest.raises(ArgumentError, match="`dtype` must be one of"):
        TorchEmbedder(tiny.source, device="cpu", dtype="int8")


def test_thread_safe(tiny):
    texts = _texts(24, seed=2)
    chunks = [texts[i::4] for i in range(4)]
    serial = [tiny.embed(c) for c in chunks]
    with ThreadPoolExecutor(4) as ex:
        parallel = list(ex.map(tiny.embed, chunks * 2))
    for k, res in enumerate(parallel):
        np.testing.assert_allclose(res, serial[k % 4], atol=1e-6)


def test_load_embedder_backend_torch(tiny_sbert, tiny, tmp_path):
    emb = load_embedder({"embedder": str(tiny_sbert)}, device="cpu", backend="torch", threads=1)
    assert isinstance(emb, TorchEmbedder) and emb.source == tiny_sbert and emb.max_length == 40
    assert load_embedder({"embedder": str(tiny_sbert)}, device="cpu", backend="torch", threads=1) is emb  # cached
    texts = _texts(6, seed=3)
    np.testing.assert_allclose(emb.embed(texts), tiny.embed(texts), atol=1e-6)
    with pytest.raises(ArgumentError, match="`backend` must be one of"):
        load_embedder({"embedder": str(tiny_sbert)}, backend="tensorrt")
    exported = tmp_path / "exported"
    exported.mkdir()
    (exported / "model.onnx").write_bytes(b"")  # what the registry recognises as an export
    with pytest.raises(ModelError, match="needs a Hugging Face / sentence-transformers folder"):
        load_embedder({"embedder": str(exported)}, backend="torch")


@pytest.mark.parametrize(
    "backend, device, kind, ort_cuda, torch_cuda, expected",
    [
        ("auto", "cpu", "hf-folder", False, True, False),
        ("auto", "cuda", "hf-folder", True, True, False),  # onnxruntime-gpu: ORT runs on the GPU
        ("auto", "cuda", "hf-folder", False, True, True),  # CPU onnxruntime on a GPU machine
        ("auto", "cuda:1", "hf-folder", False, True, True),
        ("auto", None, "hf-folder", False, True, True),  # None: CUDA when torch sees one
        ("auto", None, "hf-folder", False, False, False),
        ("auto", "cuda", "onnx-folder", False, True, False),  # an export has no torch weights
        ("onnx", "cuda", "hf-folder", False, True, False),
        ("torch", "cpu", "hf-folder", True, False, True),
    ],
)
def test_auto_backend_choice(monkeypatch, backend, device, kind, ort_cuda, torch_cuda, expected):
    monkeypatch.setattr(embedder_torch, "_onnx_has_cuda", lambda: ort_cuda)
    monkeypatch.setattr(embedder_torch, "_torch_cuda", lambda: torch_cuda)
    assert use_torch(backend, device, ModelSource("embedder", kind, "/m", "models=")) is expected
