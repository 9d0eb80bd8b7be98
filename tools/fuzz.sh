#!/usr/bin/env bash
# Runs each atheris harness (tests/fuzz/fuzz_*.py) for FUZZ_SECONDS seconds, side by side, against the
# native core built with clang under AddressSanitizer + UndefinedBehaviorSanitizer (make fuzz builds it
# into .venv-fuzz / build-fuzz, apart from the test environment). Fails if any harness finds a crash;
# the crashing input is left in build-fuzz/artifacts/<harness>/: copy it into tests/fuzz/corpus/<harness>/,
# where the normal suite replays it (tests/fuzz/test_fuzz_corpus.py), then fix the bug.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv-fuzz/bin/python}
SECS=${FUZZ_SECONDS:-60}
OUT=${FUZZ_OUT:-build-fuzz}
HARNESSES=${FUZZ_HARNESSES:-core readers}

ATHERIS=$("$PY" -c "import atheris; print(atheris.path())")
if [ ! -f "$ATHERIS/asan_with_fuzzer.so" ]; then
  echo "fuzz: $ATHERIS/asan_with_fuzzer.so is missing: atheris was not built with clang (make fuzz does)" >&2
  exit 2
fi
# Python and pyarrow allocate through malloc, so ASan sees (and pads) every buffer the core reads.
export PYTHONMALLOC=malloc ARROW_DEFAULT_MEMORY_POOL=system PYTHONPATH=. PYTHONWARNINGS=ignore
export ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1:handle_abort=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1

# The harnesses must run against the sanitized native core, not the pure-Python fallback.
if ! LD_PRELOAD="$ATHERIS/asan_with_fuzzer.so" "$PY" -W error -c "import instructfast._native as n; assert n.IMPL == 'native', n.IMPL_REASON"; then
  echo "fuzz: the sanitized native core does not load (make fuzz-build builds it)" >&2
  exit 2
fi

mkdir -p "$OUT"
"$PY" - "$OUT" <<'PY'
import sys
from pathlib import Path
from tests.fuzz.harness import seed_inputs
for harness, seeds in seed_inputs().items():
    d = Path(sys.argv[1]) / "corpus" / harness
    d.mkdir(parents=True, exist_ok=True)
    for name, data in seeds.items():
        (d / f"seed-{name}").write_bytes(data)
PY

pids=()
for h in $HARNESSES; do
  mkdir -p "$OUT/corpus/$h" "$OUT/artifacts/$h" "tests/fuzz/corpus/$h"
  rm -f "$OUT/artifacts/$h"/*
  LD_PRELOAD="$ATHERIS/asan_with_fuzzer.so" "$PY" "tests/fuzz/fuzz_$h.py" \
    -max_total_time="$SECS" -timeout=60 -rss_limit_mb=8192 -print_final_stats=1 \
    -artifact_prefix="$OUT/artifacts/$h/" "$OUT/corpus/$h" "tests/fuzz/corpus/$h" > "$OUT/fuzz_$h.log" 2>&1 &
  pids+=($!)
done
status=0
i=0
for h in $HARNESSES; do
  wait "${pids[$i]}"
  rc=$?
  i=$((i + 1))
  runs=$(grep -o "stat::number_of_executed_units: *[0-9]*" "$OUT/fuzz_$h.log" | grep -o "[0-9]*$" || true)
  crashes=$(ls "$OUT/artifacts/$h" 2>/dev/null | wc -l)
  if [ "$rc" -ne 0 ] || [ "$crashes" -ne 0 ]; then
    status=1
    echo "fuzz $h: FAILED (exit $rc) after ${runs:-?} inputs; crashing inputs in $OUT/artifacts/$h/; log $OUT/fuzz_$h.log:"
    grep -E "ERROR|SUMMARY|Error|Traceback|assert|==[0-9]+==" "$OUT/fuzz_$h.log" | head -20
  else
    echo "fuzz $h: ran clean for ${SECS} s, ${runs:-?} inputs (ASan + UBSan), corpus $(ls "$OUT/corpus/$h" | wc -l) inputs"
  fi
done
exit $status
