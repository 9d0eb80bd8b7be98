"""The MiniLM embedder on ONNX Runtime against sentence-transformers, on real sample records."""

from __future__ import annotations

import json
import random
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pytest

from instructfast.columns import CanonicalBatch
from instructfast.models import embedder as emb_mod
from instructfast.models.embedder import load_embedder
from instructfast.models.export import sha256_file
from instructfast.prompts import embedding_texts
from tests.common import load_sample_records
from tests.tiny_models import minilm_folder


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A fresh cache for this module (the packaged MiniLM is exported into it once), restored afterwards."""
    path = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("INSTRUCTFAST_CACHE", str(path))
        yield path


@pytest.fixture(scope="module")
def embedder(cache):
    return load_embedder(device="cpu")


@pytest.fixture(scope="module")
def st_model():
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_folder()), device="cpu")


def _batch(rows: list[dict]) -> CanonicalBatch:
    return CanonicalBatch(
        instruction=pa.array([r["instruction"] for r in rows], pa.string()),
        input=pa.array([r.get("input") for r in rows], pa.string()),
        output=pa.array([r["output"] for r in rows], pa.string()),
        num_rows=len(rows),
    )


@pytest.mark.slow  # the one-time export of MiniLM (~30 s on 2 cores)
def test_matches_sentence_transformers(embedder, st_model):
    recs = load_sample_records()
    texts = embedding_texts(_batch(recs))
    longest = sorted(range(len(texts)), key=lambda i: -len(texts[i]))[:4]  # past 256 word pieces: truncation
    pick = sorted(set(random.sample(range(len(texts)), 60)) | set(longest))
    sub = [texts[i] for i in pick]
    assert max(len(embedder.model.encode([t], truncate=False)[0][0]) for t in sub) > embedder.max_length
    got = embedder.embed(sub)
    ref = st_model.encode(sub, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
    assert got.shape == (len(sub), 384) and got.dtype == np.float32
    assert np.abs(got - ref).max() < 1e-5
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_cache_manifest_and_reuse(embedder, cache):
    folder = embedder.source
    assert folder.parent == cache / "onnx"
    m = json.loads((folder / "manifest.json").read_text())
    assert m["kind"] == "embedder" and m["dim"] == 384 and m["max_length"] == 256
    assert m["files"]["model.onnx"] == sha256_file(folder / "model.onnx")
    assert m["verification"]["max_abs_diff_batched"] <= 1e-5
    stamp = (folder / "model.onnx").stat().st_mtime_ns
    assert load_embedder(device="cpu") is embedder  # cached per process
    emb_mod._LOADED.clear()
    again = load_embedder(device="cpu")  # a new process would do this: reuse the export
    assert again.source == folder and (folder / "model.onnx").stat().st_mtime_ns == stamp
    # an exported folder given directly is loaded as it is
    direct = load_embedder({"embedder": str(folder)}, device="cpu", threads=1)
    assert direct.source == folder


def test_padding_invariance_and_order(embedder):
    recs = random.sample(load_sample_records(), 24)
    texts = embedding_texts(_batch(recs))
    together = embedder.embed(texts)
    alone = np.concatenate([embedder.embed([t]) for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    shuffled = list(range(len(texts)))
    random.shuffle(shuffled)
    np.testing.assert_allclose(embedder.embed([texts[i] for i in shuffled]), together[shuffled], atol=1e-5)


def test_thread_safe(embedder):
    texts = embedding_texts(_batch(random.sample(load_sample_records(), 32)))
    chunks = [texts[i::4] for i in range(4)]
    serial = [embedder.embed(c) for c in chunks]
    with ThreadPoolExecutor(6) as ex:
        parallel = list(ex.map(embedder.embed, chunks * 3))
    for k, res in enumerate(parallel):
        np.testing.assert_allclose(res, serial[k % 4], atol=1e-6)


def test_empty_and_bad_texts(embedder, st_model):
    got = embedder.embed(["", "hello"])
    ref = st_model.encode(["", "hello"], normalize_embeddings=True)
    assert np.abs(got - ref).max() < 1e-5
    assert embedder.embed([]).shape == (0, 384)
    seen = []
    embedder.embed(["a", "b b", "c c c"], progress=seen.append)
    assert sum(seen) == 3
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        embedder.embed(["a", None])
    with pytest.raises(TypeError, match="not one string"):
        embedder.embed("abc")


def test_embedding_texts_join():
    b = CanonicalBatch(
        instruction=pa.array(["I", "I", None, "I", None]),
        input=pa.array(["x", "", "x", None, None]),
        output=pa.array(["O", "O", "O", None, None]),
        num_rows=5,
    )
    assert embedding_texts(b) == ["I\nx\nO", "I\nO", "O", "I", ""]
    no_input = CanonicalBatch(instruction=pa.array(["I"]), output=pa.array(["O"]), num_rows=1)
    assert embedding_texts(no_input) == ["I\nO"]
