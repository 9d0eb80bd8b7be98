"""The run summary against numpy: counts, nulls, moments, extremes and (exact, under the reservoir) quantiles.

Batches come as sliced arrays, chunked table columns and integer columns, with nulls and NaN, so that
every way :meth:`Summary.update` reads values out of Arrow is checked against the plain Python values.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

from instructfast.summary import QUANTILES, Summary


def test_summary_equals_numpy_on_sliced_chunked_and_null_holding_columns(rng):
    values = rng.normal(3.0, 2.0, 900)
    values[rng.random(900) < 0.1] = np.nan  # NaN: a value, but not a number to summarise
    nulls = rng.random(900) < 0.15
    ints = rng.integers(-50, 50, 900)
    py_f = [None if n else float(v) for v, n in zip(values, nulls)]
    py_i = [None if n else int(v) for v, n in zip(ints, nulls)]
    whole = pa.table({"f": pa.array(py_f, pa.float64()), "i": pa.array(py_i, pa.int64())})
    s = Summary(["f", "i", "absent"])
    s.update(whole.slice(0, 300).to_batches()[0].slice(0, 300))  # a batch
    s.update(pa.concat_tables([whole.slice(300, 200), whole.slice(500, 100)]))  # chunked columns
    for b in whole.slice(600).to_batches(max_chunksize=70):
        s.update(b.slice(1).slice(0, b.num_rows - 1) if b.num_rows > 1 else b)  # offsets inside buffers
    kept = list(range(0, 600)) + [r for b0 in range(600, 900, 70) for r in range(b0 + 1, min(b0 + 70, 900))]
    rows = {r["column"]: r for r in s.rows()}
    for col, py in (("f", py_f), ("i", py_i)):
        seen = [py[k] for k in kept]
        nums = np.array([v for v in seen if v is not None and not np.isnan(v)], dtype=np.float64)
        got = rows[col]
        assert got["nulls"] == sum(v is None for v in seen)
        assert got["count"] == nums.size
        assert got["mean"] == pytest.approx(nums.mean(), rel=1e-12)
        assert got["std"] == pytest.approx(nums.std(), rel=1e-9)
        assert (got["min"], got["max"]) == (nums.min(), nums.max())
        for q, x in zip(QUANTILES, np.quantile(nums, QUANTILES)):
            assert got[f"p{int(q * 100):02d}"] == pytest.approx(x, rel=1e-12)
    assert rows["absent"] == {"column": "absent", "count": 0, "nulls": 0}


def test_summary_of_all_null_and_empty_columns():
    s = Summary(["x"])
    s.update(pa.table({"x": pa.nulls(4, pa.float64())}))
    s.update(pa.table({"x": pa.array([], pa.float64())}))
    assert s.rows() == [{"column": "x", "count": 0, "nulls": 4}]


def test_summarising_does_not_load_pandas():
    # pyarrow's to_numpy() and pa.array() import pandas (0.7 s, 40 MiB): a text-statistics run never needs it
    code = (
        "import sys, numpy as np, pyarrow as pa\n"
        "from instructfast.summary import Summary\n"
        "from instructfast.indicators.base import masked\n"
        "s = Summary(['x'])\n"
        "s.update(pa.record_batch({'x': masked(np.arange(5.0), np.arange(5) % 2 == 0, pa.float64())}))\n"
        "assert s.rows()[0]['count'] == 2\n"
        "print('pandas' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
