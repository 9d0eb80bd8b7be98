"""records_table: request records as one Arrow table, and each malformed record named by index and field."""

from __future__ import annotations

import pyarrow as pa
import pytest

from instructfast.errors import RecordError
from instructfast.records import records_table


def test_columns_are_the_union_of_keys_and_text_fields_are_strings():
    rows = [
        {"instruction": "Say hi.", "output": "Hi!"},
        {"instruction": "Add.", "input": None, "output": None, "id": 7},
    ]
    t = records_table(rows)
    # from_pylist would have taken the first record's keys only and dropped `input` and `id`
    assert t.column_names == ["instruction", "output", "input", "id"]
    assert t.schema.field("input").type == pa.string()  # all null, still a string column
    assert t.schema.field("id").type == pa.int64()
    assert t.to_pylist() == [
        {"instruction": "Say hi.", "output": "Hi!", "input": None, "id": None},
        {"instruction": "Add.", "output": None, "input": None, "id": 7},
    ]
    assert t.column("output").num_chunks == 1 and t.schema.metadata is None


def test_requests_of_one_layout_share_a_schema():
    a = records_table([{"instruction": "q", "input": "", "output": "a"}])
    b = records_table([{"instruction": "q", "input": None, "output": None}])
    assert a.schema == b.schema


def test_layouts_and_explicit_columns():
    dolly = records_table([{"instruction": "q", "context": None, "response": "r"}])
    assert dolly.schema.field("context").type == pa.string()
    conv = records_table([{"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]}])
    assert conv.column("conversations").to_pylist()[0][1] == {"from": "gpt", "value": "yo"}
    mapped = records_table([{"q": "x", "a": None}], columns={"instruction": "q", "output": "a"})
    assert mapped.schema.field("a").type == pa.string()


def test_arrow_inputs_pass_through():
    t = pa.table({"instruction": ["q"], "output": ["a"]}).replace_schema_metadata({b"k": b"v"})
    got = records_table(t)
    assert got.to_pylist() == t.to_pylist() and got.schema.metadata is None
    assert records_table(t.to_batches()[0]).to_pylist() == t.to_pylist()
    assert records_table([]).num_columns == 0


@pytest.mark.parametrize(
    ("data", "index", "field", "words"),
    [
        ({"instruction": "q", "output": "a"}, None, None, "expected a list of records"),
        ("text", None, None, "expected a list of records"),
        ([{"instruction": "q", "output": "a"}, "x"], 1, None, "record 1: must be an object"),
        ([{"instruction": "q", "output": "a"}, {"instruction": "q"}], 1, "output", "record 1: missing field `output`"),
        ([{"instruction": "q", "output": "a"}, {"instruction": 5, "output": "b"}], 1, "instruction", "got int 5"),
        ([{"instruction": "q", "output": ["a"]}], 0, "output", "must be a string or null, got list"),
        ([{"instruction": "q", "input": 3.5, "output": "a"}], 0, "input", "got float 3.5"),
        ([{"instruction": "q", "output": "a", "history": 4}], 0, "history", "a string, a list of turns or null"),
        ([{"conversations": "hi"}], 0, "conversations", "a list of turns"),
        ([{"conversations": [{"from": "human", "value": 1}]}], 0, "conversations[0].value", "got int 1"),
        ([{"conversations": [["a", "b"]]}], 0, "conversations[0]", "a turn"),
        (
            [{"instruction": "q", "output": "a", "id": 1}, {"instruction": "q", "output": "b", "id": "x"}],
            1,
            "id",
            "holds str",
        ),
        ([{"text": "hi"}], None, None, "missing required columns `instruction` and `output`"),
    ],
)
def test_malformed_records_name_index_and_field(data, index, field, words):
    with pytest.raises(RecordError) as e:
        records_table(data)
    assert words in str(e.value)
    assert (e.value.index, e.value.field) == (index, field)
    assert isinstance(e.value, ValueError)
