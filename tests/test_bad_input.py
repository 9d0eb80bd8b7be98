"""Hostile input, as a new user meets it: invalid text, very long records, corrupt files.

Each case is a row of the README table "What bad input gets": what the user sees, and that no output
file ever holds text that cannot be read back (every output is read back with pyarrow, into Python).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

import instructfast
from instructfast import pipeline
from instructfast.cli import main
from instructfast.io import _json
from instructfast.ops.utf8 import REPLACED

INVALID = b'{"instruction": "q", "output": "x\xff\xfey"}'  # the bytes of the issue, inside a JSON string
SURROGATE = b'{"instruction": "q", "output": "\\ud800 lone"}'  # json.loads accepts it, pyarrow refuses it
GOOD = b'{"instruction": "q", "output": "fine words"}'
OUT_FORMATS = ["parquet", "arrow", "jsonl", "csv", "json"]


def read_back(path) -> list[dict]:
    """Every row of an output file as Python objects: fails on a string column holding invalid UTF-8."""
    if path.suffix == ".parquet":
        return pq.read_table(path).to_pylist()
    if path.suffix == ".arrow":
        return ipc.open_file(pa.memory_map(str(path))).read_all().to_pylist()
    return instructfast.read_table(path).to_pylist()


def write(tmp_path, name, *lines: bytes) -> object:
    p = tmp_path / name
    p.write_bytes(b"\n".join(lines) + b"\n")
    return p


# ------------------------------------------------------------------------------ invalid text


@pytest.mark.parametrize(
    "line, where, what",
    [
        (INVALID, "bad.jsonl:3:34", r"field `output`: invalid UTF-8 at byte 1 \(b'x\\xff\\xfey'\)"),
        (
            SURROGATE,
            "bad.jsonl:3:33",
            r"field `output`: a lone surrogate \(\\ud800, not valid Unicode\) at byte 0 \(b'\\xed\\xa0\\x80 lone'\)",
        ),
    ],
    ids=["invalid-bytes", "lone-surrogate"],
)
def test_invalid_text_in_jsonl_names_file_line_and_column(tmp_path, line, where, what, capsys):
    p = write(tmp_path, "bad.jsonl", GOOD, b"", line, GOOD)  # a blank line: rows and lines differ
    with pytest.raises(instructfast.InvalidTextError, match=rf"{where}: {what}; pass on_invalid_utf8='replace'"):
        pipeline.score_file(p, tmp_path / "o.parquet", indicators=["mtld"])
    assert not (tmp_path / "o.parquet").exists()
    assert main(["score", str(p), "-o", str(tmp_path / "o.parquet"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert where in err and "Traceback" not in err


def test_invalid_text_fails_before_any_model_loads(tmp_path, monkeypatch):
    # a bad file is refused in seconds, not after minutes of loading the models it would have used
    def no_models(self):
        raise AssertionError("models were loaded before the text was checked")

    monkeypatch.setattr(instructfast.Scorer, "start", no_models)
    p = write(tmp_path, "bad.jsonl", INVALID)
    with pytest.raises(instructfast.InvalidTextError, match=r"bad\.jsonl:1:34: field `output`"):
        pipeline.score_file(p, tmp_path / "o.parquet", indicators=["perplexity", "knn_6"])
    scorer = instructfast.Scorer(
        pa.schema([("instruction", pa.string()), ("output", pa.string())]), indicators="perplexity"
    )
    with pytest.raises(instructfast.InvalidTextError, match=r"^row 0: column `output`"):
        scorer.score_batch(
            pa.RecordBatch.from_arrays(
                [pa.array(["q"]), pa.array([b"x\xff"]).view(pa.string())], ["instruction", "output"]
            )
        )


@pytest.mark.parametrize("fmt", OUT_FORMATS)
def test_replace_writes_u_fffd_counts_rows_and_reads_back(tmp_path, fmt, capsys):
    p = write(tmp_path, "bad.jsonl", GOOD, INVALID, SURROGATE, GOOD)
    out = tmp_path / f"o.{fmt}"
    assert (
        main(["score", str(p), "-o", str(out), "-i", "output_words", "--on-invalid-utf8=replace", "--no-progress"]) == 0
    )
    rows = read_back(out)
    assert [r["output"] for r in rows] == ["fine words", "x\ufffd\ufffdy", "\ufffd lone", "fine words"]
    assert [r["output_words"] for r in rows] == [2, 1, 2, 2]  # U+FFFD is a word character
    assert f"note output: {REPLACED}: 2" in capsys.readouterr().out
    if fmt == "parquet":
        rep = instructfast.ScoreReport.from_file(out)
        assert rep.notes == {"output": {REPLACED: 2}}
        assert "replace" in rep.run.implementations["invalid text"]


def test_json_array_and_csv_locate_invalid_text(tmp_path):
    arr = tmp_path / "bad.json"
    arr.write_bytes(b'[\n {"instruction": "q", "output": "ok"},\n {"instruction": "q",\n  "output": "a\\udc00"}\n]\n')
    with pytest.raises(instructfast.InvalidTextError, match=r"bad\.json:4:15: field `output`: a lone surrogate"):
        pipeline.score_file(arr, tmp_path / "o.parquet", indicators=["textstats"])
    csv = tmp_path / "bad.csv"
    csv.write_bytes(b'instruction,output\nq,fine\nq,"two\nlines"\nq,x\xffy\n')
    with pytest.raises(instructfast.InvalidTextError, match=r"bad\.csv:5: column `output`: invalid UTF-8 at byte 1"):
        pipeline.score_file(csv, tmp_path / "o.parquet", indicators=["textstats"])
    # (text statistics only: the check runs before any indicator, and models would only add minutes)
    res = pipeline.score_file(
        csv, tmp_path / "o.parquet", indicators=["textstats"], options={"on_invalid_utf8": "replace"}
    )
    assert res.report.notes == {"output": {REPLACED: 1}}
    assert read_back(tmp_path / "o.parquet")[2]["output"] == "x\ufffdy"


def _with_invalid_output(n: int = 3) -> pa.Table:
    values = [b"fine", b"x\xff", b"y \xed\xa0\x80"][:n]
    return pa.table({"instruction": ["q"] * n, "output": pa.array(values, pa.binary()).view(pa.string())})


@pytest.mark.parametrize("source", ["table", "parquet", "arrow"])
def test_arrow_string_data_with_invalid_bytes(tmp_path, source):
    table = _with_invalid_output()
    data: object = table
    if source != "table":
        data = tmp_path / f"in.{source}"
        (pq.write_table if source == "parquet" else lambda t, p: ipc.new_file(str(p), t.schema).write(t) or None)
        if source == "parquet":
            pq.write_table(table, data)
        else:
            with ipc.new_file(str(data), table.schema) as w:
                w.write_table(table)
        with pytest.raises(
            instructfast.InvalidTextError, match=rf"in\.{source}: row 1: column `output`: invalid UTF-8"
        ):
            pipeline.score_file(data, tmp_path / "o.parquet")
        return
    with pytest.raises(instructfast.InvalidTextError, match=r"^row 1: column `output`: invalid UTF-8 at byte 1"):
        instructfast.score(data, indicators=["mtld"], batch_rows=1)
    out = instructfast.score(data, indicators=["mtld"], options={"on_invalid_utf8": "replace"})
    assert out.column("output").to_pylist() == ["fine", "x\ufffd", "y \ufffd"]


def test_writers_refuse_invalid_text_and_leave_no_file(tmp_path):
    table = _with_invalid_output()
    for fmt in OUT_FORMATS:
        out = tmp_path / f"o.{fmt}"
        with pytest.raises(instructfast.InvalidTextError, match=rf"o\.{fmt}: not written: row 1 of column `output`"):
            instructfast.write_table(table, out)
        assert not out.exists() and not list(tmp_path.glob(".o.*"))


def test_select_never_writes_invalid_text(tmp_path):
    src = tmp_path / "in.parquet"
    pq.write_table(_with_invalid_output().append_column("predicted_log_loss", pa.array([0.1, 0.2, 0.3])), src)
    assert main(["select", str(src), "-o", str(tmp_path / "top.jsonl"), "--top", "2"]) == 2
    assert not (tmp_path / "top.jsonl").exists()


def test_column_names_that_are_not_utf8(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_bytes(b"instr\xc4ction,output\nq,a\n")
    with pytest.raises(instructfast.InvalidTextError, match=r"the name of column 0 .* is not valid UTF-8"):
        instructfast.read_table(p)


# ------------------------------------------------------------------------------ record size


def test_a_record_longer_than_the_read_block_is_read(tmp_path, monkeypatch):
    monkeypatch.setattr(_json, "BLOCK", 4096)  # pieces of 4 KiB: the long record straddles many of them
    words = " ".join(f"w{i % 997}" for i in range(20_000))  # ~120 KB
    rows = [{"instruction": "q", "output": "short"}, {"instruction": "q", "output": words}] * 3
    p = tmp_path / "long.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    got = instructfast.score(instructfast.read_table(p), indicators=["output_words", "output_bytes"])
    assert got.column("output_words").to_pylist() == [1, 20_000] * 3
    with pytest.raises(
        instructfast.InputFormatError, match=r"long\.jsonl:2: a record longer than 50,000 bytes .*max_record_bytes"
    ):
        pipeline.score_file(p, tmp_path / "o.parquet", indicators=["mtld"], options={"max_record_bytes": 50_000})


def test_json_arrays_stream_in_pieces_with_the_same_rows(tmp_path, monkeypatch, sample_records):
    monkeypatch.setattr(_json, "BLOCK", 2048)
    p = tmp_path / "records.json"
    p.write_text(json.dumps(sample_records, indent=2))  # pretty-printed: elements span lines
    got = instructfast.read_table(p)
    assert got.num_rows == len(sample_records)
    want = pa.Table.from_pylist(sample_records)
    for name in want.column_names:
        assert got.column(name).to_pylist() == want.column(name).to_pylist(), name
    assert got.column_names == list(dict.fromkeys(k for r in sample_records for k in r))


@pytest.mark.parametrize(
    "body, match",
    [
        (b'[{"instruction": "a", "output": "b"},]', r"bad\.json:1: invalid JSON \(an empty element"),
        (b'[{"instruction": "a", "output": "b"}, 3]', r"bad\.json:1: record 1 is a number, expected a JSON object"),
        (b'[{"instruction": "a", "output": "b"}', r"bad\.json:1: the JSON array is not closed"),
        (b'[{"instruction": "a", "output": "b"}] {}', r"bad\.json:1: data after the end of the JSON array"),
        (b"[]", r"bad\.json: the JSON array holds no records"),
        (
            b'[{"instruction": "a", "output": "b"},\n {"instruction": "a", "output": 5}]',
            r"bad\.json:2: record 1: field `output` must be a string, got number",
        ),
    ],
)
def test_malformed_json_arrays_name_the_line(tmp_path, body, match):
    p = tmp_path / "bad.json"
    p.write_bytes(body)
    with pytest.raises(instructfast.InputFormatError, match=match):
        instructfast.read_table(p)


@pytest.mark.parametrize("block", [1 << 20, 256], ids=["in-one-read", "across-reads"])
def test_a_json_array_element_over_the_limit_names_its_line(tmp_path, monkeypatch, block):
    # arrays stream element by element, so only an element (a record) is bounded, not the array
    monkeypatch.setattr(_json, "BLOCK", block)
    rows = [{"instruction": "q", "output": "short"}] * 3 + [{"instruction": "q", "output": "w " * 3000}]
    p = tmp_path / "big.json"
    p.write_text(json.dumps(rows, indent=1))  # elements take 4 lines from line 2: the long one starts on 14
    assert instructfast.read_table(p).num_rows == 4
    with pytest.raises(
        instructfast.InputFormatError, match=r"big\.json:14: a record longer than 1,000 bytes \(the max_record_bytes"
    ):
        pipeline.score_file(p, tmp_path / "o.parquet", indicators=["mtld"], options={"max_record_bytes": 1000})
    assert not (tmp_path / "o.parquet").exists()


def test_a_field_first_seen_after_the_first_piece_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(_json, "BLOCK", 64)
    p = write(tmp_path, "late.jsonl", *[GOOD] * 4, b'{"instruction": "q", "output": "x", "extra": 1}')
    with pytest.raises(instructfast.InputFormatError, match=r"late\.jsonl:5: field `extra` is not among the columns"):
        instructfast.read_table(p)


def test_csv_record_over_the_limit_names_its_line(tmp_path):
    p = tmp_path / "big.csv"
    p.write_bytes(b'instruction,output\nq,a\nq,"' + b"w " * 5000 + b'"\n')
    assert instructfast.read_table(p).num_rows == 2  # longer than pyarrow's 1 MiB default? no, but sized anyway
    with pytest.raises(instructfast.InputFormatError, match=r"big\.csv:3: a CSV record longer than 1,000 bytes"):
        instructfast.scan_file(p, max_record_bytes=1000)


# Peaks are VmHWM, not ru_maxrss: Linux carries that one over from the parent (this test process, with
# torch loaded), so the child would report the parent's size. A small run first loads everything a run
# loads; what the long record adds on top is what is measured.
RSS_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import instructfast
    def status(field):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":"))
    small, path, out = sys.argv[1], sys.argv[2], sys.argv[3]
    instructfast.score_file(small, out + ".small.parquet", indicators=["textstats"], restart=True)
    base = status("VmRSS")
    res = instructfast.score_file(path, out, indicators=["textstats"], restart=True, batch_rows=1024)
    print(json.dumps({"base": base, "peak": status("VmHWM"), "rows": res.rows}))
    """
)


@pytest.mark.slow
def test_a_64_mib_record_is_scored_within_four_times_its_size(tmp_path, sample_records):
    # the benchmark (bench/bench_long_records.py) runs 256 MiB, whole processes; 64 MiB keeps the suite quick
    text = " ".join(r["output"] for r in sample_records)
    big = (text + " ") * ((64 << 20) // (len(text.encode()) + 1) + 1)
    big = big.encode()[: 64 << 20].decode("utf-8", "ignore")
    p, small = tmp_path / "book.jsonl", tmp_path / "small.jsonl"
    small.write_text(json.dumps({"instruction": "Write a line.", "output": "a short one"}) + "\n")
    record = json.dumps({"instruction": "Write a book.", "output": big}, ensure_ascii=False).encode()
    with open(p, "wb") as f:
        f.write(json.dumps({"instruction": "Write a book.", "output": "short"}).encode() + b"\n")
        f.write(record + b"\n")
    proc = subprocess.run(
        [sys.executable, "-c", RSS_SCRIPT, str(small), str(p), str(tmp_path / "o.parquet")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["rows"] == 2
    used = got["peak"] - got["base"]
    assert used <= 4 * len(record), (
        f"the run took {used / 2**20:.0f} MiB over its start for a {len(record) / 2**20:.0f} MiB record"
    )
    words = pq.read_table(tmp_path / "o.parquet", columns=["output_words"]).column(0).to_pylist()
    assert words[1] == len(instructfast.tokenize(big))
