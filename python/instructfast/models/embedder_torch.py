"""Sentence embeddings in torch: the embedder for GPUs that ONNX Runtime cannot use.

``onnxruntime`` and ``onnxruntime-gpu`` both own the ``onnxruntime`` module; a machine with a GPU
and the CPU build (the usual ``pip install``) would otherwise embed on the CPU.
:class:`TorchEmbedder` has the surface of :class:`instructfast.models.embedder.Embedder`
(``embed``, ``dim``, ``max_length``, ``source``) and computes what sentence-transformers computes
with ``normalize_embeddings=True``: the BERT-style body of a Hugging Face / sentence-transformers
folder (SDPA attention, ``torch.inference_mode``), mean pooling over the attention mask, L2
normalisation. Texts are truncated at the window the ONNX export uses
(:func:`instructfast.models.graphs._sbert_settings` and ``_window``: ``max_seq_length`` of
``sentence_bert_config.json``, else the tokenizer's and the position embeddings' limit), and
batches come from the one batching policy, :func:`instructfast.batching.length_buckets`.

:func:`load_embedder` (``backend="auto" | "onnx" | "torch"``) picks it through
:func:`use_torch`: ``"auto"`` keeps ONNX Runtime unless the embedder is to run on CUDA (``device``
``"cuda..."``, or ``None`` with a CUDA device visible to torch) and the installed onnxruntime has
no CUDA provider.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from .._typing import EmbedderBackend
from ..batching import length_buckets
from ..errors import ArgumentError, ArgumentTypeError, ModelError
from .long_text import chars_per_token, cut_texts
from .precision import TORCH_DTYPES, Resolved
from .registry import ModelSource

_BACKENDS = ("auto", "onnx", "torch")
_DTYPES = ("float32", "float16", "bfloat16")
# Rows tokenised per step: bounds the Python token lists held at once; buckets form inside a chunk.
CHUNK_ROWS = 8192
# ORT session settings that mean nothing to torch; dropped so one `runtime` dict serves both backends.
_ORT_ONLY = ("spin", "inter_threads")


def _onnx_has_cuda() -> bool:
    if importlib.util.find_spec("onnxruntime") is None:
        return False
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def _torch_cuda() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


def use_torch(backend: str, device: str | None, src: ModelSource) -> bool:
    """Whether :func:`~instructfast.models.embedder.load_embedder` should load a :class:`TorchEmbedder`.

    Parameters
    ----------
    backend
        ``"auto"``, ``"onnx"`` or ``"torch"``.
    device
        The requested device (``None``: CUDA when available).
    src
        The resolved ``embedder`` slot; an exported ONNX folder holds no torch weights, so
        ``"auto"`` keeps ONNX Runtime for it and ``"torch"`` is an error.

    Raises
    ------
    ArgumentError
        For an unknown backend.
    ModelError
        For ``"torch"`` with an exported ONNX folder.
    """
    if backend not in _BACKENDS:
        msg = f"`backend` must be one of {_BACKENDS}, got {backend!r}"
        raise ArgumentError(msg)
    if backend == "torch":
        if src.kind == "onnx-folder":
            msg = (
                f"backend='torch' needs a Hugging Face / sentence-transformers folder or a hub id, got an exported "
                f"ONNX folder ({src.location}); pass the folder it was exported from"
            )
            raise ModelError(msg)
        return True
    if backend == "onnx" or src.kind == "onnx-folder":
        return False
    if device is not None and not str(device).startswith("cuda"):
        return False
    # CUDA requested (or None: CUDA when there is one). ORT's own CUDA provider wins when present.
    return not _onnx_has_cuda() and (device is not None or _torch_cuda())


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        msg = "`texts` must be a sequence of strings, not one string"
        raise ArgumentTypeError(msg)
    texts = list(texts)
    bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
    if bad is not None:
        msg = f"texts[{bad}] is {type(texts[bad]).__name__}, expected str (map null records before embedding)"
        raise ArgumentTypeError(msg)
    return texts


class TorchEmbedder:
    """A sentence embedder on torch (CUDA or CPU); thread-safe (read-only model and tokenizer).

    Parameters
    ----------
    source
        A Hugging Face / sentence-transformers folder (mean pooling) or a hub id.
    device
        ``"cuda"``, ``"cuda:1"``, ``"cpu"`` or ``None`` (CUDA when available).
    dtype
        ``"float32"`` (default; equal to sentence-transformers within 1e-5), or ``"float16"`` /
        ``"bfloat16"`` on CUDA.
    max_length
        Word pieces per text, special tokens included (default: as the ONNX export and
        sentence-transformers choose it).
    token_budget, max_rows, slack
        Batching (see :func:`instructfast.batching.length_buckets`); defaults: 65,536 tokens,
        256 rows, 50% padding on CUDA; 8,192, 64, 5% on the CPU (compute-bound: padding is lost time).

    torch's CPU thread count is left as it is: ``torch.set_num_threads`` is process-wide, and
    changing it inside :meth:`embed` would race with other threads.

    Attributes
    ----------
    dim
        Embedding size (384 for all-MiniLM-L6-v2).
    max_length
        Word pieces per text, special tokens included; longer texts are truncated.
    source
        The folder (or hub id) in use.
    """

    def __init__(
        self,
        source: str | Path,
        *,
        device: str | None = None,
        dtype: str = "float32",
        max_length: int | None = None,
        token_budget: int | None = None,
        max_rows: int | None = None,
        slack: float | None | Literal["auto"] = "auto",
    ) -> None:
        import torch
        from tokenizers import Tokenizer
        from transformers import AutoModel

        from . import graphs

        if dtype not in _DTYPES:
            msg = f"`dtype` must be one of {_DTYPES}, got {dtype!r}"
            raise ArgumentError(msg)
        dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if dev.type != "cuda" and dtype != "float32":
            msg = f"`dtype` {dtype!r} needs a CUDA device (half precision on the CPU is slow and inexact), got {dev}"
            raise ArgumentError(msg)
        src = str(source)
        sbert_len, pooling = graphs._sbert_settings(src)
        if pooling != "mean":
            msg = f"{src}: the embedder supports mean pooling (SentenceBERT), this model uses {pooling!r}"
            raise ModelError(msg)
        tok = graphs._tokenizer(src, None)
        local = {"local_files_only": True} if Path(src).exists() else {}  # the hub only for a hub id the user named
        body = AutoModel.from_pretrained(src, attn_implementation="sdpa", dtype=getattr(torch, dtype), **local)
        self.module = graphs.MeanPoolEmbedder(body.to(dev).eval()).eval()
        self.max_length: int = graphs._window(tok, body.config, max_length or sbert_len, 512)
        self.dim: int = int(body.config.hidden_size)
        self.source = Path(src) if Path(src).exists() else src
        self.device = dev
        self.dtype = dtype
        fmt = {v: k for k, v in TORCH_DTYPES.items()}[dtype]
        self.precision = Resolved("embedder", fmt, "torch dtype")  # load_torch_embedder sets why it was chosen
        # A private copy of the Rust tokenizer with truncation fixed once: transformers' __call__
        # re-configures its backend on every call, which is not safe across threads.
        self._tok = Tokenizer.from_str(tok.backend_tokenizer.to_str())
        self._tok.no_padding()
        self._tok.enable_truncation(self.max_length, strategy="longest_first")
        self._per_token = chars_per_token(list(self._tok.get_vocab()))
        self.pad_id = int(tok.pad_token_id) if tok.pad_token_id is not None else 0
        cuda = dev.type == "cuda"
        self.token_budget = int(token_budget or (65_536 if cuda else 8192))
        self.max_rows = int(max_rows or (256 if cuda else 64))
        self.slack = (0.5 if cuda else 0.05) if slack == "auto" else slack
        self._torch = torch
        self.verified = "not checked (built directly)"  # load_torch_embedder checks before building
        self._runs = threading.Lock()  # one batch at a time: each forward already uses every torch thread

    def _count(self, text: str) -> int:
        return len(self._tok.encode(text, add_special_tokens=False).ids)

    def record(self) -> dict[str, str | None]:
        """What a run record keeps of this embedder: backend, device, dtype, folder, content hash."""
        from .registry import source_sha256

        return {
            "slot": "embedder",
            "kind": "torch embedder",
            "location": str(self.source),
            "sha256": source_sha256(self.source),
            "backend": f"torch {self.device} {self.dtype}",
            "verified": self.verified,
        }

    def embed(self, texts: Sequence[str], *, progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Unit-norm float32 embeddings ``[len(texts), dim]``, row i for ``texts[i]``.

        The contract of :meth:`instructfast.models.embedder.Embedder.embed`: ``""`` is allowed,
        ``None`` is a ``TypeError``; ``progress(k)`` is called with the rows finished per batch.
        """
        torch = self._torch
        texts = _check_texts(texts)
        n = len(texts)
        # Results stay on the device until the end: no synchronisation per batch, so the CPU
        # builds the next batch while the device runs this one.
        out = torch.empty((n, self.dim), dtype=torch.float32, device=self.device)
        with torch.inference_mode():
            for start in range(0, n, CHUNK_ROWS):
                chunk = cut_texts(texts[start : start + CHUNK_ROWS], self.max_length, self._count, self._per_token)[0]
                ids = [e.ids for e in self._tok.encode_batch(chunk)]
                lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
                for pos in length_buckets(lengths, self.token_budget, self.max_rows, self.slack):
                    width = int(lengths[pos].max())
                    batch = np.full((len(pos), width), self.pad_id, dtype=np.int64)
                    mask = np.zeros((len(pos), width), dtype=np.int64)
                    for j, i in enumerate(pos):
                        batch[j, : lengths[i]] = ids[i]
                        mask[j, : lengths[i]] = 1
                    with self._runs:
                        emb = self.module(
                            torch.from_numpy(batch).to(self.device, non_blocking=True),
                            torch.from_numpy(mask).to(self.device, non_blocking=True),
                        )
                    rows = torch.from_numpy(pos + start).to(self.device, non_blocking=True)
                    out[rows] = emb.float()
                    if progress is not None:
                        progress(len(pos))
        return out.cpu().numpy()


_LOADED: dict[tuple, TorchEmbedder] = {}
_LOCK = threading.Lock()


def load_torch_embedder(
    src: ModelSource,
    *,
    device: str | None = None,
    threads: int | None = None,
    precision: Resolved | None = None,
    **runtime: object,
) -> TorchEmbedder:
    """The :class:`TorchEmbedder` of ``src``, loaded once per process and shared.

    ``runtime`` holds :class:`TorchEmbedder` settings (``dtype``, ``token_budget``, ``max_rows``,
    ``slack``, ``max_length``). ONNX Runtime's settings (``threads``, ``spin``, ``inter_threads``)
    are ignored, so one settings dict serves both backends.
    """
    from .verify import verify_first_use

    settings = {k: v for k, v in runtime.items() if k not in _ORT_ONLY}
    verify = settings.pop("verify", "cached")
    key = (src.location, device, tuple(sorted(settings.items())))
    with _LOCK:
        emb = _LOADED.get(key)
        if emb is None:
            verified = "hub id: not verified" if src.kind == "hub-id" else verify_first_use(src.location, mode=verify)  # type: ignore[arg-type]  # checked there
            emb = TorchEmbedder(src.location, device=device, **settings)  # type: ignore[arg-type]
            emb.verified = verified
            _LOADED[key] = emb
    if precision is not None:
        emb.precision = precision
    return emb


__all__ = ["EmbedderBackend", "TorchEmbedder", "load_torch_embedder", "use_torch"]
