# Both entry points create .venv when missing and install with constraints.txt, so no command
# ever pulls a CUDA build of torch.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo demo-quick test test-other-cpus bench lint type clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/python -m pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[torch,dev,html,postgres,vela]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/pytest-npu demo

demo-quick: $(STAMP)
	$(BIN)/pytest-npu demo --quick

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q
	$(MAKE) --no-print-directory test-other-cpus

# torch picks its kernels per instruction set: the checks that compare figures passing through
# float code (the docs' shown outputs, the examples against their committed baselines) run again
# as on a CPU without AVX-512 (avx2) and one without SIMD kernels (default)
OTHER_CPU_TESTS := tests/test_docs.py tests/harness/test_baseline_examples.py
test-other-cpus: $(STAMP)
	ATEN_CPU_CAPABILITY=avx2 $(BIN)/python -m pytest -n 2 -q -p no:cacheprovider $(OTHER_CPU_TESTS)
	ATEN_CPU_CAPABILITY=default $(BIN)/python -m pytest -n 2 -q -p no:cacheprovider $(OTHER_CPU_TESTS)

bench: $(STAMP)
	mkdir -p .benchmarks
	$(BIN)/python -m pytest benchmarks -q -p no:xdist --benchmark-only --benchmark-json=.benchmarks/latest.json
	$(BIN)/python benchmarks/summarize.py .benchmarks/latest.json

lint: $(STAMP)
	$(BIN)/ruff check pytest_npu reference_models tests benchmarks

type: $(STAMP)
	$(BIN)/mypy pytest_npu

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
