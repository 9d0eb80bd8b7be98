"""Records as a service receives them: a list of row dicts, checked record by record, as one Arrow table.

``pa.Table.from_pylist`` takes its columns from the first record alone and reports a value of the
wrong type without saying which record holds it; a service must answer "record 7, field `output`:
a string or null, got a number". So the columns here are the union of every record's keys (first
seen first), the layout comes from that union through the one column resolver, and each record's
text fields are checked before any column is built. Text fields become ``string`` columns whatever
the values (a batch whose ``input`` values are all null keeps a string ``input``), so requests of
one layout share a schema and can be merged into one batch. Other fields pass through as pyarrow
infers them.

Examples
--------
>>> records_table([{"instruction": "Say hi.", "output": "Hi!"}, {"instruction": "Add 2 and 2.", "output": None}]).schema
instruction: string
output: string
>>> records_table([{"instruction": "Say hi.", "output": 5}])
Traceback (most recent call last):
...
instructfast.errors.RecordError: record 0, field `output`: must be a string or null, got int 5
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from ._arrow import to_reader
from .columns import ResolvedColumns, resolve_columns
from .errors import RecordError, SchemaError

# Layout keys that hold a conversation (a list of turns); every other key is probed as text, so
# that resolving the layout depends on the keys alone and a value of the wrong type is reported
# per record below rather than as a column type by the resolver.
_CONVERSATION_KEYS = ("conversations", "messages")


def records_table(data: Any, *, columns: Mapping[str, str] | None = None) -> pa.Table:
    """``data`` as one Arrow table (single chunk, no schema metadata).

    Parameters
    ----------
    data
        A list of records (dicts), checked one by one; or anything :func:`instructfast.score`
        accepts (Arrow tables and batches, polars, pandas, a dict of columns), taken as it is.
    columns
        The explicit column map, as for :func:`instructfast.score`.

    Raises
    ------
    RecordError
        A record is not an object, lacks a required field, or holds a value of the wrong type;
        the message and the attributes name the record's index and the field.
    """
    if isinstance(data, list):
        table = _from_rows(data, columns)
    elif isinstance(data, (str, bytes, int, float)) or data is None or _one_record(data):
        msg = f"expected a list of records (objects), got {type(data).__name__}"
        raise RecordError(msg)
    else:
        table = to_reader(data).read_all()
    return table.combine_chunks().replace_schema_metadata(None)


def _one_record(data: Any) -> bool:
    """A dict of scalars is one record sent without its list, not a dict of columns."""
    return isinstance(data, dict) and any(
        not isinstance(v, (list, tuple, pa.Array, pa.ChunkedArray)) for v in data.values()
    )


def _from_rows(rows: list[Any], columns: Mapping[str, str] | None) -> pa.Table:
    keys: dict[str, None] = {}
    for i, r in enumerate(rows):
        if not isinstance(r, dict):
            msg = f"record {i}: must be an object of fields, got {type(r).__name__}"
            raise RecordError(msg, index=i)
        keys.update(dict.fromkeys(r))
    if not rows:
        return pa.table({})
    conv = set(_CONVERSATION_KEYS) | ({columns["conversation"]} if columns and "conversation" in columns else set())
    probe = pa.schema([(k, pa.list_(pa.string()) if k in conv else pa.string()) for k in keys])
    try:
        resolved = resolve_columns(probe, columns)
    except SchemaError as e:  # no layout fits the fields of any record: the request as a whole
        raise RecordError(f"records: {e}") from None
    text = _check_rows(rows, resolved)
    arrays = {}
    for k in keys:
        values = [r.get(k) for r in rows]
        arrays[k] = pa.array(values, pa.string()) if k in text else _inferred(values, k)
    return pa.table(arrays)


def _check_rows(rows: list[dict], r: ResolvedColumns) -> set[str]:
    """Check every record's fields for the resolved layout; the names of the plain text fields."""
    required = [r.conversation] if r.conversation else [r.instruction, r.output]
    text = {c for c in (r.instruction, r.output, r.input) if c}
    for i, rec in enumerate(rows):
        for f in required:
            if f not in rec:
                msg = f"record {i}: missing field `{f}` ({r.describe()})"
                raise RecordError(msg, index=i, field=f)
        for f in text:
            v = rec.get(f)
            if v is not None and not isinstance(v, str):
                raise _wrong(i, f, "a string or null", v)
        if r.history and rec.get(r.history) is not None and not isinstance(rec[r.history], (str, list)):
            raise _wrong(i, r.history, "a string, a list of turns or null", rec[r.history])
        if r.conversation is not None:
            _check_conversation(i, r.conversation, rec[r.conversation])
    return text


def _check_conversation(i: int, field: str, turns: Any) -> None:
    if turns is None:
        return
    if not isinstance(turns, list):
        raise _wrong(i, field, "a list of turns", turns)
    for j, t in enumerate(turns):
        if isinstance(t, str) or t is None:
            continue
        if not isinstance(t, dict):
            raise _wrong(i, f"{field}[{j}]", "a turn ({from, value} or {role, content}) or a string", t)
        for k, v in t.items():
            if v is not None and not isinstance(v, str):
                raise _wrong(i, f"{field}[{j}].{k}", "a string or null", v)


def _wrong(i: int, field: str, want: str, value: Any) -> RecordError:
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
    return RecordError(
        f"record {i}, field `{field}`: must be {want}, got {type(value).__name__} {shown}", index=i, field=field
    )


def _inferred(values: list[Any], key: str) -> pa.Array:
    """A pass-through field as pyarrow infers it; a value unlike the earlier ones is named by record."""
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as e:
        first = next(((i, v) for i, v in enumerate(values) if v is not None), None)
        for i, v in enumerate(values):
            if first is not None and v is not None and type(v) is not type(first[1]):
                msg = (
                    f"record {i}, field `{key}`: holds {type(v).__name__} {v!r:.40} where record {first[0]} holds "
                    f"{type(first[1]).__name__}; a field must have one type in all records of a request"
                )
                raise RecordError(msg, index=i, field=key) from None
        raise RecordError(f"field `{key}`: cannot be read as an Arrow column ({e})", field=key) from None


__all__ = ["records_table"]
