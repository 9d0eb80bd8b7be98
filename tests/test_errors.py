"""The error tree, pinned; and every public function x each parameter given a bad value.

Each bad call must raise an error of the project's tree (so ``except instructfast.InstructfastError``
catches everything instructfast raises on purpose) whose message names the parameter, and whose
class is also the builtin a caller would expect.
"""

from __future__ import annotations

import inspect

import numpy as np
import pyarrow as pa
import pytest

import instructfast
from instructfast import errors

TABLE = pa.table({"instruction": ["Add.", "Name a colour."], "output": ["4", "Blue."]})
SCORED = TABLE.append_column("predicted_log_loss", pa.array([0.1, 0.2]))
UNIT = np.eye(4, dtype=np.float32)


# (the class, the builtins it must also be)
TREE = [
    (errors.ArgumentError, (ValueError,)),
    (errors.ArgumentTypeError, (ValueError, TypeError)),
    (errors.OptionError, (ValueError,)),
    (errors.PrecisionError, (ValueError,)),
    (errors.SchemaError, (ValueError,)),
    (errors.InputFormatError, (ValueError,)),
    (errors.RecordError, (ValueError,)),
    (errors.InvalidTextError, (ValueError, UnicodeError)),
    (errors.ArrowDataError, (ValueError,)),
    (errors.RuleError, (ValueError,)),
    (errors.IndicatorUnavailableError, (RuntimeError,)),
    (errors.MissingDependencyError, (ImportError,)),
    (errors.ModelNotFoundError, (LookupError,)),
    (errors.ModelError, (ValueError,)),
    (errors.ModelFileError, (ValueError, FileNotFoundError)),
    (errors.ModelIntegrityError, (ValueError,)),
    (errors.ExportError, (ValueError, RuntimeError)),
    (errors.ExportVerificationError, (RuntimeError,)),
    (errors.OutputExistsError, (FileExistsError,)),
    (errors.ResumeError, (RuntimeError,)),
    (errors.Overloaded, (RuntimeError,)),
]


def test_every_error_is_in_the_tree_and_exported():
    classes = {
        name: obj
        for name, obj in vars(errors).items()
        if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == errors.__name__
    }
    assert set(classes) == set(errors.__all__)
    for name, cls in classes.items():
        root = errors.InstructfastWarning if issubclass(cls, Warning) else errors.InstructfastError
        assert issubclass(cls, root), name
        assert getattr(instructfast, name) is cls, f"{name} is not exported from instructfast"
        assert name in instructfast.__all__
        assert cls.__doc__, name
    assert {c for c, _ in TREE} == {c for c in classes.values() if issubclass(c, errors.InstructfastError)} - {
        errors.InstructfastError
    }
    for cls, builtins in TREE:
        for b in builtins:
            assert issubclass(cls, b), f"{cls.__name__} is not a {b.__name__}"


def test_no_error_class_defined_outside_errors_py():
    import importlib
    import pkgutil
    from pathlib import Path

    package_dir = str(Path(instructfast.__file__).parent)  # not the editable install's extra path entries
    for mod in pkgutil.walk_packages([package_dir], "instructfast."):
        if mod.name.startswith(("instructfast.kernels", "instructfast._core")) or mod.name == "instructfast.__main__":
            continue
        module = importlib.import_module(mod.name)
        for name, obj in vars(module).items():
            if (
                inspect.isclass(obj)
                and issubclass(obj, Exception)
                and obj.__module__ == module.__name__ != errors.__name__
            ):
                pytest.fail(f"{mod.name}.{name} is an exception class outside errors.py")


def _bad_calls(tmp_path):
    """(label, callable, the parameter its message must name)."""
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text('{"instruction": "q", "output": "a"}\n')
    pool = tmp_path / "pool"
    html = tmp_path / "report.html"
    return [
        # score()
        ("score data", lambda: instructfast.score(42), "data"),
        ("score indicators unknown", lambda: instructfast.score(TABLE, indicators=["mtdl"]), "indicators"),
        ("score indicators type", lambda: instructfast.score(TABLE, indicators=[3]), "indicators"),
        ("score knn_0", lambda: instructfast.score(TABLE, indicators=["knn_0"]), "knn_<i>"),
        ("score rule", lambda: instructfast.score(TABLE, rule="instructmining-v9"), "instructmining-v9"),
        ("score columns", lambda: instructfast.score(TABLE, columns={"question": "instruction"}), "columns"),
        ("score models slot", lambda: instructfast.score(TABLE, models={"llm": "x"}), "models"),
        ("score models type", lambda: instructfast.score(TABLE, models=["x"]), "models"),
        ("score threads", lambda: instructfast.score(TABLE, threads=0), "threads"),
        ("score batch_rows", lambda: instructfast.score(TABLE, batch_rows=-5), "batch_rows"),
        ("score mtld_threshold", lambda: instructfast.score(TABLE, mtld_threshold=1.5), "mtld_threshold"),
        ("score device", lambda: instructfast.score(TABLE, device="tpu"), "device"),
        ("score options type", lambda: instructfast.score(TABLE, options=["lm_max_rows"]), "options"),
        ("score options key", lambda: instructfast.score(TABLE, options={"lm_token_budjet": 4}), "lm_token_budjet"),
        ("score options value", lambda: instructfast.score(TABLE, options={"lm_max_rows": "many"}), "lm_max_rows"),
        ("score options bool", lambda: instructfast.score(TABLE, options={"lm_share_prefix": "maybe"}), "lm_share"),
        ("score options choice", lambda: instructfast.score(TABLE, options={"on_overflow": "drop"}), "on_overflow"),
        ("score positional extra", lambda: instructfast.score(TABLE, ["mtld"], None, None, 1), "positional"),
        # Scorer
        ("Scorer schema", lambda: instructfast.Scorer(TABLE), "schema"),
        ("Scorer options", lambda: instructfast.Scorer(TABLE.schema, options={"a": 1}), "options"),
        # BatchingScorer (each bad value fails before any model loads or thread starts)
        ("BatchingScorer indicators", lambda: instructfast.BatchingScorer(indicators=["mtdl"]), "indicators"),
        ("BatchingScorer knn without pool", lambda: instructfast.BatchingScorer(indicators=["knn_6"]), "knn_pool"),
        ("BatchingScorer max_wait_ms", lambda: instructfast.BatchingScorer(max_wait_ms=-1), "serve_max_wait_ms"),
        ("BatchingScorer on_full", lambda: instructfast.BatchingScorer(on_full="drop"), "serve_on_full"),
        ("BatchingScorer max_batch_rows", lambda: instructfast.BatchingScorer(max_batch_rows=0), "max_batch_rows"),
        ("BatchingScorer options", lambda: instructfast.BatchingScorer(options={"serve_wait": 1}), "serve_wait"),
        # score_file
        ("score_file input", lambda: instructfast.score_file(tmp_path / "nope.jsonl", tmp_path / "o.parquet"), "nope"),
        (
            "score_file format",
            lambda: instructfast.score_file(jsonl, tmp_path / "o.parquet", input_format="xml"),
            "format",
        ),
        ("score_file output", lambda: instructfast.score_file(jsonl, tmp_path / "o.xyz"), "o.xyz"),
        (
            "score_file checkpoint_rows",
            lambda: instructfast.score_file(jsonl, tmp_path / "o.parquet", checkpoint_rows=0),
            "checkpoint_rows",
        ),
        # select
        ("select method", lambda: instructfast.select(SCORED, k=1, method="best"), "method"),
        ("select k", lambda: instructfast.select(SCORED, k=-1), "k"),
        ("select fraction", lambda: instructfast.select(SCORED, fraction=2.0), "fraction"),
        ("select k and fraction", lambda: instructfast.select(SCORED, k=1, fraction=0.5), "fraction"),
        ("select score_column", lambda: instructfast.select(TABLE, k=1, score_column="nope"), "nope"),
        ("select embeddings", lambda: instructfast.select(TABLE, k=1, method="kcenter", embeddings="emb"), "emb"),
        (
            "select clusters",
            lambda: instructfast.select(TABLE, k=1, method="kmeans-kcenter", embeddings=UNIT[:2], clusters=0),
            "clusters",
        ),
        (
            "select already_selected",
            lambda: instructfast.select(TABLE, k=1, method="kcenter", embeddings=UNIT[:2], already_selected=[7]),
            "already_selected",
        ),
        # fit_rule, search_subset_size
        ("fit_rule loss_column", lambda: instructfast.fit_rule(TABLE, "loss"), "loss"),
        (
            "search_subset_size budget",
            lambda: instructfast.search_subset_size(list(range(10)), len, 1, 10, 0),
            "budget",
        ),
        ("search_subset_size low", lambda: instructfast.search_subset_size(list(range(10)), len, 0, 10, 3), "low"),
        (
            "search_subset_size method",
            lambda: instructfast.search_subset_size(list(range(10)), len, 1, 10, 3, method="grid"),
            "method",
        ),
        # neighbours and pools
        ("knn_distances ks", lambda: instructfast.knn_distances(UNIT, [0]), "rank"),
        ("knn_distances vectors", lambda: instructfast.knn_distances(np.ones(4, np.float32), [1]), "vectors"),
        ("NeighborIndex backend", lambda: instructfast.NeighborIndex(UNIT, backend="annoy"), "backend"),
        ("NeighborIndex recall_target", lambda: instructfast.NeighborIndex(UNIT, recall_target=0.0), "recall_target"),
        ("NeighborIndex.search k", lambda: instructfast.NeighborIndex(UNIT).search(UNIT, 0), "k"),
        (
            "NeighborIndex.search exclude",
            lambda: instructfast.NeighborIndex(UNIT).search(UNIT, 1, exclude="self"),
            "exclude",
        ),
        ("build_pool vectors_column", lambda: instructfast.build_pool(TABLE, vectors_column="emb"), "emb"),
        ("ReferencePool.load path", lambda: instructfast.ReferencePool.load(pool), "pool"),
        # models
        ("export kind", lambda: instructfast.export("ranker", tmp_path, tmp_path / "x"), "kind"),
        ("load_embedder models", lambda: instructfast.load_embedder({"embedder": str(tmp_path / "none")}), "none"),
        # files
        ("read_table path", lambda: instructfast.read_table(tmp_path / "missing.jsonl"), "missing.jsonl"),
        ("read_table format", lambda: instructfast.read_table(jsonl, format="xml"), "format"),
        ("scan_file extension", lambda: instructfast.scan_file(tmp_path / "data.xyz"), "data.xyz"),
        ("write_table format", lambda: instructfast.write_table(TABLE, tmp_path / "t.parquet", format="xls"), "format"),
        # text core
        ("mtld text", lambda: instructfast.mtld(42), "text"),
        ("mtld threshold", lambda: instructfast.mtld("a b", threshold=2.0), "threshold"),
        ("text_stats array", lambda: instructfast.text_stats(["a"]), "array"),
        ("text_stats array type", lambda: instructfast.text_stats(pa.array([1, 2])), "array"),
        ("text_stats threads", lambda: instructfast.text_stats(pa.array(["a"]), threads=0), "threads"),
        ("tokenize text", lambda: instructfast.tokenize(None), "text"),
        # report
        ("report inputs", lambda: instructfast.report(42, output=html), "inputs"),
        ("report inputs file", lambda: instructfast.report(tmp_path / "nope.parquet", output=html), "nope.parquet"),
        ("report output", lambda: instructfast.report(SCORED, output=tmp_path / "r.parquet"), "output"),
        ("report output type", lambda: instructfast.report(SCORED, output=3), "output"),
        ("report selected shape", lambda: instructfast.report(SCORED, output=html, selected=[[0, 1]]), "selected"),
        ("report selected range", lambda: instructfast.report(SCORED, output=html, selected=[5]), "selected"),
        (
            "report selected two inputs",
            lambda: instructfast.report([SCORED, SCORED], output=html, selected=[0]),
            "selected",
        ),
        (
            "report selected file",
            lambda: instructfast.report(SCORED, output=html, selected=tmp_path / "x.csv"),
            "x.csv",
        ),
        ("report by", lambda: instructfast.report(SCORED, output=html, by="nope"), "`by`"),
        ("report labels", lambda: instructfast.report(SCORED, output=html, labels=["a", "b"]), "labels"),
        ("report labels type", lambda: instructfast.report(SCORED, output=html, labels="a"), "labels"),
        ("report indicators", lambda: instructfast.report(SCORED, output=html, indicators=["output"]), "indicators"),
        (
            "report rule",
            lambda: instructfast.report(SCORED, output=html, rule="instructmining-v9"),
            "instructmining-v9",
        ),
        ("report rule columns", lambda: instructfast.report(TABLE, output=html, rule="instructmining-v1"), "reward"),
        ("report embeddings", lambda: instructfast.report(SCORED, output=html, embeddings="emb"), "embeddings"),
        ("report embed", lambda: instructfast.report(SCORED, output=html, embed="yes"), "embed"),
        ("report columns", lambda: instructfast.report(SCORED, output=html, columns={"question": "x"}), "columns"),
        ("report title", lambda: instructfast.report(SCORED, output=html, title=5), "title"),
        ("report bins", lambda: instructfast.report(SCORED, output=html, bins=1), "bins"),
        ("report sample_rows", lambda: instructfast.report(SCORED, output=html, sample_rows=5), "sample_rows"),
        (
            "report projection_rows",
            lambda: instructfast.report(SCORED, output=html, projection_rows=0),
            "projection_rows",
        ),
        ("report examples", lambda: instructfast.report(SCORED, output=html, examples=-1), "examples"),
        ("report max_chars", lambda: instructfast.report(SCORED, output=html, max_chars=1.5), "max_chars"),
        ("report max_groups", lambda: instructfast.report(SCORED, output=html, max_groups=13), "max_groups"),
        ("report seed", lambda: instructfast.report(SCORED, output=html, seed=-1), "seed"),
        # rules and listings
        ("get_rule name", lambda: instructfast.get_rule("instructmining-v2"), "instructmining-v2"),
        ("get_rule dict", lambda: instructfast.get_rule({"name": "r"}), "intercept"),
        ("describe_indicators options", lambda: instructfast.describe_indicators({"x": 1}), "options"),
        ("ScoreOptions threads", lambda: instructfast.ScoreOptions(threads=-1), "threads"),
    ]


def test_every_bad_value_raises_a_project_error_naming_the_parameter(tmp_path):
    failures = []
    for label, call, name in _bad_calls(tmp_path):
        try:
            call()
        except instructfast.InstructfastError as e:
            if name not in str(e):
                failures.append(f"{label}: message does not name {name!r}: {e}")
        except Exception as e:
            failures.append(f"{label}: {type(e).__module__}.{type(e).__name__} outside the tree: {e}")
        else:
            failures.append(f"{label}: no error")
    assert not failures, "\n".join(failures)


def test_cli_reports_project_errors_without_a_traceback(tmp_path, capsys):
    from instructfast.cli import main

    src = tmp_path / "in.jsonl"
    src.write_text('{"instruction": "q", "output": "a"}\n')
    assert main(["score", str(src), "-o", str(tmp_path / "o.parquet"), "--option", "lm_max_rows=0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("instructfast: error: option `lm_max_rows` must be >= 1") and "Traceback" not in err
