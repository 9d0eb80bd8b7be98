"""Fitting a rule: OLS of log evaluation loss on per-dataset indicator means (InstructMining).

One row per trained dataset: the mean of each indicator over that dataset's records,
and the evaluation loss of the model fine-tuned on it. The paper regresses the *log*
of the loss; ``loss_is_log`` says which one the column holds. The fit is plain numpy
least squares with the classical (homoscedastic) statistics; scipy's t distribution
gives the two-sided p-values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from ..errors import RuleError
from ..io import to_table
from ..rules import Rule

INTERCEPT = "intercept"


def _ols(y: np.ndarray, x: np.ndarray, names: list[str]) -> dict[str, Any]:
    """OLS with an intercept column prepended; statistics as statsmodels reports them."""
    from scipy import stats

    n, p = x.shape[0], x.shape[1] + 1
    a = np.column_stack([np.ones(n), x])
    if np.linalg.matrix_rank(a) < p:
        msg = f"indicator columns {names} are collinear (or constant) over these {n} datasets; drop some"
        raise RuleError(msg)
    beta, *_ = np.linalg.lstsq(a, y, rcond=None)
    resid = y - a @ beta
    df = n - p
    rss = float(resid @ resid)
    tss = float(((y - y.mean()) ** 2).sum())
    sigma2 = rss / df
    cov = sigma2 * np.linalg.inv(a.T @ a)
    se = np.sqrt(np.diag(cov))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = beta / se
    pv = 2 * stats.t.sf(np.abs(t), df)
    r2 = 1 - rss / tss if tss > 0 else float("nan")
    keys = [INTERCEPT, *names]
    return {
        "params": dict(zip(keys, beta.tolist())),
        "std_errors": dict(zip(keys, se.tolist())),
        "t_values": dict(zip(keys, t.tolist())),
        "p_values": dict(zip(keys, pv.tolist())),
        "r2": r2,
        "adj_r2": 1 - (1 - r2) * (n - 1) / df,
        "n_datasets": n,
        "df_resid": df,
        "sigma": float(np.sqrt(sigma2)),
    }


def fit_rule(
    dataset_table: Any,
    loss_column: str,
    indicators: Sequence[str] | None = None,
    *,
    loss_is_log: bool = False,
    eliminate: float | None = None,
    name: str = "fitted",
) -> Rule:
    """Fit a linear rule predicting log eval loss from dataset-level indicator means.

    Parameters
    ----------
    dataset_table
        One row per fine-tuned dataset (anything :func:`instructfast.score` accepts, or a
        path): indicator means and the evaluation loss.
    loss_column
        The evaluation loss column.
    indicators
        Predictor columns (default: every numeric column except ``loss_column``).
    loss_is_log
        ``False`` (default): the column holds the loss and its natural log is regressed, as
        the paper does; ``True``: it already holds log loss.
    eliminate
        Backward elimination: while the least significant predictor has p-value above
        this threshold, drop it and refit (the intercept always stays, and so does the
        last predictor). ``None``: fit all predictors once.
    name
        Name of the returned rule.

    Returns
    -------
    Rule
        Intercept and coefficients on raw indicator units, target log eval loss (lower is
        better). ``rule.stats`` holds ``r2``, ``adj_r2``, ``std_errors``, ``t_values``,
        ``p_values`` (by term, ``intercept`` included), ``n_datasets``, ``df_resid``,
        ``sigma``, ``loss_is_log`` and ``eliminated`` (``[column, p_value]`` in the order
        dropped). Save with ``rule.to_json(path)``; ``Rule.from_json`` / ``score(rule=path)``
        load it.

    Raises
    ------
    RuleError
        Missing or non-numeric columns, nulls, non-positive losses to log, too few datasets
        (need more than predictors + 1), collinear predictors.

    Examples
    --------
    >>> import pyarrow as pa, numpy as np
    >>> t = pa.table({"mtld": [50.0, 60.0, 70.0, 80.0, 90.0], "reward": [1.0, 0.0, 2.0, 1.0, 3.0],
    ...               "loss": np.exp([1.0 - 0.01 * m - 0.1 * r for m, r in
    ...                               zip([50, 60, 70, 80, 90], [1.0, 0.0, 2.0, 1.0, 3.0])]) * [1, 1.001, 1, 0.999, 1]})
    >>> rule = fit_rule(t, "loss")
    >>> round(rule.intercept, 2), {k: round(v, 3) for k, v in rule.coefficients.items()}
    (1.0, {'mtld': -0.01, 'reward': -0.1})
    >>> rule.stats["r2"] > 0.99
    True
    """
    table = to_table(dataset_table)
    names = table.column_names
    if loss_column not in names:
        msg = f"loss column `{loss_column}` not found; found columns: {names}"
        raise RuleError(msg)
    if indicators is None:
        cols = [c for c in names if c != loss_column and _numeric(table.schema.field(c).type)]
        if not cols:
            msg = f"no numeric indicator columns besides `{loss_column}`; found columns: {names}"
            raise RuleError(msg)
    else:
        cols = list(indicators)
        missing = [c for c in cols if c not in names]
        if missing:
            msg = f"indicator columns {missing} not found; found columns: {names}"
            raise RuleError(msg)
    for c in [*cols, loss_column]:
        if not _numeric(table.schema.field(c).type):
            msg = f"column `{c}` must be numeric, got {table.schema.field(c).type}"
            raise RuleError(msg)
    y = _values(table, loss_column)
    if not loss_is_log:
        if (y <= 0).any():
            msg = f"`{loss_column}` must be positive to take its log (rows {np.flatnonzero(y <= 0).tolist()}); pass loss_is_log=True if it already holds log loss"
            raise RuleError(msg)
        y = np.log(y)
    x = np.column_stack([_values(table, c) for c in cols])
    n = table.num_rows
    if n <= len(cols) + 1:
        msg = f"{n} datasets cannot fit {len(cols)} coefficients and an intercept with any residual degrees of freedom; need at least {len(cols) + 2}"
        raise RuleError(msg)
    if eliminate is not None and not 0 < eliminate < 1:
        msg = f"`eliminate` must be a p-value threshold in (0, 1), got {eliminate!r}"
        raise RuleError(msg)

    keep = list(range(len(cols)))
    dropped: list[list[Any]] = []
    fit = _ols(y, x[:, keep], [cols[i] for i in keep])
    while eliminate is not None and len(keep) > 1:
        pv = [fit["p_values"][cols[i]] for i in keep]
        worst = int(np.argmax(pv))  # ties: the earlier column
        if pv[worst] <= eliminate:
            break
        dropped.append([cols[keep[worst]], pv[worst]])
        del keep[worst]
        fit = _ols(y, x[:, keep], [cols[i] for i in keep])
    params = fit.pop("params")
    stats = fit | {"loss_is_log": loss_is_log, "eliminated": dropped, "eliminate": eliminate}
    return Rule(
        name,
        params[INTERCEPT],
        {c: params[c] for c in (cols[i] for i in keep)},
        provenance=f"fit_rule: OLS of log eval loss on per-dataset indicator means ({n} datasets)",
        stats=stats,
    )


def _numeric(t: pa.DataType) -> bool:
    return pa.types.is_floating(t) or pa.types.is_integer(t)


def _values(table: pa.Table, col: str) -> np.ndarray:
    v = table.column(col).to_numpy(zero_copy_only=False).astype(np.float64)
    bad = ~np.isfinite(v)
    if bad.any():
        msg = f"column `{col}` has null/NaN/inf values in rows {np.flatnonzero(bad)[:10].tolist()}; every dataset needs every value"
        raise RuleError(msg)
    return v
