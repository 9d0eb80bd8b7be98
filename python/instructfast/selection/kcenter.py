"""KCenterGreedy: farthest-first traversal in O(N) memory.

Each pick adds the point whose Euclidean distance to the chosen set is largest. The
only state is one min-distance vector (N floats): after a pick ``c`` it is lowered in
place by ``d^2(x, c) = ||x||^2 - 2 x.c + ||c||^2``, computed block by block from one
matrix-vector product with ``||x||^2`` precomputed. So no ``N x N`` (or ``N x k``)
matrix ever exists, and a pick costs one pass over the vectors: memory bandwidth,
not arithmetic, is the limit on a CPU. A torch path runs the same recurrence on a GPU.

Ties go to the lowest row position (``argmax``), and a chosen point is never chosen
again, even among exact duplicates (its distance is set to ``-inf``).
"""

from __future__ import annotations

from typing import Callable, Literal, Sequence

import numpy as np

Progress = Callable[[int], None]
"""Called with the number of points just selected (``tqdm.update`` fits)."""

_BLOCK_BYTES = 32 << 20  # rows per block: ~32 MiB of vectors, so the per-block temporaries stay in cache


def kcenter_greedy(
    vectors: np.ndarray,
    k: int,
    *,
    already_selected: Sequence[int] | np.ndarray | None = None,
    start: int | None = None,
    seed: int = 0,
    backend: Literal["auto", "numpy", "torch"] = "auto",
    device: str | None = None,
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
        raise ValueError(msg)
    n = x.shape[0]
    seeds = np.unique(np.asarray([] if already_selected is None else already_selected, dtype=np.int64))
    if seeds.size and (seeds[0] < 0 or seeds[-1] >= n):
        msg = f"`already_selected` positions must be in [0, {n}), got {seeds[0] if seeds[0] < 0 else seeds[-1]}"
        raise ValueError(msg)
    free = n - seeds.size
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or not 1 <= k <= free:
        msg = f"`k` must be an integer in [1, {free}] ({n} rows, {seeds.size} already selected), got {k!r}"
        raise ValueError(msg)
    if start is not None and not 0 <= start < n:
        msg = f"`start` must be a row position in [0, {n}), got {start}"
        raise ValueError(msg)
    if seeds.size == 0 and start is None:
        start = int(np.random.default_rng(seed).integers(n))
    if _use_torch(backend, device):
        return _kcenter_torch(x, int(k), seeds, start, device, progress)
    return _kcenter_numpy(x, int(k), seeds, start, progress)


def _use_torch(backend: str, device: str | None) -> bool:
    if backend not in ("auto", "numpy", "torch"):
        msg = f"`backend` must be one of 'auto', 'numpy', 'torch', got {backend!r}"
        raise ValueError(msg)
    if backend != "auto":
        return backend == "torch"
    if device is not None:
        return str(device).startswith("cuda")
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def _kcenter_numpy(x: np.ndarray, k: int, seeds: np.ndarray, start: int | None, progress: Progress | None) -> np.ndarray:
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
        _lower_by_set(x, sq, seeds, mind, block)
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
