"""File sources: column projections and rows taken by position, in every format, against the whole table."""

from __future__ import annotations

import os
import stat

import numpy as np
import pyarrow as pa
import pytest

import instructfast


@pytest.mark.parametrize("fmt", ["parquet", "jsonl", "json", "arrow", "arrows", "csv"])
def test_projection_and_take_agree_with_the_whole_table(tmp_path, rng, fmt):
    n = 1_000
    table = pa.table(
        {
            "instruction": [f"q{i}" for i in range(n)],
            "output": [f"a {i}" for i in range(n)],
            "x": rng.normal(size=n),
            "k": rng.integers(0, 9, n),
        }
    )
    path = tmp_path / f"t.{fmt}"
    if fmt == "parquet":  # several row groups, so a take reads only some of them
        import pyarrow.parquet as pq

        pq.write_table(table, path, row_group_size=128)
    else:
        instructfast.write_table(table, path)
    src = instructfast.scan_file(path, batch_rows=100)
    got = pa.Table.from_batches(list(src.batches(["k", "x"])))
    assert got.column_names == ["k", "x"]
    assert got.column("k").to_pylist() == table.column("k").to_pylist()
    assert np.allclose(got.column("x").to_numpy(), table.column("x").to_numpy())
    pos = rng.integers(0, n, 50)
    pos[:3] = [n - 1, 0, n - 1]  # repeats and both ends, in any order
    taken = src.take(pos, ["output", "k"])
    assert taken.column("output").to_pylist() == [f"a {i}" for i in pos]
    assert taken.column("k").to_pylist() == table.column("k").take(pa.array(pos)).to_pylist()
    assert src.take([], ["k"]).num_rows == 0
    with pytest.raises(instructfast.SchemaError, match="nope"):
        src.take([1], ["nope"])
    with pytest.raises(instructfast.ArgumentError, match="row positions"):
        src.take([n + 5])


def test_outputs_get_the_permissions_of_any_new_file(tmp_path):
    # atomic writes go through mkstemp (0o600): the file put in place must carry the umask's mode
    old = os.umask(0o027)
    try:
        instructfast.write_table(pa.table({"a": [1]}), tmp_path / "a.parquet")
        (tmp_path / "ref").touch()
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.parquet").stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "ref").stat().st_mode) == 0o640
