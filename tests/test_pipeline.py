"""File runs over folders of shards: mirrored outputs, manifest, resume at every phase, sidecars, pools.

The kNN parts use a vector column (``knn_vectors``) so every run is fast; the embedder's own path
through the same phases is checked once against ``score()``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import instructfast
from instructfast import ScoreReport
from tests.common import load_sample_records

KNN = {"knn_vectors": "emb"}


def _quiet(fn, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", instructfast.InstructfastWarning)
        return fn(*args, **kw)


def _records(seed: int, dim: int = 16) -> pa.Table:
    t = pa.Table.from_pylist(load_sample_records())
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(t.num_rows, dim)).astype(np.float32)
    v[5] = v[4]  # a duplicate pair: neighbours at distance 0
    return t.append_column("emb", pa.array(list(v), pa.list_(pa.float32(), dim)))


@pytest.fixture
def corpus(tmp_path, seed):
    """Three shards of the sample (two JSONL, one Parquet in a subfolder) and the concatenated table."""
    t = _records(seed)
    d = tmp_path / "in"
    parts = {"a.jsonl": t.slice(0, 70), "sub/b.parquet": t.slice(70, 60), "c.jsonl": t.slice(130, 70)}
    for rel, part in parts.items():
        instructfast.write_table(part, d / rel)
    order = ["a.jsonl", "c.jsonl", "sub/b.parquet"]  # shards run in relative-path order
    whole = pa.concat_tables([instructfast.read_table(d / rel) for rel in order], promote_options="permissive")
    return d, whole, order


def _read_outputs(out: Path, order, columns) -> pa.Table:
    paths = [out / rel.replace(".jsonl", ".parquet") for rel in order]
    return pa.concat_tables([instructfast.read_table(p).select(columns) for p in paths])


def test_folder_run_mirrors_shards_writes_a_manifest_and_equals_score(corpus, tmp_path):
    d, whole, order = corpus
    out = tmp_path / "out"
    res = _quiet(instructfast.score_files, d, out, indicators=["mtld", "knn_6", "knn_2"], options=KNN,
                 checkpoint_rows=25, batch_rows=10)  # fmt: skip
    assert [(s.rel, s.rows, s.status) for s in res.shards] == [
        ("a.jsonl", 70, "written"), ("c.jsonl", 70, "written"), ("sub/b.parquet", 60, "written")
    ]  # fmt: skip
    assert (out / "sub" / "b.parquet").is_file() and (out / "a.parquet").is_file()
    ref = _quiet(instructfast.score, whole, indicators=["mtld", "knn_6", "knn_2"], options=KNN)
    got = _read_outputs(out, order, ["mtld", "knn_6", "knn_2"])
    # text statistics bit for bit; the union pool is the whole dataset: knn equals score() on all rows
    for c in ("mtld", "knn_6", "knn_2"):
        assert got.column(c).equals(ref.column(c)), c
    assert res.report.nulls == ScoreReport.from_table(ref).nulls
    manifest = json.loads(res.manifest.read_text())
    assert [s["input"]["rel"] for s in manifest["shards"]] == order
    for s in manifest["shards"]:
        p = d / s["input"]["rel"]
        assert s["input"]["size"] == p.stat().st_size and s["input"]["mtime_ns"] == p.stat().st_mtime_ns
        assert len(s["input"]["sha256"]) == 64 and s["status"] == "done"
    assert [s["rows"] for s in manifest["shards"]] == [70, 70, 60]
    assert manifest["indicators"] == ["mtld", "knn_6", "knn_2"] and manifest["options"] == KNN
    assert manifest["layout"]["knn_scope"] == "union" and manifest["versions"]["instructfast"]
    # each output carries its own report
    rep = ScoreReport.from_file(out / "a.parquet")
    assert rep.rows == 70 and rep.run.options["knn_scope"] == "union"
    assert rep.run.implementations["knn search"].startswith("exact")


def test_rerun_skips_finished_shards_and_redoes_a_changed_one(corpus, tmp_path):
    d, whole, order = corpus
    out = tmp_path / "out"
    kw = {"indicators": ["mtld", "knn_6"], "options": KNN, "checkpoint_rows": 25, "batch_rows": 10}
    _quiet(instructfast.score_files, d, out, **kw)
    again = _quiet(instructfast.score_files, d, out, **kw)
    assert [s.status for s in again.shards] == ["skipped"] * 3
    # a touched but unchanged shard is not redone
    os.utime(d / "a.jsonl", ns=(1, 1))
    assert [s.status for s in _quiet(instructfast.score_files, d, out, **kw).shards] == ["skipped"] * 3
    # one changed shard: its per-row work redone, the others' reused, every knn recomputed (union pool)
    changed = instructfast.read_table(d / "c.jsonl").slice(0, 50)
    instructfast.write_table(changed, d / "c.jsonl")
    res = _quiet(instructfast.score_files, d, out, **kw)
    assert [(s.status, s.changed) for s in res.shards] == [("rewritten", False), ("written", True),
                                                             ("rewritten", False)]  # fmt: skip
    assert any("c.jsonl: the input changed" in m for m in res.log)
    assert any("knn recomputed for every shard" in m for m in res.log)
    assert any("a.jsonl: per-row work reused (70 rows)" in m for m in res.log)
    new_whole = pa.concat_tables([whole.slice(0, 70), changed.cast(whole.schema), whole.slice(140, 60)])
    ref = _quiet(instructfast.score, new_whole, indicators=["mtld", "knn_6"], options=KNN)
    got = _read_outputs(out, order, ["mtld", "knn_6"])
    assert got.column("knn_6").equals(ref.column("knn_6")) and got.column("mtld").equals(ref.column("mtld"))


def test_knn_scope_shard_searches_each_shard_alone(corpus, tmp_path):
    d, _, order = corpus
    out = tmp_path / "out"
    _quiet(instructfast.score_files, d, out, indicators=["knn_6"], options={**KNN, "knn_scope": "shard"})
    for rel in order:
        alone = _quiet(instructfast.score, instructfast.read_table(d / rel), indicators=["knn_6"], options=KNN)
        got = instructfast.read_table(out / rel.replace(".jsonl", ".parquet")).column("knn_6")
        assert got.equals(alone.column("knn_6")), rel


def _cli(args, env=None, check=True):
    full = {**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})}
    p = subprocess.run([sys.executable, "-m", "instructfast", "score", *map(str, args), "--no-progress"],
                       capture_output=True, text=True, env=full, timeout=300)  # fmt: skip
    if check:
        assert p.returncode == 0, p.stderr
    return p


def _strip(report: ScoreReport) -> dict:
    """A report without what differs between two runs of the same work (times)."""
    d = json.loads(report.to_json())
    d.pop("seconds")
    for k in ("seconds", "started"):
        d["run"].pop(k)
    return d


KILL_ARGS = ["-i", "mtld,knn_6", "--option", "knn_vectors=emb", "--checkpoint-rows", "25", "--batch-rows", "10"]
KILL_ORDER = ["a.jsonl", "c.jsonl", "sub/b.parquet"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """One corpus and its uninterrupted run, shared by the kill tests."""
    root = tmp_path_factory.mktemp("kill")
    t = _records(0)
    for rel, part in {"a.jsonl": t.slice(0, 70), "sub/b.parquet": t.slice(70, 60), "c.jsonl": t.slice(130, 70)}.items():
        instructfast.write_table(part, root / "in" / rel)
    _cli([root / "in", "-o", root / "ref", *KILL_ARGS])
    return root / "in", root / "ref"


@pytest.mark.parametrize("fault", ["rows:part:2", "pool:search", "pool:saved:2", "write:batch:3"])
def test_kill_9_at_any_phase_then_resume_equals_an_uninterrupted_run(uninterrupted, tmp_path, fault):
    d, ref_out = uninterrupted
    order, args = KILL_ORDER, KILL_ARGS
    out = tmp_path / "out"
    killed = _cli([d, "-o", out, *args], env={"INSTRUCTFAST_FAULT": fault}, check=False)
    assert killed.returncode == -9, killed.stderr
    work = out / ".instructfast" / "shards"
    kept = {p: p.stat().st_mtime_ns for p in work.rglob("part-*.arrow")}
    resumed = _cli([d, "-o", out, *args])
    for rel in order:
        a = ref_out / rel.replace(".jsonl", ".parquet")
        b = out / rel.replace(".jsonl", ".parquet")
        ta, tb = instructfast.read_table(a), instructfast.read_table(b)
        assert ta.equals(tb), rel  # data equal as Arrow tables
        assert _strip(ScoreReport.from_file(a)) == _strip(ScoreReport.from_file(b)), rel
    # finished per-row work was kept, not recomputed, and the log says what was reused
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())
    if fault.startswith("rows"):
        assert "resuming per-row work after" in resumed.stderr
    else:
        assert "per-row work reused" in resumed.stderr or "already written" in resumed.stderr


def test_checkpoints_hold_no_input_column_and_an_input_edited_in_place_is_refused(uninterrupted, tmp_path):
    """Parts keep indicator columns and text hashes; the final write reads the input columns again and
    checks each row against its hash, so an edit that kept the file's size and time is still caught."""
    d, _ = uninterrupted
    src = tmp_path / "in"
    for rel in KILL_ORDER:
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes((d / rel).read_bytes())
    out = tmp_path / "out"
    killed = _cli([src, "-o", out, *KILL_ARGS], env={"INSTRUCTFAST_FAULT": "pool:search"}, check=False)
    assert killed.returncode == -9, killed.stderr
    parts = sorted((out / ".instructfast" / "shards").rglob("part-*.arrow"))
    assert parts
    for p in parts:
        names = pa.ipc.open_file(p).schema.names
        assert "mtld" in names and not {"instruction", "input", "output", "emb"} & set(names), names
    a = src / "c.jsonl"
    st = a.stat()
    lines = a.read_text(encoding="utf-8").splitlines(keepends=True)
    row = 3
    at = lines[row].index('"output": "') + len('"output": "')
    at = lines[row].index("e", at)  # a letter of the output's text becomes another: same size
    lines[row] = lines[row][:at] + "a" + lines[row][at + 1 :]
    a.write_text("".join(lines), encoding="utf-8")
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns))  # and the same time: the run cannot tell by stat
    again = _cli([src, "-o", out, *KILL_ARGS], check=False)
    assert again.returncode != 0
    assert "c.jsonl: rows" in again.stderr and "the input changed during the run" in again.stderr
    assert not (out / "c.parquet").exists()
    _cli([src, "-o", out, *KILL_ARGS])  # and the next run scores that shard afresh
    fresh = tmp_path / "fresh"
    _cli([src, "-o", fresh, *KILL_ARGS])
    for rel in KILL_ORDER:
        name = rel.replace(".jsonl", ".parquet")
        assert instructfast.read_table(out / name).equals(instructfast.read_table(fresh / name)), rel


def test_single_file_run_with_a_pool_indicator_resumes_too(tmp_path, seed):
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.parquet"
    instructfast.write_table(_records(seed), src)
    args = [src, "-o", dst, "-i", "mtld,knn_6", "--option", "knn_vectors=emb", "--checkpoint-rows", "40",
            "--batch-rows", "20"]  # fmt: skip
    killed = _cli(args, env={"INSTRUCTFAST_FAULT": "rows:part:3"}, check=False)
    assert killed.returncode == -9 and not dst.exists()
    resumed = _cli(args)
    assert "resuming per-row work after 120 rows" in resumed.stderr
    ref = _quiet(instructfast.score, instructfast.read_table(src), indicators=["mtld", "knn_6"], options=KNN)
    got = instructfast.read_table(dst)
    assert got.column("knn_6").equals(ref.column("knn_6")) and got.column("mtld").equals(ref.column("mtld"))
    assert not (tmp_path / "out.parquet.partial").exists()


def test_sidecars_round_trip_and_refuse_misaligned_data(corpus, tmp_path):
    d, whole, order = corpus
    full, side = tmp_path / "full", tmp_path / "side"
    kw = {"indicators": ["mtld", "knn_6"], "options": KNN, "batch_rows": 16}
    _quiet(instructfast.score_files, d, full, **kw)
    _quiet(instructfast.score_files, d, side, sidecar=True, **kw)
    a = instructfast.read_table(side / "a.parquet")
    assert a.column_names == ["_shard", "_row", "_text_hash", "mtld", "knn_6"]
    assert a.column("_shard").unique().to_pylist() == ["a.jsonl"] and a.column("_row").to_pylist() == list(range(70))
    # join back: the full output's columns, row for row
    joined = tmp_path / "joined"
    written = instructfast.join_files(d, side, joined)
    assert [n for _, n in written] == [70, 70, 60]
    for rel in order:
        name = rel.replace(".jsonl", ".parquet")
        ref = instructfast.read_table(full / name)
        got = instructfast.read_table(joined / name)
        assert got.select(["mtld", "knn_6"]).equals(ref.select(["mtld", "knn_6"]))
    one = instructfast.read_table(d / "a.jsonl", scores=side / "a.parquet")
    assert one.column("mtld").equals(instructfast.read_table(full / "a.parquet").column("mtld"))
    # data changed since scoring: edited, reordered, shortened -> errors naming shard and first row
    data = instructfast.read_table(d / "a.jsonl")
    edited = data.set_column(data.column_names.index("output"), "output",
                             pa.array(data.column("output").to_pylist()[:9] + ["edited"] + data.column("output").to_pylist()[10:]))  # fmt: skip
    cases = [(edited, r"a.jsonl: row 9 of the data does not match its scores \(the text changed since scoring"),
             (data.take([1, 0, *range(2, 70)]), r"a.jsonl: row 0 of the data does not match"),
             (data.slice(0, 69), r"a.jsonl: the data has 69 rows and its scores 70")]  # fmt: skip
    for i, (bad, match) in enumerate(cases):
        p = tmp_path / f"bad{i}" / "a.jsonl"
        instructfast.write_table(bad, p)
        with pytest.raises(instructfast.SchemaError, match=match):
            instructfast.read_table(p, scores=side / "a.parquet")
    # an id column as the key
    keyed = tmp_path / "keyed"
    src = tmp_path / "ids.jsonl"
    instructfast.write_table(data.append_column("id", pa.array([f"r{i}" for i in range(70)])), src)
    _quiet(instructfast.score_file, src, keyed / "ids.parquet", indicators=["mtld"], sidecar=True, id_column="id")
    assert instructfast.read_table(keyed / "ids.parquet").column_names == ["id", "_text_hash", "mtld"]
    back = instructfast.read_table(src, scores=keyed / "ids.parquet", id_column="id")
    assert back.column("mtld").equals(instructfast.read_table(full / "a.parquet").column("mtld"))


def test_float16_checkpoints_and_kept_embeddings(corpus, tmp_path):
    d, whole, order = corpus
    f32, f16 = tmp_path / "f32", tmp_path / "f16"
    kw = {"indicators": ["knn_6"], "options": KNN}
    _quiet(instructfast.score_files, d, f32, keep_embeddings=True, **kw)
    _quiet(instructfast.score_files, d, f16, **{**kw, "options": {**KNN, "knn_embedding_dtype": "float16"}})
    size = {p.name: p.stat().st_size - 128 for p in (f32 / ".instructfast").rglob("vec-*.npy")}  # minus npy header
    half = {p.name: p.stat().st_size - 128 for p in (f16 / ".instructfast").rglob("vec-*.npy")}
    assert half.keys() == size.keys() and all(2 * half[k] == size[k] for k in size)
    a, b = _read_outputs(f32, order, ["knn_6"]), _read_outputs(f16, order, ["knn_6"])
    assert np.abs(a.column("knn_6").to_numpy() - b.column("knn_6").to_numpy()).max() < 2e-3
    # the kept vectors are the unit rows the pool searched, usable by select() without an embedder
    kept = _read_outputs(f32, order, ["embedding"]).column("embedding").to_pylist()
    v = np.array(whole.column("emb").to_pylist(), np.float64)
    np.testing.assert_allclose(np.array(kept), v / np.linalg.norm(v, axis=1, keepdims=True), atol=1e-6)
    sel = instructfast.select(instructfast.read_table(f32 / "a.parquet"), k=5, method="kcenter", embeddings="embedding")
    assert sel.positions.size == 5


def test_embedder_through_the_phases_equals_score(tmp_path, sample_records):
    """The packaged MiniLM embedder: a folder run's union knn equals score() over all rows."""
    pytest.importorskip("onnxruntime")
    t = pa.Table.from_pylist(sample_records[:60])
    d = tmp_path / "in"
    instructfast.write_table(t.slice(0, 25), d / "x.jsonl")
    instructfast.write_table(t.slice(25), d / "y.jsonl")
    res = _quiet(instructfast.score_files, d, tmp_path / "out", indicators=["knn_6"], batch_rows=16,
                 checkpoint_rows=20)  # fmt: skip
    got = pa.concat_tables([instructfast.read_table(s.output).select(["knn_6"]) for s in res.shards])
    ref = _quiet(instructfast.score, t, indicators=["knn_6"])
    np.testing.assert_allclose(got.column("knn_6").to_numpy(), ref.column("knn_6").to_numpy(), rtol=1e-5)
    assert res.report.run.models[0]["slot"] == "embedder"


def test_file_run_errors(tmp_path, corpus):
    d, _, _ = corpus
    with pytest.raises(instructfast.InputFormatError, match="holds no record files"):
        instructfast.score_files(tmp_path / "nothing-here-*.jsonl", tmp_path / "o")
    (tmp_path / "empty").mkdir()
    with pytest.raises(instructfast.InputFormatError, match="holds no record files"):
        instructfast.score_files(tmp_path / "empty", tmp_path / "o")
    (tmp_path / "file.parquet").write_bytes(b"x")
    with pytest.raises(instructfast.ArgumentError, match="`output` .* is a file"):
        instructfast.score_files(d, tmp_path / "file.parquet")
    with pytest.raises(instructfast.ArgumentError, match="is a folder or pattern: use score_files"):
        instructfast.score_file(d, tmp_path / "o.parquet")
    with pytest.raises(instructfast.SchemaError, match="`id_column` 'key' not found"):
        _quiet(instructfast.score_files, d, tmp_path / "o2", indicators=["mtld"], sidecar=True, id_column="key")
    with pytest.raises(instructfast.ArgumentError, match="keep_embeddings needs a pool indicator"):
        _quiet(instructfast.score_files, d, tmp_path / "o3", indicators=["mtld"], keep_embeddings=True)


def test_glob_inputs_and_cli_join(corpus, tmp_path):
    d, _, _ = corpus
    out = tmp_path / "out"
    p = _cli([str(d / "*.jsonl"), "-o", out, "-i", "mtld", "--sidecar"])
    assert "2 shard(s)" in p.stdout and sorted(x.name for x in out.glob("*.parquet")) == ["a.parquet", "c.parquet"]
    joined = tmp_path / "j"
    q = subprocess.run([sys.executable, "-m", "instructfast", "join", str(d / "a.jsonl"), str(out / "a.parquet"),
                        "-o", str(joined / "a.parquet")], capture_output=True, text=True)  # fmt: skip
    assert q.returncode == 0, q.stderr
    assert instructfast.read_table(joined / "a.parquet").column_names[-1] == "mtld"
