"""The inputs of a file run as shards: one file, a directory or a glob, with stable relative paths.

A directory is walked for files in a format instructfast reads (by extension; hidden files and
folders, and names starting with ``_``, are left out, as Spark and dolma do); a glob is expanded
(``**`` included). Shards are ordered by relative path, so a run, its outputs and its manifest
never depend on directory listing order. An output mirrors its shard's relative path under the
output folder, with the output format's extension.

A shard's fingerprint is its size, modification time and SHA-256; a rerun re-hashes only a
shard whose size or time changed, and redoes it only when the content did.

Examples
--------
>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> for rel in ("b/2.jsonl", "a.jsonl", ".hidden/x.jsonl", "notes.txt"):
...     (d / rel).parent.mkdir(parents=True, exist_ok=True)
...     _ = (d / rel).write_text('{"instruction": "q", "output": "a"}\\n')
>>> [s.rel for s in discover(d).shards]
['a.jsonl', 'b/2.jsonl']
>>> output_path(d / "out", discover(d).shards[1], "parquet").relative_to(d).as_posix()
'out/b/2.parquet'
"""

from __future__ import annotations

import glob
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InputFormatError
from .io import FORMATS, detect_format

_GLOB_CHARS = frozenset("*?[")
_COMPRESSION = (".gz", ".bz2", ".zst", ".lz4")
EXTENSIONS = {"json": ".json", "jsonl": ".jsonl", "parquet": ".parquet", "arrow": ".arrow", "arrows": ".arrows",
              "csv": ".csv"}  # fmt: skip


@dataclass(frozen=True)
class Shard:
    """One input file: where it is, and its path relative to the input root (what outputs mirror)."""

    path: Path
    rel: str

    def stat(self) -> os.stat_result:
        return self.path.stat()


@dataclass(frozen=True)
class Inputs:
    """What ``inputs`` named: the shards, their common root, and whether it was a single file."""

    shards: list[Shard]
    root: Path
    single_file: bool


def is_many(inputs: str | os.PathLike[str]) -> bool:
    """True for a directory or a glob pattern (a sharded run), False for one file."""
    text = os.fspath(inputs)
    return Path(text).is_dir() or any(c in text for c in _GLOB_CHARS)


def _readable(p: Path) -> bool:
    try:
        detect_format(p)
    except InputFormatError:
        return False
    return True


def _hidden(rel: Path) -> bool:
    return any(part.startswith((".", "_")) for part in rel.parts)


def discover(inputs: str | os.PathLike[str], *, exclude: Path | None = None) -> Inputs:
    """The shards ``inputs`` names: a file, a directory (walked) or a glob pattern.

    ``exclude`` leaves out everything under that folder (an output folder inside the input one).

    Raises
    ------
    instructfast.InputFormatError
        When nothing readable is found (the message names the folder or pattern).
    """
    text = os.fspath(inputs)
    p = Path(text)
    ex = exclude.resolve() if exclude is not None else None

    def keep(f: Path) -> bool:
        return f.is_file() and _readable(f) and (ex is None or not f.resolve().is_relative_to(ex))

    if p.is_file():
        return Inputs([Shard(p, p.name)], p.parent, True)
    if p.is_dir():
        root = p
        files = [f for f in p.rglob("*") if not _hidden(f.relative_to(p)) and keep(f)]
        where = f"folder {p}"
    elif any(c in text for c in _GLOB_CHARS):
        parts = Path(text).parts
        fixed = list(parts[: next(i for i, q in enumerate(parts) if _GLOB_CHARS & set(q))])
        root = Path(*fixed) if fixed else Path(".")
        files = [Path(f) for f in glob.glob(text, recursive=True)]
        files = [f for f in files if keep(f)]
        where = f"pattern {text!r}"
    else:
        msg = f"{p}: no such file or folder"
        raise InputFormatError(msg)
    shards = sorted((Shard(f, f.relative_to(root).as_posix()) for f in files), key=lambda s: s.rel)
    if not shards:
        msg = f"{where} holds no record files (known formats: {', '.join(FORMATS)}, by extension)"
        raise InputFormatError(msg)
    return Inputs(shards, root, False)


def output_path(out_dir: str | os.PathLike[str], shard: Shard, fmt: str) -> Path:
    """Where ``shard``'s output goes: its relative path under ``out_dir`` with ``fmt``'s extension."""
    rel = Path(shard.rel)
    name = rel.name
    lowered = name.lower()
    for comp in _COMPRESSION:  # data.jsonl.gz -> data
        if lowered.endswith(comp):
            name, lowered = name[: -len(comp)], lowered[: -len(comp)]
    stem = name[: -len(Path(name).suffix)] if Path(name).suffix else name
    return Path(out_dir) / rel.parent / (stem + EXTENSIONS[fmt])


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fingerprint(shard: Shard, known: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``{rel, size, mtime_ns, sha256}`` of a shard; the hash is reused when size and time match ``known``."""
    st = shard.stat()
    if known and known.get("size") == st.st_size and known.get("mtime_ns") == st.st_mtime_ns and known.get("sha256"):
        digest = str(known["sha256"])
    else:
        digest = sha256_of(shard.path)
    return {"rel": shard.rel, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}


def same_content(a: Mapping[str, Any] | None, b: Mapping[str, Any]) -> bool:
    """Two fingerprints of one shard name the same content (a touched but unchanged file is the same)."""
    if not a:
        return False
    return a.get("sha256") == b.get("sha256") and a.get("size") == b.get("size")


def join_files(
    data: str | os.PathLike[str],
    scores: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    id_column: str | None = None,
    columns: Mapping[str, str] | None = None,
    output_format: str | None = None,
) -> list[tuple[Path, int]]:
    """Attach sidecar scores back onto their data: a file onto a file, or a folder of shards onto a folder.

    For folders, each data shard's sidecar is the file at the shard's relative path under
    ``scores`` (any extension instructfast reads); the joined outputs mirror the same paths
    under ``output``. Every row's key and text hash are checked; a mismatch is a
    :class:`~instructfast.SchemaError` naming the shard and the first row that differs, and no
    output of that shard is written.

    Returns
    -------
    list of (path, rows)
        Each output written.
    """
    from .io import read_table, write_table

    inputs = discover(data)
    scores_p = Path(scores)
    if inputs.single_file:
        table = read_table(inputs.shards[0].path, scores=scores_p, id_column=id_column, columns=columns)
        write_table(table, output, format=output_format)
        return [(Path(output), table.num_rows)]
    if not scores_p.is_dir():
        msg = f"`scores` {scores_p} must be a folder of sidecars when `data` is a folder of shards"
        raise InputFormatError(msg)
    side = {s.rel.rsplit(".", 1)[0]: s for s in discover(scores_p).shards}
    written = []
    for shard in inputs.shards:
        stem = output_path("", shard, "json").as_posix()[: -len(".json")]
        if stem not in side:
            msg = f"{shard.rel}: no sidecar for this shard under {scores_p} (looked for {stem}.*)"
            raise InputFormatError(msg)
        fmt = output_format or detect_format(side[stem].path)
        table = read_table(shard.path, scores=side[stem].path, id_column=id_column, columns=columns)
        dest = output_path(output, shard, fmt)
        write_table(table, dest, format=fmt)
        written.append((dest, table.num_rows))
    return written


__all__ = [
    "EXTENSIONS",
    "Inputs",
    "Shard",
    "discover",
    "fingerprint",
    "is_many",
    "join_files",
    "output_path",
    "same_content",
]
