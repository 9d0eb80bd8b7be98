"""The page skeleton and its stylesheet: one self-contained document, no scripts, no fetches.

The Content-Security-Policy forbids every fetch (``default-src 'none'``) and every script (no
``script-src``), and allows only the inline stylesheet and ``data:`` images (the empty favicon,
which keeps browsers from asking for ``/favicon.ico``). Escaping record texts is what keeps them
inert (:mod:`instructfast.report.page`); the policy is a second wall behind it.
"""

from __future__ import annotations

from html import escape

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"

# Series colours (overlaid histograms, legend swatches): colour-blind-safe (Okabe-Ito first).
COLOURS = (
    "#0072b2",
    "#e69f00",
    "#009e73",
    "#cc79a7",
    "#56b4e9",
    "#d55e00",
    "#f0e442",
    "#000000",
    "#999999",
    "#7b3294",
    "#1b7837",
    "#8c510a",
)

CSS = """
:root { --ink: #1d1d1f; --muted: #5f6368; --line: #d9dce1; --bg: #ffffff; --card: #fafbfc; --accent: #0b57d0; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  color: var(--ink); background: var(--bg); }
header { padding: 18px 28px 10px; border-bottom: 1px solid var(--line); }
header h1 { margin: 0 0 4px; font-size: 22px; }
header p { margin: 2px 0; color: var(--muted); }
nav { position: sticky; top: 0; z-index: 2; background: #fffffff0; border-bottom: 1px solid var(--line);
  padding: 6px 28px; font-size: 13px; }
nav a { margin-right: 14px; color: var(--accent); text-decoration: none; white-space: nowrap; }
main { padding: 8px 28px 40px; max-width: 1500px; }
section { margin-top: 26px; scroll-margin-top: 40px; }
.card, h3 { scroll-margin-top: 40px; }
h2 { font-size: 18px; border-bottom: 2px solid var(--line); padding-bottom: 4px; }
h3 { font-size: 16px; margin: 0 0 4px; }
h3 code, h2 code { font-size: 0.95em; }
h4 { font-size: 13px; margin: 10px 0 4px; color: var(--muted); text-transform: uppercase; letter-spacing: .03em; }
p.note, .note { color: var(--muted); font-size: 13px; }
table { border-collapse: collapse; margin: 6px 0 10px; font-size: 13px; }
th, td { border-bottom: 1px solid var(--line); padding: 3px 9px 3px 0; text-align: left; vertical-align: top; }
th { color: var(--muted); font-weight: 600; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; padding-left: 10px; }
table.kv th { width: 190px; }
td.hash { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 12px; word-break: break-all; }
.cards { display: grid; grid-template-columns: minmax(0, 1fr); gap: 18px; }
.top { display: grid; grid-template-columns: minmax(0, 620px) minmax(200px, 1fr); gap: 8px 28px; align-items: start; }
table.stats th { width: 90px; }
@media (max-width: 900px) { .top, .ends { grid-template-columns: minmax(0, 1fr); } }
.facts { display: grid; grid-template-columns: repeat(auto-fill, minmax(360px, 1fr)); gap: 0 28px; align-items: start; }
.facts .wide { grid-column: 1 / -1; overflow-x: auto; }
.facts .wide td { word-break: break-word; max-width: 480px; }
.facts table.kv th { width: 150px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; min-width: 0; }
.meta { color: var(--muted); font-size: 12.5px; margin: 0 0 6px; }
.small { display: grid; grid-template-columns: repeat(auto-fill, minmax(420px, 1fr)); gap: 12px; }
.small .card { padding: 8px 10px; }
svg.chart { max-width: 100%; height: auto; display: block; }
svg text { font: 11px system-ui, sans-serif; fill: #333; }
svg .al { font-size: 12px; fill: #444; }
svg .axis { stroke: #666; stroke-width: 1; }
svg .tick { stroke: #666; }
svg .grid { stroke: #e4e6ea; stroke-width: 1; }
svg rect.bar { fill: #4c78a8; }
svg rect.bar:hover { fill: #2f5d8a; }
svg rect.few { fill: #c44e52; }
svg line.q { stroke: #b33; stroke-width: 1.2; }
svg line.q-med { stroke-width: 2; }
svg line.q-quart { stroke-dasharray: 5 3; }
svg line.q-tail { stroke-dasharray: 1.5 2.5; }
svg text.ql { font-size: 10px; fill: #b33; }
svg .series rect.bar { fill-opacity: .28; stroke-width: 1.1; }
svg line.zero { stroke: #999; stroke-dasharray: 3 3; }
svg line.whisker { stroke: #555; stroke-width: 1.4; }
svg rect.box { fill: #9ecae1; stroke: #3182bd; }
svg line.median { stroke: #08306b; stroke-width: 2.5; }
svg text.cv { font-size: 10.5px; }
svg circle.pool { fill: #9aa0a6; fill-opacity: .55; }
svg circle.sel { fill: #e66100; stroke: #7a3300; stroke-width: .6; }
.legend { font-size: 12.5px; margin: 2px 0 4px; }
.legend span.sw { display: inline-block; width: 11px; height: 11px; border-radius: 2px; margin: 0 4px -1px 10px; }
.ends { display: grid; grid-template-columns: 1fr 1fr; gap: 12px; }
.ex { border-top: 1px solid var(--line); padding: 5px 0 6px; min-width: 0; }
.exh { font-size: 12.5px; color: var(--muted); }
.exh b { color: var(--ink); font-variant-numeric: tabular-nums; }
div.f { margin: 1px 0; display: grid; grid-template-columns: 76px minmax(0, 1fr); align-items: start; }
details.f { margin: 1px 0; }
.fn { display: inline-block; min-width: 76px; color: var(--muted); font-size: 12px; padding-top: 2px; }
pre.t { white-space: pre-wrap; word-break: break-word; margin: 0; padding: 2px 6px; background: #fff;
  border: 1px solid var(--line); border-radius: 4px; font: 12.5px/1.4 ui-monospace, Menlo, Consolas, monospace;
  max-height: 360px; overflow: auto; }
details pre.t { margin: 2px 0 2px 76px; }
details > summary { cursor: pointer; list-style-position: outside; margin-left: 12px; }
.pv { white-space: pre-wrap; word-break: break-word; font: 12.5px ui-monospace, Menlo, Consolas, monospace; }
.len, .cut { color: var(--muted); font-size: 12px; }
em.null { color: #b33; }
em.empty { color: var(--muted); }
"""


def page(title: str, body: str, *, series_css: bool = True) -> str:
    """The whole document around ``body`` (already escaped markup); ``title`` is escaped here."""
    colours = "".join(
        f"svg .s{i} rect.bar {{ fill: {c}; stroke: {c}; }} .legend .s{i} {{ background: {c}; }}\n"
        for i, c in enumerate(COLOURS)
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<link rel="icon" href="data:,">\n'
        f"<title>{escape(title)}</title>\n"
        f"<style>{CSS}{colours if series_css else ''}</style>\n"
        f"</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


__all__ = ["COLOURS", "CSP", "CSS", "page"]
