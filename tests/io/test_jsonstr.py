"""The JSON string decoder: native and Python twin held equal to each other, and both to ``json.loads``.

The oracle is CPython's own JSON decoder: a literal it accepts decodes to its value (encoded back with
``surrogatepass``, since a lone surrogate escape is carried as the three bytes it would encode to), and
one it refuses is refused by both implementations with the same message.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from instructfast._native import core
from instructfast.io import jsonstr, jsonstr_py

needs_core = pytest.mark.skipif(core is None, reason="native extension unavailable")

IMPLS = [pytest.param(jsonstr_py.json_string, id="python"), pytest.param(jsonstr.json_string, id="dispatch")]
if core is not None:
    IMPLS.append(pytest.param(core.json_string, id="native"))

# Literals json.loads accepts: every escape, pairs, lone surrogates of both halves, backslash runs.
GOOD = [
    rb'""',
    rb'"plain"',
    rb'"\" \\ \/ \b \f \n \r \t"',
    rb'"\u0041\u00e9\u4e2d\uFFFF"',
    rb'"\ud83d\ude00 pair, \uD83D\uDE00 upper case"',
    rb'"\ud800"',  # a lone high surrogate
    rb'"\udc00 lone low"',
    rb'"\ud800\u0041 high then not low"',
    rb'"\ud800\ud800 two highs"',
    rb'"\ud800\\ude00 escaped backslash: no pair"',
    rb'"\udbff\udfff the last pair"',
    rb'"ends in an escaped backslash \\"',
    rb'"\\\\\\"',  # three escaped backslashes
    rb'"\\\" quote after a backslash"',
    '"caf\u00e9 \u4e2d \U0001f642 raw UTF-8"'.encode(),
    b'"\x7f DEL is allowed raw"',
    rb'"\u0000 an escaped NUL"',
]

# Literals json.loads refuses (with where each implementation stops).
BAD = [
    (b'"unterminated', "unterminated string at byte 0"),
    (b'"ends with \\"', "unterminated string at byte 0"),
    (b"'single'", "expected a string at byte 0"),
    (b"", "expected a string at byte 0"),
    (b'"raw\nnewline"', "control character in a string at byte 4"),
    (b'"tab\there"', "control character in a string at byte 4"),
    (b'"\\x41"', "invalid escape at byte 1"),
    (b'"\\u12"', "invalid \\u escape at byte 1"),
    (b'"\\u12G4"', "invalid \\u escape at byte 1"),
    (b'"\\u+123"', "invalid \\u escape at byte 1"),  # int(..., 16) would take it
    (b'"ok \\q then \x01"', "invalid escape at byte 4"),  # the first problem by position
    (b'"\x01 then \\q"', "control character in a string at byte 1"),
]


def oracle(literal: bytes) -> bytes:
    return json.loads(literal.decode("utf-8")).encode("utf-8", "surrogatepass")


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("literal", GOOD, ids=range(len(GOOD)))
def test_values_equal_json_loads(impl, literal):
    data = b"  " + literal + b', "next"'  # not at the start, and followed by more JSON
    value, end = impl(data, 2)
    assert value == oracle(literal)
    assert end == 2 + len(literal)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(("literal", "message"), BAD, ids=range(len(BAD)))
def test_bad_syntax_is_refused_like_json_loads(impl, literal, message):
    with pytest.raises(json.JSONDecodeError):
        json.loads(literal.decode("utf-8"))
    with pytest.raises(ValueError) as e:
        impl(literal, 0)
    assert str(e.value) == message


@pytest.mark.parametrize("impl", IMPLS)
def test_raw_bytes_are_copied_as_they_are(impl):
    # invalid UTF-8 is not the decoder's business: the scorer's text check reports or repairs it
    literal = b'"x\xff\xfey \\u00e9 \xed\xa0\x80"'
    assert impl(literal, 0) == (b"x\xff\xfey \xc3\xa9 \xed\xa0\x80", len(literal))


@pytest.mark.parametrize("impl", IMPLS)
def test_start_past_the_data_is_an_error_not_a_read(impl):
    with pytest.raises(ValueError, match="expected a string at byte 5"):
        impl(b'"abc"', 5)


@needs_core
@settings(max_examples=300, deadline=None)
@given(text=st.text(st.characters(codec=None, exclude_categories=())), ascii_only=st.booleans())
def test_any_text_round_trips_like_json_loads(text, ascii_only):
    # json.dumps writes every character (lone surrogates included) either raw or as \u escapes
    literal = json.dumps(text, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    want = json.loads(literal.decode("utf-8", "surrogatepass")).encode("utf-8", "surrogatepass")
    assert core.json_string(literal, 0) == jsonstr_py.json_string(literal, 0) == (want, len(literal))


@needs_core
@settings(max_examples=500, deadline=None)
@given(body=st.binary(max_size=40), start=st.integers(0, 3))
def test_native_equals_the_twin_on_any_bytes(body, start):
    data = b'xx "' + body + b'" tail'
    try:
        want = jsonstr_py.json_string(data, start + 1)
    except ValueError as e:
        with pytest.raises(ValueError) as got:
            core.json_string(data, start + 1)
        assert str(got.value) == str(e)
        return
    assert core.json_string(data, start + 1) == want


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=30))
def test_what_json_loads_accepts_decodes_to_its_value(body):
    literal = b'"' + body.replace(b'"', b"") + b'"'
    try:
        text = literal.decode("utf-8")
    except UnicodeDecodeError:  # raw invalid bytes are copied as they are (see above); JSON cannot say
        return
    try:
        expected = json.loads(text).encode("utf-8", "surrogatepass")
    except ValueError:  # what JSON refuses, the decoder refuses too
        with pytest.raises(ValueError):
            jsonstr.json_string(literal, 0)
        return
    assert jsonstr.json_string(literal, 0) == (expected, len(literal))
