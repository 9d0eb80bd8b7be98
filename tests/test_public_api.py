"""The public surface: what ``instructfast.__all__`` holds, keyword-only options, typing files."""

from __future__ import annotations

import ast
import inspect
import typing
from pathlib import Path

import pyarrow as pa
import pytest

import instructfast

PACKAGE = Path(instructfast.__file__).parent


def _classes_in(hint: object) -> set[type]:
    """Every class mentioned by a resolved type hint (generics unpacked)."""
    out: set[type] = set()
    if inspect.isclass(hint):
        out.add(hint)
    for arg in typing.get_args(hint):
        out |= _classes_in(arg)
    return out


def test_all_names_resolve_and_are_unique():
    assert len(instructfast.__all__) == len(set(instructfast.__all__))
    for name in instructfast.__all__:
        assert hasattr(instructfast, name), name


def test_every_type_a_public_call_returns_is_exported():
    exported = {id(getattr(instructfast, n)) for n in instructfast.__all__}
    missing, seen = [], set()
    for name in instructfast.__all__:
        obj = getattr(instructfast, name)
        funcs = [obj] if inspect.isfunction(obj) else []
        if inspect.isclass(obj) and not issubclass(obj, BaseException):
            funcs += [
                m
                for _, m in inspect.getmembers(obj, lambda m: inspect.isfunction(m) or inspect.ismethod(m))
                if not m.__name__.startswith("_")
            ]
        for fn in funcs:
            hints = typing.get_type_hints(fn)
            for cls in _classes_in(hints.get("return")):
                seen.add(cls.__name__)
                if cls.__module__.startswith("instructfast") and id(cls) not in exported:
                    missing.append(f"{name}.{fn.__name__} returns {cls.__module__}.{cls.__qualname__}")
    assert not missing, "\n".join(missing)
    # the check saw the calls' real return types
    assert {
        "SelectionResult",
        "ScoreReport",
        "SearchReport",
        "FileRunResult",
        "FileSource",
        "Embedder",
        "ReportResult",
    } <= seen


@pytest.mark.parametrize(
    "fn,first",
    [
        (instructfast.score, ["data"]),
        (instructfast.score_file, ["input", "output"]),
        (instructfast.Scorer, ["schema"]),
        (instructfast.report, ["inputs"]),
    ],
)
def test_everything_after_the_data_is_keyword_only(fn, first):
    params = inspect.signature(fn).parameters
    positional = [p.name for p in params.values() if p.kind is not inspect.Parameter.KEYWORD_ONLY]
    assert positional == first
    assert len(params) > len(first)


def test_positional_options_still_work_with_a_deprecation_warning():
    t = pa.table({"instruction": ["q"], "output": ["a b a"]})
    with pytest.warns(instructfast.InstructfastDeprecationWarning, match=r"pass indicators=\.\.\."):
        old = instructfast.score(t, ["mtld"])
    assert old.equals(instructfast.score(t, indicators=["mtld"]), check_metadata=False)
    with pytest.warns(instructfast.InstructfastDeprecationWarning):
        scorer = instructfast.Scorer(t.schema, ["mtld"])
    assert scorer.plan.columns() == ["mtld"]
    with pytest.raises(instructfast.ArgumentTypeError, match="`indicators` both positionally and as a keyword"):
        instructfast.score(t, ["mtld"], indicators=["mtld"])


def test_typing_files_ship_with_the_package():
    assert (PACKAGE / "py.typed").is_file()
    stub = ast.parse((PACKAGE / "_core.pyi").read_text())
    names = {n.name for n in stub.body if isinstance(n, ast.FunctionDef)}
    names |= {t.id for n in stub.body if isinstance(n, ast.AnnAssign) for t in [n.target] if isinstance(t, ast.Name)}
    from instructfast._native import core

    if core is None:
        pytest.skip("the native extension is not built here (INSTRUCTFAST_IMPL=python)")
    built = {n for n in dir(core) if not n.startswith("_")} | {"__version__"}
    assert names == built
