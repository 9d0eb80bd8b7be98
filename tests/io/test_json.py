"""Huge JSON Lines records, parsed field by field: the same table as pyarrow's parser gives, the same errors.

A record longer than ``_json.HUGE`` bypasses pyarrow's JSON parser (:func:`instructfast.io._json.parse_record`).
Here ``HUGE`` and ``BLOCK`` are shrunk so that ordinary records take that path, and each file is read
both ways: the tables must be equal, column types included (pyarrow infers them in both).
``parse_record`` itself is held to ``json.loads`` on any JSON object.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import instructfast
from instructfast import pipeline
from instructfast.io import _json, jsonstr_py

LONG = "many words of a long output " * 8  # past the shrunk HUGE on its own

FULL = {  # a short record with every field set: the first piece fixes the columns and their types
    "instruction": "q0",
    "input": "i",
    "output": "o",
    "n": 0,
    "score": 0.0,
    "ok": True,
    "when": "2024-01-01",
    "tags": ["t"],
    "meta": {"source": "s", "turns": [{"from": "gpt", "value": "v"}]},
}
RECORDS = [
    {"instruction": "q1", "input": "", "output": LONG, "n": 1, "score": 0.5, "ok": True, "when": "2024-01-02"},
    {"instruction": "q2", "input": None, "output": "short", "n": 2, "score": None, "ok": False, "when": None},
    {
        "instruction": "q3 caf\u00e9 \u4e2d \U0001f642",
        "input": "ctx",
        "output": LONG + ' \u00e9\n\t"quoted" \\ back',
        "n": -3,
        "score": 1e-7,
        "ok": False,
        "when": "2024-02-03 04:05:06",
        "tags": ["a", "b"],
        "meta": {"source": "x", "turns": [{"from": "human", "value": LONG}]},
    },
]


def write_lines(path, lines: list[bytes]) -> None:
    path.write_bytes(b"\n".join(lines) + b"\n")


def both_ways(path, monkeypatch) -> tuple[pa.Table, pa.Table]:
    """(pyarrow's parser throughout, long records field by field)."""
    monkeypatch.setattr(_json, "BLOCK", 64)
    want = instructfast.read_table(path)
    monkeypatch.setattr(_json, "HUGE", 100)
    got = instructfast.read_table(path)
    return got, want


def dumps(obj: dict, ascii_only: bool = False) -> bytes:
    return json.dumps(obj, ensure_ascii=ascii_only).encode()


@pytest.mark.parametrize(
    "records",
    [[RECORDS[2], RECORDS[1], RECORDS[0]], [FULL, RECORDS[1], RECORDS[2], RECORDS[0]], [FULL, RECORDS[0], RECORDS[0]]],
    ids=["huge-first", "huge-later", "two-huge"],
)
@pytest.mark.parametrize("ascii_only", [False, True], ids=["raw-utf8", "escaped"])
def test_huge_records_read_as_pyarrow_reads_them(tmp_path, monkeypatch, records, ascii_only):
    p = tmp_path / "r.jsonl"
    write_lines(p, [dumps(r, ascii_only) for r in records])
    got, want = both_ways(p, monkeypatch)
    assert got.schema == want.schema
    assert got.equals(want), (got.to_pylist(), want.to_pylist())
    assert pa.types.is_timestamp(got.schema.field("when").type)  # pyarrow's inference, in both paths


def test_the_python_twin_reads_huge_records_the_same(tmp_path, monkeypatch):
    # what a build without the native core uses (instructfast.io.jsonstr picks it then)
    p = tmp_path / "r.jsonl"
    write_lines(p, [dumps(RECORDS[2]), dumps(RECORDS[1], True), dumps(RECORDS[0], True)])
    got, want = both_ways(p, monkeypatch)
    monkeypatch.setattr(_json, "json_string", jsonstr_py.json_string)
    twin = instructfast.read_table(p)
    assert twin.equals(got) and got.equals(want)


def test_invalid_text_and_lone_surrogates_pass_through_as_bytes(tmp_path, monkeypatch):
    p = tmp_path / "bad.jsonl"
    write_lines(
        p,
        [
            b'{"instruction": "q", "output": "' + LONG.encode() + b' raw \xff\xfe bytes"}',
            b'{"instruction": "q", "output": "' + LONG.encode() + b' \\ud800 lone and \\ud83d\\ude00 pair"}',
        ],
    )
    got, want = both_ways(p, monkeypatch)
    assert got.equals(want)
    raw = got.column("output").chunk(0).view(pa.binary()).to_pylist() + [
        c.view(pa.binary()).to_pylist()[0] for c in got.column("output").chunks[1:]
    ]
    assert raw[0].endswith(b" raw \xff\xfe bytes")
    assert raw[1].endswith(b" \xed\xa0\x80 lone and \xf0\x9f\x98\x80 pair")


def test_a_huge_record_is_one_batch_whose_text_is_not_copied(tmp_path, monkeypatch):
    monkeypatch.setattr(_json, "BLOCK", 64)
    monkeypatch.setattr(_json, "HUGE", 100)
    p = tmp_path / "r.jsonl"
    write_lines(p, [dumps(RECORDS[1]), dumps({"instruction": "q", "output": LONG}), dumps(RECORDS[1])])
    batches = list(instructfast.scan_file(p).batches())
    assert [b.num_rows for b in batches] == [1, 1, 1]
    out = batches[1].column("output")
    # the value buffer holds exactly the decoded text: an Arrow array over the decoder's own bytes
    assert out.buffers()[2].size == len(LONG.encode()) and out.to_pylist() == [LONG]


@pytest.mark.parametrize(
    ("line", "match"),
    [
        (b'{"instruction": "q", "output": "LONG", "extra": 1}', r"r\.jsonl:2: field `extra` is not among the columns"),
        (b'{"instruction": "q", "output": ["LONG"]}', r"r\.jsonl:2: field `output` must be a string, got list"),
        (
            b'{"instruction": "q", "output": "LONG", "n": "x"}',
            r"r\.jsonl:2: field `n` is str but the first records had number",
        ),
        (
            b'{"instruction": "q", "output": "LONG" "n": 1}',
            r"r\.jsonl:2: invalid JSON \(expected ',' or '}' at byte \d+, counting",
        ),
        (
            b'{"instruction": "q", "output": "LONG\\x"}',
            r"r\.jsonl:2: invalid JSON \(invalid escape at byte \d+, counting",
        ),
        (b'["instruction", "LONG"]', r"r\.jsonl:2: invalid JSON \(expected a JSON object at byte 0, counting"),
        (b'{"instruction": "q", "output": "LONG"} {}', r"r\.jsonl:2: invalid JSON \(data after the end of the record"),
        (b'{"instruction": "q", "output": "LONG", "n": tru}', r"r\.jsonl:2: invalid JSON \(expected a value at byte"),
    ],
    ids=[
        "new-field",
        "not-a-string",
        "other-type",
        "missing-comma",
        "bad-escape",
        "not-an-object",
        "trailing",
        "bad-literal",
    ],
)
def test_errors_in_a_huge_record_name_its_line(tmp_path, monkeypatch, line, match):
    monkeypatch.setattr(_json, "BLOCK", 64)
    monkeypatch.setattr(_json, "HUGE", 100)
    p = tmp_path / "r.jsonl"
    write_lines(p, [b'{"instruction": "q", "output": "a", "n": 1}', line.replace(b"LONG", LONG.encode())])
    with pytest.raises(instructfast.InputFormatError, match=match):
        instructfast.read_table(p)


def test_invalid_text_in_a_huge_record_is_located_like_any_other(tmp_path, monkeypatch):
    p = tmp_path / "r.jsonl"
    write_lines(p, [dumps(RECORDS[1]), b'{"instruction": "q", "output": "' + LONG.encode() + b'\xc3\xa9 x\xff"}'])
    monkeypatch.setattr(_json, "BLOCK", 64)
    with pytest.raises(instructfast.InvalidTextError) as small:
        pipeline.score_file(p, tmp_path / "a.parquet", indicators=["textstats"])
    monkeypatch.setattr(_json, "HUGE", 100)
    with pytest.raises(instructfast.InvalidTextError) as huge:
        pipeline.score_file(p, tmp_path / "b.parquet", indicators=["textstats"])
    column = len('{"instruction": "q", "output": "') + len(LONG) + len("\u00e9 x") + 1  # 1-based, in characters
    assert f"r.jsonl:2:{column}: field `output`" in str(small.value)
    assert str(huge.value) == str(small.value)


@pytest.mark.parametrize(
    ("raw", "at"),
    [
        (b"ok", None),
        (b"x\xff", 1),
        ("\u00e9\u4e2d".encode() + b"\xed\xa0\x80", 5),
        (b"\\\\ud800", None),
        (b"a\\ud800", 1),
    ],
)
def test_first_bad_text_reads_a_megabyte_at_a_time(raw, at, monkeypatch):
    assert _json.first_bad_text(raw) == at
    monkeypatch.setattr(_json, "_STEP", 1)  # every character cut between two steps
    assert _json.first_bad_text(raw) == at
    assert _json.first_bad_text(memoryview(raw)) == at


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(codec=None, exclude_categories=())),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)  # fmt: skip


def as_bytes(v):
    """``json.loads``' value with strings as the decoder gives them (UTF-8 bytes, lone surrogates included)."""
    if isinstance(v, str):
        return v.encode("utf-8", "surrogatepass")
    if isinstance(v, list):
        return [as_bytes(x) for x in v]
    if isinstance(v, dict):
        return {k: as_bytes(x) for k, x in v.items()}
    return v


@settings(max_examples=300, deadline=None)
@given(obj=st.dictionaries(st.text(max_size=8), json_values, max_size=6), ascii_only=st.booleans(), pad=st.booleans())
def test_parse_record_equals_json_loads(obj, ascii_only, pad):
    text = json.dumps(obj, ensure_ascii=ascii_only, indent=1 if pad else None)
    data = text.encode("utf-8", "surrogatepass")
    assert _json.parse_record(data + b"\nnext line", len(data)) == as_bytes(json.loads(text))


@pytest.mark.parametrize(
    "text",
    ['{"a": 1,}', '{"a" 1}', "{a: 1}", '{"a": 01}', '{"a": 1.}', '{"a": [1,]}', '{"a": [1 2]}', '{"a": -}', "{",
     '{"a": nul}', '{"a": "x\\q"}', "{} x"],
)  # fmt: skip
def test_parse_record_refuses_what_json_loads_refuses(text):
    with pytest.raises(ValueError):
        json.loads(text)
    with pytest.raises(ValueError, match=r"at byte \d+$"):
        _json.parse_record(text.encode(), len(text.encode()))


@pytest.mark.parametrize("text", ["[1]", '"s"', "1", ""])
def test_a_record_is_an_object(text):
    with pytest.raises(ValueError, match="expected a JSON object at byte 0"):
        _json.parse_record(text.encode(), len(text.encode()))


def test_parse_record_refuses_deep_nesting():
    text = b'{"a": ' + b"[" * 300 + b"]" * 300 + b"}"
    with pytest.raises(ValueError, match="nested too deeply"):
        _json.parse_record(text, len(text))
