"""Per-indicator run summary with bounded memory: exact count/mean/min/max, quantiles
from a fixed-size uniform reservoir (exact while the run has at most ``reservoir`` rows)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


@dataclass
class _Col:
    count: int = 0
    nulls: int = 0
    total: float = 0.0
    total_sq: float = 0.0
    lo: float = np.inf
    hi: float = -np.inf
    seen: int = 0
    sample: np.ndarray = field(default_factory=lambda: np.empty(0))
    filled: int = 0


def _floats(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """The non-null values as float64, read from the buffer: pyarrow's to_numpy() imports pandas (0.7 s
    and 40 MiB that a run of text statistics otherwise never loads)."""
    a = arr.cast(pa.float64()).drop_null()
    if isinstance(a, pa.ChunkedArray):
        a = a.combine_chunks()
    data = a.buffers()[1]
    if data is None or not len(a):
        return np.empty(0)
    return np.frombuffer(data, dtype=np.float64, count=len(a), offset=a.offset * 8)


class Summary:
    """Accumulates statistics of numeric columns over a stream of batches."""

    def __init__(self, columns: list[str], reservoir: int = 100_000, seed: int = 0) -> None:
        self.columns = list(columns)
        self.reservoir = reservoir
        self._rng = np.random.default_rng(seed)
        self._cols = {c: _Col() for c in self.columns}

    def update(self, batch: pa.RecordBatch | pa.Table) -> None:
        for c in self.columns:
            if c not in batch.schema.names:
                continue
            arr = batch.column(c)
            st = self._cols[c]
            st.nulls += arr.null_count
            v = _floats(arr)
            v = v[~np.isnan(v)]
            if not v.size:
                continue
            st.count += v.size
            st.total += float(v.sum())
            st.total_sq += float((v * v).sum())
            st.lo = min(st.lo, float(v.min()))
            st.hi = max(st.hi, float(v.max()))
            self._reservoir_add(st, v)

    def _reservoir_add(self, st: _Col, v: np.ndarray) -> None:
        # Algorithm R, vectorised per batch: keeps a uniform sample of everything seen.
        if st.sample.size == 0:
            st.sample = np.empty(self.reservoir)
        take = min(self.reservoir - st.filled, v.size)
        if take > 0:
            st.sample[st.filled : st.filled + take] = v[:take]
            st.filled += take
            st.seen += take
            v = v[take:]
        if v.size:
            idx = st.seen + np.arange(1, v.size + 1)
            j = (self._rng.random(v.size) * idx).astype(np.int64)
            keep = j < self.reservoir
            st.sample[j[keep]] = v[keep]
            st.seen += v.size

    def rows(self) -> list[dict]:
        out = []
        for c in self.columns:
            st = self._cols[c]
            row = {"column": c, "count": st.count, "nulls": st.nulls}
            if st.count:
                mean = st.total / st.count
                var = max(0.0, st.total_sq / st.count - mean * mean)
                qs = np.quantile(st.sample[: st.filled], QUANTILES)
                row |= {"mean": mean, "std": var**0.5, "min": st.lo, "max": st.hi}
                row |= {f"p{int(q * 100):02d}": float(x) for q, x in zip(QUANTILES, qs)}
            out.append(row)
        return out

    def format(self, null_reasons: dict[str, dict[str, int]] | None = None) -> str:
        """A fixed-width table, then null counts by reason."""
        head = ["column", "count", "nulls", "mean", "std", "min", "p05", "p25", "p50", "p75", "p95", "max"]
        lines = [head]
        for r in self.rows():
            lines.append([str(r.get(h, "")) if h in ("column", "count", "nulls") else _fmt(r.get(h)) for h in head])
        widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
        text = "\n".join(
            "  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths)))
            for row in lines
        )
        if null_reasons:
            text += "\nnulls by reason:"
            for col, reasons in null_reasons.items():
                for reason, n in reasons.items():
                    text += f"\n  {col}: {n} ({reason})"
        return text


def _fmt(x) -> str:
    if x is None:
        return "-"
    if abs(x) >= 1e5 or (x != 0 and abs(x) < 1e-3):
        return f"{x:.3e}"
    return f"{x:.4g}"
