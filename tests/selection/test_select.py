"""select(): every method, budgets, nulls, determinism, inputs, errors, and the real embedder end to end."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import instructfast
from instructfast import RuleError, SchemaError, get_rule, select
from instructfast.selection import resolve_budget
from instructfast.selection.kcenter import kcenter_greedy


def records(n: int, rng) -> pa.Table:
    return pa.table(
        {
            "instruction": [f"task {i}" for i in range(n)],
            "input": [""] * n,
            "output": [f"answer {i}" for i in range(n)],
            "predicted_log_loss": rng.integers(0, 20, n).astype(np.float64) / 10,  # many ties on purpose
        }
    )


# ------------------------------------------------------------------------- budgets


@pytest.mark.parametrize(
    "k,fraction,available,expect",
    [
        (None, 0.005, 1000, 5),
        (None, 0.0025, 1000, 3),
        (None, 0.0024, 1000, 2),
        (None, 1e-9, 10, 1),
        (None, 1.0, 7, 7),
        (3, None, 3, 3),
        (None, 0.5, 5, 3),
    ],
)
def test_budget_rounding(k, fraction, available, expect):
    assert resolve_budget(k, fraction, available) == expect


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({}, "exactly one of `k`"),
        ({"k": 2, "fraction": 0.1}, "exactly one of `k`"),
        ({"k": 0}, r"`k` must be in \[1, 8\] \(the rows available to select\), got 0"),
        ({"k": 9}, r"`k` must be in \[1, 8\]"),
        ({"k": 2.0}, r"`k` must be an integer"),
        ({"fraction": 0.0}, r"0 < fraction <= 1, got 0.0"),
        ({"fraction": 1.5}, r"0 < fraction <= 1, got 1.5"),
        ({"k": 1, "method": "best"}, r"`method` must be one of"),
    ],
)
def test_budget_errors(kwargs, match):
    t = records(10, np.random.default_rng(0))
    t = t.set_column(3, "predicted_log_loss", pa.array([0.1] * 8 + [None, float("nan")]))  # 8 available
    with pytest.raises(ValueError, match=match):
        select(t, **({"method": "rule"} | kwargs))


# ------------------------------------------------------------------------- rule


def test_rule_ranks_ascending_with_stable_ties_and_skips_nulls(seed):
    rng = np.random.default_rng(seed)
    t = records(500, rng)
    scores = t.column("predicted_log_loss").to_numpy().copy()
    nulls = rng.choice(500, 37, replace=False)
    scores[nulls[:20]] = np.nan
    arr = pa.array(scores, mask=np.isin(np.arange(500), nulls[20:]))  # 20 NaN, 17 null
    t = t.set_column(3, "predicted_log_loss", arr)
    res = select(t, fraction=0.1, method="rule")
    ok = np.flatnonzero(~np.isin(np.arange(500), nulls))
    ref = sorted(ok.tolist(), key=lambda i: (scores[i], i))[: round(0.1 * ok.size)]
    assert res.positions.tolist() == ref and res.positions.dtype == np.int64
    assert res.k == 46 and res.available == 463 and res.total == 500
    assert res.nulls == {"null predicted_log_loss": 37}
    assert res.table.column("instruction").to_pylist() == [f"task {i}" for i in ref]
    assert res.table.schema.names == t.schema.names


def test_rule_scores_with_a_rule_when_the_column_is_absent(seed):
    rng = np.random.default_rng(seed)
    n = 200
    t = pa.table(
        {
            "instruction": ["q"] * n,
            "output": ["a"] * n,
            "reward": rng.normal(size=n),
            "output_tokens": rng.integers(1, 500, n),
            "knn_6": pa.array(rng.random(n), mask=rng.random(n) < 0.1),
        }
    )
    res = select(t, k=15, method="rule", rule="instructmining-v1")
    v = get_rule("instructmining-v1").apply(t).to_numpy(zero_copy_only=False)
    ok = np.flatnonzero(~np.isnan(v))
    assert res.positions.tolist() == sorted(ok.tolist(), key=lambda i: (v[i], i))[:15]
    assert res.nulls == {"null predicted_log_loss": n - ok.size}
    with pytest.raises(RuleError, match=r"ranks by `predicted_log_loss`, which is not in the data.*pass `rule=`"):
        select(t, k=3, method="rule")
    with pytest.raises(RuleError, match=r"`nope`: no indicator makes this column"):
        select(
            t.drop_columns(["knn_6"]).append_column("x", pa.array([1] * n)),
            k=3,
            method="rule",
            rule={"name": "r", "intercept": 0.0, "coefficients": {"nope": 1.0}},
        )


def test_rule_custom_column_and_type_error():
    t = pa.table({"instruction": ["a", "b", "c"], "output": ["x", "y", "z"], "loss": [3, 1, 2], "s": ["1", "2", "3"]})
    assert select(t, k=2, method="rule", score_column="loss").positions.tolist() == [1, 2]
    with pytest.raises(SchemaError, match=r"score column `s` must be numeric, got string"):
        select(t, k=2, method="rule", score_column="s")


# ------------------------------------------------------------------------- random


def test_random_deterministic_distinct_and_seeded():
    t = records(1000, np.random.default_rng(0))
    a, b = select(t, k=50, method="random", seed=7), select(t, k=50, method="random", seed=7)
    assert a.positions.tolist() == b.positions.tolist()
    assert len(set(a.positions.tolist())) == 50 and a.positions.min() >= 0 and a.positions.max() < 1000
    assert a.positions.tolist() != select(t, k=50, method="random", seed=8).positions.tolist()
    assert a.positions.tolist() == np.random.default_rng(7).choice(1000, 50, replace=False).tolist()


# ------------------------------------------------------------------------- embedding methods


def with_vectors(rng, n=600, d=12, fixed=True):
    x = rng.standard_normal((n, d)).astype(np.float32)
    t = records(n, rng)
    typ = pa.list_(pa.float32(), d) if fixed else pa.list_(pa.float32())
    return t.append_column("emb", pa.array(list(x), type=typ)), x


@pytest.mark.parametrize("fixed", [True, False])
def test_kcenter_column_is_farthest_first_on_unit_vectors(fixed, seed):
    rng = np.random.default_rng(seed)
    t, x = with_vectors(rng, fixed=fixed)
    res = select(t, k=25, method="kcenter", embeddings="emb", seed=3)
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    assert res.positions.tolist() == kcenter_greedy(u, 25, seed=3).tolist()
    assert select(t, k=25, method="kcenter", embeddings=x, seed=3).positions.tolist() == res.positions.tolist()
    chunked = pa.concat_tables([t.slice(0, 250), t.slice(250, 100), t.slice(350)])  # sliced chunks, offsets
    assert (
        select(chunked, k=25, method="kcenter", embeddings="emb", seed=3).positions.tolist() == res.positions.tolist()
    )
    assert res.nulls == {} and res.available == 600


def test_kcenter_never_selects_missing_vectors_and_counts_them(seed):
    rng = np.random.default_rng(seed)
    n, d = 300, 6
    x = rng.standard_normal((n, d)).astype(np.float32)
    x[5] = 0.0  # zero vector
    x[7, 2] = np.nan
    x[9, 0] = np.inf
    null = np.zeros(n, bool)
    null[[11, 13]] = True
    emb = pa.array([None if null[i] else list(x[i]) for i in range(n)], type=pa.list_(pa.float32(), d))
    t = records(n, rng).append_column("emb", emb)
    res = select(t, fraction=1.0, method="kcenter", embeddings="emb")
    bad = {5, 7, 9, 11, 13}
    assert res.k == res.available == n - 5 and not bad & set(res.positions.tolist())
    assert res.nulls == {"null embedding": 2, "zero vector": 1, "NaN or inf in vector": 2}
    assert "left out 5" in res.summary()
    # the same picks as k-center on the good rows alone
    good = np.array([i for i in range(n) if i not in bad])
    u = x[good] / np.linalg.norm(x[good], axis=1, keepdims=True)
    res = select(t, k=20, method="kcenter", embeddings="emb", seed=1)
    assert res.positions.tolist() == good[kcenter_greedy(u, 20, seed=1)].tolist()


def test_kcenter_already_selected(seed):
    rng = np.random.default_rng(seed)
    t, x = with_vectors(rng, n=200)
    seeds = [3, 50, 199]
    res = select(t, k=10, method="kcenter", embeddings="emb", already_selected=seeds)
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    assert res.positions.tolist() == kcenter_greedy(u, 10, already_selected=seeds).tolist()
    with pytest.raises(ValueError, match=r"in \[1, 197\]"):
        select(t, k=198, method="kcenter", embeddings="emb", already_selected=seeds)
    t2 = t.set_column(4, "emb", pa.array([None] + list(x[1:]), type=t.schema.field("emb").type))
    with pytest.raises(ValueError, match=r"`already_selected` rows \[0\] have no usable embedding"):
        select(t2, k=2, method="kcenter", embeddings="emb", already_selected=[0, 4])
    with pytest.raises(ValueError, match="kcenter method only"):
        select(t, k=2, method="kmeans-kcenter", embeddings="emb", already_selected=[1])


def test_kmeans_kcenter_through_select(seed):
    rng = np.random.default_rng(seed)
    t, x = with_vectors(rng, n=900, d=8)
    res = select(t, fraction=0.05, method="kmeans-kcenter", embeddings="emb", clusters=6, seed=4)
    again = select(t, fraction=0.05, method="kmeans-kcenter", embeddings="emb", clusters=6, seed=4)
    assert res.positions.tolist() == again.positions.tolist() and res.k == 45
    assert np.all(np.diff(res.positions) > 0)
    assert res.quotas.sum() == 45 and np.bincount(res.clusters, minlength=6).tolist() == res.quotas.tolist()
    default = select(t, k=16, method="kmeans-kcenter", embeddings="emb")
    assert default.quotas.size == 4  # ceil(sqrt(16)) clusters
    calls = []
    select(t, k=16, method="kmeans-kcenter", embeddings="emb", progress=calls.append)
    assert sum(calls) == 16


@pytest.mark.parametrize(
    "column,match",
    [
        ("nope", r"embeddings column `nope` not found; found columns: \['instruction'"),
        ("instruction", r"must be a \(fixed-size\) list of numbers, got string"),
        ("strs", r"must hold numbers, got lists of string"),
        ("ragged", r"row 1 has 3 values, row 0 of the valid rows has 2"),
    ],
)
def test_embedding_column_errors(column, match):
    t = pa.table(
        {
            "instruction": ["a", "b"],
            "output": ["x", "y"],
            "strs": [["a"], ["b"]],
            "ragged": [[1.0, 2.0], [1.0, 2.0, 3.0]],
        }
    )
    with pytest.raises(SchemaError, match=match):
        select(t, k=1, method="kcenter", embeddings=column)
    with pytest.raises(ValueError, match=r"shape \[2, d\]"):
        select(t, k=1, method="kcenter", embeddings=np.ones((3, 2)))


# ------------------------------------------------------------------------- inputs


def test_accepts_paths_dicts_and_readers(tmp_path, seed):
    rng = np.random.default_rng(seed)
    t = records(50, rng)
    ref = select(t, k=5, method="rule").positions.tolist()
    path = tmp_path / "scored.parquet"
    pq.write_table(t, path)
    assert select(path, k=5, method="rule").positions.tolist() == ref
    assert select(str(path), k=5, method="rule").positions.tolist() == ref
    assert select(t.to_pydict(), k=5, method="rule").positions.tolist() == ref
    assert select(t.to_reader(max_chunksize=7), k=5, method="rule").positions.tolist() == ref


# ------------------------------------------------------------------------- the real embedder


@pytest.mark.slow  # ~30 s on 2 cores: ORT session plus the sentence-transformers reference
def test_kcenter_with_packaged_minilm_matches_sentence_transformers(sample_table):
    from sentence_transformers import SentenceTransformer

    from instructfast.models.registry import resolve

    t = sample_table.slice(0, 40)
    out = t.column("output").to_pylist()
    out[6] = None  # a record without a response is never selected
    t = t.set_column(t.column_names.index("output"), "output", pa.array(out, pa.string()))
    res = select(t, k=8, method="kcenter", seed=2)
    assert res.nulls == {"null output": 1} and 6 not in res.positions.tolist()

    st = SentenceTransformer(str(resolve("embedder", None).location), device="cpu")
    texts = []
    for r in t.to_pylist():
        texts.append("\n".join(p for p in (r["instruction"], r.get("input") or None, r["output"]) if p is not None))
    good = np.array([i for i in range(40) if i != 6])
    ref = st.encode([texts[i] for i in good], normalize_embeddings=True, convert_to_numpy=True)
    assert res.positions.tolist() == good[kcenter_greedy(ref.astype(np.float64), 8, seed=2)].tolist()
    km = select(t, k=6, method="kmeans-kcenter", clusters=2, seed=0)
    assert km.quotas.sum() == 6 and len(set(km.positions.tolist())) == 6 and 6 not in km.positions.tolist()


# ------------------------------------------------------------------------- CLI


def test_cli_select_writes_records_and_positions(tmp_path, capsys, seed):
    from instructfast.cli import main

    rng = np.random.default_rng(seed)
    t, x = with_vectors(rng, n=120, d=5)
    src = tmp_path / "scored.parquet"
    pq.write_table(t, src)

    assert (
        main(
            [
                "select",
                str(src),
                "-o",
                str(tmp_path / "top.jsonl"),
                "--top",
                "7",
                "--positions",
                str(tmp_path / "pos.csv"),
            ]
        )
        == 0
    )
    ref = select(t, k=7, method="rule")
    got = instructfast.read_table(tmp_path / "top.jsonl")
    assert got.column("instruction").to_pylist() == ref.table.column("instruction").to_pylist()
    assert instructfast.read_table(tmp_path / "pos.csv").column("position").to_pylist() == ref.positions.tolist()
    assert "selected 7 of 120 available rows" in capsys.readouterr().out

    out = tmp_path / "kc.parquet"
    assert (
        main(
            [
                "select",
                str(src),
                "-o",
                str(out),
                "--fraction",
                "0.1",
                "--method",
                "kcenter",
                "--embeddings",
                "emb",
                "--seed",
                "4",
                "--no-progress",
                "--already-selected",
                str(tmp_path / "pos.csv"),
            ]
        )
        == 0
    )
    ref = select(t, fraction=0.1, method="kcenter", embeddings="emb", seed=4, already_selected=ref.positions)
    assert pq.read_table(out).column("instruction").to_pylist() == ref.table.column("instruction").to_pylist()

    assert (
        main(
            [
                "select",
                str(src),
                "-o",
                str(tmp_path / "km.arrow"),
                "--top",
                "9",
                "--method",
                "kmeans-kcenter",
                "--embeddings",
                "emb",
                "--clusters",
                "3",
                "--positions",
                str(tmp_path / "km.parquet"),
            ]
        )
        == 0
    )
    pos = pq.read_table(tmp_path / "km.parquet")
    ref = select(t, k=9, method="kmeans-kcenter", embeddings="emb", clusters=3)
    assert pos.column("position").to_pylist() == ref.positions.tolist()
    assert pos.column("cluster").to_pylist() == ref.clusters.tolist()


def test_cli_select_errors(tmp_path, capsys):
    from instructfast.cli import main

    src = tmp_path / "plain.jsonl"
    src.write_text('{"instruction": "a", "output": "b"}\n', encoding="utf-8")
    assert main(["select", str(src), "-o", str(tmp_path / "o.jsonl"), "--top", "1"]) == 2
    assert "which is not in the data" in capsys.readouterr().err
    assert main(["select", str(src), "-o", str(tmp_path / "o.jsonl"), "--fraction", "2", "--method", "random"]) == 2
    assert "0 < fraction <= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["select", str(src), "-o", str(tmp_path / "o.jsonl")])  # no budget
