"""The Ray engine on a local two-CPU cluster: equal to the local engine, and a crashed worker loses nothing."""

from __future__ import annotations

import warnings

import numpy as np
import pyarrow as pa
import pytest

import instructfast
from tests.common import load_sample_records

ray = pytest.importorskip("ray")
ifr = pytest.importorskip("instructfast.ray")


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def _quiet(fn, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kw)


def _table(n: int, seed: int = 3) -> pa.Table:
    t = pa.Table.from_pylist([r for r in load_sample_records() if len(r["output"]) < 900][:n])
    v = np.random.default_rng(seed).normal(size=(t.num_rows, 8)).astype(np.float32)
    return t.append_column("emb", pa.array(list(v), pa.list_(pa.float32(), 8)))


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    d = tmp_path_factory.mktemp("ray") / "in"
    t = _table(45)
    for i, (a, b) in enumerate([(0, 15), (15, 32), (32, 45)]):
        instructfast.write_table(t.slice(a, b - a), d / f"s{i}.jsonl")
    return d


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    pytest.importorskip("transformers")
    from tests.tiny_models import tiny_llama_folder

    folder, _ = tiny_llama_folder(tmp_path_factory.mktemp("llama"))
    return str(folder)


def test_file_engine_on_ray_equals_local_with_model_text_and_pool_indicators(cluster, shards, tmp_path, tiny_lm):
    kw = {"indicators": ["mtld", "perplexity", "knn_6"], "models": {"lm": tiny_lm}, "options": {"knn_vectors": "emb"},
          "batch_rows": 8, "checkpoint_rows": 8}  # fmt: skip
    local = _quiet(instructfast.score_files, shards, tmp_path / "local", **kw)
    remote = _quiet(ifr.score_files, shards, tmp_path / "ray", workers=2, **kw)
    assert [s.rows for s in remote.shards] == [15, 17, 13] and remote.report.nulls == local.report.nulls
    for a, b in zip(local.shards, remote.shards, strict=True):
        ta, tb = instructfast.read_table(a.output), instructfast.read_table(b.output)
        assert ta.column("mtld").equals(tb.column("mtld"))  # text statistics bit for bit
        assert ta.column("knn_6").equals(tb.column("knn_6"))  # same vectors, same pool search
        np.testing.assert_allclose(tb.column("perplexity").to_numpy(), ta.column("perplexity").to_numpy(), rtol=1e-4)
        assert tb.column("instruction").equals(ta.column("instruction"))  # rows in order


def test_a_worker_killed_mid_run_is_replaced_and_every_row_scored_once(cluster, shards, tmp_path):
    flag = tmp_path / "crashed-once"
    env = {"INSTRUCTFAST_FAULT": "ray:batch:2", "INSTRUCTFAST_FAULT_ONCE": str(flag)}
    res = _quiet(
        ifr.score_files, shards, tmp_path / "out", indicators=["mtld", "output_words"], batch_rows=4, workers=2,
        actor_options={"runtime_env": {"env_vars": env}},
    )  # fmt: skip
    assert flag.exists()  # an actor really died (SIGKILL) on its second batch
    ref = _quiet(instructfast.score_files, shards, tmp_path / "ref", indicators=["mtld", "output_words"], batch_rows=4)
    for a, b in zip(ref.shards, res.shards, strict=True):
        ta, tb = instructfast.read_table(a.output), instructfast.read_table(b.output)
        assert ta.num_rows == tb.num_rows and ta.select(["instruction", "mtld", "output_words"]).equals(
            tb.select(["instruction", "mtld", "output_words"])
        )


def test_dataset_api_with_pool_and_rule_equals_score(cluster):
    t = _table(30)
    rule = {"name": "demo", "intercept": 1.0, "coefficients": {"mtld": -0.01, "knn_6": 0.5}}
    ds = ray.data.from_arrow(t)
    out = _quiet(ifr.score, ds, indicators=["mtld", "knn_6"], rule=rule, options={"knn_vectors": "emb"}, workers=2,
                 batch_rows=7)  # fmt: skip
    got = pa.Table.from_pylist(out.take_all())
    ref = _quiet(instructfast.score, t, indicators=["mtld", "knn_6"], rule=rule, options={"knn_vectors": "emb"})
    assert got.column_names == ref.column_names
    for c in ("instruction", "mtld", "knn_6", "predicted_log_loss"):
        assert got.column(c).to_pylist() == ref.column(c).to_pylist(), c


def test_actors_holding_every_cpu_still_run_the_steps_before_them(cluster):
    # One actor holding both CPUs of the cluster, behind a repartition (a task that needs a CPU):
    # this waited forever before the dataset API ran the upstream steps first.
    import threading

    t = _table(12)
    ds = ray.data.from_arrow(t).repartition(3)
    got: list = []
    run = threading.Thread(
        target=lambda: got.append(_quiet(ifr.score, ds, indicators=["mtld"], workers=1, cpus_per_worker=2).take_all()),
        daemon=True,
    )
    run.start()
    run.join(timeout=180)
    assert not run.is_alive(), "scoring behind a repartition with every CPU held by an actor did not finish"
    ref = instructfast.score(t, indicators=["mtld"])
    assert [r["mtld"] for r in got[0]] == ref.column("mtld").to_pylist()


def test_engine_arguments_are_checked(cluster):
    with pytest.raises(instructfast.ArgumentError, match="`workers` must be a positive integer"):
        ifr.RayEngine(workers=0)
    with pytest.raises(instructfast.ArgumentError, match="`gpus_per_worker` must be >= 0"):
        ifr.RayEngine(gpus_per_worker=-1)
