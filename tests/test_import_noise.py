"""A model load says nothing of torchao's CUDA-only extensions on a CPU machine (issue 58: `load_embedded` in a user's
script printed "Failed to load ... .so"), and drops only that: torchao's other messages still show."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("torchao")

NOISE = "Failed to load "


def python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_a_model_load_drops_torchaos_extension_noise_and_only_that(tiny_llama):
    bare = python("import logging; logging.basicConfig(); import transformers, torchao")
    if NOISE not in bare:
        pytest.skip("this torchao loads its extensions here: nothing to drop")
    shown = python(
        "import logging; logging.basicConfig()\n"
        "from gaincurate.model import load_model, resolve_source\n"
        f"load_model(resolve_source({str(tiny_llama)!r}), dtype='float32', device='cpu')\n"
        "logging.getLogger('torchao').warning('another torchao warning')\n"
    )
    assert NOISE not in shown and "another torchao warning" in shown, shown
