"""Shared fixtures: tiny offline model folders and datasets. Nothing here touches the network."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
# Dtype and batch-size measurements of throwaway tiny models belong to this session, not the user's cache. Set
# here in the xdist controller before it starts its workers, who inherit it: the workers share one converted copy
# of the embedded GGUF (about 35 s to make), not one each.
if "GAINCURATE_CACHE_DIR" not in os.environ:
    os.environ["GAINCURATE_CACHE_DIR"] = tempfile.mkdtemp(prefix="gaincurate-test-cache-")
    atexit.register(shutil.rmtree, os.environ["GAINCURATE_CACHE_DIR"], ignore_errors=True)

from helpers import PROBLEMS, save_tiny_model, write_jsonl


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """Folders with a random 3-layer Llama, Qwen2 and GPT-2, each with a ChatML-template tokenizer."""
    root = tmp_path_factory.mktemp("models")
    return {arch: save_tiny_model(root / arch, arch) for arch in ("llama", "qwen2", "gpt2")}


@pytest.fixture(scope="session")
def tiny_llama(tiny_models) -> Path:
    return tiny_models["llama"]


@pytest.fixture()
def problems_file(tmp_path) -> Path:
    return write_jsonl(tmp_path / "problems.jsonl", PROBLEMS)
