"""Invalid text: the native check and repair equal the pure-Python twin (CPython's own decoder) on any bytes.

The oracle is ``bytes.decode("utf-8")``: an error's ``start`` is the first invalid byte, and
``errors="replace"`` substitutes maximal subparts (plus our one rule: an encoded surrogate, what a
lone ``"\\ud800"`` escape becomes, is one unit).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import instructfast
from instructfast._native import core
from instructfast.ops import textstats as ops_textstats
from instructfast.ops import utf8 as ops_utf8
from instructfast.ops import utf8_py
from instructfast.ops.utf8 import REPLACED, check_batch, invalid_utf8, replace_invalid_utf8

needs_core = pytest.mark.skipif(core is None, reason="native extension unavailable")

# Each kind of invalid sequence CPython rejects, and valid neighbours.
CASES = [
    b"",
    b"plain ascii",
    "caf\u00e9 \u4e2d \U0001f642".encode(),
    b"\xff",  # never a lead byte
    b"\x80abc",  # a lone continuation byte
    b"\xc0\x80",  # overlong NUL
    b"\xc1\xbf",  # overlong
    b"\xe0\x80\x80",  # overlong 3-byte
    b"\xe0\x9f\xbf",  # overlong 3-byte, at the edge
    b"\xed\xa0\x80",  # encoded high surrogate (a lone \ud800)
    b"\xed\xbf\xbf",  # encoded low surrogate
    b"\xed\x9f\xbf",  # U+D7FF: valid, just below the surrogates
    b"\xf0\x80\x80\x80",  # overlong 4-byte
    b"\xf4\x90\x80\x80",  # above U+10FFFF
    b"\xf4\x8f\xbf\xbf",  # U+10FFFF: valid
    b"\xf5\x80\x80\x80",  # lead byte past F4
    b"\xe2\x82",  # truncated at the end
    b"\xe2\x82A",  # truncated before ASCII
    b"\xf0\x9f\x98",  # truncated 4-byte
    b"ok \xed\xa0\x80\xed\xb0\x80 pair?",  # two encoded surrogates (CESU-8 of one astral char): invalid
    b"x" * 20 + b"\xff" + b"y" * 20,  # past the 8-byte ASCII fast path
]


def _native_check(values):
    return core.utf8_check(*pa.array(values, pa.binary()).view(pa.string()).__arrow_c_array__())


@needs_core
@pytest.mark.parametrize("data", CASES, ids=range(len(CASES)))
def test_native_check_and_repair_equal_cpython(data):
    assert _native_check([data]).tolist() == [utf8_py.first_invalid(data)]
    assert core.utf8_replace(data) == utf8_py.replace_invalid(data)
    core.utf8_replace(data).decode("utf-8")  # the repair is valid text (this raises otherwise)
    if utf8_py.first_invalid(data) < 0:
        assert core.utf8_replace(data) == data


def test_encoded_surrogate_is_one_replacement():
    # bytes.decode(errors="replace") gives three U+FFFD for ED A0 80; a lone escape is one character
    assert utf8_py.replace_invalid(b"a\xed\xa0\x80b").decode() == "a\ufffdb"
    assert b"a\xed\xa0\x80b".decode("utf-8", "replace") == "a\ufffd\ufffd\ufffdb"


@needs_core
@settings(deadline=None, max_examples=400)
@given(st.lists(st.one_of(st.binary(max_size=40), st.sampled_from(CASES), st.text(max_size=20).map(str.encode))))
def test_native_equals_twin_on_any_bytes(pieces):
    data = b"".join(pieces)
    assert _native_check([data]).tolist() == [utf8_py.first_invalid(data)]
    assert core.utf8_replace(data) == utf8_py.replace_invalid(data)


@pytest.mark.parametrize("string_type", [pa.string(), pa.large_string(), pa.string_view()], ids=str)
def test_invalid_utf8_on_every_layout_with_nulls_and_slices(string_type):
    values = [b"ok", None, b"bad \xff", b"x" * 30 + b"\xed\xa0\x80", b"", "\u00e9".encode()]
    binary = {pa.string(): pa.binary(), pa.large_string(): pa.large_binary()}.get(string_type, pa.binary_view())
    arr = pa.array(values, binary).view(string_type)
    want = [-1, -1, 4, 30, -1, -1]
    assert invalid_utf8(arr).tolist() == want
    assert invalid_utf8(arr.slice(2, 3)).tolist() == want[2:5]
    fixed = replace_invalid_utf8(arr)
    assert fixed.type == string_type
    assert fixed.to_pylist() == ["ok", None, "bad \ufffd", "x" * 30 + "\ufffd", "", "\u00e9"]


def test_twin_path_gives_the_same_answers(monkeypatch):
    arr = pa.array([b"ok", b"\xc0\x80", None]).view(pa.string())
    native = invalid_utf8(arr).tolist()
    monkeypatch.setattr(ops_utf8, "core", None)
    assert invalid_utf8(arr).tolist() == native == [-1, 0, -1]
    assert replace_invalid_utf8(arr).to_pylist() == ["ok", "\ufffd\ufffd", None]


def test_text_stats_refuses_invalid_utf8_with_the_same_message_in_both_implementations(monkeypatch):
    arr = pa.chunked_array([pa.array(["fine"]), pa.array([b"a", b"b \xff c"]).view(pa.string())])
    messages = []
    for impl in ("native", "python"):
        if impl == "python":
            monkeypatch.setattr(ops_textstats, "core", None)
        elif core is None:
            continue
        with pytest.raises(instructfast.InvalidTextError) as e:
            ops_textstats.text_stats(arr)
        assert e.value.row == 2 and e.value.byte == 2
        assert isinstance(e.value, UnicodeError) and isinstance(e.value, ValueError)
        messages.append(str(e.value))
    assert "`array` element 2: invalid UTF-8 at byte 2 (b'b \\xff c')" in messages[0]
    assert len(set(messages)) == 1


@needs_core
def test_the_scan_reports_invalid_bytes_anywhere_in_a_long_row():
    # the tokenizer's 16-byte ASCII blocks, then the code-point path: both feed the check
    for at in (0, 15, 16, 17, 1000):
        data = b"a" * at + b"\xf8" + b" tail words" * 5
        st = core.text_stats(*pa.array([data, b"ok"], pa.binary()).view(pa.string()).__arrow_c_array__())
        assert st["utf8_error"].tolist() == [at, -1]


# ----------------------------------------------------------------------------- batches


def _bad(values):
    return pa.array(values, pa.binary()).view(pa.string())


def test_check_batch_names_the_first_row_across_columns():
    b = pa.record_batch({"instruction": _bad([b"q", b"q", b"\xff"]), "output": _bad([b"a", b"x\xfe", b"c"])})
    with pytest.raises(instructfast.InvalidTextError) as e:
        check_batch(b)
    assert str(e.value).startswith("row 1: column `output`: invalid UTF-8 at byte 1 (b'x\\xfe');")
    assert "on_invalid_utf8='replace'" in str(e.value)
    assert (e.value.row, e.value.column, e.value.byte) == (1, "output", 1)


def test_check_batch_replaces_and_counts_rows_per_column():
    b = pa.record_batch(
        {
            "instruction": _bad([b"\xff", b"q", b"\xff\xff"]),
            "output": _bad([b"a", b"b", b"c"]),
            "n": pa.array([1, 2, 3]),
        }
    )
    counted = {}
    out = check_batch(b, policy="replace", on_replaced=counted.__setitem__)
    assert out.column("instruction").to_pylist() == ["\ufffd", "q", "\ufffd\ufffd"]
    # untouched columns are the same buffers, not copies
    assert out.column("output").buffers()[2].address == b.column("output").buffers()[2].address
    assert out.column("n").equals(b.column("n"))
    assert counted == {"instruction": 2}
    assert check_batch(out) is out  # valid now: nothing rebuilt


def test_check_batch_reaches_nested_and_dictionary_text():
    conv = pa.array(
        [
            [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}],
            None,
            [{"from": "human", "value": "a"}, {"from": "gpt", "value": "placeholder"}],
        ]
    )
    values = conv.flatten().field("value").cast(pa.binary()).to_pylist()
    values[3] = b"bad \xed\xa0\x80"
    flat = pa.StructArray.from_arrays(
        [conv.flatten().field("from"), pa.array(values, pa.binary()).view(pa.string())], names=["from", "value"]
    )
    nested = pa.ListArray.from_arrays(conv.offsets, flat, mask=conv.is_null())
    cats = pa.DictionaryArray.from_arrays(pa.array([0, 1, 1, None]), _bad([b"ok", b"c\xff"]))
    b = pa.record_batch({"conversations": pa.concat_arrays([nested, nested.slice(0, 1)]), "cat": cats})
    with pytest.raises(instructfast.InvalidTextError) as e:
        check_batch(b)
    assert e.value.row == 1 and e.value.column == "cat"  # row 1 (the dictionary) comes before row 2
    with pytest.raises(
        instructfast.InvalidTextError, match=r"row 2: column `conversations\[\]\.value`: a lone surrogate \(\\ud800"
    ):
        check_batch(b.select(["conversations"]))
    counted = {}
    out = check_batch(b, policy="replace", on_replaced=counted.__setitem__)
    assert out.column("conversations").to_pylist()[2][1]["value"] == "bad \ufffd"
    assert out.column("cat").to_pylist() == ["ok", "c\ufffd", "c\ufffd", None]
    assert counted == {"conversations": 1, "cat": 2}
    out.validate(full=True)


def test_unused_dictionary_entries_are_not_rows():
    cats = pa.DictionaryArray.from_arrays(pa.array([0, 0]), _bad([b"ok", b"\xff"]))
    check_batch(pa.record_batch({"cat": cats}))  # nothing in the table holds the bad entry


def test_replacement_note_is_what_the_report_counts():
    t = pa.table({"instruction": ["q", "q"], "output": _bad([b"fine", b"x\xff"])})
    out = instructfast.score(t, indicators=["output_words"], options={"on_invalid_utf8": "replace"})
    rep = instructfast.ScoreReport.from_table(out)
    assert rep.notes == {"output": {REPLACED: 1}}
    assert out.column("output").to_pylist() == ["fine", "x\ufffd"]
    assert "replaced with U+FFFD" in rep.run.implementations["invalid text"]
    np.testing.assert_array_equal(out.column("output_words").to_numpy(), [1, 1])
