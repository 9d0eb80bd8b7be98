"""MTLD and its tokenizer: every implementation equals lexicalrichness 0.5.1, as doubles.

Implementations: the native core (``instructfast._core``) and the pure-Python twin
(``mtld_py``). The oracle is ``lexicalrichness.LexicalRichness`` itself.
"""

from __future__ import annotations

import doctest
import json
import math
import unicodedata
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import instructfast
from instructfast._native import core
from instructfast.ops import textstats as mtld_api
from instructfast.ops import textstats_py as mtld_py

lexicalrichness = pytest.importorskip("lexicalrichness")
LexicalRichness = lexicalrichness.LexicalRichness

from tests.common import SAMPLE, SHARED  # noqa: E402
from tests.references import lexicalrichness_stats  # noqa: E402

MAX_CP = 0x110000


# --------------------------------------------------------------------------- oracle


# --------------------------------------------------------------------------- implementations


def _native_stats(texts, threshold=0.72, mtld=True):
    schema, array = pa.array(texts, pa.string()).__arrow_c_array__()
    got = core.text_stats(schema, array, threshold=threshold, mtld=mtld)
    # Python strings are valid UTF-8 (surrogates aside, which pyarrow refuses): the scan finds nothing
    assert (got.pop("utf8_error") == -1).all()
    return got


IMPLS = {
    "python": SimpleNamespace(tokenize=mtld_py.tokenize, mtld=mtld_py.mtld, text_stats=mtld_py.text_stats),
    "native": None
    if core is None
    else SimpleNamespace(tokenize=core.tokenize, mtld=core.mtld, text_stats=_native_stats),
}


@pytest.fixture(params=sorted(IMPLS))
def impl(request):
    if IMPLS[request.param] is None:
        pytest.skip(f"native extension unavailable: {instructfast.IMPL_REASON}")
    return IMPLS[request.param]


def available_impls():
    return [i for i in IMPLS.values() if i is not None]


def _nan_to_none(x):
    return None if x is None or math.isnan(x) else x


def assert_matches_lexicalrichness_stats(impl, texts, threshold=0.72):
    """Single-text and batch APIs of `impl` equal lexicalrichness on every text."""
    refs = [lexicalrichness_stats(t, threshold) for t in texts]
    stats = impl.text_stats(texts, threshold=threshold)
    for i, (text, ref) in enumerate(zip(texts, refs)):
        assert impl.tokenize(text) == ref.tokens, text
        got = impl.mtld(text, threshold)
        assert got == ref.mtld, (text, got, ref.mtld)  # exact, not approx
        assert stats["valid"][i]
        assert stats["words"][i] == ref.words, text
        assert stats["unique_words"][i] == ref.terms, text
        assert _nan_to_none(stats["ttr"][i]) == ref.ttr, text
        assert _nan_to_none(stats["mtld"][i]) == ref.mtld, text
        assert stats["chars"][i] == len(text)
        assert stats["bytes"][i] == len(text.encode("utf-8"))


# --------------------------------------------------------------------------- data sets


def _strings(*values):
    return [v for v in values if isinstance(v, str)]


def sample_texts() -> list[str]:
    records = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [t for r in records for t in _strings(r.get("output"), r.get("instruction"), r.get("input"))]


def shared_texts() -> list[str]:
    texts = []
    for path in sorted(SHARED.glob("*.json")):
        for r in json.loads(path.read_text(encoding="utf-8")):
            texts += _strings(r.get("output"), r.get("instruction"))
    seed = SHARED / "self_instruct_seed_tasks.jsonl"
    if seed.exists():
        for line in seed.read_text(encoding="utf-8").splitlines():
            if line.strip():
                r = json.loads(line)
                texts += _strings(r.get("instruction"))
                texts += [t for inst in r.get("instances", []) for t in _strings(inst.get("output"))]
    return texts


@pytest.fixture(scope="module")
def sample_refs():
    texts = sample_texts()
    return texts, [lexicalrichness_stats(t) for t in texts]


@pytest.fixture(scope="module")
def shared_refs():
    if not SHARED.is_dir():
        pytest.skip(f"shared data sets not present at {SHARED}")
    texts = shared_texts()
    return texts, [lexicalrichness_stats(t) for t in texts]


def _check_corpus(impl, texts, refs):
    stats = impl.text_stats(texts)
    mismatches = []
    for i, (text, ref) in enumerate(zip(texts, refs)):
        got = (
            impl.tokenize(text) == ref.tokens,
            impl.mtld(text) == ref.mtld,
            stats["words"][i] == ref.words,
            stats["unique_words"][i] == ref.terms,
            _nan_to_none(stats["ttr"][i]) == ref.ttr,
            _nan_to_none(stats["mtld"][i]) == ref.mtld,
        )
        if not all(got):
            mismatches.append((text[:80], got))
    assert not mismatches, f"{len(mismatches)} of {len(texts)} texts differ, e.g. {mismatches[:3]}"


def test_sample_records_match_lexicalrichness(impl, sample_refs):
    texts, refs = sample_refs
    assert len(texts) > 300
    _check_corpus(impl, texts, refs)


def test_shared_datasets_match_lexicalrichness(impl, shared_refs):
    texts, refs = shared_refs
    _check_corpus(impl, texts, refs)


# --------------------------------------------------------------------------- examples

EXAMPLES = [
    "",
    "   \t\n",
    "1234 56-78 -- — –",  # digits and dashes only: no tokens
    "Yes",  # never drops below the threshold: MTLD is the word count
    "a b c",
    "the cat sat on the mat the cat",
    "Well-known co-operation; e-mail: x@y.z!",
    "abc123def 4th 1st-class 3.14",
    "ΟΔΟΣ. ΣΟΦΟΣ ΣΑΣ Σ AΣ A.Σ A'Σ AΣ'B AΣ\u0301 Σ\u0301A",  # final sigma in and out of context
    "ὈΔΥΣΣΕΎΣ ΣΑΣ\u0345 \u0345Σ",  # U+0345 is cased and case-ignorable
    "İstanbul ISTANBUL ıstanbul İİ",  # U+0130 lowercases to two code points
    "Straße STRASSE ẞ ß",
    "\u212a Kelvin \u212b Angstrom \u2126 Ohm",
    "a\u00a0b a\u2028b a\u2029b a\x85b a\x1cb a\x1db a\x1eb a\x1fb a\u3000b a\u202fb a\u200bb",
    "naïve cafe\u0301 résumé e\u0301",
    "中文分词 日本語のテキスト 한국어",
    "emoji 🙂 👩\u200d👩\u200d👧\u200d👦 🏳\ufe0f\u200d🌈 family",
    "arabic ١٢٣ devanagari ०१२ fullwidth ０１２ superscript ²",
    "quotes “curly” ‘single’ «guillemets» …",
    "\x00\x01 control\x7f chars",
    "ǄǅǆDž title ǈ",
    "A" * 40 + " " + "word " * 50,  # long ASCII runs cross the 16-byte fast path
    " ".join(f"tok{i % 7}en" for i in range(300)),
]


@pytest.mark.parametrize("text", EXAMPLES)
def test_examples_match_lexicalrichness(impl, text):
    assert_matches_lexicalrichness_stats(impl, [text])


@pytest.mark.parametrize("threshold", [0.01, 0.3, 0.5, 0.72, 0.8, 0.9, 0.99])
def test_thresholds_match_lexicalrichness(impl, threshold, sample_refs):
    texts = sample_refs[0][:60] + EXAMPLES
    assert_matches_lexicalrichness_stats(impl, texts, threshold=threshold)


def test_never_below_threshold_gives_word_count(impl):
    # lexicalrichness' special case (SPEC section 7): no sentinel values.
    assert impl.mtld("Yes") == 1.0
    assert impl.mtld("one two three four") == 4.0


def test_no_tokens_gives_none(impl):
    for text in ["", "  ", "123", "-- ! ?", "—"]:
        assert impl.mtld(text) is None
        st_ = impl.text_stats([text])
        assert st_["words"][0] == 0 and math.isnan(st_["mtld"][0]) and math.isnan(st_["ttr"][0])


def test_mtld_flag_off(impl):
    st_ = impl.text_stats(["a b a", "c"], mtld=False)
    assert np.isnan(st_["mtld"]).all()
    assert st_["words"].tolist() == [3, 1]
    assert st_["ttr"][0] == 2 / 3


@pytest.mark.parametrize("bad", [0.0, 1.0, 1.5, -0.25, -1e-05, 100.0, 1e20, float("nan"), float("inf")])
def test_threshold_errors_are_identical(bad):
    messages = set()
    calls = [lambda i=i: i.mtld("a b", bad) for i in available_impls()]
    calls += [lambda i=i: i.text_stats(["a b"], threshold=bad) for i in available_impls()]
    calls += [lambda: mtld_api.mtld("a b", bad), lambda: mtld_api.text_stats(pa.array(["a"]), threshold=bad)]
    for call in calls:
        with pytest.raises(ValueError) as info:
            call()
        messages.add(str(info.value))
    assert messages == {f"`threshold` must be in (0, 1), got {bad!r}"}


def test_text_stats_null_rows(impl):
    st_ = impl.text_stats(["Hello there", None, ""])
    assert st_["valid"].tolist() == [True, False, True]
    assert st_["words"].tolist() == [2, 0, 0]
    assert st_["chars"].tolist() == [11, 0, 0]
    assert st_["bytes"].tolist() == [11, 0, 0]
    assert np.isnan(st_["mtld"][1:]).all() and np.isnan(st_["ttr"][1:]).all()
    assert {k: v.dtype.kind for k, v in st_.items()} == {
        "valid": "b",
        "words": "i",
        "unique_words": "i",
        "ttr": "f",
        "mtld": "f",
        "chars": "i",
        "bytes": "i",
    }


# --------------------------------------------------------------------------- property tests

# Characters that exercise every branch of the tokenizer and of str.lower().
PIECES = [
    "Σ",
    "σ",
    "ς",
    "ΑΣ",
    "ΟΔΟΣ",
    "ΣΑΣ",
    "\u0345",
    "İ",
    "ı",
    "I",
    "i",
    "ß",
    "ẞ",
    "\u212a",
    "\u212b",
    "\u0301",
    "\u0308",
    "\u00ad",
    "\u200d",
    "\u200b",
    "\ufe0f",
    "'",
    ".",
    ":",
    "’",
    "·",
    "🙂",
    "👩\u200d👩\u200d👧",
    "🏳\ufe0f\u200d🌈",
    "中文",
    "日本語",
    "한",
    " ",
    "  ",
    "\t",
    "\n",
    "\r\n",
    "\x0b",
    "\x0c",
    "\x1c",
    "\x1d",
    "\x1e",
    "\x1f",
    "\x85",
    "\u00a0",
    "\u1680",
    "\u2000",
    "\u2009",
    "\u200a",
    "\u2028",
    "\u2029",
    "\u202f",
    "\u205f",
    "\u3000",
    "0",
    "7",
    "42",
    "٣",
    "०",
    "０",
    "²",
    "–",
    "—",
    "-",
    "--",
    "‐",
    "−",
    "!",
    "?",
    ",",
    ";",
    "(",
    ")",
    '"',
    "_",
    "~",
    "@",
    "#",
    "[",
    "]",
    "{",
    "}",
    "\\",
    "/",
    "`",
    "^",
    "|",
    "A",
    "b",
    "Z",
    "é",
    "E\u0301",
    "Ǆ",
    "ǅ",
    "ﬁ",
    "Straße",
    "Word",
    "WORD",
    "word",
    "the",
    "The",
    "\x00",
    "\x7f",
    "\U0001d400",
    "\U00010400",
]
ASCII_WORDS = ["alpha", "Beta", "gamma", "DELTA", "epsilon", "well-known", "x1", "3rd", "a.b", "end."]

piece_texts = st.lists(st.sampled_from(PIECES), max_size=60).map("".join)
mixed_texts = st.lists(st.sampled_from(PIECES + ASCII_WORDS * 4 + [" "] * 20), max_size=200).map("".join)


def _all_equal(texts, threshold=0.72):
    for impl_ in available_impls():
        assert_matches_lexicalrichness_stats(impl_, texts, threshold)


@settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(piece_texts)
def test_property_unicode_pieces(text):
    _all_equal([text])


@settings(deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(mixed_texts, st.floats(min_value=0.05, max_value=0.95))
def test_property_long_mixed(text, threshold):
    _all_equal([text], threshold)


@settings(deadline=None, max_examples=300)
@given(st.text())
def test_property_arbitrary_text(text):
    _all_equal([text])


@settings(deadline=None, max_examples=100)
@given(st.lists(st.one_of(st.none(), st.text(max_size=40), mixed_texts), max_size=30))
def test_property_batch_equals_rows(texts):
    # A row's values do not depend on its neighbours or on the batch API.
    stats = [impl_.text_stats(texts) for impl_ in available_impls()]
    for other in stats[1:]:
        for key in stats[0]:
            np.testing.assert_array_equal(stats[0][key], other[key], err_msg=key)
    for i, text in enumerate(texts):
        assert stats[0]["valid"][i] == (text is not None)
        if text is not None:
            assert _nan_to_none(stats[0]["mtld"][i]) == lexicalrichness_stats(text).mtld


# --------------------------------------------------------------------------- Unicode tables

needs_core = pytest.mark.skipif(core is None, reason="native extension unavailable")


def _chunks(size=1 << 14):
    for start in range(0, MAX_CP, size):
        yield [chr(c) for c in range(start, min(start + size, MAX_CP)) if not 0xD800 <= c <= 0xDFFF]


@needs_core
def test_unicode_version_matches_interpreter():
    assert core.UNICODE_VERSION == unicodedata.unidata_version
    assert core.__version__ == instructfast.__version__


@needs_core
def test_lower_every_code_point():
    for chars in _chunks():
        text = "".join(chars)
        assert core.lower(text) == text.lower()
        # Final-sigma context around every code point (cased / case-ignorable tables).
        ctx = " ".join(f"A{c}Σ {c}Σ AΣ{c} A{c}Σ{c}B" for c in chars)
        assert core.lower(ctx) == ctx.lower()


@needs_core
def test_isspace_every_code_point():
    got = [core.isspace(c) for c in range(MAX_CP) if not 0xD800 <= c <= 0xDFFF]
    want = [chr(c).isspace() for c in range(MAX_CP) if not 0xD800 <= c <= 0xDFFF]
    assert got == want
    with pytest.raises(ValueError):
        core.isspace(MAX_CP)


def test_tokenize_every_code_point(impl):
    # Each code point alone and inside a word, against lexicalrichness' own tokenizer.
    for chars in _chunks(1 << 16):
        text = " ".join(f"{c} x{c}y" for c in chars)
        assert impl.tokenize(text) == lexicalrichness.tokenize(lexicalrichness.preprocess(text))


# --------------------------------------------------------------------------- public API


def test_dispatcher_uses_one_docstring_and_doctests():
    for module in (mtld_api, mtld_py):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0
    for name in ("text_stats", "mtld", "tokenize"):
        doc = getattr(mtld_api, name).__doc__
        assert "Examples" in doc and "Returns" in doc


def test_dispatcher_matches_twin_and_lexicalrichness_stats(sample_refs):
    texts, refs = sample_refs
    for text, ref in zip(texts[:100], refs[:100]):
        assert mtld_api.tokenize(text) == ref.tokens
        assert mtld_api.mtld(text) == ref.mtld


@pytest.mark.parametrize("func", [mtld_api.mtld, mtld_api.tokenize])
def test_dispatcher_rejects_non_str(func):
    with pytest.raises(TypeError, match="`text` must be a str, got bytes"):
        func(b"bytes")


def test_dispatcher_python_fallback(monkeypatch, sample_refs):
    texts = sample_refs[0][:50] + [None]
    native = mtld_api.text_stats(pa.array(texts))
    monkeypatch.setattr(mtld_api, "core", None)
    fallback = mtld_api.text_stats(pa.array(texts))
    for key in native:
        np.testing.assert_array_equal(native[key], fallback[key], err_msg=key)
    assert mtld_api.mtld(texts[0]) == lexicalrichness_stats(texts[0]).mtld
