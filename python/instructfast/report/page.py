"""The report's sections as HTML, from :class:`~instructfast.report.collect.Findings`.

Every string that comes from the data (record texts, column names, labels, run record values)
passes through :func:`html.escape` before it reaches the markup; the helpers here are the only
places that write it.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from collections.abc import Iterable, Sequence
from html import escape
from typing import Any

import numpy as np

from .._version import __version__
from ..indicators import REGISTRY
from ..scoring import RULE_COLUMN
from . import svg
from .analysis import variance_shares
from .collect import Findings, split_id
from .stats import ABSENT, NONFINITE, NULL, OK, RowReservoir
from .style import page

QS = (0.05, 0.25, 0.5, 0.75, 0.95)
PREVIEW = 160  # characters of a folded text shown before it is opened


def _slug(name: str) -> str:
    return "col-" + re.sub(r"[^A-Za-z0-9_-]+", "-", name)


def _row_table(head: Sequence[str], rows: Iterable[Sequence[str]], numeric: Sequence[int] = (), cls: str = "") -> str:
    """A table from already-escaped cells; columns in ``numeric`` right-aligned."""
    th = "".join(f"<th{' class=n' if i in numeric else ''}>{h}</th>" for i, h in enumerate(head))
    body = "".join(
        "<tr>" + "".join(f"<td{' class=n' if i in numeric else ''}>{c}</td>" for i, c in enumerate(r)) + "</tr>"
        for r in rows
    )
    return f"<table{f' class={cls}' if cls else ''}><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _kv(pairs: Iterable[tuple[str, Any]]) -> str:
    rows = "".join(f"<tr><th>{escape(str(k))}</th><td>{_value(v)}</td></tr>" for k, v in pairs)
    return f'<table class="kv"><tbody>{rows}</tbody></table>'


def _value(v: Any) -> str:
    if v is None or v == "" or v == [] or v == {}:
        return '<em class="empty">none</em>'
    if isinstance(v, float):
        return svg.fmt(v)
    if isinstance(v, (list, tuple)):
        return escape(", ".join(str(x) for x in v))
    if isinstance(v, dict):
        return escape(json.dumps(v, sort_keys=True, default=str))
    return escape(str(v))


def _size(n: int) -> str:
    """Bytes for people.

    >>> _size(512), _size(82_857), _size(3 * 2**30)
    ('512 B', '80.9 KiB', '3.0 GiB')
    """
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def text_block(name: str, text: str | None, max_chars: int) -> str:
    """One record field: null/empty marked, short texts inline, long ones folded and cut at ``max_chars``."""
    label = f'<span class="fn">{escape(name)}</span>'
    if text is None:
        return f'<div class="f">{label}<em class="null">null</em></div>'
    if text == "":
        return f'<div class="f">{label}<em class="empty">empty</em></div>'
    shown = text[:max_chars]
    cut = len(text) - len(shown)
    rest = f'<p class="cut">… {cut:,} more characters not shown</p>' if cut else ""
    if len(text) <= PREVIEW and text.count("\n") <= 2:
        return f'<div class="f">{label}<pre class="t">{escape(shown)}</pre></div>'
    preview = escape(text[:PREVIEW].replace("\n", " ⏎ "))
    return (
        f'<details class="f"><summary>{label}<span class="pv">{preview}…</span> '
        f'<span class="len">({len(text):,} characters)</span></summary><pre class="t">{escape(shown)}</pre>{rest}</details>'
    )


class Page:
    """Renders one report page."""

    def __init__(self, f: Findings, title: str) -> None:
        self.f = f
        self.title = title
        self.labels = [d.label for d in f.datasets]

    # ------------------------------------------------------------------ helpers

    def _where(self, rid: int) -> str:
        di, pos = split_id(rid)
        lab = f"{escape(self.labels[di])} · " if len(self.labels) > 1 else ""
        return f"{lab}row {pos:,}"

    def _sample_phrase(self, res: RowReservoir, total: int) -> str:
        n = res.rows()
        return f"all {total:,} rows" if res.exact else f"a uniform sample of {n:,} of {total:,} rows"

    def _legend(self, labels: Sequence[tuple[str, int]]) -> str:
        return (
            '<div class="legend">'
            + "".join(f'<span class="sw s{c % svg.PALETTE_SIZE}"></span>{escape(lab)}' for lab, c in labels)
            + "</div>"
        )

    # ------------------------------------------------------------------ sections

    def render(self) -> str:
        f = self.f
        sections = [("overview", "Overview", self.overview()), ("run", "Run facts", self.run_facts())]
        sections.append(("indicators", "Indicators", self.indicators()))
        if f.groups.count > 1:
            sections.append(("groups", "By dataset" if f.groups.by is None else f"By {f.groups.by}", self.groups()))
        if f.spearman is not None:
            sections.append(("correlations", "Correlations", self.correlations()))
        if f.rule.rule is not None or f.rule.note:
            sections.append(("rule", "Rule", self.rule()))
        if f.selection is not None:
            sections.append(("selection", "Selection", self.selection()))
        sections.append(("nulls", "Nulls and unavailable indicators", self.nulls()))
        nav = "".join(f'<a href="#{sid}">{escape(name)}</a>' for sid, name, _ in sections)
        now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        head = (
            f"<header><h1>{escape(self.title)}</h1>"
            f"<p>{f.rows:,} rows in {len(f.datasets)} input{'s' if len(f.datasets) > 1 else ''}: "
            f"{escape(', '.join(self.labels))} · written {now} by instructfast {escape(__version__)}</p></header>"
        )
        body = "".join(f'<section id="{sid}"><h2>{escape(name)}</h2>{html}</section>' for sid, name, html in sections)
        return page(self.title, f"{head}<nav>{nav}</nav><main>{body}</main>")

    def overview(self) -> str:
        f = self.f
        rows = []
        for d in f.datasets:
            layout = d.resolved.describe() if d.resolved else "no instruction/output columns (charts only)"
            rec = (
                f"yes, started {d.report.run.started}"
                if d.report and d.report.run.started
                else ("report without run record" if d.report else "none")
            )
            size = _size(d.size_bytes) if d.size_bytes is not None else "–"
            rows.append(
                [escape(d.label), escape(d.where), escape(d.format), size, svg.fmt(d.rows), escape(layout), escape(rec)]
            )
        table = _row_table(
            ["input", "file", "format", "size", "rows", "text layout", "run record"], rows, numeric=(3, 4)
        )
        s = f.settings
        res = f.reservoir
        lines = [
            f"Counts, means, ranges, histograms and the records at each end are exact over all {f.rows:,} rows.",
            f"Quantile markers, correlations and rule terms use {self._sample_phrase(res, f.rows)}.",
            f"Each column shows its {s.examples} lowest and {s.examples} highest records; texts longer than "
            f"{PREVIEW} characters are folded and cut at {s.max_chars:,} characters.",
        ]
        if f.group_reservoirs:
            lines.append(
                f"Group medians come from up to {s.group_sample_rows:,} sampled rows per group (exact below that)."
            )
        if f.selected_reservoir is not None:
            lines.append(
                f"Selected medians come from up to {s.group_sample_rows:,} sampled selected rows (exact below that)."
            )
        if f.projection is not None:
            lines.append(
                f"The projection shows {int(f.projection.pool.sum()):,} rows sampled uniformly from the pool"
                + (
                    f" and {int((f.projection.selected & ~f.projection.pool).sum()):,} further selected rows"
                    if f.selection
                    else ""
                )
                + "."
            )
        cols = ", ".join(f'<a href="#{_slug(c.name)}"><code>{escape(c.name)}</code></a>' for c in f.columns)
        return (
            table
            + f'<p class="note">{" ".join(lines)}</p>'
            + f"<p>Charted columns ({len(f.columns)}): {cols or '<em>none</em>'}</p>"
        )

    def run_facts(self) -> str:
        out = []
        for d in self.f.datasets:
            out.append(f"<h3>{escape(d.label)}</h3>")
            rep = d.report
            if rep is None:
                out.append(
                    '<p class="note">No run record: this input carries no instructfast report in its metadata '
                    "(JSON, JSONL and CSV files cannot; score to Parquet to keep it).</p>"
                )
                continue
            run = rep.run
            blocks = [
                "<div><h4>Run</h4>"
                + _kv(
                    [
                        ("rows scored", rep.rows),
                        ("layout", rep.layout),
                        ("indicator columns", rep.columns),
                        ("kept from input", rep.kept_from_input),
                        ("rule", rep.rule),
                        ("started (UTC)", run.started),
                        ("seconds", rep.seconds),
                    ]
                )
                + "</div>"
            ]
            impl = run.implementations or ({"text core": rep.impl} if rep.impl else {})
            if impl:
                blocks.append("<div><h4>Implementations</h4>" + _kv(impl.items()) + "</div>")
            if run.models:
                keys = list(dict.fromkeys(k for m in run.models for k in m))
                rows = [
                    [
                        f'<span class="hash">{_value(m.get(k))}</span>' if k == "sha256" else _value(m.get(k))
                        for k in keys
                    ]
                    for m in run.models
                ]
                blocks.append(
                    '<div class="wide"><h4>Models</h4>' + _row_table([escape(k) for k in keys], rows) + "</div>"
                )
            if rep.notes:
                notes = [(c, "; ".join(f"{k}: {v}" for k, v in what.items())) for c, what in rep.notes.items()]
                blocks.append("<div><h4>Notes</h4>" + _kv(notes) + "</div>")
            facts = (("Precision", run.precision), ("Options", run.options), ("Versions", run.versions))
            for name, values in (*facts, ("Platform", run.platform)):
                if values:
                    blocks.append(f"<div><h4>{name}</h4>" + _kv(values.items()) + "</div>")
            out.append(f'<div class="facts">{"".join(blocks)}</div>')
        return "".join(out)

    def _models_of(self, indicator: str | None) -> str:
        if indicator is None:
            return ""
        slots = set(REGISTRY[indicator].models)
        seen = []
        for d in self.f.datasets:
            if d.report is None:
                continue
            for m in d.report.run.models:
                if m.get("slot") in slots:
                    sha = str(m.get("sha256") or "")
                    item = f"{m.get('slot')}: {m.get('location', '?')}" + (f" (sha256 {sha[:12]}…)" if sha else "")
                    if item not in seen:
                        seen.append(item)
        return "; models " + escape("; ".join(seen)) if seen else ""

    def indicators(self) -> str:
        f = self.f
        assert f.histograms is not None
        cards = []
        t = f.tally_all
        std = t.std()
        for c, col in enumerate(f.columns):
            q = f.quantiles(c, QS)
            qd = dict(zip(QS, q)) if q else None
            chart = svg.histogram(f.binnings[c], f.histograms.counts[c][0], col.name, quantiles=qd)
            st = t.states[0, c]
            stats = [
                ("values", svg.fmt(int(st[OK]))),
                ("null", svg.fmt(int(st[NULL]))),
            ]
            if st[NONFINITE]:
                stats.append(("NaN or inf", svg.fmt(int(st[NONFINITE]))))
            if st[ABSENT]:
                stats.append(("column absent", svg.fmt(int(st[ABSENT]))))
            if st[OK]:
                stats += [("mean", svg.fmt(float(t.mean[0, c]))), ("std", svg.fmt(float(std[0, c])))]
                stats.append(("min", svg.fmt(float(t.lo[0, c]))))
                stats += [(f"p{round(x * 100)}", svg.fmt(v)) for x, v in zip(QS, q or [])]
                stats.append(("max", svg.fmt(float(t.hi[0, c]))))
            table = "".join(f"<tr><th>{k}</th><td class=n>{v}</td></tr>" for k, v in stats)
            kind = f"indicator <code>{escape(col.indicator)}</code>" if col.indicator else "column"
            if col.name == RULE_COLUMN:
                kind = "the rule's prediction (lower is better)"
            scale = "; log-scaled bins" if f.binnings[c].log else ""
            reasons = self._reasons_line(col.name)
            ends = (
                f'<div class="ends"><div class="low"><h4>{f.settings.examples} lowest</h4>{self._examples(f.extremes.low[c])}</div>'
                f'<div class="high"><h4>{f.settings.examples} highest</h4>{self._examples(f.extremes.high[c])}</div></div>'
            )
            cards.append(
                f'<article class="card" id="{_slug(col.name)}"><h3><code>{escape(col.name)}</code></h3>'
                f'<p class="meta">{kind}{self._models_of(col.indicator)}{scale}</p>'
                f'<div class="top"><div>{chart}<p class="note">Markers: median (solid), quartiles (dashed), '
                f"5th and 95th percentiles (dotted).</p></div>"
                f'<div><table class="stats"><tbody>{table}</tbody></table>{reasons}</div></div>{ends}</article>'
            )
        if not cards:
            return '<p class="note">No numeric columns to chart.</p>'
        return f'<div class="cards">{"".join(cards)}</div>'

    def _reasons_line(self, column: str) -> str:
        parts = []
        for d in self.f.datasets:
            if d.report is None:
                continue
            for reason, n in d.report.nulls.get(column, {}).items():
                lab = f"{d.label}: " if len(self.f.datasets) > 1 else ""
                parts.append(f"{escape(lab)}{escape(reason)} ({n:,})")
        return f'<p class="note">Nulls by reason: {"; ".join(parts)}</p>' if parts else ""

    def _examples(self, found: tuple[np.ndarray, np.ndarray]) -> str:
        values, ids = found
        if not ids.size:
            return '<p class="note">no values</p>'
        out = []
        mx = self.f.settings.max_chars
        for v, rid in zip(values.tolist(), ids.tolist()):
            rec = self.f.texts.get(rid)
            fields = ""
            if rec is None:
                fields = '<p class="note">no text columns in this input</p>'
            else:
                for name in ("instruction", "input", "output", "history"):
                    if name in ("input", "history") and not rec.get(name):
                        continue
                    fields += text_block(name, rec.get(name), mx)
            di, pos = split_id(rid)
            out.append(
                f'<div class="ex" data-input="{di}" data-row="{pos}" data-value="{v!r}">'
                f'<div class="exh"><b>{svg.fmt(v)}</b> · {self._where(rid)}</div>{fields}</div>'
            )
        return "".join(out)

    def _median(self, res: RowReservoir, c: int) -> float | None:
        v = res.column(c)
        return float(np.median(v)) if v.size else None

    def groups(self) -> str:
        f = self.f
        assert f.histograms is not None
        labels = f.groups.labels
        counts = f.tally.states[:, :, :].sum(axis=2)[:, 0] if f.columns else np.zeros(len(labels), np.int64)
        head = ["column"] + [
            f"{escape(lab)}<br><span class=note>{svg.fmt(int(n))} rows</span>" for lab, n in zip(labels, counts)
        ]
        rows = []
        for c, col in enumerate(f.columns):
            rows.append(
                [f"<code>{escape(col.name)}</code>"] + [svg.fmt(self._median(r, c)) for r in f.group_reservoirs]
            )
        table = _row_table(head, rows, numeric=tuple(range(1, len(labels) + 1)))
        legend = self._legend([(lab, i) for i, lab in enumerate(labels)])
        charts = []
        for c, col in enumerate(f.columns):
            series = [(lab, i, f.histograms.counts[c][1 + i]) for i, lab in enumerate(labels)]
            charts.append(
                f'<div class="card"><h3><code>{escape(col.name)}</code></h3>'
                + svg.overlay(f.binnings[c], series, col.name, kind="groups")
                + "</div>"
            )
        return (
            "<h3>Medians side by side</h3>"
            + table
            + "<h3>Distributions overlaid</h3>"
            + '<p class="note">Each series is drawn as the share of its own rows in each bin, so groups of different sizes compare.</p>'
            + legend
            + f'<div class="small">{"".join(charts)}</div>'
        )

    def correlations(self) -> str:
        f = self.f
        assert f.spearman is not None
        rho, n = f.spearman
        names = [c.name for c in f.columns]
        how = self._sample_phrase(f.reservoir, f.rows)
        rows = []
        for i in range(len(names)):
            for j in range(i + 1, len(names)):
                rows.append((abs(rho[i, j]) if np.isfinite(rho[i, j]) else -1, i, j))
        rows.sort(reverse=True)
        top = [
            [
                f"<code>{escape(names[i])}</code>",
                f"<code>{escape(names[j])}</code>",
                f"{rho[i, j]:.3f}",
                svg.fmt(int(n[i, j])),
            ]
            for _, i, j in rows[:10]
            if np.isfinite(rho[i, j])
        ]
        return (
            f'<p class="note">Spearman rank correlation on {how}, over the rows where both columns have values '
            "(hover a cell for its row count).</p>"
            + svg.heatmap(names, rho, n)
            + "<h3>Strongest pairs</h3>"
            + _row_table(["column", "column", "ρ", "rows"], top, numeric=(2, 3))
        )

    def rule(self) -> str:
        f = self.f
        rp = f.rule
        note = f'<p class="note">{escape(rp.note)}</p>' if rp.note else ""
        if rp.rule is None:
            return note
        r = rp.rule
        terms = " ".join(f"{'+' if k >= 0 else '−'} {abs(k):.4g}·{escape(c)}" for c, k in r.coefficients.items())
        out = [
            f"<p><b>{escape(r.name)}</b>: <code>{RULE_COLUMN} = {r.intercept:.4g} {terms}</code> "
            f"({escape(r.target)})</p>",
            f'<p class="note">{escape(r.provenance)}{" (computed here from its terms)" if rp.computed else ""}</p>',
            note,
        ]
        names = [c.name for c in f.columns]
        if RULE_COLUMN in names:
            c = names.index(RULE_COLUMN)
            assert f.histograms is not None
            q = f.quantiles(c, QS)
            out.append(
                svg.histogram(
                    f.binnings[c],
                    f.histograms.counts[c][0],
                    RULE_COLUMN,
                    quantiles=dict(zip(QS, q)) if q else None,
                    kind="rule-score",
                )
            )
        if rp.terms:
            base = len(f.columns)
            rows = [(t.label, f.quantiles(base + k, QS)) for k, t in enumerate(rp.terms)]
            out.append("<h3>What each term contributes (coefficient × value)</h3>")
            out.append(svg.ranges(rows, kind="rule-terms", xlabel="contribution to predicted_log_loss"))
            res = f.reservoir
            n_res = res.rows()
            if RULE_COLUMN in names:
                pred = res.values[:n_res, names.index(RULE_COLUMN)]
                shares, used = variance_shares(pred, res.values[:n_res, base : base + len(rp.terms)])
            else:
                shares, used = np.full(len(rp.terms), np.nan), 0
            table = []
            for k, t in enumerate(rp.terms):
                q = rows[k][1]
                vals = res.column(base + k)
                table.append(
                    [
                        f"<code>{escape(t.column)}</code>",
                        f"{t.coefficient:+.4g}",
                        svg.fmt(q[2] / t.coefficient if q and t.coefficient else None),
                        svg.fmt(q[0] if q else None),
                        svg.fmt(q[2] if q else None),
                        svg.fmt(q[4] if q else None),
                        svg.fmt(float(vals.std()) if vals.size else None),
                        f"{shares[k] * 100:.1f}%" if np.isfinite(shares[k]) else "–",
                    ]
                )
            out.append(
                _row_table(
                    [
                        "term",
                        "coefficient",
                        "median value",
                        "p5",
                        "median",
                        "p95",
                        "std of contribution",
                        "share of ranking variance",
                    ],
                    table,
                    numeric=tuple(range(1, 8)),
                )
            )
            out.append(
                f'<p class="note">Contributions from {self._sample_phrase(res, f.rows)}. Share of ranking variance = '
                f"cov(term, {RULE_COLUMN}) / var({RULE_COLUMN}) over the {used:,} rows with every term; the shares sum "
                "to 100%. A term with a large share decides the order; lower predicted loss ranks first.</p>"
            )
        return "".join(out)

    def selection(self) -> str:
        f = self.f
        sel = f.selection
        assert sel is not None and f.histograms is not None and f.selected_reservoir is not None
        out = [f"<p>{svg.fmt(sel.count)} of {svg.fmt(f.rows)} rows selected ({escape(sel.how)}).</p>"]
        rows = []
        for c, col in enumerate(f.columns):
            pool = f.reservoir.column(c)
            pm = float(np.median(pool)) if pool.size else None
            sm = self._median(f.selected_reservoir, c)
            pct = f"{(pool <= sm).mean() * 100:.0f}" if sm is not None and pool.size else "–"
            rows.append([f"<code>{escape(col.name)}</code>", svg.fmt(pm), svg.fmt(sm), pct])
        out.append(
            _row_table(
                ["column", "pool median", "selected median", "pool percentile of the selected median"],
                rows,
                numeric=(1, 2, 3),
            )
        )
        sel_series = len(f.series) - 1
        out.append(self._legend([("pool (all rows)", 8), ("selected", 5)]))
        charts = []
        for c, col in enumerate(f.columns):
            series = [
                ("pool (all rows)", 8, f.histograms.counts[c][0]),
                ("selected", 5, f.histograms.counts[c][sel_series]),
            ]
            charts.append(
                f'<div class="card"><h3><code>{escape(col.name)}</code></h3>'
                + svg.overlay(f.binnings[c], series, col.name, kind="selection")
                + "</div>"
            )
        out.append(f'<div class="small">{"".join(charts)}</div>')
        out.append("<h3>Where the selected rows sit among the pool (PCA of the embeddings)</h3>")
        p = f.projection
        if p is None:
            out.append(f'<p class="note">{escape(f.projection_note)}</p>')
        else:
            out.append(self._projection())
        return "".join(out)

    def _projection(self) -> str:
        f = self.f
        p = f.projection
        assert p is not None
        titles = []
        for rid, s in zip(p.ids.tolist(), p.selected.tolist()):
            rec = f.texts.get(rid) or {}
            inst = (rec.get("instruction") or "")[:90].replace("\n", " ")
            titles.append(f"{'selected · ' if s else ''}{self._where_plain(rid)}: {inst}")
        left = "; ".join(f"{k}: {v}" for k, v in p.left_out.items())
        return (
            self._legend([("pool sample", 8), ("selected", 5)])
            + svg.scatter(p.xy, p.selected, titles, p.explained)
            + f'<p class="note">{escape(f.projection_note)}; axes fitted on {int(p.pool.sum()):,} rows sampled uniformly '
            f"from the pool; {int(p.selected.sum()):,} selected rows drawn on top"
            + (f"; left out for want of a vector: {escape(left)}" if left else "")
            + ". Hover a point for its record.</p>"
        )

    def _where_plain(self, rid: int) -> str:
        di, pos = split_id(rid)
        return (f"{self.labels[di]} · " if len(self.labels) > 1 else "") + f"row {pos:,}"

    def nulls(self) -> str:
        f = self.f
        rows = []
        for di, d in enumerate(f.datasets):
            st = f.tally_datasets[di].states[0]
            for c, col in enumerate(f.columns):
                nulls, bad, absent = int(st[c, NULL]), int(st[c, NONFINITE]), int(st[c, ABSENT])
                if not (nulls or bad or absent):
                    continue
                reasons = dict(d.report.nulls.get(col.name, {})) if d.report else {}
                told = sum(reasons.values())
                parts = [f"{escape(r)}: {n:,}" for r, n in reasons.items()]
                if nulls > told:
                    if col.name == RULE_COLUMN and f.rule.computed:
                        why = "a rule input is null"
                    else:
                        why = "no reason recorded" if d.report else "no run record"
                    parts.append(f"{why}: {nulls - told:,}")
                if bad:
                    parts.append(f"NaN or inf value: {bad:,}")
                if absent:
                    parts.append(f"column absent from this input: {absent:,}")
                rows.append(
                    [
                        escape(d.label),
                        f"<code>{escape(col.name)}</code>",
                        svg.fmt(nulls + bad + absent),
                        "<br>".join(parts),
                    ]
                )
            if d.report:
                for name, why in d.report.unavailable.items():
                    rows.append(
                        [escape(d.label), f"indicator <code>{escape(name)}</code>", "not computed", escape(why)]
                    )
        if not rows:
            return (
                '<p class="note">Every charted column has a value in every row, and every indicator was computed.</p>'
            )
        return _row_table(["input", "column / indicator", "rows without a value", "reason"], rows, numeric=(2,))


def render(f: Findings, title: str) -> str:
    return Page(f, title).render()


__all__ = ["render", "text_block"]
