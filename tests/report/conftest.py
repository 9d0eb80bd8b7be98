"""Scored data for the report tests: the in-repo sample, records built to break HTML, synthetic columns."""

from __future__ import annotations

import warnings

import numpy as np
import pyarrow as pa
import pytest

import instructfast
from tests.common import load_sample_records

# Records whose text would run or restructure the page if it reached the markup unescaped.
HOSTILE = [
    {
        "instruction": "<script>window.__pwned=1</script>",
        "input": "</textarea><textarea>",
        "output": '&amp; &lt;b&gt; <b>unclosed <i>tags <!-- comment ]]> " \' <img src=x onerror="window.__pwned=2">',
        "source": "<b>hostile</b>",
    },
    {
        "instruction": "</pre></details></div></section><script>window.__pwned=3</script>",
        "input": "",
        "output": '<svg onload="window.__pwned=4"></svg></title><script>window.__pwned=5</script> &#60;script&#62; x',
        "source": "<b>hostile</b>",
    },
]
SCRIPT_TEXT = "<script>window.__pwned=1</script>"
LONG_OUTPUT_WORDS = 2_000  # one record whose output is far longer than the page shows

TOY_RULE = {
    "name": "toy-length",
    "intercept": 1.0,
    "coefficients": {"mtld": -0.002, "output_words": 0.0005},
    "provenance": "a test rule on text statistics",
}


def make_scored(rng: np.random.Generator) -> pa.Table:
    """The sample + hostile + one long record, scored for text statistics with a toy rule, plus:
    ``synthetic`` (log-normal over decades, hostile rows at the top, a few nulls), ``emb``
    (8-d vectors), and ``weird<col>&`` (a column name that needs escaping)."""
    rng_words = " ".join(f"word{int(i)}" for i in rng.integers(0, 500, LONG_OUTPUT_WORDS))
    long = {"instruction": "Write at length.", "input": "", "output": rng_words, "source": "long"}
    records = load_sample_records() + HOSTILE + [long]
    table = pa.Table.from_pylist(records)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", instructfast.NullValuesWarning)  # the empty outputs' nulls, expected
        scored = instructfast.score(table, indicators="textstats", rule=TOY_RULE)
    n = scored.num_rows
    synthetic = rng.lognormal(1.0, 2.0, n)
    hostile_rows = [n - 3, n - 2]
    synthetic[hostile_rows] = [1e7, 2e7]
    nulls = np.zeros(n, dtype=bool)
    nulls[rng.choice(n - 3, 4, replace=False)] = True
    emb = rng.normal(size=(n, 8)).astype(np.float32)
    meta = scored.schema.metadata
    scored = scored.append_column("synthetic", pa.array(synthetic, mask=nulls))
    scored = scored.append_column("emb", pa.FixedSizeListArray.from_arrays(pa.array(emb.ravel()), 8))
    scored = scored.append_column("weird<col>&", pa.array(rng.integers(0, 5, n)))
    return scored.replace_schema_metadata(meta)


@pytest.fixture
def scored_table(rng) -> pa.Table:
    return make_scored(rng)


@pytest.fixture
def scored_parquet(tmp_path, scored_table):
    path = tmp_path / "scored.parquet"
    instructfast.write_table(scored_table, path)
    return path
