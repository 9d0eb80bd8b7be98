"""atheris entry point: the file readers and writers (see harness.check_readers).

Run by ``make fuzz``; instructfast's own Python modules are instrumented for coverage, so the
fuzzer learns the readers' branches (JSON pieces, surrogate escapes, CSV record lengths ...).
"""

import sys

import atheris

with atheris.instrument_imports(include=["instructfast", "tests.fuzz"]):
    import instructfast  # noqa: F401  (instrumented before the harness imports it)
    from tests.fuzz.harness import check_readers


def main() -> None:
    atheris.Setup(sys.argv, check_readers)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
