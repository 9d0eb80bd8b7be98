"""One self-contained HTML page of scored data: :func:`report` (CLI ``instructfast report``).

The page needs no server and makes no request: styles are inline, charts are static SVG, there is
no script, and a Content-Security-Policy forbids any fetch. Modules: :mod:`.inputs` (what is read),
:mod:`.subsets` (groups and the selection), :mod:`.stats` (streaming accumulators), :mod:`.collect`
(the passes over the inputs), :mod:`.analysis` (correlations, projection, rule shares), :mod:`.svg`
(charts), :mod:`.page` (sections), :mod:`.style` (skeleton and stylesheet).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ..errors import ArgumentError, ArgumentTypeError
from ..io import created_mode
from ..rules import Rule
from ..scoring import RULE_COLUMN
from .collect import Settings, gather, plan_rule
from .inputs import ChartColumn, chart_columns, open_inputs, vector_column
from .page import render
from .subsets import find_groups, read_selection


@dataclass
class ReportResult:
    """What :func:`report` wrote.

    Attributes
    ----------
    path
        The HTML file.
    bytes
        Its size.
    rows
        Rows read over all inputs.
    inputs
        The inputs' labels, in order.
    columns
        The charted columns.
    sample_rows
        Rows in the uniform sample behind quantile markers, correlations and rule terms.
    exact
        Whether that sample holds every row (then those figures are exact).
    selected
        Selected rows found (0 without ``selected``).
    projection_rows
        Points in the 2-D projection (0 without embeddings).
    seconds
        Wall time.
    """

    path: Path
    bytes: int
    rows: int
    inputs: list[str]
    columns: list[str]
    sample_rows: int
    exact: bool
    selected: int
    projection_rows: int
    seconds: float


def _count(name: str, value: Any, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        msg = f"`{name}` must be an integer, got {value!r}"
        raise ArgumentTypeError(msg)
    if value < lo or (hi is not None and value > hi):
        where = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
        msg = f"`{name}` must be {where}, got {value}"
        raise ArgumentError(msg)
    return int(value)


def report(
    inputs: str | os.PathLike[str] | pa.Table | Sequence[str | os.PathLike[str] | pa.Table],
    *,
    output: str | os.PathLike[str],
    selected: str | os.PathLike[str] | Sequence[int] | np.ndarray | None = None,
    by: str | None = None,
    labels: Sequence[str] | None = None,
    indicators: Sequence[str] | None = None,
    rule: str | Rule | Mapping[str, Any] | None = None,
    embeddings: str | None = None,
    embed: bool = False,
    columns: Mapping[str, str] | None = None,
    title: str | None = None,
    bins: int = 40,
    sample_rows: int = 100_000,
    projection_rows: int = 2_000,
    examples: int = 5,
    max_chars: int = 3_000,
    max_groups: int = 12,
    seed: int = 0,
    models: Mapping[str, str] | None = None,
    device: str | None = None,
    threads: int | None = None,
) -> ReportResult:
    """Write one self-contained HTML page that shows scored data.

    The page holds: the run facts of each input's run record; per numeric column a histogram with
    quantile markers (log-scaled where the data spans decades), counts, nulls by reason and the
    lowest and highest records with their texts; Spearman correlations; the rule's prediction and
    each term's contribution; with several inputs or ``by``, the distributions overlaid and medians
    side by side; with ``selected``, selected vs pool per column and a PCA projection of the
    embeddings; nulls and unavailable indicators in one table. Inputs are streamed: memory is
    bounded by histograms and samples, whatever the row count.

    Parameters
    ----------
    inputs
        A scored file (any format :func:`instructfast.scan_file` reads; the run record in its
        metadata is shown when present), a :class:`pyarrow.Table`, or a list of them.
    output
        The HTML file to write (``.html`` or ``.htm``), replaced if it exists.
    selected
        The selected rows: a file with a ``position`` column (``instructfast select --positions``),
        a selected records file (rows matched by exact instruction, input and output), or row positions.
        Positions need a single input.
    by
        Compare groups of rows by the values of this column (the ``max_groups - 1`` largest, the rest
        as "(other)"); without it, several inputs are compared with each other.
    labels
        Names for the inputs (default: their file names).
    indicators
        The numeric columns to chart (default: every numeric column, indicators first).
    rule
        The rule whose terms to show (preset, JSON path, dict or :class:`~instructfast.Rule`);
        default: the rule the inputs were scored with. ``predicted_log_loss`` is computed when absent.
    embeddings
        A list column of vectors for the projection (default: the first such column, if any).
    embed
        With ``selected``: embed the projection sample with the embedder when no vector column exists.
    columns
        Explicit text column mapping (``{"instruction": "question", "output": "answer"}``).
    title
        Page title.
    bins
        Histogram bins (integer columns get integer-wide bins, at most this many).
    sample_rows
        Size of the uniform row sample behind quantiles, correlations and rule terms (exact up to it).
    projection_rows
        Pool rows in the projection (plus up to as many selected rows).
    examples
        Records shown at each end of every column.
    max_chars
        Characters of a text field shown; the rest is counted.
    max_groups
        Most groups compared (at most 12).
    seed
        Seed of the samples.
    models, device, threads
        For ``embed``: the embedder slot, device and threads.

    Returns
    -------
    ReportResult

    Examples
    --------
    >>> import tempfile, os, pyarrow as pa, instructfast
    >>> t = instructfast.score(pa.table({"instruction": ["Say hi.", "Add."], "output": ["Hi there!", "Four."]}),
    ...                        indicators="textstats")
    >>> r = instructfast.report(t, output=os.path.join(tempfile.mkdtemp(), "report.html"))
    >>> r.rows, r.columns[:2], r.exact
    (2, ['output_words', 'output_unique_words'], True)
    """
    t0 = time.perf_counter()
    items = [inputs] if isinstance(inputs, (str, os.PathLike, pa.Table)) else inputs
    if not isinstance(items, Sequence) or not items:
        msg = f"`inputs` must be a file path, a pyarrow Table or a non-empty list of them, got {inputs!r}"
        raise ArgumentTypeError(msg)
    if not isinstance(output, (str, os.PathLike)):
        msg = f"`output` must be a path, got {type(output).__name__}"
        raise ArgumentTypeError(msg)
    out = Path(output)
    if out.suffix.lower() not in (".html", ".htm"):
        msg = f"`output` must be an .html file, got {str(out)!r}"
        raise ArgumentError(msg)
    if out.is_dir():
        msg = f"`output` {str(out)!r} is a directory"
        raise ArgumentError(msg)
    for name, value in (("by", by), ("embeddings", embeddings), ("title", title)):
        if value is not None and not isinstance(value, str):
            msg = f"`{name}` must be a string, got {value!r}"
            raise ArgumentTypeError(msg)
    if not isinstance(embed, bool):
        msg = f"`embed` must be True or False, got {embed!r}"
        raise ArgumentTypeError(msg)
    settings = Settings(
        bins=_count("bins", bins, 2, 400),
        sample_rows=_count("sample_rows", sample_rows, 100),
        projection_rows=_count("projection_rows", projection_rows, 10),
        examples=_count("examples", examples, 0, 100),
        max_chars=_count("max_chars", max_chars, 100),
        max_groups=_count("max_groups", max_groups, 2, 12),
        seed=_count("seed", seed, 0),
        embed=embed,
        embeddings=embeddings,
        columns=columns,
        models=models,
        device=device,
        threads=threads,
    )
    datasets = open_inputs(list(items), labels, columns)
    names = {n for d in datasets for n in d.source.schema.names}
    rp = plan_rule(datasets, rule, names)
    exclude = [c for c in (by,) if c]
    cols = chart_columns(datasets, indicators, exclude)
    if rp.rule is not None and RULE_COLUMN not in [c.name for c in cols] and (RULE_COLUMN in names or rp.computed):
        cols.append(ChartColumn(RULE_COLUMN, False, None))
    vectors = vector_column(datasets, embeddings)
    groups = find_groups(datasets, by, settings.max_groups)
    selection = read_selection(selected, datasets, columns) if selected is not None else None
    findings = gather(datasets, cols, rp, groups, selection, vectors, settings)
    page_title = title or "instructfast report: " + ", ".join(d.label for d in datasets)
    html = render(findings, page_title)
    data = html.encode("utf-8", errors="replace")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, created_mode())
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    proj = findings.projection
    return ReportResult(
        path=out,
        bytes=len(data),
        rows=findings.rows,
        inputs=[d.label for d in datasets],
        columns=[c.name for c in cols],
        sample_rows=findings.reservoir.rows(),
        exact=findings.reservoir.exact,
        selected=selection.count if selection else 0,
        projection_rows=int(proj.ids.size) if proj is not None else 0,
        seconds=time.perf_counter() - t0,
    )


__all__ = ["ReportResult", "report"]
