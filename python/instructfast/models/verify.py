"""Model files are verified before they are loaded, and never executed.

The threat is accidental: a partial copy, a truncated download, a flipped byte. Two cases:

* **A folder with a manifest** (written by ``instructfast export``): every file the manifest lists
  must have the SHA-256 it records.
* **Anything else** (a user's Hugging Face folder, a GGUF file, the packaged defaults): the hashes
  of its files are recorded at first use (``cache_dir()/verified.json``, and in the run record),
  and later loads compare with them.

``verify_models="cached"`` (the default) re-hashes a file only when its size or modification time
changed since it was last hashed (:func:`~instructfast.models.registry.cached_sha256`); ``"full"``
re-hashes every file at every load. A mismatch is a :class:`~instructfast.ModelIntegrityError`
naming the file, the expected and the actual hash and the command that remakes the file; a
listed file that is missing is a :class:`~instructfast.ModelFileError`.

What runs is data only: weights come from safetensors (preferred) or ``torch.load(...,
weights_only=True)``, no ``trust_remote_code``, no pickle; a hub id is fetched only when the user
names one.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import threading
from pathlib import Path
from typing import Any

from .._typing import VerifyModels
from ..errors import ArgumentError, ModelFileError, ModelIntegrityError
from .registry import cache_dir, cached_sha256, sha256_file

VERIFIED = "verified.json"
_MODES = ("cached", "full")
_lock = threading.Lock()


def _digest(path: Path, mode: str) -> str:
    return sha256_file(path) if mode == "full" else cached_sha256(path)


def _check_mode(mode: str) -> None:
    if mode not in _MODES:
        msg = f"`verify_models` must be one of {_MODES}, got {mode!r}"
        raise ArgumentError(msg)


def model_files(location: str | os.PathLike[str]) -> list[Path]:
    """The files that make up a model: the file itself, or every file under the folder (hidden ones,
    such as download metadata, left out)."""
    p = Path(location).expanduser()
    if p.is_file():
        return [p]
    return sorted(
        f for f in p.rglob("*") if f.is_file() and not any(part.startswith(".") for part in f.relative_to(p).parts)
    )


def verify_manifest(folder: str | os.PathLike[str], manifest: dict, *, mode: VerifyModels = "cached") -> str:
    """Check every file ``manifest["files"]`` lists against its SHA-256; returns what was checked, for a run record.

    Raises
    ------
    instructfast.ModelIntegrityError
        A file's content differs (the message names it, both hashes and how to remake it).
    instructfast.ModelFileError
        A listed file is missing.
    """
    _check_mode(mode)
    folder = Path(folder)
    files: dict[str, str] = manifest.get("files") or {}
    if not files:
        return "no hashes in the manifest (exported by an older instructfast)"
    for name, expected in sorted(files.items()):
        f = folder / name
        if not f.is_file():
            msg = (
                f"{f}: missing from the exported model folder (its manifest lists it); {remake_hint(folder, manifest)}"
            )
            raise ModelFileError(msg)
        actual = _digest(f, mode)
        if actual != expected:
            msg = (
                f"{f}: sha256 is {actual}, but {folder / 'manifest.json'} records {expected} "
                f"({f.stat().st_size:,} bytes now): the file is truncated, partly copied or altered, and is not "
                f"loaded; {remake_hint(folder, manifest)}"
            )
            raise ModelIntegrityError(msg)
    return f"{len(files)} files match manifest.json ({'re-hashed' if mode == 'full' else 'hashes cached by size and mtime'})"


def remake_hint(folder: Path, manifest: dict) -> str:
    """How to get a good copy of an exported folder again."""
    src, kind = manifest.get("source"), manifest.get("kind", "KIND")
    if folder.resolve().is_relative_to(cache_dir().resolve()):
        return f"delete {folder}: the next run exports it again from {src}"
    return f"remake it: instructfast export {kind} --from {src or 'SOURCE'} --to {folder} --overwrite"


def _load_store() -> dict[str, Any]:
    try:
        data = json.loads((cache_dir() / VERIFIED).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _save_store(store: dict[str, Any]) -> None:
    path = cache_dir() / VERIFIED
    for key in [k for k in store if not os.path.exists(k)]:  # deleted models: a new one may come to that path
        del store[key]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{VERIFIED}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(store, indent=1, sort_keys=True))
        os.replace(tmp, path)
    except OSError:  # a read-only cache: verification still happens, first-use records are not kept
        pass


def verify_first_use(location: str | os.PathLike[str], *, mode: VerifyModels = "cached", hint: str = "") -> str:
    """Check a model without a manifest against the hashes recorded when it was first used (recording them then).

    Returns what was checked, for a run record.

    Raises
    ------
    instructfast.ModelIntegrityError
        A file differs from its first-use hash: a partial copy, a truncation or an edit. If the model
        was replaced on purpose, ``instructfast models --rehash PATH`` records the new content.
    """
    _check_mode(mode)
    files = model_files(location)
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    recorded = checked = 0
    with _lock:
        store = _load_store()
        changed = False
        for f in files:
            key = str(f.resolve())
            st = f.stat()
            rec = store.get(key)
            if mode == "cached" and rec and rec.get("size") == st.st_size and rec.get("mtime_ns") == st.st_mtime_ns:
                checked += 1
                continue
            actual = _digest(f, mode)
            if rec is None:
                store[key] = {"sha256": actual, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "first_used": now}
                recorded += 1
                changed = True
                continue
            if actual != rec.get("sha256"):
                size = f"{rec.get('size', 0):,} bytes then, {st.st_size:,} now"
                msg = (
                    f"{f}: sha256 is {actual}, but {rec.get('sha256')} was recorded when it was first used "
                    f"({rec.get('first_used', 'earlier')}; {size}): the file is truncated, partly copied or "
                    f"altered, and is not loaded; {hint + '; ' if hint else ''}if you replaced the model on "
                    f"purpose, record its new content with: instructfast models --rehash {location}"
                )
                raise ModelIntegrityError(msg)
            rec.update(size=st.st_size, mtime_ns=st.st_mtime_ns)  # touched, same content
            checked += 1
            changed = True
        if changed:
            _save_store(store)
    how = "re-hashed" if mode == "full" else "hashes cached by size and mtime"
    if recorded and not checked:
        return f"first use: sha256 of {recorded} files recorded"
    return f"{checked} files match their first-use sha256 ({how})" + (
        f"; {recorded} new files recorded" if recorded else ""
    )


def rehash(location: str | os.PathLike[str]) -> int:
    """Forget the first-use hashes of a model's files and record their current content; returns the file count."""
    files = model_files(location)
    with _lock:
        store = _load_store()
        root = str(Path(location).expanduser().resolve())
        for key in [k for k in store if k == root or k.startswith(root.rstrip(os.sep) + os.sep)]:
            del store[key]
        _save_store(store)
    verify_first_use(location, mode="full")
    return len(files)


__all__ = ["VERIFIED", "model_files", "rehash", "remake_hint", "verify_first_use", "verify_manifest"]
