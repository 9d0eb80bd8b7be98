"""The report in a real browser: headless Chromium (Debian's, via Selenium) opens it from a file:// URL.

Asserted per load: no console errors; no request other than the page itself (every other URL is
also blocked through CDP, and the log would show the attempt); every chart the file calls for is
present; every histogram's rendered bar heights are proportional to counts recomputed from the
file with pyarrow + numpy; the record holding ``<script>window.__pwned=1</script>`` is shown as
text and ``window.__pwned`` stays undefined, with the Content-Security-Policy and without it
(escaping alone). A page built to misbehave shows the checks can fail.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import instructfast
from tests.report import browser
from tests.report.conftest import SCRIPT_TEXT, TOY_RULE

# Rendered geometry of every bar of every chart, read in one call.
BARS_JS = """
return Array.from(document.querySelectorAll('svg[data-chart]')).map(svg => ({
  kind: svg.getAttribute('data-chart'),
  column: svg.getAttribute('data-column'),
  visible: svg.getBoundingClientRect().width > 0,
  bars: Array.from(svg.querySelectorAll('rect.bar')).map(r => ({
    lo: r.getAttribute('data-lo'), hi: r.getAttribute('data-hi'), count: +r.getAttribute('data-count'),
    series: r.parentNode.getAttribute('data-series'), height: r.getBoundingClientRect().height })),
  points: svg.querySelectorAll('circle').length,
  cells: svg.querySelectorAll('g.cell').length,
  ranges: svg.querySelectorAll('g.range').length }));
"""


@pytest.fixture(scope="module")
def driver():
    why = browser.missing()
    if why:
        pytest.fail(why)
    d = browser.start()
    yield d
    d.quit()


@pytest.fixture
def page(tmp_path, scored_table, rng):
    src = tmp_path / "scored.parquet"
    instructfast.write_table(scored_table, src)
    pos = np.sort(rng.choice(scored_table.num_rows, 30, replace=False))
    sel = tmp_path / "sel.csv"
    instructfast.write_table(pa.table({"position": pa.array(pos, pa.int64())}), sel)
    res = instructfast.report(src, output=tmp_path / "report.html", selected=sel, by="source", rule=TOY_RULE)
    return src, res, pos


def _expected_charts(table: pa.Table, groups: int) -> set[tuple[str, str]]:
    """The charts a file with these columns calls for, from its schema alone."""
    numeric = [
        f.name
        for f in table.schema
        if (pa.types.is_integer(f.type) or pa.types.is_floating(f.type)) and f.name != "source"
    ]
    out = {("hist", c) for c in numeric} | {("selection", c) for c in numeric}
    if groups > 1:
        out |= {("groups", c) for c in numeric}
    return out | {("correlation", ""), ("rule-score", "predicted_log_loss"), ("rule-terms", ""), ("projection", "")}


def _check_heights(chart: dict, values: np.ndarray) -> None:
    edges = [float(b["lo"]) for b in chart["bars"]] + [float(chart["bars"][-1]["hi"])]
    expect, _ = np.histogram(values, edges)
    counts = [b["count"] for b in chart["bars"]]
    assert counts == expect.tolist(), chart["column"]
    # rendered heights (CSS pixels) proportional to the recomputed counts, within a hundredth of a pixel
    tallest = max(b["height"] for b in chart["bars"])
    assert tallest > 50
    for b, c in zip(chart["bars"], expect):
        assert b["height"] == pytest.approx(c / expect.max() * tallest, abs=0.01)


def _check_overlay(chart: dict, series: dict[str, np.ndarray]) -> None:
    bars = chart["bars"]
    edges = [float(b["lo"]) for b in bars if b["series"] == bars[0]["series"]]
    edges.append(float(next(b["hi"] for b in reversed(bars) if b["series"] == bars[0]["series"])))
    shares = {}
    for name, values in series.items():
        got = [b for b in bars if b["series"] == name]
        expect, _ = np.histogram(values, edges)
        assert [b["count"] for b in got] == expect.tolist(), (chart["column"], name)
        shares[name] = (got, expect / max(expect.sum(), 1))
    top = max(float(sh.max()) for _, sh in shares.values())
    tallest = max(b["height"] for b in bars)
    for got, sh in shares.values():
        for b, share in zip(got, sh):
            assert b["height"] == pytest.approx(share / top * tallest, abs=0.01)


def test_report_in_chromium(driver, page, scored_table):
    src, res, selected = page
    loaded = browser.load(driver, res.path)
    assert loaded.page_seen, "the performance log did not record the page itself"
    assert loaded.requests == [] and loaded.failed == []
    assert loaded.console_errors == []
    charts = driver.execute_script(BARS_JS)
    assert all(c["visible"] for c in charts)
    groups = len(set(scored_table.column("source").to_pylist()))
    assert {(c["kind"], c["column"]) for c in charts} == _expected_charts(scored_table, groups)
    table = pq.read_table(src)  # the oracle reads the file itself
    source = np.array(table.column("source").to_pylist())
    for chart in charts:
        if chart["kind"] not in ("hist", "rule-score", "groups", "selection"):
            continue
        v = table.column(chart["column"]).cast(pa.float64()).to_numpy(zero_copy_only=False)
        if chart["kind"] in ("hist", "rule-score"):
            _check_heights(chart, v[np.isfinite(v)])
            continue
        # overlays: each series' bars are its own rows' shares, on one height scale for all series
        series = {}
        for name in dict.fromkeys(b["series"] for b in chart["bars"]):
            if chart["kind"] == "groups":
                rows = source == name
            else:
                rows = np.isin(np.arange(len(v)), selected) if name == "selected" else np.ones(len(v), bool)
            series[name] = v[rows & np.isfinite(v)]
        if chart["kind"] == "groups":
            assert len(series) == min(groups, 12)
        _check_overlay(chart, series)
    proj = next(c for c in charts if c["kind"] == "projection")
    assert proj["points"] == scored_table.num_rows
    # the hostile record: on the page as text, nothing ran
    assert driver.execute_script("return typeof window.__pwned") == "undefined"
    shown = driver.execute_script("return document.body.innerText")
    assert SCRIPT_TEXT in shown
    assert driver.execute_script("return document.querySelectorAll('script, img, iframe, textarea').length") == 0


def test_escaping_holds_without_the_content_security_policy(driver, page, tmp_path):
    _, res, _ = page
    html = res.path.read_text()
    bare = tmp_path / "no-csp.html"
    start = html.index('<meta http-equiv="Content-Security-Policy"')
    bare.write_text(html[:start] + html[html.index(">", start) + 1 :])
    assert "Content-Security-Policy" not in bare.read_text()
    loaded = browser.load(driver, bare)
    assert loaded.requests == [] and loaded.console_errors == []
    assert driver.execute_script("return typeof window.__pwned") == "undefined"
    assert SCRIPT_TEXT in driver.execute_script("return document.body.innerText")


def test_the_checks_catch_a_page_that_fetches_and_fails(driver, tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<!DOCTYPE html><html><head><title>bad</title></head><body><img src="http://127.0.0.1:9/x.png">'
        "<script>window.__pwned = 1; undefinedFunction();</script></body></html>"
    )
    loaded = browser.load(driver, bad)
    assert [r["request"]["url"] for r in loaded.requests] == ["http://127.0.0.1:9/x.png"]
    assert loaded.failed and loaded.failed[0].get("blockedReason") == "inspector"
    assert any("undefinedFunction" in e["message"] for e in loaded.console_errors)
    assert driver.execute_script("return window.__pwned") == 1
