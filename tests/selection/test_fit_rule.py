"""fit_rule against statsmodels OLS and on synthetic data with known coefficients."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import statsmodels.api as sm

import instructfast
from instructfast import Rule, RuleError, fit_rule

COLS = ["reward", "output_tokens", "knn_6", "mtld", "naturalness"]


def dataset_table(rng, n=40, noise=0.05, coefs=(-0.15, 8e-5, -0.9, 0.0, 0.3), intercept=1.07):
    """One row per 'trained dataset': indicator means and an eval loss from a known log-linear law."""
    x = np.column_stack(
        [
            rng.normal(0.5, 1.0, n),  # reward logit mean
            rng.normal(300, 120, n),  # output tokens mean
            rng.normal(0.9, 0.05, n),  # knn_6 mean
            rng.normal(60, 10, n),  # mtld mean
            rng.uniform(0.6, 0.95, n),  # naturalness mean
        ]
    )
    log_loss = intercept + x @ np.array(coefs) + noise * rng.standard_normal(n)
    t = pa.table(
        {c: x[:, i] for i, c in enumerate(COLS)} | {"eval_loss": np.exp(log_loss), "name": [f"d{i}" for i in range(n)]}
    )
    return t, x, log_loss


def test_matches_statsmodels(seed):
    rng = np.random.default_rng(seed)
    t, x, log_loss = dataset_table(rng, n=25, noise=0.2)
    rule = fit_rule(t, "eval_loss")  # every numeric column but the loss; `name` is text and skipped
    ref = sm.OLS(log_loss, sm.add_constant(x)).fit()
    terms = ["intercept", *COLS]
    got = [rule.intercept] + [rule.coefficients[c] for c in COLS]
    np.testing.assert_allclose(got, ref.params, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose([rule.stats["std_errors"][k] for k in terms], ref.bse, rtol=1e-8)
    np.testing.assert_allclose([rule.stats["t_values"][k] for k in terms], ref.tvalues, rtol=1e-8)
    np.testing.assert_allclose([rule.stats["p_values"][k] for k in terms], ref.pvalues, rtol=1e-7, atol=1e-300)
    assert rule.stats["r2"] == pytest.approx(ref.rsquared, rel=1e-10)
    assert rule.stats["adj_r2"] == pytest.approx(ref.rsquared_adj, rel=1e-10)
    assert rule.stats["df_resid"] == ref.df_resid and rule.stats["n_datasets"] == 25
    assert rule.stats["sigma"] == pytest.approx(np.sqrt(ref.scale), rel=1e-10)


def test_loss_is_log_flag(seed):
    rng = np.random.default_rng(seed)
    t, _, log_loss = dataset_table(rng)
    a = fit_rule(t, "eval_loss", COLS)
    b = fit_rule(
        t.set_column(t.column_names.index("eval_loss"), "eval_loss", pa.array(log_loss)),
        "eval_loss",
        COLS,
        loss_is_log=True,
    )
    assert a.coefficients == pytest.approx(b.coefficients, rel=1e-12) and a.intercept == pytest.approx(b.intercept)
    assert a.stats["loss_is_log"] is False and b.stats["loss_is_log"] is True


def test_recovers_known_coefficients(seed):
    rng = np.random.default_rng(seed)
    t, _, _ = dataset_table(rng, n=400, noise=0.01)
    rule = fit_rule(t, "eval_loss", COLS)
    assert rule.intercept == pytest.approx(1.07, abs=0.03)
    assert rule.coefficients["reward"] == pytest.approx(-0.15, abs=3e-3)
    assert rule.coefficients["output_tokens"] == pytest.approx(8e-5, abs=1e-5)
    assert rule.coefficients["knn_6"] == pytest.approx(-0.9, abs=0.03)
    assert rule.coefficients["mtld"] == pytest.approx(0.0, abs=3e-4)
    assert rule.coefficients["naturalness"] == pytest.approx(0.3, abs=0.03)
    assert rule.stats["r2"] > 0.95


def statsmodels_backward(y, x, names, alpha):
    keep = list(names)
    dropped = []
    while len(keep) > 1:
        res = sm.OLS(y, sm.add_constant(x[keep].to_numpy(), has_constant="add")).fit()
        pv = res.pvalues[1:]
        worst = int(np.argmax(pv))
        if pv[worst] <= alpha:
            break
        dropped.append(keep.pop(worst))
    return keep, dropped, sm.OLS(y, sm.add_constant(x[keep].to_numpy(), has_constant="add")).fit()


def test_backward_elimination_order_matches_statsmodels_loop(seed):
    import pandas as pd

    rng = np.random.default_rng(seed)
    # Two real effects, three pure-noise columns.
    t, x, _ = dataset_table(rng, n=30, noise=0.05, coefs=(-0.2, 0.0, -1.5, 0.0, 0.0))
    rule = fit_rule(t, "eval_loss", COLS, eliminate=0.05)
    y = np.log(t.column("eval_loss").to_numpy())
    keep, dropped, ref = statsmodels_backward(y, pd.DataFrame(x, columns=COLS), COLS, 0.05)
    assert [c for c, _ in rule.stats["eliminated"]] == dropped
    assert list(rule.coefficients) == keep
    assert {"reward", "knn_6"} <= set(keep)
    np.testing.assert_allclose([rule.intercept, *rule.coefficients.values()], ref.params, rtol=1e-9)
    assert rule.stats["r2"] == pytest.approx(ref.rsquared, rel=1e-10)


def test_rule_roundtrips_json_and_scores(tmp_path, seed):
    rng = np.random.default_rng(seed)
    t, _, _ = dataset_table(rng)
    rule = fit_rule(t, "eval_loss", ["reward", "knn_6"], name="my-rule", eliminate=0.5)
    path = tmp_path / "rule.json"
    rule.to_json(path)
    back = Rule.from_json(path)
    assert back == rule
    records = pa.table({"instruction": ["a", "b"], "output": ["x", "y"], "reward": [1.0, -1.0], "knn_6": [0.8, 1.0]})
    scored = instructfast.score(records, indicators=[], rule=str(path))
    expect = [
        rule.intercept + rule.coefficients["reward"] * r + rule.coefficients["knn_6"] * k
        for r, k in [(1.0, 0.8), (-1.0, 1.0)]
    ]
    np.testing.assert_allclose(scored.column("predicted_log_loss").to_pylist(), expect, rtol=1e-12)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"loss_column": "nope"}, r"loss column `nope` not found"),
        ({"loss_column": "eval_loss", "indicators": ["reward", "zzz"]}, r"indicator columns \['zzz'\] not found"),
        ({"loss_column": "eval_loss", "indicators": ["name"]}, r"column `name` must be numeric"),
        ({"loss_column": "eval_loss", "eliminate": 1.5}, r"`eliminate` must be a p-value threshold"),
    ],
)
def test_errors(kwargs, match):
    t, _, _ = dataset_table(np.random.default_rng(0), n=10)
    with pytest.raises(RuleError, match=match):
        fit_rule(t, **kwargs)


def test_errors_on_data():
    t = pa.table({"a": [1.0, 2.0, 3.0], "b": [1.0, 0.0, 1.0], "loss": [1.0, 0.5, 0.25]})
    with pytest.raises(RuleError, match=r"3 datasets cannot fit 2 coefficients.*need at least 4"):
        fit_rule(t, "loss")
    t = pa.table({"a": [1.0, 2.0, 3.0, 4.0], "loss": [1.0, 0.0, 0.25, 0.3]})
    with pytest.raises(RuleError, match=r"`loss` must be positive.*rows \[1\]"):
        fit_rule(t, "loss")
    t = pa.table({"a": [1.0, None, 3.0, 4.0], "loss": [1.0, 0.5, 0.25, 0.3]})
    with pytest.raises(RuleError, match=r"column `a` has null/NaN/inf values in rows \[1\]"):
        fit_rule(t, "loss")
    t = pa.table({"a": [1.0, 2.0, 3.0, 4.0, 5.0], "b": [2.0, 4.0, 6.0, 8.0, 10.0], "loss": [1.0, 0.5, 0.25, 0.3, 0.2]})
    with pytest.raises(RuleError, match=r"collinear"):
        fit_rule(t, "loss")
