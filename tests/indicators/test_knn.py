"""``knn_<i>`` through score() and the CLI: user vectors, reference pools, the packaged MiniLM."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

import instructfast
from instructfast import ScoreReport
from instructfast.errors import InputFormatError, SchemaError
from instructfast.pool_index import ReferencePool, build_pool
from tests.common import load_sample_records


def sorted_distances(pool: np.ndarray, queries: np.ndarray, self_rows: bool) -> np.ndarray:
    """numpy float64 brute force: each query's sorted distances to the pool (self excluded by position)."""
    p, q = pool.astype(np.float64), queries.astype(np.float64)
    d = np.sqrt(((q[:, None, :] - p[None, :, :]) ** 2).sum(-1))
    if self_rows:
        np.fill_diagonal(d, np.inf)
    return np.sort(d, axis=1)


def unit64(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def vector_table(rng: np.random.Generator, n: int, dim: int) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    """Records with an `emb` column: duplicates, a null, an all-zero and a NaN vector."""
    x = rng.normal(size=(n, dim))
    x[3] = x[2]
    x[8] = 5 * x[2]  # same direction: a duplicate once normalised
    rows: list[list[float] | None] = [list(map(float, r)) for r in x]
    rows[1] = None
    rows[4] = [0.0] * dim
    rows[6] = [float("nan")] + [1.0] * (dim - 1)
    valid = np.ones(n, dtype=bool)
    valid[[1, 4, 6]] = False
    t = pa.table(
        {
            "instruction": [f"q{i}" for i in range(n)],
            "output": [f"a{i}" for i in range(n)],
            "emb": pa.array(rows, pa.list_(pa.float32())),
        }
    )
    return t, unit64(x.astype(np.float32).astype(np.float64)), valid


def test_vector_column_matches_brute_force(rng):
    t, u, valid = vector_table(rng, 90, 12)
    out = instructfast.score(t, indicators=["knn_6", "knn_1", "knn_3"], options={"knn_vectors": "emb"}, batch_rows=17)
    assert out.column_names == ["instruction", "output", "emb", "knn_6", "knn_1", "knn_3"]
    # rows and original columns untouched (assert_array_equal counts NaN == NaN)
    assert out.column("instruction").equals(t.column("instruction"))
    assert out.column("emb").is_null().equals(t.column("emb").is_null())
    np.testing.assert_array_equal(
        out.column("emb").combine_chunks().flatten().to_numpy(), t.column("emb").combine_chunks().flatten().to_numpy()
    )
    ref = sorted_distances(u[valid], u[valid], self_rows=True)
    for i in (1, 3, 6):
        got = np.array(out.column(f"knn_{i}").to_pylist(), dtype=object)
        assert all(v is None for v in got[~valid])
        np.testing.assert_allclose(got[valid].astype(float), ref[:, i - 1], rtol=0, atol=1e-6)
    assert out.column("knn_1")[2].as_py() < 1e-6 and out.column("knn_1")[8].as_py() < 1e-6
    rep = ScoreReport.from_table(out)
    assert rep.nulls["knn_6"] == {"null embedding": 1, "zero vector": 1, "NaN or inf in vector": 1}
    assert rep.notes == {}  # exact search: nothing to caveat


def test_fewer_rows_than_rank_gives_null_with_reason(rng):
    t, _, valid = vector_table(rng, 10, 4)  # 7 usable rows
    out = instructfast.score(t, indicators=["knn_6", "knn_7"], options={"knn_vectors": "emb"})
    assert out.column("knn_6").null_count == 3
    assert out.column("knn_7").null_count == 10
    rep = ScoreReport.from_table(out)
    assert rep.nulls["knn_7"]["fewer than 8 rows with embeddings in the pool"] == 7


def test_inconsistent_vector_lengths_are_an_error():
    t = pa.table({"instruction": ["a", "b"], "output": ["x", "y"], "emb": [[1.0, 0.0], [1.0, 0.0, 0.0]]})
    with pytest.raises(SchemaError, match="emb"):
        instructfast.score(t, indicators=["knn_1"], options={"knn_vectors": "emb"})
    with pytest.raises(SchemaError, match="not found"):
        instructfast.score(t, indicators=["knn_1"], options={"knn_vectors": "vectors"})
    with pytest.raises(instructfast.OptionError, match="unknown option 'knn_probes' \\(did you mean 'knn_nprobe'"):
        instructfast.score(t, indicators=["knn_1"], options={"knn_vectors": "emb", "knn_probes": 3})


def test_approximate_search_is_reported_in_notes(rng):
    t, u, valid = vector_table(rng, 1200, 16)
    out = instructfast.score(
        t, indicators=["knn_6"], options={"knn_vectors": "emb", "knn_exact_max": 300, "knn_recall_sample": 200}
    )
    notes = ScoreReport.from_table(out).notes["knn_6"]
    method = [k for k in notes if k.startswith("approximate (faiss IVF")]
    assert len(method) == 1 and notes[method[0]] == int(valid.sum())
    checked = notes["recall@6 check: true neighbours of sampled rows"]
    found = notes["recall@6 check: of those found by the approximate search"]
    assert checked == 200 * 6 and found >= 0.95 * checked
    got = np.array(out.column("knn_6").to_pylist(), dtype=object)[valid].astype(float)
    ref = sorted_distances(u[valid], u[valid], self_rows=True)[:, 5]
    assert (got >= ref - 1e-6).all()  # a real distance to a real row: never below the true one
    assert np.isclose(got, ref, atol=1e-6).mean() > 0.8


def test_reference_pool_round_trip_and_scoring(rng, tmp_path):
    pool_t, pool_u, pool_valid = vector_table(rng, 120, 10)
    pool = build_pool(pool_t, vectors_column="emb", source="memory")
    path = pool.save(tmp_path / "pool")
    with pytest.raises(FileExistsError):
        pool.save(path)
    loaded = ReferencePool.load(path)
    np.testing.assert_array_equal(loaded.vectors, pool.vectors)
    np.testing.assert_array_equal(loaded.source_rows, np.flatnonzero(pool_valid))
    m = json.loads((path / "manifest.json").read_text())
    assert m["count"] == 117 and m["dim"] == 10 and m["index"]["type"] == "flat"
    assert m["vectors"] == {"kind": "vectors", "column": "emb", "dim": 10}
    assert m["source"]["left_out"] == {"null embedding": 1, "zero vector": 1, "NaN or inf in vector": 1}

    # other rows against the pool: nothing excluded
    q_t, q_u, q_valid = vector_table(rng, 30, 10)
    out = instructfast.score(q_t, indicators=["knn_1", "knn_6"], options={"knn_vectors": "emb", "knn_pool": str(path)})
    ref = sorted_distances(pool_u[pool_valid], q_u[q_valid], self_rows=False)
    for i in (1, 6):
        got = np.array(out.column(f"knn_{i}").to_pylist(), dtype=object)
        np.testing.assert_allclose(got[q_valid].astype(float), ref[:, i - 1], atol=1e-6)

    # the pool's own rows, declared as members: same values as the table being its own pool
    opts = {"knn_vectors": "emb", "knn_pool": str(path), "knn_table_in_pool": "true"}
    inside = instructfast.score(pool_t, indicators=["knn_1", "knn_6"], options=opts, batch_rows=50)
    alone = instructfast.score(pool_t, indicators=["knn_1", "knn_6"], options={"knn_vectors": "emb"})
    for c in ("knn_1", "knn_6"):
        np.testing.assert_allclose(
            np.array(inside.column(c).to_pylist(), dtype=float),
            np.array(alone.column(c).to_pylist(), dtype=float),
            atol=1e-7,
        )
    assert "knn_1" not in (ScoreReport.from_table(inside).notes or {})  # every row found its copy


def test_pool_mismatches_are_clear_errors(rng, tmp_path):
    t, _, _ = vector_table(rng, 20, 10)
    path = build_pool(t, vectors_column="emb").save(tmp_path / "p")
    other = pa.table({"instruction": ["a"], "output": ["b"], "emb": [[1.0, 2.0, 3.0]]})
    with pytest.raises(SchemaError, match="3 values.*10"):
        instructfast.score(other, indicators=["knn_1"], options={"knn_vectors": "emb", "knn_pool": str(path)})
    pool = ReferencePool.load(path)
    with pytest.raises(InputFormatError, match="both with the embedder"):
        pool.check_vectors({"kind": "embedder", "model": "all-MiniLM-L6-v2", "dim": 10})
    emb_pool = ReferencePool(pool.vectors, pool.source_rows, {"kind": "embedder", "model": "a", "dim": 10})
    with pytest.raises(InputFormatError, match="embedder b, dim 10"):
        emb_pool.check_vectors({"kind": "embedder", "model": "b", "dim": 10})
    with pytest.raises(InputFormatError, match="not a reference pool"):
        ReferencePool.load(tmp_path)


def test_large_pool_saves_a_trained_ivf_index(rng, tmp_path):
    t, u, valid = vector_table(rng, 2000, 8)
    path = build_pool(t, vectors_column="emb", exact_max=500).save(tmp_path / "ivf")
    assert (path / "index.faiss").is_file()
    pool = ReferencePool.load(path)
    assert pool.ivf is not None and pool.ivf.ntotal == int(valid.sum())
    q = unit64(rng.normal(size=(40, 8))).astype(np.float32)
    d, _, rep = pool.index(exact_max=500).search(q, 3)
    assert not rep.exact and rep.recall(3) >= 0.95
    ref = sorted_distances(pool.vectors, q, self_rows=False)[:, :3]
    assert (d >= ref - 1e-9).all()
    d_exact, _, rep = pool.index().search(q, 3)  # the default exact_max covers it: exact again
    assert rep.exact
    np.testing.assert_allclose(d_exact, ref, atol=1e-12)


# ---------------------------------------------------------------------- the real embedder


def _records_with_edge_cases() -> list[dict]:
    recs = [{k: r.get(k) for k in ("instruction", "input", "output")} for r in load_sample_records()[:36]]
    recs.append(dict(recs[0]))  # an exact duplicate of row 0
    recs.append({"instruction": "Say nothing.", "input": "", "output": None})  # null output
    recs.append({"instruction": "", "input": "", "output": " "})  # nothing to embed
    return recs


def _st_text(r: dict) -> str:
    parts = [r["instruction"]] + ([r["input"]] if r.get("input") else []) + [r["output"]]
    return "\n".join(parts)


@pytest.mark.slow
def test_minilm_end_to_end_matches_sentence_transformers(tmp_path):
    from sentence_transformers import SentenceTransformer

    from instructfast.models.registry import resolve

    recs = _records_with_edge_cases()
    out = instructfast.score(pa.Table.from_pylist(recs), indicators=["knn_6", "knn_1"])
    valid = np.array([r["output"] is not None and _st_text(r).strip() != "" for r in recs])
    assert valid.sum() == len(recs) - 2
    st = SentenceTransformer(resolve("embedder").location, device="cpu")
    e = st.encode([_st_text(r) for r, ok in zip(recs, valid) if ok], normalize_embeddings=True, batch_size=16)
    ref = sorted_distances(e, e, self_rows=True)
    for i in (1, 6):
        got = np.array(out.column(f"knn_{i}").to_pylist(), dtype=object)
        assert got[~valid].tolist() == [None, None]
        np.testing.assert_allclose(got[valid].astype(float), ref[:, i - 1], rtol=0, atol=1e-4)
    assert out.column("knn_1")[0].as_py() < 1e-5 and out.column("knn_1")[36].as_py() < 1e-5
    assert ScoreReport.from_table(out).nulls["knn_6"] == {"output is null": 1, "text to embed is empty": 1}


@pytest.mark.slow
def test_cli_index_build_then_score_against_it(tmp_path, capsys):
    from instructfast.cli import main

    src = tmp_path / "recs.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in _records_with_edge_cases()), encoding="utf-8")
    pool = tmp_path / "pool"
    assert main(["index", "build", str(src), "-o", str(pool), "--no-progress"]) == 0
    m = json.loads((pool / "manifest.json").read_text())
    assert m["count"] == 37 and m["dim"] == 384 and m["vectors"]["kind"] == "embedder"
    assert m["source"]["left_out"] == {"output is null": 1, "text to embed is empty": 1}
    with pytest.raises(SystemExit, match="already exists"):
        main(["index", "build", str(src), "-o", str(pool)])

    a, b = tmp_path / "self.parquet", tmp_path / "pool.parquet"
    assert main(["score", str(src), "-o", str(a), "-i", "knn_6", "--no-progress"]) == 0
    opts = ["--option", f"knn_pool={pool}", "--option", "knn_table_in_pool=true"]
    assert main(["score", str(src), "-o", str(b), "-i", "knn_6", "--no-progress", *opts]) == 0
    sa = instructfast.read_table(a).column("knn_6").to_pylist()
    sb = instructfast.read_table(b).column("knn_6").to_pylist()
    assert [x is None for x in sa] == [x is None for x in sb] and sum(x is None for x in sa) == 2
    np.testing.assert_allclose([x for x in sa if x is not None], [x for x in sb if x is not None], atol=1e-5)

    # an embedder pool cannot be searched with user vectors
    t = pa.table({"instruction": ["a"], "output": ["b"], "emb": [[1.0] * 384]})
    with pytest.raises(InputFormatError, match="embedder vectors"):
        instructfast.score(t, indicators=["knn_1"], options={"knn_vectors": "emb", "knn_pool": str(pool)})
