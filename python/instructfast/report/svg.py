"""Static SVG charts: histograms (single and overlaid), the correlation heatmap, range bars, the scatter.

Charts are plain markup: nothing runs in the browser. Every bar carries its bin edges and count
(``data-lo``, ``data-hi``, ``data-count``, edges as Python ``repr`` so they read back exactly) and a
``<title>`` tooltip; heights are proportional to the counts (or to each series' share of its rows
when series of different sizes are overlaid). Every text that reaches a chart is escaped here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

import numpy as np

from .stats import Binning

W, H = 600, 230
ML, MR, MT, MB = 60, 14, 14, 40
PALETTE_SIZE = 12  # series colours: CSS classes s0 .. s11


def fmt(x: float | int | None) -> str:
    """A number for people: integers with thousands separators, else 4 significant digits.

    >>> fmt(1234567), fmt(0.000123), fmt(3.14159), fmt(None), fmt(float("nan"))
    ('1,234,567', '1.23e-04', '3.142', '–', '–')
    """
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if isinstance(x, (int, np.integer)) or (float(x).is_integer() and abs(x) < 1e15):
        return f"{int(x):,}"
    ax = abs(x)
    if ax >= 1e6 or ax < 1e-3:
        return f"{x:.2e}"
    return f"{x:.4g}"


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def tick_label(t: float) -> str:
    """An axis label: powers of ten far from 1 as 10ⁿ (they stay narrow), the rest as :func:`fmt`.

    >>> tick_label(1e6), tick_label(0.001), tick_label(2e6), tick_label(100.0)
    ('10⁶', '10⁻³', '2,000,000', '100')
    """
    if t > 0:
        e = round(math.log10(t))
        if abs(e) >= 4 - (e < 0) and math.isclose(t, 10.0**e, rel_tol=1e-9):
            return "10" + str(e).translate(_SUPERSCRIPT)
    return fmt(t)


def _a(x: float) -> str:
    """An attribute number: short, finite."""
    return f"{x:.2f}".rstrip("0").rstrip(".") if math.isfinite(x) else "0"


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round ticks covering ``[lo, hi]``.

    >>> nice_ticks(0, 97)
    [0.0, 20.0, 40.0, 60.0, 80.0, 100.0]
    >>> nice_ticks(0.2, 1.0)
    [0.2, 0.4, 0.6, 0.8, 1.0]
    """
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo] if math.isfinite(lo) else [0.0]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step)
    count = math.ceil(hi / step - 1e-9) - first + 1
    return [round(float((first + i) * step), 12) for i in range(count)]


def log_ticks(lo: float, hi: float) -> list[float]:
    """Powers of ten inside ``[lo, hi]`` (with 2 and 5 multiples when few decades)."""
    a, b = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    mults = (1, 2, 5) if b - a <= 2 else (1,)
    out = [m * 10.0**e for e in range(a, b + 1) for m in mults]
    return [t for t in out if lo <= t <= hi] or [lo, hi]


class _Frame:
    """Scales and axes of one chart."""

    def __init__(self, x0: float, x1: float, ymax: float, log: bool, *, w: int = W, h: int = H) -> None:
        self.w, self.h, self.log = w, h, log
        self.x0, self.x1 = x0, x1
        self.ymax = ymax if ymax > 0 else 1.0
        self.px0, self.px1 = ML, w - MR
        self.py0, self.py1 = h - MB, MT  # bottom, top

    def sx(self, v: float) -> float:
        if self.log:
            a, b, v = math.log10(self.x0), math.log10(self.x1), math.log10(max(v, self.x0))
        else:
            a, b = self.x0, self.x1
        return self.px0 + (v - a) / ((b - a) or 1.0) * (self.px1 - self.px0)

    def height(self, y: float) -> float:
        return y / self.ymax * (self.py0 - self.py1)

    def axes(self, xlabel: str, ylabel: str, yticks: Sequence[float], ytick_text) -> str:
        parts = [
            f'<line class="axis" x1="{self.px0}" y1="{self.py0}" x2="{self.px1}" y2="{self.py0}"/>',
            f'<line class="axis" x1="{self.px0}" y1="{self.py0}" x2="{self.px0}" y2="{self.py1}"/>',
        ]
        xt = log_ticks(self.x0, self.x1) if self.log else nice_ticks(self.x0, self.x1, 6)
        for t in xt:
            if not (self.x0 <= t <= self.x1):
                continue
            x = self.sx(t)
            parts.append(f'<line class="tick" x1="{_a(x)}" y1="{self.py0}" x2="{_a(x)}" y2="{self.py0 + 4}"/>')
            parts.append(
                f'<text class="tl" x="{_a(x)}" y="{self.py0 + 15}" text-anchor="middle">{tick_label(t)}</text>'
            )
        for t in yticks:
            y = self.py0 - self.height(t)
            parts.append(f'<line class="grid" x1="{self.px0}" y1="{_a(y)}" x2="{self.px1}" y2="{_a(y)}"/>')
            parts.append(
                f'<text class="tl" x="{self.px0 - 5}" y="{_a(y + 3)}" text-anchor="end">{ytick_text(t)}</text>'
            )
        parts.append(
            f'<text class="al" x="{(self.px0 + self.px1) / 2}" y="{self.h - 6}" text-anchor="middle">'
            f"{escape(xlabel)}{' (log scale)' if self.log else ''}</text>"
        )
        parts.append(
            f'<text class="al" x="12" y="{(self.py0 + self.py1) / 2}" text-anchor="middle" '
            f'transform="rotate(-90 12 {(self.py0 + self.py1) / 2})">{escape(ylabel)}</text>'
        )
        return "\n".join(parts)


def _svg(kind: str, column: str, body: str, w: int = W, h: int = H, label: str = "") -> str:
    return (
        f'<svg class="chart" data-chart="{kind}" data-column="{escape(column)}" viewBox="0 0 {w} {h}" '
        f'width="{w}" height="{h}" role="img" aria-label="{escape(label or column)}">\n'
        f"{body}\n</svg>"
    )


def _bin_title(lo: float, hi: float, last: bool, count: int, extra: str = "") -> str:
    right = "]" if last else ")"
    return f"[{fmt(lo)}, {fmt(hi)}{right}: {count:,} rows{extra}"


QUANTILE_STYLE = {0.05: "q-tail", 0.25: "q-quart", 0.5: "q-med", 0.75: "q-quart", 0.95: "q-tail"}


def histogram(
    binning: Binning,
    counts: np.ndarray,
    column: str,
    *,
    quantiles: dict[float, float] | None = None,
    kind: str = "hist",
) -> str:
    """One column's histogram: bars proportional to counts, quantile markers, log x axis when binned so."""
    e = binning.edges
    cmax = int(counts.max()) if counts.size else 0
    yt = nice_ticks(0, max(cmax, 1), 4)
    fr = _Frame(float(e[0]), float(e[-1]), yt[-1], binning.log)
    body = [fr.axes(column, "rows", yt, lambda t: fmt(int(t)) if float(t).is_integer() else fmt(t))]
    bins = counts.size
    for i in range(bins):
        lo, hi, c = float(e[i]), float(e[i + 1]), int(counts[i])
        x0, x1 = fr.sx(lo), fr.sx(hi)
        h = fr.height(c)
        body.append(
            f'<rect class="bar" x="{_a(x0)}" y="{fr.py0 - h:.4f}" width="{max(x1 - x0 - 0.6, 0.4):.4f}" '
            f'height="{h:.4f}" data-lo="{lo!r}" data-hi="{hi!r}" data-count="{c}">'
            f"<title>{_bin_title(lo, hi, i == bins - 1, c)}</title></rect>"
        )
        if 0 < h < 1.5:  # bins too small to see still show that rows are there
            body.append(
                f'<rect class="few" x="{_a(x0)}" y="{fr.py0 + 1}" width="{max(x1 - x0 - 0.6, 0.4):.2f}" height="2"/>'
            )
    for q, v in (quantiles or {}).items():
        x = fr.sx(v)
        body.append(
            f'<line class="q {QUANTILE_STYLE.get(q, "q-quart")}" data-q="{q!r}" data-value="{v!r}" '
            f'x1="{_a(x)}" x2="{_a(x)}" y1="{fr.py0}" y2="{fr.py1}"><title>p{round(q * 100)} = {fmt(v)}</title></line>'
        )
        if q in (0.05, 0.5, 0.95):
            end = x > fr.px1 - 30  # labels near the right edge go left of their line
            anchor = ' text-anchor="end"' if end else ""
            body.append(
                f'<text class="ql" x="{_a(x - 2 if end else x + 2)}" y="{fr.py1 + 8}"{anchor}>p{round(q * 100)}</text>'
            )
    return _svg(kind, column, "\n".join(body), label=f"histogram of {column}")


def overlay(binning: Binning, series: Sequence[tuple[str, int, np.ndarray]], column: str, *, kind: str) -> str:
    """Histograms of several series on shared edges; heights are each series' share of its rows.

    ``series``: (label, colour index, counts).
    """
    e = binning.edges
    shares = []
    for _, _, counts in series:
        tot = counts.sum()
        shares.append(counts / tot if tot else counts.astype(float))
    smax = max((float(s.max()) for s in shares if s.size), default=0.0)
    yt = nice_ticks(0, max(smax * 100, 1e-9), 4)
    fr = _Frame(float(e[0]), float(e[-1]), yt[-1] / 100, binning.log)
    body = [fr.axes(column, "% of the series' rows", [t / 100 for t in yt], lambda t: f"{t * 100:.3g}")]
    bins = e.size - 1
    for (label, colour, counts), share in zip(series, shares):
        body.append(f'<g class="series s{colour % PALETTE_SIZE}" data-series="{escape(label)}">')
        for i in range(bins):
            lo, hi, c = float(e[i]), float(e[i + 1]), int(counts[i])
            x0, x1 = fr.sx(lo), fr.sx(hi)
            h = fr.height(float(share[i]))
            body.append(
                f'<rect class="bar" x="{_a(x0)}" y="{fr.py0 - h:.4f}" width="{max(x1 - x0 - 0.6, 0.4):.4f}" '
                f'height="{h:.4f}" data-lo="{lo!r}" data-hi="{hi!r}" data-count="{c}">'
                f"<title>{escape(label)} {_bin_title(lo, hi, i == bins - 1, c, f' ({share[i] * 100:.3g}%)')}</title></rect>"
            )
        body.append("</g>")
    return _svg(kind, column, "\n".join(body), label=f"{column} by series")


def _rho_fill(r: float) -> str:
    if not math.isfinite(r):
        return "#e6e6e6"
    lo, mid, hi = (33, 102, 172), (247, 247, 247), (178, 24, 43)
    end = hi if r > 0 else lo
    t = min(abs(r), 1.0)
    rgb = [round(m + (x - m) * t) for m, x in zip(mid, end)]
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def heatmap(names: Sequence[str], rho: np.ndarray, counts: np.ndarray) -> str:
    """Spearman heatmap: one cell per pair, rho printed in the cell and in its tooltip with the row count."""
    c = len(names)
    cell = 40 if c <= 12 else 30
    left, top = 190, 30
    w, h = left + c * cell + 10, top + c * cell + 10
    body = []
    for j in range(c):
        body.append(
            f'<text class="tl" x="{left + j * cell + cell / 2}" y="{top - 8}" text-anchor="middle">{j + 1}</text>'
        )
    for i in range(c):
        y = top + i * cell
        body.append(
            f'<text class="tl" x="{left - 6}" y="{y + cell / 2 + 4}" text-anchor="end">'
            f"{escape(names[i][:26])} {i + 1}</text>"
        )
        for j in range(c):
            x = left + j * cell
            r = float(rho[i, j])
            shown = f"{r:.2f}" if math.isfinite(r) else "–"
            ink = "#fff" if math.isfinite(r) and abs(r) > 0.6 else "#222"
            body.append(
                f'<g class="cell" data-row="{escape(names[i])}" data-col="{escape(names[j])}" data-rho="{r!r}" '
                f'data-n="{int(counts[i, j])}"><rect x="{x}" y="{y}" width="{cell - 1}" height="{cell - 1}" '
                f'fill="{_rho_fill(r)}"/><text x="{x + cell / 2 - 0.5}" y="{y + cell / 2 + 4}" text-anchor="middle" '
                f'fill="{ink}" class="cv">{shown}</text><title>{escape(names[i])} × {escape(names[j])}: '
                f"ρ = {shown} (n = {int(counts[i, j]):,})</title></g>"
            )
    return _svg("correlation", "", "\n".join(body), w, h, "Spearman correlation heatmap")


def ranges(rows: Sequence[tuple[str, list[float] | None]], *, kind: str, xlabel: str) -> str:
    """Horizontal box plots on one axis: whiskers p5-p95, box p25-p75, a tick at the median.

    ``rows``: (label, [p5, p25, p50, p75, p95] or None).
    """
    vals = [v for _, q in rows if q for v in q]
    lo, hi = (min(vals + [0.0]), max(vals + [0.0])) if vals else (0.0, 1.0)
    pad = (hi - lo) * 0.04 or 1.0
    left, row_h = 210, 34
    h = MT + row_h * len(rows) + MB
    fr = _Frame(lo - pad, hi + pad, 1.0, False, h=h)
    fr.px0 = left
    body = [fr.axes(xlabel, "", [], str)]
    z = fr.sx(0.0)
    body.append(f'<line class="zero" x1="{_a(z)}" x2="{_a(z)}" y1="{fr.py0}" y2="{fr.py1}"/>')
    for k, (label, q) in enumerate(rows):
        y = MT + k * row_h + row_h / 2
        body.append(f'<text class="tl" x="{left - 8}" y="{y + 4}" text-anchor="end">{escape(label)}</text>')
        if not q:
            body.append(f'<text class="tl" x="{left + 6}" y="{y + 4}">no values</text>')
            continue
        p5, p25, p50, p75, p95 = (fr.sx(v) for v in q)
        title = ", ".join(f"p{p} = {fmt(v)}" for p, v in zip((5, 25, 50, 75, 95), q))
        body.append(
            f'<g class="range" data-label="{escape(label)}" data-q="{" ".join(repr(v) for v in q)}">'
            f'<line class="whisker" x1="{_a(p5)}" x2="{_a(p95)}" y1="{y}" y2="{y}"/>'
            f'<rect class="box" x="{_a(p25)}" y="{y - 9}" width="{_a(max(p75 - p25, 1))}" height="18"/>'
            f'<line class="median" x1="{_a(p50)}" x2="{_a(p50)}" y1="{y - 11}" y2="{y + 11}"/>'
            f"<title>{escape(label)}: {title}</title></g>"
        )
    return _svg(kind, "", "\n".join(body), W, h, xlabel)


def scatter(xy: np.ndarray, selected: np.ndarray, titles: Sequence[str], explained: tuple[float, float]) -> str:
    """The projection: pool rows in grey, selected rows on top in colour; a tooltip per point."""
    w, h = 640, 460
    if xy.shape[0]:
        (x0, y0), (x1, y1) = xy.min(axis=0), xy.max(axis=0)
    else:
        x0 = y0 = -1.0
        x1 = y1 = 1.0
    px = (x1 - x0) * 0.03 or 1.0
    py = (y1 - y0) * 0.03 or 1.0
    fr = _Frame(x0 - px, x1 + px, 1.0, False, w=w, h=h)
    span_y = (y1 + py) - (y0 - py)

    def sy(v: float) -> float:
        return fr.py0 - (v - (y0 - py)) / span_y * (fr.py0 - fr.py1)

    body = [fr.axes(f"PC1 ({explained[0] * 100:.1f}% of variance)", f"PC2 ({explained[1] * 100:.1f}%)", [], str)]
    for pick, cls, r in ((~selected, "pt pool", 2.2), (selected, "pt sel", 3.2)):
        for i in np.flatnonzero(pick).tolist():
            body.append(
                f'<circle class="{cls}" cx="{_a(fr.sx(float(xy[i, 0])))}" cy="{_a(sy(float(xy[i, 1])))}" r="{r}">'
                f"<title>{escape(titles[i])}</title></circle>"
            )
    return _svg("projection", "", "\n".join(body), w, h, "PCA projection of the embeddings")


__all__ = ["fmt", "heatmap", "histogram", "log_ticks", "nice_ticks", "overlay", "ranges", "scatter"]
