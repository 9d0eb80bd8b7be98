"""File-to-file scoring with bounded memory and checkpoints.

Scored batches go into numbered Arrow part files under ``OUT.partial/`` (each part
complete on disk before the checkpoint state names it). An interrupted run keeps
every finished part; running the same command again resumes after the last one.
At the end the parts are streamed into ``OUT`` (written under a temporary name and
renamed), and the partial directory is removed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc

from ._api import keyword_only
from ._arrow import rebatch
from .errors import ArgumentError, InvalidTextError, ResumeError
from .io import FileSource, atomic_writer, detect_format, scan_file
from .options import ScoreOptions
from .rules import Rule
from .scoring import REPORT_KEY, Scorer, ScoreReport
from .summary import Summary

STATE = "state.json"


@dataclass
class FileRunResult:
    output: Path
    rows: int
    resumed_rows: int
    report: ScoreReport
    summary: Summary


@keyword_only("indicators", "rule", "columns")
def score_file(
    input: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    indicators: Sequence[str] | str | None = None,
    rule: str | Rule | Mapping[str, Any] | None = None,
    columns: Mapping[str, str] | None = None,
    input_format: str | None = None,
    output_format: str | None = None,
    models: Mapping[str, str] | None = None,
    threads: int | None = None,
    batch_rows: int = 65_536,
    mtld_threshold: float | None = None,
    device: str | None = None,
    options: Mapping[str, object] | None = None,
    checkpoint_rows: int = 100_000,
    restart: bool = False,
    on_progress: Callable[[int], None] | None = None,
) -> FileRunResult:
    """Score a record file into another file, resumable after interruption.

    Parameters are those of :func:`instructfast.score`, plus the input/output paths and
    formats, ``checkpoint_rows`` (rows per part file) and ``restart`` (discard a partial
    run instead of resuming it). ``on_progress(n)`` is called with each batch's row count.

    Examples
    --------
    >>> import tempfile, os, pyarrow as pa, instructfast
    >>> d = tempfile.mkdtemp()
    >>> instructfast.write_table(pa.table({"instruction": ["q"], "output": ["a b a"]}), os.path.join(d, "in.jsonl"))
    >>> r = score_file(os.path.join(d, "in.jsonl"), os.path.join(d, "out.parquet"), indicators=["mtld"])
    >>> r.rows, instructfast.read_table(r.output).column("mtld").to_pylist()
    (1, [3.0])
    """
    if isinstance(checkpoint_rows, bool) or not isinstance(checkpoint_rows, int) or checkpoint_rows < 1:
        msg = f"`checkpoint_rows` must be a positive integer, got {checkpoint_rows!r}"
        raise ArgumentError(msg)
    out = Path(output)
    out_fmt = detect_format(out, output_format)
    opts = ScoreOptions.build(
        threads=threads,
        batch_rows=batch_rows,
        mtld_threshold=mtld_threshold,
        models=models,
        device=device,
        options=options,
    )
    text_cols = tuple(columns.values()) if columns else ()
    src = scan_file(
        input,
        format=input_format,
        batch_rows=batch_rows,
        text_columns=text_cols,
        max_record_bytes=opts.input.max_record_bytes,
    )
    scorer = Scorer(src.schema, indicators=indicators, rule=rule, columns=columns, options=opts)
    partial = out.with_name(out.name + ".partial")
    fingerprint = _fingerprint(src.path, indicators, scorer, columns, opts)
    state = _load_state(partial, fingerprint, restart)
    done = state["rows"]
    for col, reasons in state["nulls"].items():
        for reason, n in reasons.items():
            scorer.nulls.add(col, reason, n)
    for col, what in state.get("notes", {}).items():
        for note, n in what.items():
            scorer.nulls.note(col, note, n)
    if done and on_progress:
        on_progress(done)

    if scorer.has_pool_indicators:
        # Pool values need every row: no mid-run checkpoints (nothing is final early).
        done, state = 0, _fresh_state(fingerprint)
        shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True, exist_ok=True)
    _save_state(partial, state)

    try:
        batches = _skip_rows(rebatch(src.reader(), opts.batch_rows), done)
        part_rows, writer, part_path = 0, None, None
        for b in scorer.score_stream(batches):
            if writer is None:
                part_path = partial / f"part-{len(state['parts']):06d}.arrow"
                writer = ipc.new_file(str(part_path) + ".tmp", b.schema)
            writer.write_batch(b)
            part_rows += b.num_rows
            if on_progress:
                on_progress(b.num_rows)
            if part_rows >= checkpoint_rows:
                assert part_path is not None  # opened together with writer
                _commit_part(partial, state, writer, part_path, part_rows, scorer)
                part_rows, writer = 0, None
        if writer is not None:
            assert part_path is not None  # opened together with writer
            _commit_part(partial, state, writer, part_path, part_rows, scorer)
    except InvalidTextError as e:
        raise _in_file(e, src, done) from None
    finally:
        scorer.close()

    report = scorer.report
    report.rows = state["rows"]
    report.nulls = scorer.nulls.as_dict()
    report.notes = scorer.nulls.notes_dict()
    summary = Summary([c for c in scorer.output_schema().names if c not in src.schema.names])
    schema = scorer.output_schema()
    with atomic_writer(out, schema, format=out_fmt) as w:
        for name in state["parts"]:
            with pa.OSFile(str(partial / name)) as mm:  # not mmap: mapped pages would count as resident
                r = ipc.open_file(mm)
                for i in range(r.num_record_batches):
                    b = r.get_batch(i)
                    summary.update(b)
                    w.write(b)
        w.metadata[REPORT_KEY] = report.to_json().encode()
    shutil.rmtree(partial, ignore_errors=True)
    scorer.finish_warnings(stacklevel=4)  # user -> keyword_only wrapper -> score_file -> here
    return FileRunResult(out, state["rows"], done, report, summary)


def _in_file(e: InvalidTextError, src: FileSource, done: int) -> InvalidTextError:
    """The scorer's "row N: ..." as "data.jsonl:LINE:COLUMN: field ...": where to look in the file."""
    if e.row is None or e.detail is None:
        return e
    row = done + e.row  # the stream started after the rows of an earlier, interrupted run
    detail = e.detail
    if src.format in ("json", "jsonl") and e.column:
        detail = detail.replace(f"column `{e.column}`", f"field `{e.column}`", 1)
    err = InvalidTextError(f"{src.locate(row)}: {detail}")
    err.row, err.column, err.byte, err.detail = row, e.column, e.byte, e.detail
    return err


def _fingerprint(path: Path, indicators, scorer: Scorer, columns, opts) -> str:
    st = path.stat()
    key = {
        "input": str(path.resolve()),
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "columns": scorer.plan.columns(),
        "rule": scorer.rule.to_dict() if scorer.rule else None,
        "map": dict(columns or {}),
        "models": dict(opts.models),
        "options": {k: repr(v) for k, v in opts.to_flat().items()},
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def _fresh_state(fingerprint: str) -> dict:
    return {"fingerprint": fingerprint, "rows": 0, "parts": [], "nulls": {}}


def _load_state(partial: Path, fingerprint: str, restart: bool) -> dict:
    f = partial / STATE
    if restart or not f.exists():
        shutil.rmtree(partial, ignore_errors=True)
        return _fresh_state(fingerprint)
    state = json.loads(f.read_text())
    if state.get("fingerprint") != fingerprint and not state.get("rows"):
        # a run that failed before its first checkpoint left nothing worth keeping
        shutil.rmtree(partial, ignore_errors=True)
        return _fresh_state(fingerprint)
    if state.get("fingerprint") != fingerprint:
        msg = (
            f"{partial} holds a partial run of a different input or different settings; "
            "rerun with the same settings to resume it, or pass --restart (restart=True) to discard it"
        )
        raise ResumeError(msg)
    return state


def _save_state(partial: Path, state: dict) -> None:
    tmp = partial / (STATE + ".tmp")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, partial / STATE)


def _commit_part(partial: Path, state: dict, writer, part_path: Path, rows: int, scorer: Scorer) -> None:
    writer.close()
    os.replace(str(part_path) + ".tmp", part_path)
    state["parts"].append(part_path.name)
    state["rows"] += rows
    state["nulls"] = scorer.nulls.as_dict()
    state["notes"] = scorer.nulls.notes_dict()
    _save_state(partial, state)


def _skip_rows(batches: Iterator[pa.RecordBatch], n: int) -> Iterator[pa.RecordBatch]:
    for b in batches:
        if n >= b.num_rows:
            n -= b.num_rows
            continue
        if n:
            b = b.slice(n)
            n = 0
        yield b
