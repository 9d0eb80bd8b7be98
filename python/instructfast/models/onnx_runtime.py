"""ONNX Runtime for exported model folders: one session per model, bucketed batches, shared safely.

A folder written by :func:`instructfast.models.export.export` holds ``model.onnx``, the
tokenizer files and ``manifest.json``. :class:`OnnxModel` opens it once:

* one ``InferenceSession``; CPU provider by default, CUDA when ``onnxruntime-gpu`` is the
  installed runtime and the device allows it; ``intra_op`` threads default to the cores
  available to the process; graph optimisation level ALL;
* the tokenizer from ``tokenizer.json`` (the Rust ``tokenizers`` library: batch encoding
  runs in parallel outside the GIL);
* batches formed by :func:`instructfast.batching.length_buckets` under a token budget and
  fed in the graph's layout (manifest ``layout``): ``padded`` (right padded with an attention
  mask, see :func:`padded_feed`) or ``packed`` (rows end to end, see :func:`packed_feed`); results are written back by
  original position. A row's result does not depend on the rows that share its batch
  (padding is masked in every graph).

``InferenceSession.run`` is thread-safe and the encoders are only read after loading, so one
``OnnxModel`` may be shared by many threads; their batches run one at a time (each run uses every
intra-op thread already, and concurrent runs would each hold their own working memory).
Before a session is built, every file is checked against the manifest's SHA-256
(:mod:`instructfast.models.verify`).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from .._cores import available_cores
from .._typing import VerifyModels
from ..batching import length_buckets
from ..errors import ArgumentError, ImplementationFallbackWarning, MissingDependencyError, ModelError, ModelFileError
from .long_text import chars_per_token, cut_texts
from .verify import verify_manifest

MANIFEST = "manifest.json"
FORMAT = "instructfast-onnx"


def read_manifest(folder: str | os.PathLike) -> dict:
    """The manifest of an exported folder; a clear error when it is not one."""
    p = Path(folder) / MANIFEST
    if not p.exists():
        msg = f"{folder} has no {MANIFEST}: not a folder written by `instructfast export`"
        raise ModelFileError(msg)
    m = json.loads(p.read_text())
    if m.get("format") != FORMAT:
        msg = f"{p}: format {m.get('format')!r}, expected {FORMAT!r}"
        raise ModelError(msg)
    return m


def providers_for(device: str | None) -> list:
    """ORT execution providers for ``device`` (``None``: CUDA when the installed runtime has it)."""
    import onnxruntime as ort

    have = ort.get_available_providers()
    want_cuda = device is None or str(device).startswith("cuda")
    if want_cuda and "CUDAExecutionProvider" in have:
        idx = int(str(device).split(":")[1]) if device and ":" in str(device) else 0
        return [("CUDAExecutionProvider", {"device_id": idx}), "CPUExecutionProvider"]
    if device is not None and str(device).startswith("cuda"):
        warnings.warn(
            "device='cuda' but the installed onnxruntime has no CUDA provider (install onnxruntime-gpu "
            "instead of onnxruntime); the ONNX models run on the CPU",
            ImplementationFallbackWarning,
            stacklevel=3,
        )
    return ["CPUExecutionProvider"]


def cuda_provider(device: str | None) -> bool:
    """Whether a session for ``device`` runs on ORT's CUDA provider (as :func:`providers_for` chooses)."""
    import onnxruntime as ort

    want_cuda = device is None or str(device).startswith("cuda")
    return want_cuda and "CUDAExecutionProvider" in ort.get_available_providers()


def make_session(
    model_path: str | os.PathLike,
    *,
    device: str | None = None,
    threads: int | None = None,
    inter_threads: int = 1,
    spin: bool | None = None,
    disabled_optimizers: Sequence[str] = (),
):
    """An ``onnxruntime.InferenceSession`` with instructfast's settings.

    Parameters
    ----------
    threads
        Intra-op threads (``None``: the cores available to this process).
    inter_threads
        Inter-op threads (these graphs are a chain of ops: 1 is right).
    spin
        Let idle ORT threads spin (lower latency, burns CPU that other processes could use);
        ``None`` keeps ORT's default.
    disabled_optimizers
        ORT graph optimisers to skip (an export names them in its manifest's ``session``).
    """
    try:
        import onnxruntime as ort
    except ImportError as e:  # pragma: no cover - dependency missing
        msg = "onnxruntime is not installed: pip install onnxruntime (or onnxruntime-gpu on a CUDA machine)"
        raise MissingDependencyError(msg) from e
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = int(threads or available_cores())
    so.inter_op_num_threads = int(inter_threads)
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if spin is not None:
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    so.log_severity_level = 3
    return ort.InferenceSession(
        str(model_path),
        sess_options=so,
        providers=providers_for(device),
        disabled_optimizers=list(disabled_optimizers) or None,
    )


def load_tokenizer(folder: str | os.PathLike, *, truncate_at: int | None):
    """The fast tokenizer of an exported folder; padding off, truncation at ``truncate_at`` (or off)."""
    from tokenizers import Tokenizer

    path = Path(folder) / "tokenizer.json"
    if not path.exists():
        msg = f"{folder} has no tokenizer.json (export writes the fast tokenizer)"
        raise ModelFileError(msg)
    tok = Tokenizer.from_file(str(path))
    tok.no_padding()
    if truncate_at:
        tok.enable_truncation(int(truncate_at), strategy="longest_first")
    else:
        tok.no_truncation()
    return tok


class OnnxModel:
    """One exported model: session, tokenizers, manifest; thread-safe.

    Parameters
    ----------
    folder
        A folder written by ``instructfast export``.
    device, threads, inter_threads, spin
        See :func:`make_session`.
    token_budget, max_rows, slack
        Batching policy (:func:`instructfast.batching.length_buckets`); the defaults suit the
        device: 8192 tokens, 64 rows and 5% padding slack on a CPU (compute-bound: padding
        is lost time), 65536 tokens, 256 rows and 50% on a GPU. ``slack=None``: no limit.
        A packed graph spends nothing on padding outside attention, so on a CPU it takes up
        to 256 rows per batch under 4096 tokens (2048 to 8192 measured alike; the smaller
        batch holds less memory).
    verify
        Check every file against the manifest's SHA-256 before loading (:mod:`instructfast.models.verify`):
        ``"cached"`` re-hashes files whose size or mtime changed, ``"full"`` all of them.
    max_concurrent
        Batches run at once by threads sharing this model (1: each ORT run already uses
        ``threads`` cores; concurrent runs would each hold their own working memory).
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        *,
        device: str | None = None,
        threads: int | None = None,
        inter_threads: int = 1,
        spin: bool | None = None,
        token_budget: int | None = None,
        max_rows: int | None = None,
        slack: float | Literal["auto"] | None = "auto",
        verify: VerifyModels = "cached",
        max_concurrent: int = 1,
    ) -> None:
        self.folder = Path(folder)
        self.manifest = read_manifest(folder)
        self.verified = verify_manifest(self.folder, self.manifest, mode=verify)  # before a byte is loaded
        self._runs = threading.Semaphore(max_concurrent)
        self.kind: str = self.manifest["kind"]
        self.max_length: int = int(self.manifest["max_length"])
        self.input_names: list[str] = list(self.manifest["inputs"])
        self.output_names: list[str] = list(self.manifest["outputs"])
        self.pad_id: int = int(self.manifest.get("pad_id", 0) or 0)
        self.layout: str = self.manifest.get("layout", "padded")
        self.precision: str = self.manifest.get("precision", "fp32")  # "int8": a quantised copy (models.quantize)
        if self.layout not in ("padded", "packed"):
            msg = f"{self.folder}: unknown graph layout {self.layout!r} (written by a newer instructfast?)"
            raise ModelError(msg)
        self.session = make_session(
            self.folder / "model.onnx",
            device=device,
            threads=threads,
            inter_threads=inter_threads,
            spin=spin,
            disabled_optimizers=self.manifest.get("session", {}).get("disabled_optimizers", ()),
        )
        self.provider: str = self.session.get_providers()[0]
        self.on_gpu = self.provider == "CUDAExecutionProvider"
        packed = self.layout == "packed"
        self.token_budget = int(token_budget or (65_536 if self.on_gpu else 4096 if packed else 8192))
        self.max_rows = int(max_rows or (256 if self.on_gpu or packed else 64))
        self.slack: float | None = (0.5 if self.on_gpu else 0.05) if slack == "auto" else slack
        self._tok_trunc = load_tokenizer(self.folder, truncate_at=self.max_length)
        self._tok_full = load_tokenizer(self.folder, truncate_at=None)
        self.per_token = chars_per_token(list(self._tok_full.get_vocab()))

    def source_record(self) -> dict[str, str | None]:
        """Kind, folder and the content hash of the exported files, for a run record."""
        files = self.manifest.get("files", {})
        digest = hashlib.sha256("".join(f"{k}  {v}\n" for k, v in sorted(files.items())).encode()).hexdigest()
        return {
            "kind": f"onnx {self.kind} ({self.layout})",
            "location": str(self.folder),
            "sha256": digest if files else None,
            "exported_from": self.manifest.get("source"),
            "precision": self.precision,
            "verified": self.verified,
        }

    # -- tokenising -------------------------------------------------------------------
    def encode(
        self, items: Sequence[str] | Sequence[tuple[str, str]], *, truncate: bool = True
    ) -> tuple[list[list[int]], list[list[int]] | None]:
        """Token ids (and token type ids when the graph takes them) with special tokens added.

        ``items`` are texts, or (first, second) pairs for a pair classifier. With
        ``truncate=False`` nothing is cut: rows longer than ``max_length`` are for the caller
        to handle (see :meth:`too_long`).
        """
        tok = self._tok_trunc if truncate else self._tok_full
        encs = tok.encode_batch(list(items)) if len(items) else []
        ids = [e.ids for e in encs]
        types = [e.type_ids for e in encs] if "token_type_ids" in self.input_names else None
        return ids, types

    def count(self, text: str) -> int:
        """Tokens of ``text`` (no special tokens)."""
        return len(self._tok_full.encode(text, add_special_tokens=False).ids)

    def cut(self, texts: Sequence[str]) -> list[str]:
        """``texts`` with those far past the window cut to a prefix that is still past it
        (:func:`instructfast.models.long_text.cut_texts`): same overflow answer, bounded work."""
        return cut_texts(texts, self.max_length, self.count, self.per_token)[0]

    def too_long(self, ids: Sequence[Sequence[int]]) -> np.ndarray:
        return np.fromiter((len(x) > self.max_length for x in ids), dtype=bool, count=len(ids))

    # -- running ----------------------------------------------------------------------
    def run(
        self,
        ids: Sequence[Sequence[int]],
        types: Sequence[Sequence[int]] | None = None,
        *,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """The graph's first output for each row, in input order (float32, first axis = rows).

        Rows are grouped by length under the token budget, right padded, and written back
        by position; ``progress(k)`` is called with the number of rows finished per batch.
        """
        n = len(ids)
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=n)
        if n and lengths.min() == 0:
            msg = "a row has no tokens; every graph needs at least one token per row"
            raise ArgumentError(msg)
        out: np.ndarray | None = None
        for pos in length_buckets(lengths, self.token_budget, self.max_rows, self.slack) if n else []:
            rows = [ids[i] for i in pos]
            if self.layout == "packed":
                feed = packed_feed(rows)
            else:
                feed = padded_feed(
                    rows,
                    None if types is None else [types[i] for i in pos],
                    pad_id=self.pad_id,
                    token_types="token_type_ids" in self.input_names,
                )
            with self._runs:  # one batch at a time per model (see max_concurrent)
                res = self.session.run(self.output_names[:1], feed)[0]
            if out is None:
                out = np.empty((n, *res.shape[1:]), dtype=np.float32)
            out[pos] = res
            if progress is not None:
                progress(len(pos))
        if out is None:
            shape: tuple[int, ...] = (0,)
            if self.kind == "embedder":
                shape = (0, int(self.manifest["dim"]))
            elif self.kind == "unieval":
                shape = (0, 2)
            out = np.empty(shape, dtype=np.float32)
        return out


def padded_feed(
    rows: Sequence[Sequence[int]],
    types: Sequence[Sequence[int]] | None = None,
    *,
    pad_id: int = 0,
    token_types: bool = False,
) -> dict[str, np.ndarray]:
    """Inputs of a padded graph for rows of token ids: right padded to the longest row.

    ``token_types``: the graph takes ``token_type_ids`` (``types``, or zeros when ``None``).

    Examples
    --------
    >>> f = padded_feed([[7, 8, 9], [5]], pad_id=1)
    >>> f["input_ids"].tolist(), f["attention_mask"].tolist()
    ([[7, 8, 9], [5, 1, 1]], [[1, 1, 1], [1, 0, 0]])
    """
    width = max(len(r) for r in rows)
    x = np.full((len(rows), width), pad_id, dtype=np.int64)
    m = np.zeros((len(rows), width), dtype=np.int64)
    t = np.zeros((len(rows), width), dtype=np.int64) if token_types else None
    for r, row in enumerate(rows):
        k = len(row)
        x[r, :k] = row
        m[r, :k] = 1
        if t is not None and types is not None:
            t[r, :k] = types[r]
    feed = {"input_ids": x, "attention_mask": m}
    if t is not None:
        feed["token_type_ids"] = t
    return feed


def packed_feed(rows: Sequence[Sequence[int]]) -> dict[str, np.ndarray]:
    """Inputs of a packed graph (:mod:`instructfast.models.packed_bert`) for rows of token ids.

    Examples
    --------
    >>> f = packed_feed([[7, 8, 9], [5]])
    >>> f["input_ids"].tolist(), f["position_ids"].tolist()
    ([7, 8, 9, 5], [0, 1, 2, 0])
    >>> f["pad_index"].tolist(), f["attention_mask"].tolist(), f["unpad_index"].tolist()
    ([[0, 1, 2], [3, 0, 0]], [[1, 1, 1], [1, 0, 0]], [0, 1, 2, 3])
    """
    lens = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    total = int(lens.sum())
    width = int(lens.max())
    starts = np.cumsum(lens) - lens
    cols = np.arange(width, dtype=np.int64)
    real = cols[None, :] < lens[:, None]
    positions = np.arange(total, dtype=np.int64) - np.repeat(starts, lens)
    return {
        "input_ids": np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64, count=total),
        "position_ids": positions,
        "pad_index": np.where(real, starts[:, None] + cols[None, :], 0),
        "attention_mask": real.astype(np.int32),
        "unpad_index": np.repeat(np.arange(len(rows), dtype=np.int64) * width, lens) + positions,
    }


_SHARED: dict[tuple, OnnxModel] = {}
_SHARED_LOCK = threading.Lock()


def shared_model(folder: str | os.PathLike, **settings) -> OnnxModel:
    """One :class:`OnnxModel` per (folder, settings) per process, shared by every caller."""
    key = (str(Path(folder).resolve()), tuple(sorted(settings.items())))
    with _SHARED_LOCK:
        m = _SHARED.get(key)
        if m is None:
            m = OnnxModel(folder, **settings)
            _SHARED[key] = m
    return m
