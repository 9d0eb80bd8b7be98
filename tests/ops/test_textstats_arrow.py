"""text_stats over Arrow arrays: every string layout, slicing, nulls, chunks, threads, no copies."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import instructfast
from instructfast._native import core
from instructfast.ops import textstats as mtld_api
from instructfast.ops import textstats_py as mtld_py

SAMPLE = Path(__file__).parents[1] / "data" / "sample_records.jsonl"
TYPES = [pa.string(), pa.large_string(), pa.string_view()]
TYPE_IDS = ["string", "large_string", "string_view"]
KEYS = ["valid", "words", "unique_words", "ttr", "mtld", "chars", "bytes"]

needs_core = pytest.mark.skipif(core is None, reason="native extension unavailable")

TEXTS = [
    "The quick brown fox jumps over the lazy dog. The dog sleeps.",
    None,
    "",
    "short",  # string_view: inline (<= 12 bytes)
    "exactly12byt",
    "thirteen byte",  # string_view: first out-of-line length
    "ΟΔΟΣ ΣΑΣ İstanbul Straße 中文 🙂 — 42 well-known",
    None,
    "   ",
    "a b a b a b c " * 40,
]


def sample_outputs() -> list[str | None]:
    records = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r.get("output") for r in records]


def expected(texts, **kw):
    return mtld_py.text_stats(list(texts), **kw)


def assert_stats_equal(got, want):
    assert sorted(got) == sorted(KEYS)
    for key in KEYS:
        assert got[key].dtype == want[key].dtype, key
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)


@pytest.fixture(params=TYPES, ids=TYPE_IDS)
def string_type(request):
    return request.param


def test_plain_array(string_type):
    arr = pa.array(TEXTS, string_type)
    assert_stats_equal(mtld_api.text_stats(arr), expected(TEXTS))


def test_sliced_array(string_type):
    arr = pa.array(TEXTS * 3, string_type)
    for start, stop in [(1, 7), (3, 25), (0, 0), (29, 30), (7, 30)]:
        part = arr.slice(start, stop - start)
        assert part.offset == start or stop == start
        assert_stats_equal(mtld_api.text_stats(part), expected((TEXTS * 3)[start:stop]))


def test_chunked_array_with_slices_and_empty_chunks(string_type):
    base = pa.array(TEXTS, string_type)
    chunks = [base.slice(2, 5), pa.array([], string_type), base, base.slice(9)]
    arr = pa.chunked_array(chunks, string_type)
    want = expected(TEXTS[2:7] + TEXTS + TEXTS[9:])
    assert_stats_equal(mtld_api.text_stats(arr), want)


def test_empty_inputs(string_type):
    for arr in (pa.array([], string_type), pa.chunked_array([], string_type)):
        got = mtld_api.text_stats(arr)
        assert all(len(v) == 0 for v in got.values())
        assert_stats_equal(got, expected([]))


def test_all_null_and_all_empty(string_type):
    nulls = pa.array([None] * 70, string_type)
    assert_stats_equal(mtld_api.text_stats(nulls), expected([None] * 70))
    empties = pa.array([""] * 70, string_type)
    assert_stats_equal(mtld_api.text_stats(empties), expected([""] * 70))


def test_sample_records_every_layout(string_type):
    outputs = sample_outputs()
    arr = pa.array(outputs, string_type)
    assert_stats_equal(mtld_api.text_stats(arr), expected(outputs))


def test_threads_do_not_change_results():
    outputs = sample_outputs() * 8 + [None, ""]  # many scheduling chunks of rows
    arr = pa.array(outputs)
    one = mtld_api.text_stats(arr, threads=1)
    for threads in (2, 3, None):
        assert_stats_equal(mtld_api.text_stats(arr, threads=threads), one)
    assert_stats_equal(one, expected(outputs))


def test_mtld_off_and_threshold():
    arr = pa.array(TEXTS)
    got = mtld_api.text_stats(arr, mtld=False)
    assert np.isnan(got["mtld"]).all()
    assert_stats_equal(got, expected(TEXTS, mtld=False))
    assert_stats_equal(mtld_api.text_stats(arr, threshold=0.5), expected(TEXTS, threshold=0.5))


@pytest.mark.parametrize(
    "value, name",
    [
        (pa.array([1, 2]), "int64"),
        (pa.array([b"x"]), "binary"),
        (pa.array(["x"]).dictionary_encode(), "dictionary"),
        (["a list"], "list"),
        ("a str", "str"),
    ],
)
def test_non_string_input_raises_type_error(value, name):
    with pytest.raises(TypeError, match=name):
        mtld_api.text_stats(value)


@pytest.mark.parametrize("threads, error", [(0, ValueError), (-1, ValueError), (1.5, TypeError), (True, TypeError)])
def test_bad_threads(threads, error):
    with pytest.raises(error, match="threads"):
        mtld_api.text_stats(pa.array(["a"]), threads=threads)


@needs_core
def test_core_rejects_bad_capsules_and_formats():
    schema, array = pa.array(["a"]).__arrow_c_array__()
    with pytest.raises(ValueError, match="arrow_schema"):
        core.text_stats(array, array)
    with pytest.raises(ValueError, match="arrow_array"):
        core.text_stats(schema, 42)
    ints = pa.array([1, 2, 3]).__arrow_c_array__()
    with pytest.raises(ValueError, match="unsupported Arrow format 'l'"):
        core.text_stats(*ints)
    binary = pa.array([b"x"]).__arrow_c_array__()
    with pytest.raises(ValueError, match="unsupported Arrow format 'z'"):
        core.text_stats(*binary)
    with pytest.raises(ValueError, match=r"got 1\.0"):
        core.text_stats(schema, array, threshold=1.0)


@needs_core
def test_core_leaves_capsules_usable():
    # The caller keeps ownership: the same capsules can be read again (and imported).
    arr = pa.array(TEXTS)
    schema, array = arr.__arrow_c_array__()
    first = core.text_stats(schema, array)
    second = core.text_stats(schema, array, threads=2)
    assert (first.pop("utf8_error") == -1).all() and (second.pop("utf8_error") == -1).all()
    assert_stats_equal(first, second)
    assert pa.Array._import_from_c_capsule(schema, array).to_pylist() == TEXTS


@needs_core
def test_string_view_with_several_data_buffers():
    # Concatenated view arrays keep one variadic data buffer per source chunk.
    long = [f"a fairly long string number {i} that is not inlined" for i in range(50)]
    parts = [pa.array(long[i : i + 10], pa.string_view()) for i in range(0, 50, 10)]
    arr = pa.concat_arrays(parts)
    assert len(arr.buffers()) > 3
    assert_stats_equal(mtld_api.text_stats(arr), expected(long))
    assert_stats_equal(mtld_api.text_stats(arr.slice(7, 30)), expected(long[7:37]))


ZERO_COPY_SCRIPT = textwrap.dedent(
    """
    import resource, sys
    import numpy as np, pyarrow as pa
    from instructfast.ops.textstats import text_stats

    ROW = 10_000
    ROWS = 20_000  # 200 MB of text
    pattern = np.frombuffer((b"Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 200)[:ROW], np.uint8)
    # Fill the Arrow buffer in place (no temporary copy) so the peak RSS is the baseline.
    data = pa.allocate_buffer(ROW * ROWS)
    np.frombuffer(data, np.uint8).reshape(ROWS, ROW)[:] = pattern
    offsets = pa.py_buffer(np.arange(ROWS + 1, dtype=np.int64) * ROW)
    big = pa.Array.from_buffers(pa.large_string(), ROWS, [None, offsets, data])
    half = ROWS // 2
    chunked = pa.chunked_array([big.slice(0, half), big.slice(half)])

    def peak_mb():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    text_stats(big.slice(0, 10))  # warm up (imports, first allocations)
    before = peak_mb()
    st = text_stats(chunked, threads=2)
    st = text_stats(big.slice(5, ROWS - 10), threads=2)
    growth = peak_mb() - before
    assert st["words"].sum() > 0 and len(st["words"]) == ROWS - 10
    print(f"{growth:.1f}")
    """
)


@needs_core
def test_zero_copy_on_200mb_array():
    # Any copy of the text (to_pylist, combine_chunks, a cast) would add >= 200 MB of
    # peak RSS; reading in place adds only the small outputs and workspaces.
    proc = subprocess.run([sys.executable, "-c", ZERO_COPY_SCRIPT], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    growth_mb = float(proc.stdout.strip().splitlines()[-1])
    assert growth_mb < 40, f"peak RSS grew by {growth_mb:.0f} MB while reading a 200 MB array"


# ------------------------------------------- malformed arrays through the C data interface
# pyarrow validates what it builds; these are laid out by hand (tests/arrow_c.py), as another
# producer could, so the core's own checks are what stands between them and a read out of bounds.

from tests.arrow_c import HandBuilt, offsets_array, validity, view, views_array  # noqa: E402

MALFORMED = [
    ("negative first offset", lambda: offsets_array("string", [b"ab"], offsets=[-1, 2]), "negative first offset"),
    (
        "decreasing offsets",
        lambda: offsets_array("large_string", [b"ab", b"c"], offsets=[0, 3, 1]),
        "element 1 ends before it starts",
    ),
    ("view with negative length", lambda: views_array([view(-5)], []), "element 0 has a negative length"),
    (
        "view past its buffer",
        lambda: views_array([view(20, buffer=0, offset=15, prefix=b"abcd")], [b"x" * 30]),
        r"spans bytes \[15, 35\) of data buffer 0, which holds 30 bytes",
    ),
    (
        "view past a declared size",
        lambda: views_array([view(20, buffer=0, offset=0)], [b"x" * 30], sizes=[10]),
        "which holds 10 bytes",
    ),
    (
        "view into a missing buffer",
        lambda: views_array([view(13, buffer=2)], [b"x" * 30]),
        "refers to data buffer 2 but the array has 1",
    ),
    (
        "view with a negative buffer index",
        lambda: views_array([view(13, buffer=-1)], [b"x" * 30]),
        "refers to data buffer -1",
    ),
    (
        "view with a negative offset",
        lambda: views_array([view(13, buffer=0, offset=-4)], [b"x" * 30]),
        r"spans bytes \[-4, 9\)",
    ),
    (
        "nulls without a bitmap",
        lambda: HandBuilt(b"u", 1, [None, b"\0\0\0\0\2\0\0\0", b"ab"], null_count=1),
        "1 nulls but no validity bitmap",
    ),
    (
        "null count above length",
        lambda: HandBuilt(b"u", 1, [None, b"\0\0\0\0\2\0\0\0", b"ab"], null_count=5),
        "null count of 5",
    ),
    (
        "bytes without a data buffer",
        lambda: HandBuilt(b"u", 1, [None, b"\0\0\0\0\2\0\0\0", None]),
        "holds bytes but has no data buffer",
    ),
    ("no offsets buffer", lambda: HandBuilt(b"U", 1, [None, None, b"ab"]), "has no offsets buffer"),
    ("too few buffers", lambda: HandBuilt(b"u", 1, [None, b"\0\0\0\0\2\0\0\0"]), "expected 3"),
    ("negative offset", lambda: HandBuilt(b"u", 1, [None, b"\0\0\0\0\2\0\0\0", b"ab"], offset=-1), "negative length"),
    ("a released array", lambda: HandBuilt(b"u", 0, [None, None, None], released=True), "already released"),
    ("not a string format", lambda: HandBuilt(b"l", 0, [None, None]), "unsupported Arrow format 'l'"),
]


@needs_core
@pytest.mark.parametrize("make, match", [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_malformed_arrays_are_refused_before_reading(make, match):
    hb = make()
    for fn in (core.text_stats, core.utf8_check):
        with pytest.raises(instructfast.ArrowDataError, match=match) as e:
            fn(*hb.capsules())
        assert isinstance(e.value, ValueError)


@needs_core
def test_offsets_are_checked_only_where_the_array_reads():
    # a slice (offset 1, length 1) of [0, 9, 2, 4]: 9 > 2 lies outside it; 2 <= 4 inside is fine
    hb = HandBuilt(b"u", 1, [None, np.array([0, 9, 2, 4], "<i4").tobytes(), b"abcd"], offset=2)
    assert core.text_stats(*hb.capsules())["words"].tolist() == [1]
    bad = HandBuilt(b"u", 2, [None, np.array([0, 9, 2, 4], "<i4").tobytes(), b"abcd"], offset=1)
    with pytest.raises(instructfast.ArrowDataError, match="element 0 ends before it starts"):
        core.text_stats(*bad.capsules())


@needs_core
def test_well_formed_hand_built_arrays_read_like_pyarrow_ones():
    words = [b"one two", b"", "\u03a3\u03bf\u03c6\u03bf\u03c2 wise".encode()]
    for kind in ("string", "large_string"):
        got = core.text_stats(*offsets_array(kind, words).capsules())
        assert got["words"].tolist() == [2, 0, 2]
    views = [view(3, inline=b"abc"), view(20, buffer=0, offset=5, prefix=b"eeee"), view(0)]
    data = [b"zzzzz" + b"e" * 9 + b" twentybyte"]
    got = core.text_stats(*views_array(views, data).capsules())
    assert got["words"].tolist() == [1, 2, 0] and got["bytes"].tolist() == [3, 20, 0]
    # a null element's view is never read, so it may hold anything
    hb = views_array([view(-7), view(2, inline=b"hi")], [])
    hb.buffers = [validity([False, True]), *hb.buffers[1:]]
    hb.null_count = 1
    got = core.text_stats(*hb.capsules())
    assert got["valid"].tolist() == [False, True] and got["words"].tolist() == [0, 1]
