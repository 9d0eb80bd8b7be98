"""atheris entry point: the native core under AddressSanitizer + UBSan (see harness.check_core).

Run by ``make fuzz`` (``FUZZ_SECONDS``, default 60) from the repository root, in ``.venv-fuzz`` with the
extension built by clang with ``-fsanitize=address,undefined,fuzzer-no-link`` and atheris's
``asan_with_fuzzer.so`` preloaded; extra arguments go to libFuzzer.
"""

import sys

import atheris

with atheris.instrument_imports(include=["tests.fuzz", "tests.arrow_c"]):
    from tests.fuzz.harness import check_core


def main() -> None:
    atheris.Setup(sys.argv, check_core)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
