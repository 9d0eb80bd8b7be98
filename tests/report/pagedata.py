"""Read a report page back with the standard library's HTML parser: charts, bars, examples, tags, text.

What the tests compare against independent numbers; it knows the page's data attributes, nothing
of how they were computed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path


@dataclass
class Bar:
    lo: float
    hi: float
    count: int
    height: float
    series: str | None


@dataclass
class Chart:
    kind: str
    column: str
    bars: list[Bar] = field(default_factory=list)
    quantiles: dict[float, float] = field(default_factory=dict)
    cells: list[dict[str, str]] = field(default_factory=list)  # heatmap cells
    ranges: list[dict[str, str]] = field(default_factory=list)  # range rows
    points: list[dict[str, str]] = field(default_factory=list)  # scatter circles


@dataclass
class Example:
    column: str
    end: str  # "low" or "high"
    input: int
    row: int
    value: float


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.charts: list[Chart] = []
        self.examples: list[Example] = []
        self.text: list[str] = []
        self.attrs_seen: list[tuple[str, str, str]] = []  # (tag, attribute, value) of every element
        self._series: str | None = None
        self._card: str | None = None
        self._end: str | None = None
        self._svg = False

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        self.tags.append(tag)
        self.attrs_seen.extend((tag, k, v) for k, v in a.items())
        if tag == "article" and "card" in a.get("class", ""):
            self._card = a.get("id")
        if tag == "div" and a.get("class") in ("low", "high"):
            self._end = a["class"]
        if tag == "svg":
            self.charts.append(Chart(a.get("data-chart", ""), a.get("data-column", "")))
            self._svg = True
        elif self._svg and tag == "g" and "data-series" in a:
            self._series = a["data-series"]
        elif self._svg and tag == "rect" and "bar" in a.get("class", "").split():
            self.charts[-1].bars.append(
                Bar(float(a["data-lo"]), float(a["data-hi"]), int(a["data-count"]), float(a["height"]), self._series)
            )
        elif self._svg and tag == "line" and "data-q" in a:
            self.charts[-1].quantiles[float(a["data-q"])] = float(a["data-value"])
        elif self._svg and tag == "g" and "cell" in a.get("class", ""):
            self.charts[-1].cells.append(a)
        elif self._svg and tag == "g" and "range" in a.get("class", ""):
            self.charts[-1].ranges.append(a)
        elif self._svg and tag == "circle":
            self.charts[-1].points.append(a)
        if tag == "div" and a.get("class") == "ex":
            self.examples.append(
                Example(
                    self._card or "", self._end or "", int(a["data-input"]), int(a["data-row"]), float(a["data-value"])
                )
            )

    def handle_endtag(self, tag):
        if tag == "svg":
            self._svg = False
        if tag == "g":
            self._series = None

    def handle_data(self, data):
        self.text.append(data)


@dataclass
class PageData:
    html: str
    tags: list[str]
    attrs: list[tuple[str, str, str]]
    charts: list[Chart]
    examples: list[Example]
    text: str

    def charts_of(self, kind: str) -> dict[str, Chart]:
        return {c.column: c for c in self.charts if c.kind == kind}

    def one(self, kind: str) -> Chart:
        found = [c for c in self.charts if c.kind == kind]
        assert len(found) == 1, f"{len(found)} charts of kind {kind!r}"
        return found[0]


def read_page(path: str | Path) -> PageData:
    html = Path(path).read_text(encoding="utf-8")
    r = _Reader()
    r.feed(html)
    r.close()
    return PageData(html, r.tags, r.attrs_seen, r.charts, r.examples, "".join(r.text))


def card_id(column: str) -> str:
    """The anchor of a column's card (same rule as the page, kept independent here)."""
    import re

    return "col-" + re.sub(r"[^A-Za-z0-9_-]+", "-", column)
