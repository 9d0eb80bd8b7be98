"""Typed options: flat keys onto frozen groups, parsing, validation, documentation, the CLI."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from dataclasses import dataclass
from typing import ClassVar, Literal

import pyarrow as pa
import pytest

import instructfast
from instructfast import options as opt
from instructfast.options import ScoreOptions


def test_flat_keys_land_in_their_groups_with_their_types():
    o = ScoreOptions.build(
        options={
            "lm_token_budget": "4096",  # CLI values arrive as strings
            "lm_pad_slack": "0.1",
            "lm_share_prefix": "off",
            "lm_precision": "BF16",
            "prompt_template": "plain",
            "on_overflow": "truncate",
            "knn_exact_max": 1000,
            "knn_backend": "torch",
            "reward_max_rows": 8,
            "onnx_spin": "yes",
        },
        mtld_threshold=0.5,
        threads=2,
    )
    assert (o.lm.token_budget, o.lm.pad_slack, o.lm.share_prefix, o.lm.precision) == (4096, 0.1, False, "bf16")
    assert (o.lm.prompt_template, o.model.on_overflow, o.text.mtld_threshold, o.mtld_threshold) == (
        "plain",
        "truncate",
        0.5,
        0.5,
    )
    assert (o.knn.exact_max, o.knn.backend, o.reward.max_rows, o.onnx.spin, o.threads) == (1000, "torch", 8, True, 2)
    # groups are frozen: a run's settings cannot change under it
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.lm.max_rows = 3  # type: ignore[misc]


def test_defaults_round_trip_and_to_flat_lists_only_changes():
    assert ScoreOptions.build() == ScoreOptions()
    o = ScoreOptions.build(options={"knn_seed": 3, "unieval_slack": 0.2})
    assert o.to_flat() == {"knn_seed": 3, "unieval_slack": 0.2}
    assert ScoreOptions.build(options=o.to_flat()) == o
    every = ScoreOptions().to_flat(changed_only=False)
    assert set(every) == set(opt.option_keys()) and every["mtld_threshold"] == 0.72


@pytest.mark.parametrize(
    "key,value,match",
    [
        ("lm_token_budjet", 1, r"unknown option 'lm_token_budjet' \(did you mean 'lm_token_budget'\?\)"),
        ("knn_probes", 1, r"did you mean 'knn_nprobe'"),
        ("zzz", 1, r"unknown option 'zzz'\nvalid options: (\w+, )+knn_backend, "),
        ("lm_max_rows", "many", r"option `lm_max_rows` must be an integer, got 'many'"),
        ("lm_max_rows", 2.5, r"option `lm_max_rows` must be an integer, got 2.5"),
        ("lm_max_rows", True, r"option `lm_max_rows` must be a number, got True"),
        ("lm_max_rows", 0, r"option `lm_max_rows` must be >= 1, got 0"),
        ("mtld_threshold", 1.0, r"option `mtld_threshold` must be in \(0, 1\), got 1.0"),
        ("knn_recall_target", 1.5, r"option `knn_recall_target` must be in \[0, 1\], got 1.5"),
        ("lm_share_prefix", "maybe", r"option `lm_share_prefix` must be true or false"),
        ("on_overflow", "drop", r"option `on_overflow` must be one of \['null', 'truncate'\], got 'drop'"),
        ("knn_backend", "annoy", r"option `knn_backend` must be one of \['auto', 'faiss', 'torch'\]"),
        ("prompt_template", 3, r"option `prompt_template` must be a string, got int 3"),
        ("knn_table_in_pool", "true", r"`knn_table_in_pool` only applies with `knn_pool=DIR`"),
    ],
)
def test_bad_keys_and_values_are_option_errors(key, value, match):
    with pytest.raises(instructfast.OptionError, match=match):
        ScoreOptions.build(options={key: value})


def test_the_groups_are_listed_once():
    hints = {f.name: f.type for f in dataclasses.fields(ScoreOptions)}
    assert list(opt.GROUPS) == [n for n in hints if n in opt.GROUPS]
    assert set(hints) - set(opt.GROUPS) == {"threads", "batch_rows", "models", "device"}
    for attr, group in opt.GROUPS.items():
        assert isinstance(getattr(ScoreOptions(), attr), group)


def test_one_boolean_parser():
    for word in ("1", "true", "YES", "On", 1, True):
        assert opt.parse_bool(word, "x") is True
    for word in ("0", "false", "no", "OFF", 0, False):
        assert opt.parse_bool(word, "x") is False
    with pytest.raises(instructfast.OptionError, match="`x` must be true or false"):
        opt.parse_bool(2, "x")


def test_optional_values_accept_none_and_auto():
    o = ScoreOptions.build(options={"lm_token_budget": "auto", "lm_precision": "none", "knn_nprobe": None})
    assert (o.lm.token_budget, o.lm.precision, o.knn.nprobe) == (None, None, None)
    # where "auto" is one of the choices it is kept, not read as "unset"
    o = ScoreOptions.build(options={"precision": "AUTO", "embedder_precision": "auto"})
    assert (o.model.precision, o.embedder.precision, o.lm.precision) == ("auto", "auto", None)


def test_lm_dtype_is_a_deprecated_spelling_of_lm_precision():
    for old, new in (("float32", "fp32"), ("BFloat16", "bf16"), ("float16", "fp16"), ("none", None)):
        with pytest.warns(
            instructfast.InstructfastDeprecationWarning, match="`lm_dtype` is deprecated: use `lm_precision`"
        ):
            o = ScoreOptions.build(options={"lm_dtype": old})
        assert o.lm.precision == new
    with pytest.warns(instructfast.InstructfastDeprecationWarning), pytest.raises(instructfast.OptionError):
        ScoreOptions.build(options={"lm_dtype": "float64"})


def test_every_key_is_unique_documented_and_listed():
    rows = opt.describe_options()
    keys = [r["key"] for r in rows]
    assert len(keys) == len(set(keys)) == len(opt.option_keys())
    for r in rows:
        assert r["doc"] and r["type"] and r["group"], r


def test_onnx_runtime_settings_fall_back_from_slot_to_all_models():
    o = ScoreOptions.build(options={"onnx_token_budget": 2048, "reward_token_budget": 512, "onnx_spin": False})
    assert o.reward.runtime(o.onnx) == {"token_budget": 512, "spin": False}
    assert o.unieval.runtime(o.onnx) == {"token_budget": 2048, "spin": False}
    assert ScoreOptions().embedder.runtime(ScoreOptions().onnx) == {}


def test_options_reach_the_indicators():
    from instructfast.indicators import plan

    o = ScoreOptions.build(options={"knn_vectors": "emb", "knn_exact_max": 7, "knn_recall_sample": 11, "knn_seed": 5})
    knn = plan(["knn_2"], o).indicators[0]
    assert knn.vectors_column == "emb"
    assert (knn.index_options["exact_max"], knn.index_options["recall_sample"], knn.index_options["seed"]) == (7, 11, 5)
    t = pa.table({"instruction": ["a"], "output": ["b c b"]})
    assert instructfast.score(t, indicators="mtld", options={"mtld_threshold": 0.5}).column("mtld")[0].as_py() == (
        instructfast.mtld("b c b", 0.5)
    )


def test_mtld_threshold_given_twice_must_agree():
    with pytest.raises(instructfast.ArgumentError, match="given both as a parameter and in `options`"):
        ScoreOptions.build(mtld_threshold=0.5, options={"mtld_threshold": 0.6})
    assert ScoreOptions.build(mtld_threshold=0.5, options={"mtld_threshold": 0.5}).mtld_threshold == 0.5


def test_adding_an_option_is_one_field(monkeypatch):
    """A group with one new field: its key, parsing, validation and listing follow from the field alone."""

    @dataclass(frozen=True)
    class DemoOptions(opt.OptionGroup):
        prefix: ClassVar[str] = "demo"
        title: ClassVar[str] = "demo"
        mode: Literal["fast", "exact"] = opt.option("exact", "how to run the demo")

    monkeypatch.setitem(opt.GROUPS, "demo", DemoOptions)
    assert opt.option_keys()["demo_mode"] == ("demo", "mode")
    assert opt._groups_from_flat({"demo_mode": "FAST"})["demo"].mode == "fast"
    with pytest.raises(instructfast.OptionError, match="option `demo_mode` must be one of"):
        opt._groups_from_flat({"demo_mode": "slow"})
    assert any(r["key"] == "demo_mode" and r["type"] == "fast|exact" for r in opt.describe_options())


def test_deprecated_key_warns_and_maps(monkeypatch):
    monkeypatch.setitem(opt.ALIASES, "lm_batch_rows", "lm_max_rows")
    with pytest.warns(instructfast.InstructfastDeprecationWarning, match="use `lm_max_rows`"):
        o = ScoreOptions.build(options={"lm_batch_rows": 9})
    assert o.lm.max_rows == 9


def test_cli_lists_every_option_and_maps_option_flags(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "instructfast", "options"], capture_output=True, text=True, check=True
    ).stdout
    for key in opt.option_keys():
        assert f"  {key} " in out, key
    src = tmp_path / "in.jsonl"
    src.write_text('{"instruction": "q", "output": "the cat the dog"}\n')
    dst = tmp_path / "out.parquet"
    subprocess.run(
        [sys.executable, "-m", "instructfast", "score", str(src), "-o", str(dst), "-i", "mtld", "--no-progress",
         "--option", "mtld_threshold=0.5"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    got = instructfast.read_table(dst).column("mtld")[0].as_py()
    assert got == instructfast.mtld("the cat the dog", 0.5)
    assert instructfast.ScoreReport.from_file(dst).run.options["mtld_threshold"] == 0.5
