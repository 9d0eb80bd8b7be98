"""The one k-nearest-neighbour engine behind ``knn_<i>``: faiss on CPU, blocked torch matmul on CUDA.

Pool vectors are unit-normalised float32 rows. Search runs in two steps:

1. **Candidates** by inner product (for unit vectors the same order as Euclidean distance):
   faiss brute force (``faiss.knn``, no copy of the pool) up to ``exact_max`` pool members,
   a faiss IVF index above it, or a blocked ``queries @ pool.T`` + ``topk`` in torch.
2. **Exact distances**: every candidate's distance is recomputed as ``||x - y||`` in float64
   from the stored vectors. The float32 ``sqrt(2 - 2 x.y)`` shortcut is off by up to ~1e-3 near
   0 (a float32 rounding of x.y, under a square root), and the rows are only unit to ~1e-7.
   A few extra candidates (``margin``) absorb float32 ranking noise at the boundary.

Self exclusion is by position: when the queries are the pool, row r drops the candidate whose id
is r, whatever its distance, so duplicates of r stay neighbours at distance 0. When ties at 0
push r itself out of the candidate list, every candidate is at distance 0 and nothing needs
dropping. With a reference pool the caller chooses: no exclusion (default), or ``"match"``: drop
the nearest pool member when it lies within ``self_tol`` (the row's own copy in the pool).

Approximate search (IVF, chosen over HNSW for its cheap build on few cores, no graph memory on
top of the vectors, and a single search-time knob, ``nprobe``) is never silent: recall@k against
exact search is measured on a sample of queries, ``nprobe`` is doubled until the sample reaches
``recall_target``, and the measured recall is in the :class:`SearchReport`.

>>> import numpy as np
>>> x = np.eye(3, 4, dtype=np.float32)[[0, 0, 1, 2]]  # rows 0 and 1 are duplicates
>>> d, rep = knn_distances(x, [1, 2])
>>> d[1].round(4).tolist(), d[2].round(4).tolist()
([0.0, 0.0, 1.4142, 1.4142], [1.4142, 1.4142, 1.4142, 1.4142])
>>> rep.method
'exact (faiss brute force, inner product)'
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ._typing import Exclude
from .errors import ArgumentError, MissingDependencyError
from .options import KnnOptions

if TYPE_CHECKING:
    import faiss
    import torch

# The search defaults are the knn option defaults (one place: instructfast.options.KnnOptions).
DEFAULT_EXACT_MAX: int = KnnOptions.exact_max
DEFAULT_RECALL_TARGET: float = KnnOptions.recall_target
DEFAULT_RECALL_SAMPLE: int = KnnOptions.recall_sample


@dataclass
class SearchReport:
    """How a search ran: exact or approximate, and for approximate search the measured recall.

    ``recall_checked[k]`` counts the true k nearest neighbours of the sampled queries and
    ``recall_found[k]`` how many of them the approximate search returned (a returned neighbour
    tied in distance with a true one counts as found). Counts add up over several searches.
    """

    method: str
    exact: bool
    queries: int = 0
    pool: int = 0
    k: int = 0
    nprobe: int | None = None
    recall_sample: int = 0
    recall_checked: dict[int, int] = field(default_factory=dict)
    recall_found: dict[int, int] = field(default_factory=dict)
    no_self_match: int = 0
    seconds: float = 0.0

    def recall(self, k: int) -> float | None:
        """Measured recall@k of an approximate search (``None`` for exact search)."""
        n = self.recall_checked.get(k, 0)
        return self.recall_found.get(k, 0) / n if n else None

    def merge(self, other: SearchReport) -> None:
        self.queries += other.queries
        self.k = max(self.k, other.k)
        self.nprobe = other.nprobe
        self.recall_sample += other.recall_sample
        for k, v in other.recall_checked.items():
            self.recall_checked[k] = self.recall_checked.get(k, 0) + v
            self.recall_found[k] = self.recall_found.get(k, 0) + other.recall_found.get(k, 0)
        self.no_self_match += other.no_self_match
        self.seconds += other.seconds
        self.method = other.method


def as_unit_vectors(x: object, what: str = "vectors") -> np.ndarray:
    """Validate a 2-D array of vectors and return it L2-normalised as C-contiguous float32.

    Raises
    ------
    ValueError
        Not 2-D, non-finite values or all-zero rows (each names the first bad row).
    """
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] < 1:
        msg = f"{what} must be a 2-D array [rows, dim], got shape {a.shape}"
        raise ArgumentError(msg)
    bad = ~np.isfinite(a).all(axis=1)
    if bad.any():
        msg = f"{what}: {int(bad.sum())} row(s) hold NaN or infinite values (first: row {int(np.flatnonzero(bad)[0])})"
        raise ArgumentError(msg)
    norms = np.linalg.norm(a, axis=1)
    zero = norms == 0
    if zero.any():
        msg = f"{what}: {int(zero.sum())} row(s) are all zeros and have no direction (first: row {int(np.flatnonzero(zero)[0])})"
        raise ArgumentError(msg)
    return np.ascontiguousarray(a / norms[:, None], dtype=np.float32)


def faiss_available() -> bool:
    return importlib.util.find_spec("faiss") is not None


def _torch_cuda() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


def choose_backend(backend: str = "auto", device: str | None = None) -> tuple[str, str]:
    """``(backend, device)``: torch on a CUDA device, else faiss when installed, else torch on CPU.

    ``device=None`` means CUDA when torch sees one (GPU brute force beats faiss on the CPU).
    """
    if backend not in ("auto", "faiss", "torch"):
        msg = f"`knn_backend` must be 'auto', 'faiss' or 'torch', got {backend!r}"
        raise ArgumentError(msg)
    if device is None and backend != "faiss" and _torch_cuda():
        device = "cuda"
    cuda = device is not None and str(device).startswith("cuda")
    if backend == "auto":
        backend = "torch" if cuda or not faiss_available() else "faiss"
    if backend == "faiss":
        if cuda:
            msg = "the faiss backend runs on the CPU here; use knn_backend='torch' (or auto) with a CUDA device"
            raise ArgumentError(msg)
        if not faiss_available():
            msg = "faiss is not installed: pip install faiss-cpu (or use knn_backend='torch')"
            raise MissingDependencyError(msg)
        return "faiss", "cpu"
    if importlib.util.find_spec("torch") is None:
        msg = "neither faiss nor torch is installed: pip install faiss-cpu"
        raise MissingDependencyError(msg)
    return "torch", str(device or "cpu")


@contextlib.contextmanager
def _threads(backend: str, n: int | None) -> Iterator[None]:
    """Set the backend's thread count for the duration of a search, then restore it."""
    if n is None:
        yield
        return
    if backend == "faiss":
        import faiss

        old = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(int(n))
        try:
            yield
        finally:
            faiss.omp_set_num_threads(old)
    else:
        import torch

        old = torch.get_num_threads()
        torch.set_num_threads(int(n))
        try:
            yield
        finally:
            torch.set_num_threads(old)


class NeighborIndex:
    """A pool of unit vectors, searchable for each query's k nearest pool members.

    Parameters
    ----------
    vectors
        ``[n, dim]`` unit-normalised rows (see :func:`as_unit_vectors`); kept, not copied,
        when already C-contiguous float32.
    exact_max
        Pools up to this size are searched exactly (faiss brute force); larger pools get an
        IVF index with measured recall. The torch backend is always exact.
    backend, device
        ``"auto"`` (torch on CUDA devices, else faiss), ``"faiss"`` or ``"torch"``.
    threads
        CPU threads for the search (faiss OpenMP / torch intra-op); ``None`` leaves them as they are.
    nlist, nprobe
        IVF lists (default ``4 * sqrt(n)``) and the first ``nprobe`` tried (default 16).
    recall_target, recall_sample
        Approximate search: ``nprobe`` doubles until recall@k on ``recall_sample`` sampled
        queries reaches ``recall_target`` (or every list is probed).
    margin
        Extra candidates per query beyond k (+1 with self exclusion), re-ranked exactly.
    block_rows
        Queries per search block (bounds the candidate and distance buffers).
    memory_mb
        torch backend: bytes for one block's ``[block, n]`` similarity matrix.
    seed
        Seeds IVF training and the recall sample.
    ivf
        A trained, filled faiss IVF index over ``vectors`` (loaded from disk) to reuse.
    """

    def __init__(
        self,
        vectors: np.ndarray,
        *,
        exact_max: int = DEFAULT_EXACT_MAX,
        backend: str = "auto",
        device: str | None = None,
        threads: int | None = None,
        nlist: int | None = None,
        nprobe: int | None = None,
        recall_target: float = DEFAULT_RECALL_TARGET,
        recall_sample: int = DEFAULT_RECALL_SAMPLE,
        margin: int = 4,
        block_rows: int = 16_384,
        memory_mb: int | None = None,
        seed: int = 0,
        ivf: faiss.IndexIVF | None = None,
        ivf_storage: str = "sq8",
    ) -> None:
        v = np.asarray(vectors)
        if v.ndim != 2 or v.shape[1] < 1:
            msg = f"vectors must be a 2-D array [rows, dim], got shape {v.shape}"
            raise ArgumentError(msg)
        self.vectors = np.ascontiguousarray(v, dtype=np.float32)
        self.n, self.dim = self.vectors.shape
        if self.n:
            dev = np.empty(self.n)
            for s in range(0, self.n, 8192):  # float64 in blocks: no full-size float64 copy
                blk = self.vectors[s : s + 8192].astype(np.float64)
                dev[s : s + 8192] = np.abs(np.einsum("ij,ij->i", blk, blk) - 1.0)
            if not np.isfinite(dev).all() or dev.max() > 1e-3:
                r = int(np.argmax(np.where(np.isfinite(dev), dev, np.inf)))
                msg = (
                    f"vectors must be unit-normalised (row {r} has squared norm 1{dev[r]:+.2e}); use as_unit_vectors()"
                )
                raise ArgumentError(msg)
        if not (0.0 < recall_target <= 1.0):
            msg = f"`knn_recall_target` must be in (0, 1], got {recall_target!r}"
            raise ArgumentError(msg)
        for name, val in (("knn_exact_max", exact_max), ("margin", margin + 1), ("block_rows", block_rows)):
            if int(val) < 1:
                msg = f"`{name}` must be positive, got {val!r}"
                raise ArgumentError(msg)
        if ivf_storage not in ("sq8", "flat"):
            msg = f"`knn_ivf_storage` must be 'sq8' or 'flat', got {ivf_storage!r}"
            raise ArgumentError(msg)
        self.ivf_storage = ivf_storage
        self.backend, self.device = choose_backend(backend, device)
        self.threads = threads
        # A saved IVF index is used only when the pool is too large for exact search here.
        self.exact = self.backend == "torch" or self.n <= exact_max
        self.recall_target = float(recall_target)
        self.recall_sample = int(recall_sample)
        self.margin = int(margin)
        self.block_rows = int(block_rows)
        self.seed = int(seed)
        self._rng = np.random.default_rng(seed)
        self.memory_mb = memory_mb or (2048 if self.device.startswith("cuda") else 256)
        self._torch_pool: torch.Tensor | None = None
        # torch: re-rank on the GPU; on the CPU numpy's cache-sized blocks are faster
        self.rerank_on_device = self.device.startswith("cuda")
        self.ivf: faiss.IndexIVF | None = None if self.exact else ivf
        self.nlist = int(self.ivf.nlist) if self.ivf is not None else nlist
        self.nprobe = int(nprobe) if nprobe else None
        self._tuned = False
        if not self.exact and self.ivf is None:
            self.ivf = self._build_ivf()
        if self.ivf is not None and self.nprobe is None:
            self.nprobe = min(16, int(self.ivf.nlist))

    # ------------------------------------------------------------------ build

    def _build_ivf(self) -> faiss.IndexIVF:
        import faiss

        nlist = self.nlist or int(round(4 * math.sqrt(self.n)))
        nlist = max(1, min(nlist, self.n // 39))  # faiss wants >= 39 training points per list
        self.nlist = nlist
        quantizer = faiss.IndexFlatIP(self.dim)
        ivf: faiss.IndexIVF
        if self.ivf_storage == "sq8":
            # The index only proposes candidates (k + margin per query); their distances are computed
            # again from the float32 vectors, so 8-bit codes cost recall (measured), never accuracy,
            # and the index holds a quarter of the pool: a 1M x 384 pool's index is 0.37 GiB, not 1.46.
            ivf = faiss.IndexIVFScalarQuantizer(
                quantizer, self.dim, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
            )
        else:
            ivf = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        ivf.cp.seed = self.seed
        # 64 points per list: faiss warns below 39, and k-means on more costs time (it dominated a
        # 1M-row pool pass at 256 per list) and training memory without better lists to show for it;
        # the recall check below catches a poorer index anyway.
        n_train = min(self.n, 64 * nlist)
        train = (
            self.vectors
            if n_train == self.n
            else self.vectors[np.sort(self._rng.choice(self.n, n_train, replace=False))]
        )
        with _threads("faiss", self.threads):
            ivf.train(train)
            for s in range(0, self.n, self.block_rows):
                ivf.add(self.vectors[s : s + self.block_rows])
        return ivf

    @property
    def method(self) -> str:
        if self.backend == "torch":
            return f"exact (torch matmul top-k, {self.device})"
        if self.exact:
            return "exact (faiss brute force, inner product)"
        assert self.ivf is not None  # __init__ builds one whenever the search is approximate
        codes = "SQ8" if "ScalarQuantizer" in type(self.ivf).__name__ else "Flat"
        return f"approximate (faiss IVF{self.ivf.nlist},{codes} inner product, nprobe={self.nprobe})"

    # ------------------------------------------------------------------ search

    def search(
        self,
        queries: np.ndarray,
        k: int,
        *,
        exclude: Exclude = "none",
        query_ids: np.ndarray | None = None,
        self_tol: float = 1e-4,
        recall_ks: Sequence[int] | None = None,
    ) -> tuple[np.ndarray, np.ndarray, SearchReport]:
        """The k nearest pool members of each query.

        Parameters
        ----------
        queries
            ``[m, dim]`` unit rows.
        k
            Neighbours per query.
        exclude
            ``"none"``; ``"position"``: query r is pool member ``query_ids[r]`` (``-1``: not in
            the pool) and that member is skipped; ``"match"``: the nearest member is skipped when
            within ``self_tol`` (rows without one are counted in ``no_self_match``).
        recall_ks
            The k values whose recall an approximate search reports (default ``[k]``).

        Returns
        -------
        distances, ids, report
            ``[m, k]`` float64 exact Euclidean distances in ascending order (``inf`` where the
            pool has fewer than k eligible members) and int64 pool ids (``-1`` there).
        """
        t0 = time.perf_counter()
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self.dim:
            msg = f"queries must be [rows, {self.dim}] to match the pool, got shape {q.shape}"
            raise ArgumentError(msg)
        if k < 1:
            msg = f"k must be >= 1, got {k}"
            raise ArgumentError(msg)
        if exclude not in ("none", "position", "match"):
            msg = f"exclude must be 'none', 'position' or 'match', got {exclude!r}"
            raise ArgumentError(msg)
        m = q.shape[0]
        if exclude == "position":
            if query_ids is None or len(query_ids) != m:
                msg = "exclude='position' needs query_ids, one pool id (or -1) per query"
                raise ArgumentError(msg)
            qids = np.asarray(query_ids, dtype=np.int64)
        else:
            qids = np.full(m, -1, dtype=np.int64)
        recall_ks = sorted(set(recall_ks or [k]))
        report = SearchReport(method=self.method, exact=self.exact, queries=m, pool=self.n, k=k)
        dist = np.full((m, k), np.inf)
        ids = np.full((m, k), -1, dtype=np.int64)
        if m == 0 or self.n == 0:
            report.seconds = time.perf_counter() - t0
            return dist, ids, report
        with _threads(self.backend, self.threads):
            if not self.exact:
                self._check_recall(q, qids, k, exclude, self_tol, recall_ks, report)
            for s in range(0, m, self.block_rows):
                e = min(m, s + self.block_rows)
                d, i, missed = self._search_block(q[s:e], qids[s:e], k, exclude, self_tol, exact=self.exact)
                dist[s:e], ids[s:e] = d, i
                report.no_self_match += missed
        report.method = self.method
        report.nprobe = self.nprobe if not self.exact else None
        report.seconds = time.perf_counter() - t0
        return dist, ids, report

    def _search_block(
        self, q: np.ndarray, qids: np.ndarray, k: int, exclude: str, self_tol: float, *, exact: bool
    ) -> tuple[np.ndarray, np.ndarray, int]:
        extra = 0 if exclude == "none" else 1
        kc = min(self.n, k + extra + self.margin)
        if self.backend == "torch":
            cand, d = self._torch_candidates(q, kc)
        else:
            cand, d = self._faiss_candidates(q, kc, exact), None
        if d is None:
            d = _exact_distances(q, self.vectors, cand)
        if exclude == "position":
            d[cand == qids[:, None]] = np.inf  # ids are unique per row: at most one entry
        cand = np.where(np.isfinite(d), cand, -1)
        order = np.lexsort((np.where(cand < 0, np.iinfo(np.int64).max, cand), d), axis=-1)
        d = np.take_along_axis(d, order, axis=1)
        cand = np.take_along_axis(cand, order, axis=1)
        missed = 0
        if exclude == "match":
            hit = d[:, 0] <= self_tol
            missed = int((~hit).sum())
            d = np.where(hit[:, None], np.roll(d, -1, axis=1), d)
            cand = np.where(hit[:, None], np.roll(cand, -1, axis=1), cand)
            d[hit, -1], cand[hit, -1] = np.inf, -1
        out_d = np.full((q.shape[0], k), np.inf)
        out_i = np.full((q.shape[0], k), -1, dtype=np.int64)
        w = min(k, d.shape[1])
        out_d[:, :w], out_i[:, :w] = d[:, :w], cand[:, :w]
        return out_d, out_i, missed

    def _faiss_candidates(self, q: np.ndarray, kc: int, exact: bool) -> np.ndarray:
        import faiss

        if exact:
            _, ids = faiss.knn(q, self.vectors, kc, metric=faiss.METRIC_INNER_PRODUCT)
        else:
            assert self.ivf is not None and self.nprobe is not None  # set in __init__ for approximate search
            self.ivf.nprobe = int(self.nprobe)
            _, ids = self.ivf.search(q, kc)
        return ids.astype(np.int64, copy=False)

    def _torch_candidates(self, q: np.ndarray, kc: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Top-kc ids by blocked matmul; on CUDA also their exact distances (computed on the device)."""
        import torch

        if self._torch_pool is None:
            self._torch_pool = torch.from_numpy(self.vectors).to(self.device)  # no copy on CPU
        pool = self._torch_pool
        rows = max(1, min(q.shape[0], (self.memory_mb << 20) // max(1, 4 * self.n)))
        ids_out = np.empty((q.shape[0], kc), dtype=np.int64)
        d_out = np.empty((q.shape[0], kc), dtype=np.float64) if self.rerank_on_device else None
        old = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("highest")  # TF32 ranking noise would exceed the margin
        try:
            with torch.inference_mode():
                for s in range(0, q.shape[0], rows):
                    qt = torch.from_numpy(q[s : s + rows]).to(self.device)
                    top = torch.topk(qt @ pool.T, kc, dim=1).indices
                    ids_out[s : s + rows] = top.cpu().numpy()
                    if d_out is not None:
                        diff = qt.double()[:, None, :] - pool[top].double()
                        d_out[s : s + rows] = diff.square_().sum(-1).sqrt_().cpu().numpy()
        finally:
            torch.set_float32_matmul_precision(old)
        return ids_out, d_out

    # ------------------------------------------------------------------ recall

    def _check_recall(
        self,
        q: np.ndarray,
        qids: np.ndarray,
        k: int,
        exclude: str,
        self_tol: float,
        recall_ks: list[int],
        report: SearchReport,
    ) -> None:
        """Measure recall@k on a query sample against exact search; tune nprobe once."""
        assert self.ivf is not None and self.nprobe is not None  # set in __init__ for approximate search
        m = q.shape[0]
        s = min(m, self.recall_sample)
        pick = np.sort(self._rng.choice(m, s, replace=False)) if s < m else np.arange(m)
        qs, qi = q[pick], qids[pick]
        truth, _, _ = self._search_block(qs, qi, k, exclude, self_tol, exact=True)
        while True:
            approx, _, _ = self._search_block(qs, qi, k, exclude, self_tol, exact=False)
            checked, found = _recall_counts(truth, approx, recall_ks)
            worst = min((found[j] / checked[j] for j in recall_ks if checked[j]), default=1.0)
            if self._tuned or worst >= self.recall_target or self.nprobe >= self.ivf.nlist:
                break
            self.nprobe = min(int(self.ivf.nlist), self.nprobe * 2)
        self._tuned = True
        report.recall_sample += s
        for j in recall_ks:
            report.recall_checked[j] = report.recall_checked.get(j, 0) + checked[j]
            report.recall_found[j] = report.recall_found.get(j, 0) + found[j]


def _exact_distances(q: np.ndarray, pool: np.ndarray, ids: np.ndarray, rows: int = 128) -> np.ndarray:
    """``||q_r - pool[ids[r, j]]||`` in float64 (``inf`` where ``ids < 0``); small blocks stay in cache."""
    out = np.empty(ids.shape, dtype=np.float64)
    for s in range(0, ids.shape[0], rows):
        blk = ids[s : s + rows]
        diff = q[s : s + rows, None, :].astype(np.float64) - pool[np.maximum(blk, 0)].astype(np.float64)
        out[s : s + rows] = np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))
    out[ids < 0] = np.inf
    return out


def _recall_counts(truth: np.ndarray, approx: np.ndarray, ks: list[int]) -> tuple[dict[int, int], dict[int, int]]:
    """Per k: true neighbours checked, and approximate ones within the true k-th distance (ties count)."""
    checked, found = {}, {}
    for k in ks:
        t = truth[:, k - 1]
        ok = np.isfinite(t)
        tol = 1e-9 + 1e-9 * t[ok, None]
        checked[k] = int(ok.sum()) * k
        found[k] = int((approx[ok, :k] <= t[ok, None] + tol).sum())
    return checked, found


def knn_distances(
    vectors: np.ndarray, ks: Sequence[int], **index_options: object
) -> tuple[dict[int, np.ndarray], SearchReport]:
    """Distance from each row to its i-th nearest *other* row, for each i in ``ks``.

    Parameters
    ----------
    vectors
        ``[n, dim]`` unit rows; the pool and the queries.
    ks
        The i values (1-based neighbour ranks).
    index_options
        Passed to :class:`NeighborIndex`.

    Returns
    -------
    distances, report
        ``{i: float64 [n]}`` with ``inf`` where fewer than i other rows exist.
    """
    ks = sorted(set(int(i) for i in ks))
    if not ks or ks[0] < 1:
        msg = f"neighbour ranks must be >= 1, got {ks}"
        raise ArgumentError(msg)
    index = NeighborIndex(vectors, **index_options)  # type: ignore[arg-type]  # NeighborIndex checks each one
    kmax = ks[-1]
    d, _, report = index.search(
        index.vectors, kmax, exclude="position", query_ids=np.arange(index.n, dtype=np.int64), recall_ks=ks
    )
    return {i: d[:, i - 1].copy() for i in ks}, report


__all__ = [
    "NeighborIndex",
    "SearchReport",
    "knn_distances",
    "as_unit_vectors",
    "choose_backend",
    "DEFAULT_EXACT_MAX",
]
