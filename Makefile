# make test  : set up (.venv, pinned deps), build incrementally, run every test suite
# make bench : set up, build, run the benchmarks and print the table
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEPS_STAMP := $(VENV)/.ganops-deps

.PHONY: all build test test-core test-torch test-tf test-parity bench clean cuda-check gpu-check

all: build

$(DEPS_STAMP): requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	touch $@

# Editable install: the CMake build directory persists under build/, so a one-file change
# rebuilds that file only.
build: $(DEPS_STAMP)
	$(BIN)/python -m pip install -q --no-build-isolation --no-deps -e .

# Each framework's tests run in their own process; tests/parity loads both in one.
# pytest's exit code 5 (no tests collected) is not a failure; any failing test is.
PYTEST := $(BIN)/python -m pytest -q -p no:cacheprovider
SUITES := core torch tf parity
test: build
	@mkdir -p build/test-results; rm -f build/test-results/*.xml; status=0; \
	for suite in $(SUITES); do \
	  echo "== tests/$$suite"; \
	  $(PYTEST) tests/$$suite --junitxml=build/test-results/$$suite.xml; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "tests/$$suite: no tests collected"; \
	  elif [ $$rc -ne 0 ]; then status=1; fi; \
	done; \
	$(BIN)/python tests/summary.py build/test-results/*.xml || status=1; \
	exit $$status

bench: build
	$(BIN)/python benchmarks/run.py

# Compile every CUDA source with nvcc alone (no GPU, no framework headers needed).
cuda-check:
	bash .ci/compile_cuda.sh

# On a GPU machine (CUDA torch, nvcc; no venv): CUDA build, CUDA tests, GPU benchmarks.
gpu-check:
	bash tools/gpu_check.sh

clean:
	rm -rf build python/ganops/_core*.so python/ganops/torch/_ganops_torch*.so python/ganops/tf/_ganops_tf*.so
