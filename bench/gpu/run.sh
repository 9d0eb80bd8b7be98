#!/usr/bin/env bash
# The one prepared GPU check: every GPU path of instructfast measured in at most 8 minutes, unattended.
#
#   bash bench/gpu/run.sh [--dry-run] [--out DIR]
#
# Steps, each under `timeout` with its own budget (a slow step cannot starve the others; the
# budgets of a real run add up to under 8 minutes, start-ups included):
#   build       the native core, when this checkout is not already installed with it:
#               pip install --no-build-isolation --no-deps --no-index --target into the run folder
#               (no network); when that fails, a copy of the sources with the kernels and INSTRUCTFAST_IMPL=python (the
#               pure-Python twin), reported in the summary
#   env         card, versions, commit, which native core loaded and why         (summary.py env)
#   parity      kernels (a) and (b) on CUDA against float64 torch                 (bench/gpu/parity.py)
#   kernels     kernel (a) bandwidth and speedup, kernel (b) time and memory      (bench/bench_logprob_gpu.py --quick)
#   perplexity  engine vs per-row HF loop vs sorted padded batches, 1.1B Llama    (bench/bench_perplexity_gpu.py)
#   embedder    TorchEmbedder vs sentence-transformers, MiniLM-shaped BERT        (bench/gpu/embedder.py)
#   knn         blocked torch matmul on CUDA vs numpy brute force, 100k x 384     (bench/bench_knn_gpu.py)
#   report      gpu_results.csv + gpu_summary.md                                 (summary.py report)
#
# Results: $OUT (or --out DIR; default a temporary folder, printed): gpu_results.csv, gpu_summary.md,
# gpu_run.log. A run on a CUDA device also writes bench/results/gpu_results.csv and gpu_summary.md
# (on a lent machine that tree is a copy: bring them back from $OUT). --dry-run runs the same steps
# on the CPU with tiny sizes (Triton interpreter, tiny models) and never writes under bench/results.
# PYTHON (default python3) is the interpreter; GIT_SHA names the commit when the tree is no git
# checkout (a copy sent to a GPU machine). Exit status: 0 when every step finished, 1 otherwise
# (the summary is written either way).
set -uo pipefail

usage() { sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; }

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO" || exit 2
DRY=0
OUT_DIR="${OUT:-}"
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --out) OUT_DIR="${2:?--out needs a folder}"; shift ;;
    --out=*) OUT_DIR="${1#--out=}" ;;
    -h | --help) usage; exit 0 ;;
    *) echo "run.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

PYTHON="${PYTHON:-python3}"
RUN="$(mktemp -d "${TMPDIR:-/tmp}/instructfast-gpu-check.XXXXXX")"
mkdir -p "$RUN/parts" "$RUN/logs"
[ -n "$OUT_DIR" ] || OUT_DIR="$RUN/out"
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1

# Budgets in seconds. Real run (one H100): at most 470 s in all (steps past the total are cut
# short), under 8 minutes with the shell's own start; a clean build of the core takes ~12 s on 2 cores.
# Dry run (2 CPU cores): each step takes 5-15 s; the budgets only catch a hang.
if [ "$DRY" = 1 ]; then
  export TRITON_INTERPRET=1  # before any triton import: kernels run on CPU tensors
  TOTAL=240 B_BUILD=60 B_ENV=30 B_PARITY=45 B_KERNELS=45 B_PPL=60 B_EMB=60 B_KNN=30 B_REPORT=30
  A_PARITY=(--dry-run)
  A_KERNELS=(--smoke)
  A_PPL=(--dry-run --rows 8 --repeats 1)
  A_EMB=(--dry-run --texts 120 --repeats 1)
  A_KNN=(--device cpu --n 600 --repeats 1 --numpy-queries 0)
else
  TOTAL=470 B_BUILD=60 B_ENV=20 B_PARITY=75 B_KERNELS=100 B_PPL=125 B_EMB=45 B_KNN=40 B_REPORT=10
  A_PARITY=()
  A_KERNELS=(--quick)
  A_PPL=(--rows 1000 --max-pass-s 15)
  A_EMB=()
  A_KNN=(--n 100000 --repeats 3 --numpy-queries 5000)
fi
T0=$(date +%s)

say() { echo "[gpu-check $(date +%H:%M:%S)] $*" | tee -a "$RUN/run.log"; }

# run_part NAME BUDGET CMD...: runs CMD under timeout, logs to $RUN/logs/NAME.log, appends a line
# to $RUN/parts.tsv. "@SOFT@" in CMD becomes 70% of the budget: the scripts start no new case past
# it, so a step usually ends with its finished cases written instead of being killed.
run_part() {
  local name=$1 budget=$2
  shift 2
  local left=$((TOTAL - ($(date +%s) - T0) - B_REPORT))
  [ "$budget" -gt "$left" ] && budget=$left
  local log="$RUN/logs/$name.log"
  if [ "$budget" -lt 5 ]; then
    echo "no time left of the ${TOTAL} s total" >"$log"
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "skipped (no time left)" 0 0 "$budget" "$log" >>"$RUN/parts.tsv"
    say "$name: skipped, no time left"
    return
  fi
  local args=() a
  for a in "$@"; do args+=("${a//@SOFT@/$((budget * 7 / 10))}"); done
  mkdir -p "$RUN/parts/$name"
  say "$name: starting (budget ${budget} s)"
  local start rc status secs
  start=$(date +%s.%N)
  timeout --kill-after=10 "$budget" "${args[@]}" >"$log" 2>&1
  rc=$?
  secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  case $rc in
    0) status=ok ;;
    124 | 137) status="timed out" ;;
    *) status=failed ;;
  esac
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$status" "$rc" "$secs" "$budget" "$log" >>"$RUN/parts.tsv"
  say "$name: $status (exit $rc, ${secs} s)"
}

# -- build: this checkout's package with its native core, or the pure-Python twin ----------------
build() {
  local probe='import instructfast, instructfast._core, instructfast.kernels, pathlib, sys
sys.exit(0 if pathlib.Path(instructfast.__file__).resolve().is_relative_to(pathlib.Path(sys.argv[1]).resolve()) else 3)'
  if "$PYTHON" -c "$probe" "$REPO/python" >/dev/null 2>&1; then
    echo "this checkout is installed (editable) with its native core: nothing to build"
    return 0
  fi
  # build folder in the run folder: nothing written into the tree, no stale build reused
  "$PYTHON" -m pip install --no-build-isolation --no-deps --no-index --disable-pip-version-check \
    --config-settings=build-dir="$RUN/build" --target "$RUN/site" "$REPO" || return 1
  PYTHONPATH="$RUN/site" "$PYTHON" -c "$probe" "$RUN/site"
}
BUILD_START=$(date +%s)
run_part build "$B_BUILD" bash -c "$(declare -f build); PYTHON='$PYTHON' REPO='$REPO' RUN='$RUN' build"
BUILD_SECONDS=$(($(date +%s) - BUILD_START))
case "$(tail -n 1 "$RUN/parts.tsv" | cut -f2)" in
  ok)
    if [ -d "$RUN/site/instructfast" ]; then
      export PYTHONPATH="$RUN/site${PYTHONPATH:+:$PYTHONPATH}"
      BUILD_STATUS="built" BUILD_DETAIL="pip install --no-build-isolation --no-index --target <run folder>"
    else
      BUILD_STATUS="skipped" BUILD_DETAIL="this checkout already installed with its native core"
    fi ;;
  *)
    # The package as the wheel lays it out, minus the extension: the Python sources with the
    # Triton kernels at instructfast/kernels (the import path the kernel dispatcher uses).
    rm -rf "$RUN/twin" && mkdir -p "$RUN/twin" && cp -r "$REPO/python/instructfast" "$RUN/twin/" \
      && cp -r "$REPO/kernels" "$RUN/twin/instructfast/kernels"
    export PYTHONPATH="$RUN/twin${PYTHONPATH:+:$PYTHONPATH}" INSTRUCTFAST_IMPL=python
    BUILD_STATUS="failed" BUILD_DETAIL="pure-Python twin: the sources with the kernels, INSTRUCTFAST_IMPL=python; see the build log"
    ;;
esac
export BUILD_STATUS BUILD_SECONDS BUILD_DETAIL
say "build: $BUILD_STATUS ($BUILD_DETAIL)"

DRYFLAG=()
[ "$DRY" = 1 ] && DRYFLAG=(--dry-run)
run_part env "$B_ENV" "$PYTHON" bench/gpu/summary.py env --out "$RUN/env.json" "${DRYFLAG[@]}"
run_part parity "$B_PARITY" "$PYTHON" bench/gpu/parity.py --out "$RUN/parts/parity" --budget-s @SOFT@ "${A_PARITY[@]}"
run_part kernels "$B_KERNELS" "$PYTHON" bench/bench_logprob_gpu.py --out "$RUN/parts/kernels" --budget-s @SOFT@ \
  "${A_KERNELS[@]}"
run_part perplexity "$B_PPL" "$PYTHON" bench/bench_perplexity_gpu.py --out "$RUN/parts/perplexity" \
  --budget-s @SOFT@ "${A_PPL[@]}"
run_part embedder "$B_EMB" "$PYTHON" bench/gpu/embedder.py --out "$RUN/parts/embedder" --budget-s @SOFT@ "${A_EMB[@]}"
run_part knn "$B_KNN" "$PYTHON" bench/bench_knn_gpu.py --out "$RUN/parts/knn" "${A_KNN[@]}"

# -- report: always written, by bash alone if the report step itself fails --------------------------
RESULTS=()
[ "$DRY" = 1 ] || RESULTS=(--results "$REPO/bench/results")
say "report: writing $OUT_DIR/gpu_summary.md"
REPORT_OK=1
if ! timeout "$B_REPORT" "$PYTHON" bench/gpu/summary.py report --run "$RUN" --out "$OUT_DIR" "${RESULTS[@]}" \
  "${DRYFLAG[@]}" >"$RUN/logs/report.log" 2>&1; then
  REPORT_OK=0
  {
    echo "# GPU check: the report step failed"
    echo
    echo '```'
    cat "$RUN/parts.tsv"
    tail -n 30 "$RUN/logs/report.log"
    echo '```'
  } >"$OUT_DIR/gpu_summary.md"
fi
say "done in $(($(date +%s) - T0)) s; results in $OUT_DIR$([ "$DRY" = 1 ] || echo " and $REPO/bench/results")"
FAILED=$(cut -f2 "$RUN/parts.tsv" | grep -cv '^ok$')
FAILED=$((FAILED + 1 - REPORT_OK))
[ "$FAILED" = 0 ] || say "$FAILED step(s) did not finish: see $OUT_DIR/gpu_summary.md"
{
  cat "$RUN/run.log"
  while IFS=$'\t' read -r name _ _ _ _ log; do  # in run order
    printf '\n===== %s =====\n' "$name"
    cat "$log"
  done <"$RUN/parts.tsv"
  printf '\n===== report =====\n'
  cat "$RUN/logs/report.log"
} >"$OUT_DIR/gpu_run.log"
cut -f1,2 "$RUN/parts.tsv" | sed 's/^/  /'
# The run folder (build, per-step logs and CSVs) is merged into $OUT_DIR by now; keep it only
# when $OUT_DIR lives inside it.
case "$OUT_DIR" in "$RUN"/*) rm -rf "$RUN/site" "$RUN/build" "$RUN/twin" ;; *) rm -rf "$RUN" ;; esac
[ "$FAILED" = 0 ]
