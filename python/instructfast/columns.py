"""The one column resolver: maps a user's table layout onto canonical fields.

Canonical fields are ``instruction`` (required), ``input`` (optional) and ``output``
(required), plus ``history`` (earlier turns of a multi-turn record, rendered as text,
used as extra context by model indicators). Known layouts are recognised without
user effort; anything else goes through an explicit ``columns=`` mapping.

Multi-turn layouts (ShareGPT ``conversations`` of ``{from, value}``, OpenAI-style
``messages`` of ``{role, content}``, LIMA-style ``conversations`` as a list of strings
alternating user/assistant) are scored on their **last assistant turn**: that turn is
``output``, the user turn just before it is ``instruction``, and everything earlier is
``history``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from .errors import SchemaError

CANONICAL = ("instruction", "input", "output", "history")
_STRING_TYPES = (pa.string(), pa.large_string())


@dataclass(frozen=True)
class Layout:
    """A named mapping from canonical fields to source columns."""

    name: str
    instruction: str | None = None
    output: str | None = None
    input: str | None = None
    history: str | None = None
    conversation: str | None = None  # a multi-turn column replaces instruction/output

    def required(self) -> tuple[str, ...]:
        if self.conversation:
            return (self.conversation,)
        return tuple(c for c in (self.instruction, self.output) if c)


# Order matters: the first layout whose required columns exist wins.
LAYOUTS: tuple[Layout, ...] = (
    Layout("alpaca", instruction="instruction", input="input", output="output", history="history"),
    Layout("dolly", instruction="instruction", input="context", output="response"),
    Layout("prompt-completion", instruction="prompt", output="completion"),
    Layout("prompt-response", instruction="prompt", output="response"),
    Layout("sharegpt", conversation="conversations"),
    Layout("messages", conversation="messages"),
)

_USER_ROLES = {"human", "user", "prompter"}
_ASSISTANT_ROLES = {"gpt", "assistant", "model", "chatgpt", "bard", "bing"}


@dataclass
class CanonicalBatch:
    """One record batch seen through the resolver. Arrays are zero-copy views where possible."""

    instruction: pa.Array
    output: pa.Array
    input: pa.Array | None = None
    history: pa.Array | None = None
    num_rows: int = 0
    _prompt: pa.Array | None = field(default=None, repr=False)
    # The batch as read, for indicators that take a user column as is (``knn_vectors``).
    source: pa.RecordBatch | None = field(default=None, repr=False)

    def prompt_text(self) -> pa.Array:
        """instruction, plus "\\n" + input where input is non-empty (SPEC: "instruction+input")."""
        if self._prompt is None:
            inst = self.instruction
            if self.input is None:
                self._prompt = inst
            else:
                has_input = pc.fill_null(pc.greater(pc.utf8_length(self.input), 0), False)
                joined = pc.binary_join_element_wise(inst, pc.fill_null(self.input, ""), "\n")
                self._prompt = pc.if_else(has_input, joined, inst)
        return self._prompt


@dataclass(frozen=True)
class ResolvedColumns:
    """Which source columns feed which canonical field, decided once per run."""

    layout: str
    instruction: str | None
    output: str | None
    input: str | None = None
    history: str | None = None
    conversation: str | None = None

    def source_columns(self) -> list[str]:
        return [c for c in (self.instruction, self.output, self.input, self.history, self.conversation) if c]

    def describe(self) -> str:
        if self.conversation:
            return f"{self.layout}: last assistant turn of `{self.conversation}`"
        parts = [f"instruction=`{self.instruction}`"]
        if self.input:
            parts.append(f"input=`{self.input}`")
        parts.append(f"output=`{self.output}`")
        return f"{self.layout}: " + ", ".join(parts)

    def canonical(self, batch: pa.RecordBatch) -> CanonicalBatch:
        """Build the canonical view of one batch (string checks happen in :func:`resolve_columns`)."""
        if self.conversation:
            canon = _from_conversation(batch.column(self.conversation), batch.num_rows)
            canon.source = batch
            return canon
        inst = _as_string(batch.column(self.instruction), self.instruction)
        out = _as_string(batch.column(self.output), self.output)
        inp = _as_string(batch.column(self.input), self.input) if self.input else None
        hist = _render_history(batch.column(self.history)) if self.history else None
        return CanonicalBatch(
            instruction=inst, output=out, input=inp, history=hist, num_rows=batch.num_rows, source=batch
        )


def resolve_columns(schema: pa.Schema, columns: Mapping[str, str] | None = None) -> ResolvedColumns:
    """Decide how ``schema`` maps onto canonical fields.

    Parameters
    ----------
    schema
        The input table's schema.
    columns
        Optional explicit mapping ``{canonical: source}`` with keys among
        ``instruction``, ``input``, ``output``, ``history`` or ``conversation``; it
        overrides automatic detection.

    Raises
    ------
    SchemaError
        When a required column is missing or is not a string column; the message names
        the column and lists the columns found.

    Examples
    --------
    >>> import pyarrow as pa
    >>> resolve_columns(pa.schema([("instruction", pa.string()), ("context", pa.string()),
    ...                            ("response", pa.string())])).describe()
    'dolly: instruction=`instruction`, input=`context`, output=`response`'
    """
    names = list(schema.names)
    if columns:
        resolved = _explicit(columns, names)
    else:
        resolved = _detect(names)
    _check_types(schema, resolved)
    return resolved


def _explicit(columns: Mapping[str, str], names: list[str]) -> ResolvedColumns:
    allowed = set(CANONICAL) | {"conversation"}
    unknown = sorted(set(columns) - allowed)
    if unknown:
        msg = f"`columns` keys must be among {sorted(allowed)}, got {unknown}"
        raise SchemaError(msg)
    for key, src in columns.items():
        if src not in names:
            msg = f"column `{src}` (mapped to `{key}`) not found; found columns: {names}"
            raise SchemaError(msg)
    if "conversation" in columns:
        return ResolvedColumns("explicit", None, None, conversation=columns["conversation"])
    missing = [k for k in ("instruction", "output") if k not in columns]
    if missing:
        msg = f"`columns` must map {missing} (required canonical fields); got {dict(columns)}"
        raise SchemaError(msg)
    return ResolvedColumns(
        "explicit",
        columns["instruction"],
        columns["output"],
        input=columns.get("input"),
        history=columns.get("history"),
    )


def _detect(names: list[str]) -> ResolvedColumns:
    present = set(names)
    for lay in LAYOUTS:
        if all(c in present for c in lay.required()):
            if lay.conversation:
                return ResolvedColumns(lay.name, None, None, conversation=lay.conversation)
            return ResolvedColumns(
                lay.name,
                lay.instruction,
                lay.output,
                input=lay.input if lay.input in present else None,
                history=lay.history if lay.history in present else None,
            )
    missing = [c for c in ("instruction", "output") if c not in present]
    known = "; ".join(f"{lay.name} ({'/'.join(lay.required())})" for lay in LAYOUTS)
    msg = (
        f"missing required column{'s' if len(missing) > 1 else ''} "
        + " and ".join(f"`{c}`" for c in missing)
        + f"; found columns: {names}\n"
        f"known layouts: {known}; map others with columns={{'instruction': ..., 'output': ...}} "
        "(CLI: --columns instruction=COL,output=COL)"
    )
    raise SchemaError(msg)


def _is_stringish(t: pa.DataType) -> bool:
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t):
        return True
    if getattr(pa.types, "is_string_view", None) and pa.types.is_string_view(t):
        return True
    return pa.types.is_dictionary(t) and (pa.types.is_string(t.value_type) or pa.types.is_large_string(t.value_type))


def _check_types(schema: pa.Schema, r: ResolvedColumns) -> None:
    found = [f"{f.name}: {f.type}" for f in schema]
    for role, col in (("instruction", r.instruction), ("output", r.output), ("input", r.input)):
        if col and not _is_stringish(schema.field(col).type):
            msg = (
                f"column `{col}` (used as `{role}`) must be a string column, got {schema.field(col).type}; "
                f"found columns: {found}"
            )
            raise SchemaError(msg)
    if r.history:
        t = schema.field(r.history).type
        if not (_is_stringish(t) or pa.types.is_list(t) or pa.types.is_large_list(t)):
            msg = f"column `{r.history}` (used as `history`) must be a string or a list of turns, got {t}"
            raise SchemaError(msg)
    if r.conversation:
        t = schema.field(r.conversation).type
        if not (pa.types.is_list(t) or pa.types.is_large_list(t)):
            msg = (
                f"column `{r.conversation}` (used as a multi-turn conversation) must be a list of turns, got {t}; "
                f"found columns: {found}"
            )
            raise SchemaError(msg)


def _as_string(arr: pa.Array | pa.ChunkedArray, name: str) -> pa.Array:
    """Strings stay zero-copy; dictionary and all-null columns are decoded once."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    t = arr.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return arr
    if getattr(pa.types, "is_string_view", None) and pa.types.is_string_view(t):
        return arr
    if pa.types.is_null(t):
        return pa.nulls(len(arr), pa.string())
    if pa.types.is_dictionary(t):
        return arr.cast(t.value_type)
    msg = f"column `{name}` must be a string column, got {t}"
    raise SchemaError(msg)


def _turn_text(turn) -> tuple[str | None, str | None]:
    """(role, text) of one turn in any supported shape."""
    if turn is None:
        return None, None
    if isinstance(turn, str):
        return None, turn
    if isinstance(turn, dict):
        role = turn.get("from", turn.get("role"))
        text = turn.get("value", turn.get("content"))
        return (role.lower() if isinstance(role, str) else None), text
    if isinstance(turn, (list, tuple)) and len(turn) == 2:  # LLaMA-Factory history pair
        return None, f"User: {turn[0]}\nAssistant: {turn[1]}"
    return None, str(turn)


def _role_label(role: str | None) -> str:
    if role in _USER_ROLES:
        return "User"
    if role in _ASSISTANT_ROLES:
        return "Assistant"
    return (role or "turn").capitalize()


def _from_conversation(col: pa.Array | pa.ChunkedArray, n: int) -> CanonicalBatch:
    # Multi-turn rows are few and irregular; a per-row Python pass here is cheap
    # next to any model indicator and keeps the logic readable.
    inst, out, hist = [], [], []
    for conv in col.to_pylist():
        turns = [_turn_text(t) for t in (conv or [])]
        if turns and all(r is None for r, _ in turns):  # plain strings alternate user/assistant
            turns = [("user" if i % 2 == 0 else "assistant", t) for i, (_, t) in enumerate(turns)]
        last_a = max((i for i, (r, _) in enumerate(turns) if r in _ASSISTANT_ROLES), default=None)
        if last_a is None:
            inst.append(None)
            out.append(None)
            hist.append(None)
            continue
        out.append(turns[last_a][1])
        users = [i for i in range(last_a) if turns[i][0] in _USER_ROLES]
        q = users[-1] if users else None
        inst.append(turns[q][1] if q is not None else "")
        earlier = turns[: q if q is not None else last_a]
        hist.append("\n".join(f"{_role_label(r)}: {t}" for r, t in earlier) if earlier else None)
    return CanonicalBatch(
        instruction=pa.array(inst, pa.string()),
        output=pa.array(out, pa.string()),
        input=None,
        history=pa.array(hist, pa.string()),
        num_rows=n,
    )


def _render_history(col: pa.Array | pa.ChunkedArray) -> pa.Array:
    if _is_stringish(col.type):
        return _as_string(col, "history")
    rendered = []
    for turns in col.to_pylist():
        if not turns:
            rendered.append(None)
            continue
        rendered.append("\n".join(_turn_text(t)[1] or "" for t in turns))
    return pa.array(rendered, pa.string())
