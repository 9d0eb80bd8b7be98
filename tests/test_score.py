"""The score() facade: inputs by protocol, layouts, order, nulls, errors, report."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pyarrow as pa
import pytest
from lexicalrichness import LexicalRichness

import instructfast
from instructfast import ScoreReport
from instructfast.errors import (
    IndicatorUnavailableError,
    NullValuesWarning,
    RuleError,
    SchemaError,
    UnavailableIndicatorWarning,
)

TEXT_COLS = ["output_words", "output_unique_words", "output_ttr", "mtld", "output_chars", "output_bytes", "input_chars"]


def lr_mtld(text: str):
    lr = LexicalRichness(text)
    return lr.mtld() if lr.words else None


class StreamOnly:
    """Exposes nothing but the Arrow PyCapsule stream (proves nothing else is touched)."""

    def __init__(self, table: pa.Table) -> None:
        self._t = table

    def __arrow_c_stream__(self, requested_schema=None):
        return self._t.__arrow_c_stream__(requested_schema)


@pytest.fixture(scope="module")
def table(sample_table) -> pa.Table:
    return sample_table


def _quiet(fn, *a, **k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", instructfast.InstructfastWarning)
        return fn(*a, **k)


def test_textstats_match_lexicalrichness_and_keep_rows(table):
    out = _quiet(instructfast.score, table, indicators=["textstats"])
    assert out.num_rows == table.num_rows
    assert out.column_names[: table.num_columns] == table.column_names
    for c in table.column_names:  # original columns untouched
        assert out.column(c).equals(table.column(c))
    for c in TEXT_COLS:
        assert c in out.column_names
    outputs = table.column("output").to_pylist()
    got = out.column("mtld").to_pylist()
    assert got == [lr_mtld(t) for t in outputs]
    words = out.column("output_words").to_pylist()
    assert words == [LexicalRichness(t).words for t in outputs]
    assert out.column("output_chars").to_pylist() == [len(t) for t in outputs]
    assert out.column("output_bytes").to_pylist() == [len(t.encode()) for t in outputs]
    inst = table.column("instruction").to_pylist()
    inp = table.column("input").to_pylist()
    assert out.column("input_chars").to_pylist() == [len(a) + len(b or "") for a, b in zip(inst, inp)]


def test_unavailable_indicators_are_reported_not_silently_skipped(table):
    with pytest.warns(UnavailableIndicatorWarning, match="reward"):
        out = instructfast.score(table.slice(0, 5))
    rep = ScoreReport.from_table(out)
    assert rep is not None and rep.rows == 5
    assert {"reward", "unieval"} <= set(rep.unavailable)  # no offline weights exist for these
    assert "knn" not in rep.unavailable and "knn_6" in rep.columns  # packaged MiniLM
    assert "mtld" in rep.columns


def test_explicit_unavailable_indicator_raises():
    t = pa.table({"instruction": ["a"], "output": ["b"]})
    with pytest.raises(IndicatorUnavailableError, match="reward"):
        instructfast.score(t, indicators=["reward"])


def test_unknown_indicator_lists_known():
    t = pa.table({"instruction": ["a"], "output": ["b"]})
    with pytest.raises(ValueError, match="unknown indicator 'mtdl'.*known"):
        instructfast.score(t, indicators=["mtdl"])


def test_requested_columns_only():
    t = pa.table({"instruction": ["a"], "output": ["one two two"]})
    out = instructfast.score(t, indicators=["mtld", "output_words"])
    assert out.column_names == ["instruction", "output", "mtld", "output_words"]


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda t: t, id="table"),
        pytest.param(lambda t: t.to_batches(max_chunksize=7)[0], id="record_batch"),
        pytest.param(lambda t: pa.RecordBatchReader.from_batches(t.schema, t.to_batches(max_chunksize=9)), id="reader"),
        pytest.param(lambda t: StreamOnly(t), id="capsule_stream_only"),
        pytest.param(lambda t: t.to_pandas(), id="pandas"),
        pytest.param(lambda t: t.to_pylist(), id="list_of_dicts"),
    ],
)
def test_input_kinds(table, make):
    small = table.slice(0, 30)
    data = make(small)
    n = 7 if isinstance(data, pa.RecordBatch) else 30
    out = _quiet(instructfast.score, data, indicators=["mtld"])
    assert out.column("mtld").to_pylist() == [lr_mtld(t) for t in small.column("output").to_pylist()[:n]]


def test_polars_input(table):
    pl = pytest.importorskip("polars")
    df = pl.from_arrow(table.slice(0, 20))
    out = _quiet(instructfast.score, df, indicators=["output_words"])
    assert out.column("output_words").to_pylist() == [
        LexicalRichness(t).words for t in table.column("output").to_pylist()[:20]
    ]


def test_hf_datasets_table_including_shuffled_view(table):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset(table.slice(0, 40))
    out = _quiet(instructfast.score, ds, indicators=["mtld"])
    assert out.column("mtld").to_pylist() == [lr_mtld(t) for t in ds["output"]]
    shuffled = ds.shuffle(seed=3)
    out = _quiet(instructfast.score, shuffled, indicators=["mtld"])
    assert out.column("output").to_pylist() == list(shuffled["output"])
    assert out.column("mtld").to_pylist() == [lr_mtld(t) for t in shuffled["output"]]


def test_streaming_batches_preserve_order_and_values(table):
    whole = _quiet(instructfast.score, table, indicators=["mtld", "output_words"])
    tiny = _quiet(instructfast.score, table, indicators=["mtld", "output_words"], batch_rows=3)
    assert tiny.column("mtld").equals(whole.column("mtld"))
    assert tiny.column("output").equals(whole.column("output"))


@pytest.mark.parametrize(
    "cols,layout",
    [
        ({"instruction": ["q"], "context": ["c"], "response": ["one two"]}, "dolly"),
        ({"prompt": ["q"], "completion": ["one two"]}, "prompt-completion"),
        ({"prompt": ["q"], "response": ["one two"]}, "prompt-response"),
        ({"instruction": ["q"], "output": ["one two"]}, "alpaca"),
    ],
)
def test_layouts_detected(cols, layout):
    out = instructfast.score(pa.table(cols), indicators=["output_words"])
    assert out.column("output_words").to_pylist() == [2]
    assert ScoreReport.from_table(out).layout.startswith(layout)


def test_explicit_column_map():
    t = pa.table({"q": ["a question"], "a": ["the answer is the answer"]})
    out = instructfast.score(t, indicators=["output_words", "input_chars"], columns={"instruction": "q", "output": "a"})
    assert out.column("output_words").to_pylist() == [5]
    assert out.column("input_chars").to_pylist() == [10]


def test_sharegpt_and_messages_score_last_assistant_turn():
    conv = [
        [
            {"from": "human", "value": "hi"},
            {"from": "gpt", "value": "first answer"},
            {"from": "human", "value": "more"},
            {"from": "gpt", "value": "the last answer here"},
        ]
    ]
    out = instructfast.score(pa.table({"conversations": conv}), indicators=["output_words"])
    assert out.column("output_words").to_pylist() == [4]
    msgs = [[{"role": "user", "content": "q"}, {"role": "assistant", "content": "one two three"}]]
    out = instructfast.score(pa.table({"messages": msgs}), indicators=["output_words"])
    assert out.column("output_words").to_pylist() == [3]
    lima = [["q1", "a one", "q2", "a b c d e"]]
    out = instructfast.score(pa.table({"conversations": lima}), indicators=["output_words"])
    assert out.column("output_words").to_pylist() == [5]


def test_missing_required_column_names_it_and_lists_found():
    with pytest.raises(
        SchemaError, match=r"missing required columns `instruction` and `output`; found columns: \['text'\]"
    ):
        instructfast.score(pa.table({"text": ["hi"]}))


def test_non_string_column_names_it():
    t = pa.table({"instruction": ["a"], "output": [3]})
    with pytest.raises(SchemaError, match=r"column `output` \(used as `output`\) must be a string column, got int64"):
        instructfast.score(t)


def test_large_string_dictionary_and_null_typed_columns():
    t = pa.table(
        {
            "instruction": pa.array(["a", "b"], pa.large_string()),
            "input": pa.nulls(2),
            "output": pa.array(["x y", "z"]).dictionary_encode(),
        }
    )
    out = instructfast.score(t, indicators=["output_words", "input_chars"])
    assert out.column("output_words").to_pylist() == [2, 1]
    assert out.column("input_chars").to_pylist() == [1, 1]


def test_nulls_are_counted_with_reasons():
    t = pa.table({"instruction": ["a", "b", None, "d"], "output": ["fine words", None, "", "123 --- !!"]})
    with pytest.warns(NullValuesWarning) as rec:
        out = instructfast.score(t)
    assert len([w for w in rec if issubclass(w.category, NullValuesWarning)]) == 1  # one summary, not per row
    assert out.column("mtld").to_pylist()[1:] == [None, None, None]
    assert out.column("output_words").to_pylist() == [2, None, 0, 0]
    rep = ScoreReport.from_table(out)
    assert rep.nulls["mtld"] == {"output is null": 1, "output has no words after MTLD tokenisation": 2}
    assert rep.nulls["input_chars"] == {"instruction is null": 1}


def test_existing_indicator_columns_kept_and_clash_rejected():
    t = pa.table({"instruction": ["a"], "output": ["x y"], "mtld": [42.0]})
    out = _quiet(instructfast.score, t)
    assert out.column("mtld").to_pylist() == [42.0]
    assert "mtld" in ScoreReport.from_table(out).kept_from_input
    with pytest.raises(SchemaError, match="never overwritten"):
        instructfast.score(t, indicators=["mtld"])


def test_rule_with_missing_indicators_names_them_and_how_to_enable():
    t = pa.table({"instruction": ["a"], "output": ["x"]})
    with pytest.raises(RuleError) as e:
        instructfast.score(t, rule="instructmining-v1")
    msg = str(e.value)
    assert "`reward`" in msg
    assert (
        "`knn_6`" not in msg and "`output_tokens`" not in msg
    )  # available (LM tokenizer): only what is missing is listed
    assert "instructfast models" in msg


def test_rule_uses_columns_from_input():
    rng = np.random.default_rng(0)
    n = 50
    cols = {
        "instruction": ["q"] * n,
        "output": ["a"] * n,
        "reward": rng.normal(size=n),
        "understandability": rng.random(n),
        "naturalness": rng.random(n),
        "coherence": rng.random(n),
    }
    cols["reward"][3] = np.nan
    t = pa.table(cols)
    out = _quiet(instructfast.score, t, indicators=["mtld"], rule="instructmining-v3")
    got = np.array(out.column("predicted_log_loss").to_pylist(), dtype=float)
    ref = (
        0.0274
        - 0.0078 * cols["reward"]
        + 0.4421 * cols["understandability"]
        - 0.3212 * cols["naturalness"]
        - 0.1520 * cols["coherence"]
    )
    assert np.isnan(got[3]) and np.isnan(ref[3])
    np.testing.assert_allclose(got[~np.isnan(ref)], ref[~np.isnan(ref)], rtol=1e-15, atol=1e-15)


def test_report_roundtrips_json(table):
    out = _quiet(instructfast.score, table.slice(0, 3))
    rep = ScoreReport.from_table(out)
    assert ScoreReport.from_json(rep.to_json()) == rep
    assert json.loads(out.schema.metadata[b"instructfast.report"])["rows"] == 3


def test_run_record_says_what_ran(table, tmp_path):
    out = _quiet(instructfast.score, table.slice(0, 5), indicators=["mtld"], threads=1, options={"knn_seed": 4})
    run = ScoreReport.from_table(out).run
    assert run.implementations["text core"] == instructfast.IMPL_REASON
    assert run.versions["instructfast"] == instructfast.__version__ and run.versions["pyarrow"] == pa.__version__
    assert run.options == {"threads": 1, "batch_rows": 65_536, "device": "auto", "knn_seed": 4}
    assert run.started.endswith("+00:00") and run.seconds > 0 and run.platform["machine"]
    # kept in the Parquet footer by score_file, and read back whole
    src = tmp_path / "in.jsonl"
    instructfast.write_table(table.slice(0, 5), src)
    res = _quiet(instructfast.score_file, src, tmp_path / "out.parquet", indicators=["mtld"])
    assert ScoreReport.from_file(res.output).run == res.report.run
    assert res.report.run.implementations["text core"] == instructfast.IMPL_REASON


def test_reports_written_before_the_run_record_still_read():
    old = {"rows": 3, "layout": "alpaca", "impl": "native", "columns": ["mtld"], "unavailable": {},
           "kept_from_input": [], "nulls": {}, "notes": {}, "rule": None, "seconds": 0.5}  # fmt: skip
    rep = ScoreReport.from_json(json.dumps(old))
    assert rep.rows == 3 and rep.run == instructfast.RunRecord()
    newer = dict(old, run={"started": "x", "added_later": 1}, also_added_later=2)
    assert ScoreReport.from_json(json.dumps(newer)).run.started == "x"


def test_scorer_reusable_across_batches(table):
    sc = instructfast.Scorer(table.schema, indicators=["mtld"])
    a = sc.score_batch(table.to_batches()[0].slice(0, 10))
    b = sc.score_batch(table.to_batches()[0].slice(10, 10))
    assert a.column("mtld").to_pylist() + b.column("mtld").to_pylist() == [
        lr_mtld(t) for t in table.column("output").to_pylist()[:20]
    ]
    assert sc.report.rows == 20


def test_options_validated():
    t = pa.table({"instruction": ["a"], "output": ["x"]})
    with pytest.raises(ValueError, match="`mtld_threshold` must be in"):
        instructfast.score(t, mtld_threshold=1.5)
    with pytest.raises(ValueError, match="`threads` must be a positive integer"):
        instructfast.score(t, threads=0)
    with pytest.raises(TypeError, match="`data` must be"):
        instructfast.score(42)
