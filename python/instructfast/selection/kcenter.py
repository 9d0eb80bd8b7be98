"""KCenterGreedy: farthest-first traversal in O(N) memory.

Each pick adds the point whose Euclidean distance to the chosen set is largest. The
state is one min-distance vector (N floats) plus, per point, how many centres it has
been checked against: no ``N x N`` (or ``N x k``) matrix ever exists. Squared distances
come from ``||x||^2 - 2 x.c + ||c||^2`` with ``||x||^2`` precomputed.

Two exact strategies on the CPU (``strategy``):

``"full"``
    After every pick, lower the min-distance vector in place from one blocked
    matrix-vector product over all rows: a full pass over the vectors per pick, so
    memory bandwidth is the limit (~0.2 s per pick at 1M x 384 float32 on 2 cores).
``"lazy"`` (default)
    A row's stored distance is an upper bound until it is brought up to date with the
    centres chosen since it was last checked, and it only needs to be exact when it might
    be the farthest. A pool of the largest bounds is kept exact; a pick is the pool's best
    once that beats every bound outside the pool, else the pool is rebuilt. When pools
    keep draining (new centres near many candidates), all rows catch up at once with one
    blocked matrix-matrix product against the pending centres: arithmetic-bound GEMM
    instead of one bandwidth-bound pass per pick. Same picks as ``"full"`` (checked
    against a brute-force reference in the tests).

A torch path runs the ``"full"`` recurrence on a GPU, where a pass is cheap.

Ties go to the lowest row position, and a chosen point is never chosen again, even
among exact duplicates (its distance is set to ``-inf``).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np

from ..errors import ArgumentError

Progress = Callable[[int], None]
"""Called with the number of points just selected (``tqdm.update`` fits)."""

_BLOCK_BYTES = 32 << 20  # rows per block: ~32 MiB of vectors, so the per-block temporaries stay in cache
_TEMP_BYTES = 16 << 20  # bound on a rows x centres distance block (small d would otherwise mean huge blocks)


def kcenter_greedy(
    vectors: np.ndarray,
    k: int,
    *,
    already_selected: Sequence[int] | np.ndarray | None = None,
    start: int | None = None,
    seed: int = 0,
    backend: Literal["auto", "numpy", "torch"] = "auto",
    device: str | None = None,
    strategy: Literal["lazy", "full"] = "lazy",
    progress: Progress | None = None,
) -> np.ndarray:
    """Select ``k`` rows of ``vectors`` by farthest-first traversal.

    Parameters
    ----------
    vectors
        ``[n, d]`` float array (float64 is kept as float64 on the numpy path; anything
        else is computed in float32). Distances are plain Euclidean: normalise rows first
        for the unit-sphere geometry of sentence embeddings (:func:`instructfast.select` does).
    k
        Number of new rows to select, ``1 <= k <= n - len(already_selected)``.
    already_selected
        Row positions that count as chosen before the first pick (e.g. an existing
        training set); they are not returned again.
    start
        First pick when ``already_selected`` is empty (default: drawn with ``seed``, as
        the usual KCenterGreedy does).
    seed
        Seed for the first pick.
    backend
        ``"numpy"`` (BLAS, blocked), ``"torch"`` (``device``, default ``cuda`` when
        available), or ``"auto"``: torch on a CUDA device when one is available or asked
        for, numpy otherwise.
    device
        Torch device for the torch backend (``"cuda"``, ``"cuda:1"``, ``"cpu"``).
    strategy
        numpy backend: ``"lazy"`` (exact bounds-based updates, default) or ``"full"``
        (one pass over all rows per pick); see the module docs.
    progress
        Called with the number of rows just selected, once per pick.

    Returns
    -------
    numpy.ndarray
        int64 row positions in selection order (a prefix is itself a greedy k-center).

    Examples
    --------
    >>> x = np.array([[0.0, 0.0], [1.0, 0.0], [0.1, 0.0], [5.0, 0.0]])
    >>> kcenter_greedy(x, 3, start=0).tolist()
    [0, 3, 1]
    >>> kcenter_greedy(x, 2, already_selected=[3]).tolist()
    [0, 1]
    """
    x = np.asarray(vectors)
    if x.ndim != 2:
        msg = f"`vectors` must be a 2-d array [n, d], got shape {x.shape}"
        raise ArgumentError(msg)
    n = x.shape[0]
    seeds = np.unique(np.asarray([] if already_selected is None else already_selected, dtype=np.int64))
    if seeds.size and (seeds[0] < 0 or seeds[-1] >= n):
        msg = f"`already_selected` positions must be in [0, {n}), got {seeds[0] if seeds[0] < 0 else seeds[-1]}"
        raise ArgumentError(msg)
    free = n - seeds.size
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or not 1 <= k <= free:
        msg = f"`k` must be an integer in [1, {free}] ({n} rows, {seeds.size} already selected), got {k!r}"
        raise ArgumentError(msg)
    with np.errstate(over="ignore", invalid="ignore"):
        finite = np.isfinite(np.einsum("ij,ij->i", x, x)) if x.size else np.ones(n, dtype=bool)
    if not finite.all():
        msg = f"`vectors` has NaN or inf values in {int((~finite).sum())} rows (first: row {int(np.argmin(finite))}); drop or fix them"
        raise ArgumentError(msg)
    if start is not None and not 0 <= start < n:
        msg = f"`start` must be a row position in [0, {n}), got {start}"
        raise ArgumentError(msg)
    if seeds.size == 0 and start is None:
        start = int(np.random.default_rng(seed).integers(n))
    if strategy not in ("lazy", "full"):
        msg = f"`strategy` must be 'lazy' or 'full', got {strategy!r}"
        raise ArgumentError(msg)
    if _use_torch(backend, device):
        return _kcenter_torch(x, int(k), seeds, start, device, progress)
    if strategy == "lazy":
        return _kcenter_lazy(x, int(k), seeds, start, progress)
    return _kcenter_numpy(x, int(k), seeds, start, progress)


def _use_torch(backend: str, device: str | None) -> bool:
    if backend not in ("auto", "numpy", "torch"):
        msg = f"`backend` must be one of 'auto', 'numpy', 'torch', got {backend!r}"
        raise ArgumentError(msg)
    if backend != "auto":
        return backend == "torch"
    if device is not None:
        return str(device).startswith("cuda")
    if "torch" not in sys.modules and not (os.path.exists("/dev/nvidia0") or os.path.exists("/proc/driver/nvidia")):
        return False  # no NVIDIA driver: skip importing torch (seconds) just to learn there is no GPU
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def _kcenter_numpy(
    x: np.ndarray, k: int, seeds: np.ndarray, start: int | None, progress: Progress | None
) -> np.ndarray:
    dtype = np.float64 if x.dtype == np.float64 else np.float32
    x = np.ascontiguousarray(x, dtype=dtype)
    n, d = x.shape
    block = max(1, _BLOCK_BYTES // max(1, d * x.itemsize))
    sq = np.einsum("ij,ij->i", x, x)  # ||x||^2, once
    mind = np.full(n, np.inf, dtype=dtype)
    tmp = np.empty(min(block, n), dtype=dtype)

    def lower(c: int) -> None:
        # mind = min(mind, ||x||^2 - 2 x.c + ||c||^2), one block at a time, in place.
        cv, cc = x[c], sq[c]
        for a in range(0, n, block):
            b = min(n, a + block)
            t = tmp[: b - a]
            np.dot(x[a:b], cv, out=t)
            t *= -2.0
            t += sq[a:b]
            t += cc
            np.minimum(mind[a:b], t, out=mind[a:b])

    if seeds.size:
        _lower_by_set(x, sq, seeds, mind, max(1, min(block, _TEMP_BYTES // (256 * x.itemsize))))
        mind[seeds] = -np.inf
    out = np.empty(k, dtype=np.int64)
    for i in range(k):
        c = int(start) if (i == 0 and not seeds.size) else int(np.argmax(mind))
        out[i] = c
        if i + 1 < k:
            lower(c)
        mind[c] = -np.inf
        if progress is not None:
            progress(1)
    return out


def _lower_by_set(x: np.ndarray, sq: np.ndarray, seeds: np.ndarray, mind: np.ndarray, block: int) -> None:
    """mind = squared distance to the nearest seed, blocked so the temporary stays ~block x 256."""
    s = x[seeds]
    ssq = sq[seeds]
    step = 256
    for j in range(0, seeds.size, step):
        sj, sqj = s[j : j + step], ssq[j : j + step]
        for a in range(0, x.shape[0], block):
            b = min(x.shape[0], a + block)
            d2 = x[a:b] @ sj.T
            d2 *= -2.0
            d2 += sq[a:b, None]
            d2 += sqj[None, :]
            np.minimum(mind[a:b], d2.min(axis=1), out=mind[a:b])


def _kcenter_torch(
    x: np.ndarray, k: int, seeds: np.ndarray, start: int | None, device: str | None, progress: Progress | None
) -> np.ndarray:
    import torch

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    xt = torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32), device=dev)
    n = xt.shape[0]
    sq = (xt * xt).sum(dim=1)
    mind = torch.full((n,), float("inf"), dtype=torch.float32, device=dev)
    if seeds.size:
        st = torch.as_tensor(seeds, device=dev)
        for j in range(0, seeds.size, 256):
            sj = st[j : j + 256]
            block = max(1, (64 << 20) // (4 * sj.numel()))
            for a in range(0, n, block):
                b = min(n, a + block)
                d2 = sq[a:b, None] - 2.0 * (xt[a:b] @ xt[sj].T) + sq[sj][None, :]
                torch.minimum(mind[a:b], d2.min(dim=1).values, out=mind[a:b])
        mind[st] = float("-inf")
    picks = torch.empty(k, dtype=torch.int64, device=dev)
    c = torch.tensor(int(start) if not seeds.size else 0, device=dev)
    if seeds.size:
        c = torch.argmax(mind)
    for i in range(k):
        picks[i] = c
        if i + 1 < k:
            d2 = torch.addmv(sq, xt, xt[c], alpha=-2.0)
            d2 += sq[c]
            torch.minimum(mind, d2, out=mind)
        mind[c] = float("-inf")
        if i + 1 < k:
            c = torch.argmax(mind)  # stays on the device: no host sync per pick
        if progress is not None:
            progress(1)
    return picks.cpu().numpy().astype(np.int64)


POOL_ROWS = 4096  # candidates kept exact; a rebuild costs one partial sort of N bounds (~3 ms at 1M)
# Every row catches up (one GEMM pass against the pending centres) once the pool rebuilds since
# the last catch-up have cost this many times what that pass costs: ski rental, so the lazy
# path does at most ~(1 + ratio) times the work of the better of the two policies.
CATCH_UP_RATIO = 1.0
_CENTRE_CHUNK = 512  # centres per matrix product when bringing rows up to date (bounds the temporary)


def _kcenter_lazy(x: np.ndarray, k: int, seeds: np.ndarray, start: int | None, progress: Progress | None) -> np.ndarray:
    dtype = np.float64 if x.dtype == np.float64 else np.float32
    x = np.ascontiguousarray(x, dtype=dtype)
    n, d = x.shape
    rows_per_block = max(
        1, min(_BLOCK_BYTES // max(1, d * x.itemsize) // 4, _TEMP_BYTES // (_CENTRE_CHUNK * x.itemsize))
    )
    sq = np.einsum("ij,ij->i", x, x)
    bound = np.full(n, np.inf, dtype=dtype)  # >= true squared distance to the chosen set
    seen = np.zeros(n, dtype=np.int64)  # bound[i] accounts for centres[:seen[i]]
    centres = np.empty(k + seeds.size, dtype=np.int64)
    t = 0  # centres chosen so far
    t_all = 0  # every row accounts for centres[:t_all]
    stats = _LAST_STATS
    stats.update(pool_rebuilds=0, catch_ups=0)
    rebuild_work = 0  # row x centre distance evaluations spent on pool rebuilds since the last catch-up

    def lowered(xr: np.ndarray, sqr: np.ndarray, since: int) -> np.ndarray:
        """Min squared distance of rows ``xr`` to centres[since:t], by chunked matrix products."""
        m = np.full(xr.shape[0], np.inf, dtype=dtype)
        for a in range(since, t, _CENTRE_CHUNK):
            cs = centres[a : min(t, a + _CENTRE_CHUNK)]
            d2 = xr @ x[cs].T
            d2 *= -2.0
            d2 += sqr[:, None]
            d2 += sq[cs][None, :]
            np.minimum(m, d2.min(axis=1), out=m)
        return m

    def catch_up_all() -> None:
        nonlocal t_all, rebuild_work
        rebuild_work = 0
        for a in range(0, n, rows_per_block):
            b = min(n, a + rows_per_block)
            np.minimum(bound[a:b], lowered(x[a:b], sq[a:b], t_all), out=bound[a:b])
        seen[:] = t
        bound[centres[:t]] = -np.inf
        t_all = t
        stats["catch_ups"] += 1

    def add(c: int) -> None:
        nonlocal t
        centres[t] = c
        t += 1
        bound[c] = -np.inf

    for c in seeds:
        add(int(c))
    out = np.empty(k, dtype=np.int64)
    i = 0
    if not seeds.size:
        out[0] = int(start)  # type: ignore[arg-type]
        add(int(out[0]))
        i = 1
        if progress is not None:
            progress(1)
    if i < k:
        catch_up_all()
    # The pool: row positions (in row order), a contiguous copy of their vectors, and the
    # largest bound outside it. Pool bounds are kept exact after every pick.
    pool = np.empty(0, dtype=np.int64)
    xp = np.empty((0, d), dtype=dtype)
    outside = np.inf
    while i < k:
        while True:
            vals = bound[pool]
            j = int(np.argmax(vals)) if pool.size else -1  # row order: ties go to the lowest position
            if j >= 0 and vals[j] > outside:  # strictly: a tie outside could sit at a lower position
                break
            if t > t_all and rebuild_work >= CATCH_UP_RATIO * n * (t - t_all):
                catch_up_all()
            pool, outside = _top_pool(bound, POOL_ROWS)
            xp = x[pool]
            stale = seen[pool] < t
            if stale.any():
                since = int(seen[pool][stale].min())
                bound[pool] = np.minimum(bound[pool], lowered(xp, sq[pool], since))
                seen[pool] = t
                rebuild_work += pool.size * (t - since)
            stats["pool_rebuilds"] += 1
        c = int(pool[j])
        out[i] = c
        add(c)
        i += 1
        if progress is not None:
            progress(1)
        if i < k:  # bring the pool up to date with the new centre: one small matrix-vector product
            with _single_threaded_blas():
                dp = xp @ x[c]
            dp *= -2.0
            dp += sq[pool]
            dp += sq[c]
            bound[pool] = np.minimum(bound[pool], dp)
            seen[pool] = t
    return out


_CONTROLLER: list = []


def _single_threaded_blas():
    """One BLAS thread for a small product: waking the BLAS pool costs more than the product,
    and much more on a busy machine (measured 4096 x 384 GEMV on 2 shared cores: 16 ms with two
    OpenBLAS threads, 0.3 ms with one). No-op without threadpoolctl."""
    if not _CONTROLLER:
        try:
            from threadpoolctl import ThreadpoolController

            _CONTROLLER.append(ThreadpoolController())
        except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn/scipy stacks
            _CONTROLLER.append(None)
    ctl = _CONTROLLER[0]
    return ctl.limit(limits=1, user_api="blas") if ctl is not None else contextlib.nullcontext()


_LAST_STATS: dict[str, int] = {}
"""Work counters of the last lazy run (pool rebuilds, full catch-ups), for the benchmark."""


def _top_pool(bound: np.ndarray, size: int) -> tuple[np.ndarray, float]:
    """Rows whose bound is among the ``size`` largest (all ties at the cut included), in row
    order, and the largest bound outside them."""
    n = bound.size
    if n <= size:
        return np.arange(n, dtype=np.int64), -np.inf
    cut = np.partition(bound, n - size)[n - size]
    inside = bound >= cut
    pool = np.flatnonzero(inside)
    rest = bound[~inside]
    return pool.astype(np.int64), (float(rest.max()) if rest.size else -np.inf)
