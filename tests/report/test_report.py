"""What the page holds, read back from the HTML and held to numbers recomputed from the files.

The oracles are plain: pyarrow reads the column, numpy bins / sorts / takes quantiles, scipy
correlates. The browser test (test_browser.py) checks the same page as rendered.
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from scipy.stats import spearmanr

import instructfast
from instructfast.report.style import CSP
from instructfast.report.svg import fmt
from tests.report.conftest import HOSTILE, LONG_OUTPUT_WORDS, SCRIPT_TEXT, TOY_RULE
from tests.report.pagedata import card_id, read_page

NUMERIC = ["output_words", "output_unique_words", "output_ttr", "mtld", "output_chars", "output_bytes", "input_chars"]


def _values(table: pa.Table, column: str) -> np.ndarray:
    v = table.column(column).cast(pa.float64()).to_numpy(zero_copy_only=False)
    return v[np.isfinite(v)]


def _check_histogram(chart, values: np.ndarray) -> None:
    edges = [b.lo for b in chart.bars] + [chart.bars[-1].hi]
    assert edges[0] <= values.min() and values.max() <= edges[-1]
    expect, _ = np.histogram(values, edges)
    assert [b.count for b in chart.bars] == expect.tolist()
    top = max(b.count for b in chart.bars)
    hmax = max(b.height for b in chart.bars)
    for b in chart.bars:
        assert b.height == pytest.approx(b.count / top * hmax, abs=1e-3)


@pytest.mark.parametrize("fmt", ["parquet", "jsonl", "arrow", "csv"])
def test_every_format_gives_exact_histograms_and_quantiles(tmp_path, scored_table, fmt):
    data = scored_table.drop_columns(["emb"]) if fmt == "csv" else scored_table
    src = tmp_path / f"scored.{fmt}"
    instructfast.write_table(data, src)
    res = instructfast.report(src, output=tmp_path / "r.html")
    page = read_page(res.path)
    back = instructfast.read_table(src)
    hists = page.charts_of("hist")
    assert set(hists) == set(NUMERIC + ["predicted_log_loss", "synthetic", "weird<col>&"]) == set(res.columns)
    for col, chart in hists.items():
        v = _values(back, col)
        _check_histogram(chart, v)
        q = sorted(chart.quantiles)
        assert q == [0.05, 0.25, 0.5, 0.75, 0.95]
        assert [chart.quantiles[x] for x in q] == pytest.approx(np.quantile(v, q).tolist(), rel=1e-12)
    assert res.exact and res.rows == scored_table.num_rows
    # the run record travels in Parquet footers and Arrow schemas, not in JSONL or CSV
    has_record = fmt in ("parquet", "arrow")
    assert ("No run record" not in page.text) is has_record
    if has_record:
        assert "Implementations" in page.text and "text core" in page.text and "pyarrow" in page.text


def test_run_facts_of_a_score_file_output_show_what_the_record_holds(tmp_path, sample_records):
    src, out = tmp_path / "in.jsonl", tmp_path / "scored.parquet"
    instructfast.write_table(pa.Table.from_pylist(sample_records[:50]), src)
    with pytest.warns(instructfast.NullValuesWarning):
        instructfast.score_file(src, out, indicators=["textstats"], threads=1)
    rep = instructfast.ScoreReport.from_file(out)  # the footer, as score_file writes it
    assert rep is not None and rep.run.started
    page = read_page(instructfast.report(out, output=tmp_path / "r.html").path)
    facts = page.html.split('id="run"')[1].split('id="indicators"')[0]
    assert (
        "No run record" not in facts
        and rep.run.started in facts
        and rep.layout.replace("`", "") in facts.replace("`", "")
    )
    for key, value in {**rep.run.implementations, **rep.run.versions, **rep.run.platform}.items():
        assert f"<th>{key}</th><td>{value}</td>" in facts.replace("&#x27;", "'"), key
    assert '"threads": 1' not in facts and "<th>threads</th><td>1</td>" in facts


def test_log_bins_where_the_data_spans_decades(tmp_path, scored_table):
    page = read_page(instructfast.report(scored_table, output=tmp_path / "r.html").path)
    syn = page.charts_of("hist")["synthetic"]
    widths = np.diff([b.lo for b in syn.bars] + [syn.bars[-1].hi])
    ratios = np.array([b.hi / b.lo for b in syn.bars])
    assert widths[-1] > 100 * widths[0] and np.allclose(ratios, ratios[0])
    assert "log scale" in page.html


def test_records_are_escaped_and_the_page_is_self_contained(tmp_path, scored_table):
    res = instructfast.report(scored_table, output=tmp_path / "r.html", labels=["<i>in</i>"], by="source")
    page = read_page(res.path)
    # nothing from the data became markup: no script or img element, no event handler, no textarea
    assert "script" not in page.tags and "img" not in page.tags and "textarea" not in page.tags
    assert not [a for a in page.attrs if a[1].startswith("on")]
    # ... and every hostile text reads back as the text it was
    for rec in HOSTILE:
        for field in ("instruction", "input", "output"):
            if rec[field]:
                assert rec[field] in page.text, field
    assert page.text.count(SCRIPT_TEXT) >= 1
    assert "<b>hostile</b>" in page.text and "<i>in</i>" in page.text and "weird<col>&" in page.text
    # no reference leaves the page: links are fragments, the only URL is the empty data: favicon
    for tag, attr, value in page.attrs:
        if attr in ("href", "src", "xlink:href", "action"):
            assert value.startswith("#") or value == "data:,", (tag, attr, value)
    assert not re.search(r"url\(|@import|@font-face|https?://", page.html.split("<body>")[0])
    assert f'http-equiv="Content-Security-Policy" content="{CSP}"' in page.html
    assert "default-src 'none'" in CSP and "script-src" not in CSP


def test_the_ends_of_each_column_are_the_rows_a_sort_finds(tmp_path, scored_table):
    res = instructfast.report(scored_table, output=tmp_path / "r.html")
    page = read_page(res.path)
    for col in res.columns:
        v = scored_table.column(col).cast(pa.float64()).to_numpy(zero_copy_only=False)
        ok = np.flatnonzero(np.isfinite(v))
        low = ok[np.lexsort((ok, v[ok]))][:5]
        high = ok[np.lexsort((ok, -v[ok]))][:5]
        shown = [e for e in page.examples if e.column == card_id(col)]
        assert [e.row for e in shown if e.end == "low"] == low.tolist(), col
        assert [e.row for e in shown if e.end == "high"] == high.tolist(), col
        assert [e.value for e in shown if e.end == "high"] == v[high].tolist()
    # the hostile records hold the two largest synthetic values: their texts are on the page
    hi = [e.row for e in page.examples if e.column == card_id("synthetic") and e.end == "high"]
    assert hi[:2] == [scored_table.num_rows - 2, scored_table.num_rows - 3]


def test_long_texts_are_folded_and_cut_with_the_rest_counted(tmp_path, scored_table):
    res = instructfast.report(scored_table, output=tmp_path / "r.html", max_chars=500)
    html = res.path.read_text()
    long = scored_table.column("output").to_pylist()[-1]
    assert len(long) > 500 + 1000
    assert f"… {len(long) - 500:,} more characters not shown" in html
    assert long[:500] in html and long[:501] not in html
    assert f"({len(long):,} characters)" in html and "<details" in html
    assert len(long.split()) == LONG_OUTPUT_WORDS


def test_correlations_match_scipy(tmp_path, scored_table):
    page = read_page(instructfast.report(scored_table, output=tmp_path / "r.html").path)
    heat = page.one("correlation")
    for cell in heat.cells:
        a, b = cell["data-row"], cell["data-col"]
        x = scored_table.column(a).cast(pa.float64()).to_numpy(zero_copy_only=False)
        y = scored_table.column(b).cast(pa.float64()).to_numpy(zero_copy_only=False)
        both = np.isfinite(x) & np.isfinite(y)
        assert int(cell["data-n"]) == both.sum()
        expect = spearmanr(x[both], y[both]).statistic
        got = float(cell["data-rho"])
        assert (np.isnan(got) and np.isnan(expect)) or got == pytest.approx(expect, abs=1e-12), (a, b)
    assert "Spearman rank correlation on all" in page.text


def test_rule_terms_and_shares(tmp_path, scored_table):
    res = instructfast.report(scored_table, output=tmp_path / "r.html", rule=TOY_RULE)
    page = read_page(res.path)
    assert page.one("rule-score").column == "predicted_log_loss"
    terms = page.one("rule-terms").ranges
    assert [t["data-label"] for t in terms] == ["-0.002 × mtld", "+0.0005 × output_words"]
    for t, (col, coef) in zip(terms, TOY_RULE["coefficients"].items()):
        contrib = coef * _values(scored_table, col)
        q = [float(x) for x in t["data-q"].split()]
        assert q == pytest.approx(np.quantile(contrib, [0.05, 0.25, 0.5, 0.75, 0.95]).tolist(), rel=1e-12)
    shares = [float(s.rstrip("%")) for s in re.findall(r"<td class=n>(-?[\d.]+)%</td>", page.html)]
    assert len(shares) == 2 and sum(shares) == pytest.approx(100, abs=0.15)


def test_rule_from_the_run_record_and_computed_when_absent(tmp_path, rng):
    n = 300
    t = pa.table(
        {
            "instruction": [f"q{i}" for i in range(n)],
            "output": [f"a{i}" for i in range(n)],
            "reward": rng.normal(0, 2, n),
            "output_tokens": rng.integers(1, 500, n),
            "knn_6": rng.uniform(0.2, 1.2, n),
        }
    )
    rep = instructfast.ScoreReport(rows=n, rule="instructmining-v1")
    t = t.replace_schema_metadata({instructfast.scoring.REPORT_KEY: rep.to_json().encode()})
    res = instructfast.report(t, output=tmp_path / "r.html")
    page = read_page(res.path)
    assert "predicted_log_loss" in res.columns and "computed here from its terms" in page.text
    expect = instructfast.get_rule("instructmining-v1").apply(t).to_numpy()
    _check_histogram(page.charts_of("hist")["predicted_log_loss"], expect)
    assert len(page.one("rule-terms").ranges) == 3
    # a rule that is not a preset: the page says how to show it
    rep.rule = "my-rule"
    t2 = t.replace_schema_metadata({instructfast.scoring.REPORT_KEY: rep.to_json().encode()})
    page2 = read_page(instructfast.report(t2, output=tmp_path / "r2.html").path)
    assert "not a preset" in page2.text and not page2.charts_of("rule-terms")


def test_several_inputs_are_overlaid_with_medians_side_by_side(tmp_path, scored_table):
    a, b = tmp_path / "a.parquet", tmp_path / "b.jsonl"
    instructfast.write_table(scored_table.slice(0, 120), a)
    instructfast.write_table(scored_table.slice(120), b)
    res = instructfast.report([a, b], output=tmp_path / "r.html")
    page = read_page(res.path)
    assert res.inputs == ["a", "b"] and res.rows == scored_table.num_rows
    groups = page.charts_of("groups")
    assert set(groups) == set(res.columns)
    parts = {"a": scored_table.slice(0, 120), "b": scored_table.slice(120)}
    for col, chart in groups.items():
        for label, part in parts.items():
            bars = [x for x in chart.bars if x.series == label]
            edges = [x.lo for x in bars] + [bars[-1].hi]
            assert [x.count for x in bars] == np.histogram(_values(part, col), edges)[0].tolist()
    for label, part in parts.items():
        med = float(np.median(_values(part, "mtld")))
        row = re.search(r"<code>mtld</code></td>(.*?)</tr>", page.html.split("Medians side by side")[1]).group(1)
        assert fmt(med) in row, label
    # per-input examples say which input they come from
    assert {e.input for e in page.examples} == {0, 1}


def test_by_column_groups_and_other(tmp_path, scored_table):
    res = instructfast.report(scored_table, output=tmp_path / "r.html", by="source", max_groups=3)
    page = read_page(res.path)
    counts = pc.value_counts(scored_table.column("source")).to_pylist()
    counts.sort(key=lambda d: (-d["counts"], d["values"]))
    chart = page.charts_of("groups")["output_words"]
    series = list(dict.fromkeys(b.series for b in chart.bars))
    assert series == [counts[0]["values"], counts[1]["values"], "(other)"]
    total = {s: sum(b.count for b in chart.bars if b.series == s) for s in series}
    assert total[series[0]] == counts[0]["counts"]
    assert total["(other)"] == sum(d["counts"] for d in counts[2:])
    assert "source" not in res.columns


def test_selection_by_positions_and_by_records_agree(tmp_path, scored_table, rng):
    src = tmp_path / "scored.parquet"
    instructfast.write_table(scored_table, src)
    pos = np.sort(rng.choice(scored_table.num_rows - 3, 25, replace=False))  # unique texts only
    pos_file = tmp_path / "sel.positions.csv"
    instructfast.write_table(pa.table({"position": pa.array(pos, pa.int64())}), pos_file)
    rec_file = tmp_path / "sel.jsonl"
    instructfast.write_table(scored_table.take(pa.array(pos)).drop_columns(["emb"]), rec_file)
    pages = []
    for sel in (pos_file, rec_file, pos.tolist()):
        res = instructfast.report(src, output=tmp_path / "r.html", selected=sel)
        assert res.selected == 25
        pages.append(read_page(res.path))
    sel_table = scored_table.take(pa.array(pos))
    for page in pages:
        charts = page.charts_of("selection")
        assert set(charts) == set(NUMERIC + ["predicted_log_loss", "synthetic", "weird<col>&"])
        for col, chart in charts.items():
            bars = [b for b in chart.bars if b.series == "selected"]
            edges = [b.lo for b in bars] + [bars[-1].hi]
            assert [b.count for b in bars] == np.histogram(_values(sel_table, col), edges)[0].tolist()
        proj = page.one("projection")
        assert sum("sel" in p["class"] for p in proj.points) == 25
        assert len(proj.points) == scored_table.num_rows
    assert pages[0].charts == pages[2].charts


def test_projection_needs_embeddings(tmp_path, scored_table):
    res = instructfast.report(scored_table.drop_columns(["emb"]), output=tmp_path / "r.html", selected=[1, 2, 3])
    page = read_page(res.path)
    assert res.projection_rows == 0 and not page.charts_of("projection")
    assert "no embeddings" in page.text


def test_embed_projects_a_bounded_sample_with_the_embedder(tmp_path, scored_table):
    small = scored_table.slice(0, 60).drop_columns(["emb"])
    res = instructfast.report(small, output=tmp_path / "r.html", selected=[0, 5], embed=True, projection_rows=20)
    page = read_page(res.path)
    points = page.one("projection").points
    assert res.projection_rows == len(points) and 20 <= len(points) <= 22  # 20 sampled + selected rows not among them
    assert sum("sel" in p["class"] for p in points) == 2
    assert "embedded here" in page.text


def test_nulls_table_gives_reasons_and_unavailable_indicators(tmp_path, scored_table):
    rep = instructfast.ScoreReport.from_table(scored_table)
    assert rep is not None
    rep.unavailable = {"reward": "no reward model: looked in <models>"}
    t = scored_table.replace_schema_metadata({instructfast.scoring.REPORT_KEY: rep.to_json().encode()})
    page = read_page(instructfast.report(t, output=tmp_path / "r.html").path)
    nulls = page.html.split('id="nulls"')[1]
    for col, reasons in rep.nulls.items():
        for reason, n in reasons.items():
            assert f"{reason}: {n:,}" in nulls.replace("&#x27;", "'"), (col, reason)
    assert "no run record" not in nulls and "synthetic" in nulls  # nulls the record knows nothing of
    assert "no reason recorded: 4" in nulls
    assert "no reward model: looked in &lt;models&gt;" in nulls


def test_samples_bound_memory_and_the_page_says_so(tmp_path, rng):
    n = 20_000
    t = pa.table({"a": rng.normal(size=n), "b": rng.integers(0, 1000, n)})
    res = instructfast.report(t, output=tmp_path / "r.html", sample_rows=1_000)
    page = read_page(res.path)
    assert res.sample_rows == 1_000 and not res.exact
    assert "a uniform sample of 1,000 of 20,000 rows" in page.text
    _check_histogram(page.charts_of("hist")["a"], t.column("a").to_numpy())  # still exact
    assert "no instruction/output columns" in page.text


def test_cli_writes_the_page(tmp_path, scored_parquet, capsys):
    from instructfast.cli import main

    out = tmp_path / "page.html"
    assert main(["report", str(scored_parquet), "-o", str(out), "--by", "source", "--examples", "2"]) == 0
    said = capsys.readouterr().out
    assert f"wrote {out}" in said and out.is_file()
    assert len([e for e in read_page(out).examples if e.column == card_id("mtld")]) == 4
    assert main(["report", str(scored_parquet), "-o", str(tmp_path / "page.txt")]) == 2
    assert "`output` must be an .html file" in capsys.readouterr().err
