"""Rules: presets with the SPEC coefficients, JSON round trip, vectorised application."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from instructfast import RULES, Rule, get_rule
from instructfast.errors import RuleError


def test_presets_have_spec_coefficients():
    v1 = RULES["instructmining-v1"]
    assert v1.intercept == 1.0694
    assert dict(v1.coefficients) == {"reward": -0.1498, "output_tokens": 8.257e-5, "knn_6": -0.9350}
    assert RULES["instructmining-v1-code"].intercept == 1.0684
    v3 = RULES["instructmining-v3"]
    assert v3.intercept == 0.0274
    assert dict(v3.coefficients) == {
        "reward": -0.0078,
        "understandability": 0.4421,
        "naturalness": -0.3212,
        "coherence": -0.1520,
    }
    assert "2307.06290" in v1.provenance and "R^2 = 0.522" in v3.provenance


def test_apply_matches_numpy_and_nulls_propagate():
    rng = np.random.default_rng(1)
    n = 1000
    reward, toks, knn = rng.normal(size=n), rng.integers(1, 2000, size=n), rng.random(n)
    t = pa.table(
        {"reward": reward, "output_tokens": pa.array(toks), "knn_6": pa.array(knn, mask=np.arange(n) % 7 == 0)}
    )
    got = get_rule("instructmining-v1").apply(t)
    ref = 1.0694 - 0.1498 * reward + 8.257e-5 * toks - 0.9350 * knn
    mask = np.arange(n) % 7 == 0
    assert got.null_count == mask.sum()
    np.testing.assert_array_equal(np.asarray(got.to_pylist(), dtype=float)[~mask], ref[~mask])


def test_json_roundtrip(tmp_path):
    r = Rule("mine", 0.5, {"mtld": -0.001, "output_words": 1e-4}, provenance="fitted on my data", stats={"r2": 0.3})
    p = tmp_path / "rule.json"
    r.to_json(p)
    assert get_rule(str(p)) == r
    assert get_rule(r.to_dict()) == r


@pytest.mark.parametrize(
    "bad,match",
    [
        ({"name": "x", "intercept": 1.0}, "missing required field `coefficients`"),
        ({"name": "x", "intercept": "a", "coefficients": {"m": 1}}, "`intercept` must be a finite number"),
        ({"name": "x", "intercept": 1, "coefficients": {"m": float("nan")}}, "coefficient for 'm'"),
        ({"name": "x", "intercept": 1, "coefficients": {}}, "non-empty mapping"),
        ({"name": "x", "intercept": 1, "coefficients": {"m": 1}, "extra": 1}, "unknown rule fields"),
    ],
)
def test_bad_rules(bad, match):
    with pytest.raises(RuleError, match=match):
        get_rule(bad)


def test_unknown_rule_and_bad_file(tmp_path):
    with pytest.raises(RuleError, match="unknown rule 'nope'; presets"):
        get_rule("nope")
    p = tmp_path / "r.json"
    p.write_text("{not json")
    with pytest.raises(RuleError, match="not valid JSON"):
        get_rule(str(p))
    with pytest.raises(RuleError, match="does not exist"):
        get_rule(str(tmp_path / "missing.json"))


def test_apply_rejects_non_numeric_and_missing():
    r = Rule("t", 0.0, {"a": 1.0})
    with pytest.raises(RuleError, match="must be numeric"):
        r.apply(pa.table({"a": ["x"]}))
    with pytest.raises(RuleError, match=r"needs columns \['a'\]"):
        r.apply(pa.table({"b": [1.0]}))
