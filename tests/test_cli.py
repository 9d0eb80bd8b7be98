"""The CLI and file I/O: every format in and out, malformed inputs, atomic output, resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from lexicalrichness import LexicalRichness

import instructfast
from instructfast import pipeline
from instructfast.cli import main
from instructfast.errors import InputFormatError

FORMATS = ["json", "jsonl", "parquet", "arrow", "csv"]


def lr_mtld(text):
    lr = LexicalRichness(text)
    return lr.mtld() if lr.words else None


@pytest.fixture()
def small(sample_table):
    return sample_table.slice(0, 40).select(["instruction", "input", "output"])


@pytest.mark.parametrize("fin", FORMATS)
@pytest.mark.parametrize("fout", ["parquet", "jsonl", "csv"])
def test_cli_formats_roundtrip(tmp_path, small, fin, fout, capsys):
    src = tmp_path / f"in.{fin}"
    instructfast.write_table(small, src)
    dst = tmp_path / f"out.{fout}"
    assert main(["score", str(src), "-o", str(dst), "-i", "textstats", "--no-progress"]) == 0
    got = instructfast.read_table(dst)
    assert got.num_rows == small.num_rows
    assert got.column("output").to_pylist() == small.column("output").to_pylist()
    ref = [lr_mtld(t) for t in small.column("output").to_pylist()]
    assert (
        got.column("mtld").to_pylist() == pytest.approx(ref) if fout == "csv" else got.column("mtld").to_pylist() == ref
    )
    out = capsys.readouterr().out
    assert "scored 40 rows" in out and "mtld" in out and "p50" in out
    assert not list(tmp_path.glob("*.partial")) and not list(tmp_path.glob(".*tmp"))


def test_json_array_like_alpaca(tmp_path, small):
    p = tmp_path / "alpaca.json"
    p.write_text(json.dumps(small.to_pylist()))
    t = instructfast.read_table(p)
    assert t.num_rows == 40 and t.column("output").to_pylist() == small.column("output").to_pylist()


def test_parquet_output_carries_report(tmp_path, small):
    src, dst = tmp_path / "in.parquet", tmp_path / "out.parquet"
    instructfast.write_table(small.slice(0, 4), src)
    assert main(["score", str(src), "-o", str(dst), "--no-progress"]) == 0
    rep = instructfast.ScoreReport.from_file(dst)
    assert rep.rows == 4 and "reward" in rep.unavailable


@pytest.mark.parametrize(
    "content,match",
    [
        ('{"instruction": "a", "output": "b"}\n{"instruction": "a", "output": \n', r"bad\.jsonl:2: invalid JSON"),
        (
            '{"instruction": "a", "output": "b"}\n{"instruction": "a", "output": 5}\n',
            r"bad\.jsonl:2: field `output` must be a string",
        ),
        ('{"instruction": "a", "output": "b"}\n[1, 2]\n', r"bad\.jsonl:2: expected a JSON object"),
    ],
)
def test_malformed_jsonl_names_file_and_line(tmp_path, content, match, capsys):
    p = tmp_path / "bad.jsonl"
    p.write_text(content)
    with pytest.raises(InputFormatError, match=match):
        pipeline.score_file(p, tmp_path / "o.parquet")
    assert main(["score", str(p), "-o", str(tmp_path / "o.parquet"), "--no-progress"]) == 2
    assert "bad.jsonl:2" in capsys.readouterr().err
    assert not (tmp_path / "o.parquet").exists()


def test_empty_and_missing_files(tmp_path, capsys):
    p = tmp_path / "empty.jsonl"
    p.write_text("")
    assert main(["score", str(p), "-o", str(tmp_path / "o.parquet"), "--no-progress"]) == 2
    assert "empty.jsonl: file is empty" in capsys.readouterr().err
    assert main(["score", str(tmp_path / "nope.jsonl"), "-o", str(tmp_path / "o.parquet"), "--no-progress"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_missing_column_and_non_string_column_from_files(tmp_path, capsys):
    p = tmp_path / "x.jsonl"
    p.write_text('{"question": "a", "answer": "b"}\n')
    assert main(["score", str(p), "-o", str(tmp_path / "o.parquet"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "missing required columns `instruction` and `output`" in err and "question" in err
    p2 = tmp_path / "y.csv"
    p2.write_text("q,a\nhello,1\n")
    assert (
        main(
            [
                "score",
                str(p2),
                "-o",
                str(tmp_path / "o.parquet"),
                "--columns",
                "instruction=q,output=a",
                "--no-progress",
            ]
        )
        == 0
    )


def test_json_array_type_conflict_names_record(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text(json.dumps([{"instruction": "a", "output": "b"}, {"instruction": "a", "output": ["x"]}]))
    with pytest.raises(InputFormatError, match=r"bad\.json:1: record 1: field `output` must be a string, got list"):
        instructfast.read_table(p)


def test_interrupted_run_resumes_without_losing_parts(tmp_path, small, monkeypatch):
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.parquet"
    instructfast.write_table(small, src)
    calls = {"n": 0}
    real = instructfast.Scorer.score_rows

    def flaky(self, batch, **kw):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(self, batch, **kw)

    monkeypatch.setattr(instructfast.Scorer, "score_rows", flaky)
    with pytest.raises(KeyboardInterrupt):
        pipeline.score_file(src, dst, indicators=["mtld"], batch_rows=5, checkpoint_rows=10)
    assert not dst.exists()
    state = json.loads((tmp_path / "out.parquet.partial" / "shards" / "in.jsonl" / "state.json").read_text())
    assert state["rows"]["rows"] == 10 and len(state["rows"]["parts"]) == 1
    monkeypatch.setattr(instructfast.Scorer, "score_rows", real)
    res = pipeline.score_file(src, dst, indicators=["mtld"], batch_rows=5, checkpoint_rows=10)
    assert res.resumed_rows == 10 and res.rows == 40
    got = instructfast.read_table(dst)
    assert got.column("output").to_pylist() == small.column("output").to_pylist()
    assert got.column("mtld").to_pylist() == [lr_mtld(t) for t in small.column("output").to_pylist()]
    assert not (tmp_path / "out.parquet.partial").exists()


def test_partial_run_with_other_settings_is_not_mixed_in(tmp_path, small):
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.parquet"
    instructfast.write_table(small, src)
    part = tmp_path / "out.parquet.partial" / "shards" / "in.jsonl"
    part.mkdir(parents=True)
    (part / "state.json").write_text(json.dumps({"version": 2, "settings": "other", "rows": {"rows": 5}}))
    with pytest.raises(instructfast.ResumeError, match="partial run with different settings"):
        pipeline.score_file(src, dst)
    res = pipeline.score_file(src, dst, restart=True, indicators=["mtld"])
    assert res.rows == 40


def test_indicators_and_rules_commands(capsys):
    assert main(["indicators"]) == 0
    out = capsys.readouterr().out
    assert "textstats" in out and "mtld" in out and "unavailable" in out and "reward" in out
    assert main(["rules"]) == 0
    out = capsys.readouterr().out
    assert "instructmining-v1: 1.0694 - 0.1498*reward + 8.257e-05*output_tokens - 0.935*knn_6" in out


def test_module_entry_point_runs(tmp_path, small):
    src = tmp_path / "in.jsonl"
    instructfast.write_table(small, src)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "instructfast",
            "score",
            str(src),
            "-o",
            str(tmp_path / "o.arrow"),
            "-i",
            "textstats",
            "--progress",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert r.returncode == 0, r.stderr
    assert "rows/s" in r.stderr or "rows/s" in r.stdout


def test_models_command_lists_slots_and_how_to_get_them(capsys, monkeypatch):
    monkeypatch.delenv("INSTRUCTFAST_MODEL_REWARD", raising=False)
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for slot in ("lm", "reward", "unieval", "embedder"):
        assert f"\n{slot} " in "\n" + out
    assert "INSTRUCTFAST_MODEL_REWARD" in out and "OpenAssistant/oasst-rm-2.1-pythia-1.4b-epoch-2.5" in out


def test_option_parsing():
    from instructfast.cli import _parse_options

    # values stay strings: each option parses its own by its declared type (instructfast.options)
    assert _parse_options(["a=1", "b=x", "c=0.5", "d=k=v"]) == {"a": "1", "b": "x", "c": "0.5", "d": "k=v"}
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        _parse_options(["nokey"])


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["-i", "knn_6"], "knn_pool"),
        (["-i", "mtdl"], "did you mean 'mtld'"),
        (["--option", "serve_max_wait_ms=-1"], "serve_max_wait_ms"),
        (["--max-batch-rows", "0"], "serve_max_batch_rows"),
    ],
)
def test_serve_checks_its_settings_before_listening(args, words, capsys):
    # a bad setting ends the command at once (no port is opened, no model loads)
    assert main(["serve", "--port", "0", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("instructfast: error:") and words in err
