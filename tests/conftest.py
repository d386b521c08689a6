"""Shared fixtures: tiny offline model folders and datasets. Nothing here touches the network."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from functools import cache
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
# PYTEST_WORKERS workers share the machine's cores: each gets its share of torch threads, and so do the commands
# its tests start, which inherit it. Two workers with a torch thread per core each, contending for two cores, made
# the model tests 13% slower (#27). A thread count the user set is kept; a run without workers keeps torch's own.
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    _share = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    os.environ.setdefault("OMP_NUM_THREADS", str(_share))
# Dtype and batch-size measurements of throwaway tiny models belong to this session, not the user's cache. Set
# here in the xdist controller before it starts its workers, who inherit it: the workers share one converted copy
# of the embedded GGUF (about 35 s to make), not one each.
if "GAINCURATE_CACHE_DIR" not in os.environ:
    os.environ["GAINCURATE_CACHE_DIR"] = tempfile.mkdtemp(prefix="gaincurate-test-cache-")
    atexit.register(shutil.rmtree, os.environ["GAINCURATE_CACHE_DIR"], ignore_errors=True)

from helpers import PROBLEMS, save_tiny_model, write_jsonl

# The test that converts the embedded GGUF (and times its cached copy) goes first, so that its conversion is the
# session's; then the minute-long ones, so that no worker ends the run waiting on one: the `slow` tests and the
# real-verl test (90 s; not `slow`, because `make test` runs it).
FIRST = "test_load_embedded_gives_a_model_grpo_trains_fresh_from_the_gguf_and_the_same_from_the_cache"
LONG = "test_real_verl_runs_the_documented_integration"


# The kernel and determinism legs (`make test-kernels`: `-m triton`, `make test-determinism`: `-m determinism`) run a
# few files; collecting the whole suite cost each of their processes about 12 s. They collect only the test files
# that name their marker, and every full collection checks that no test carries the marker from anywhere else (a
# conftest, a shared mark object), which that rule would drop from its leg.
LEGS = ("triton", "determinism")


@cache
def names_marker(path: Path, marker: str) -> bool:
    return f"mark.{marker}" in path.read_text()


def pytest_ignore_collect(collection_path: Path, config):
    leg = config.getoption("markexpr")
    test_file = collection_path.name.startswith("test_") and collection_path.suffix == ".py"
    if leg in LEGS and test_file and not names_marker(collection_path, leg):
        return True
    return None  # not False: that would overrule the other ignore rules (tests/verl/conftest.py's collect_ignore)


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects: the full run sees the triton tests it does not run
def pytest_collection_modifyitems(config, items):
    for item in items:
        for leg in LEGS:
            if item.get_closest_marker(leg) and not names_marker(item.path, leg):
                raise pytest.UsageError(f"{item.nodeid} is marked {leg} but its file does not say `mark.{leg}`, so "
                                        f"`pytest -m {leg}` would not collect it: mark it in its file")  # fmt: skip

    def rank(item) -> int:
        return 0 if item.name == FIRST else 1 if item.name == LONG or item.get_closest_marker("slow") else 2

    items.sort(key=rank)  # stable: each group keeps the collection order


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """Folders with a random 3-layer Llama, Qwen2, GPT-2 and Mistral (an 8-token sliding window, shorter than the
    shared prompt prefix), each with a ChatML-template tokenizer."""
    root = tmp_path_factory.mktemp("models")
    return {arch: save_tiny_model(root / arch, arch) for arch in ("llama", "qwen2", "gpt2", "mistral")}


@pytest.fixture(scope="session")
def tiny_llama(tiny_models) -> Path:
    return tiny_models["llama"]


@pytest.fixture()
def problems_file(tmp_path) -> Path:
    return write_jsonl(tmp_path / "problems.jsonl", PROBLEMS)
