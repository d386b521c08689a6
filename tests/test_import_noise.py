"""A model load says nothing of torchao's CUDA-only extensions on a CPU machine (issue 58: `load_embedded` in a user's
script printed "Failed to load ... .so"), and drops only that: torchao's other messages still show."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("torchao")

NOISE = "Failed to load "


def test_a_model_load_drops_torchaos_extension_noise_and_only_that(tiny_llama):
    # One fresh interpreter (the noise comes once, at torchao's import): a filter put on torchao's logger before the
    # load's own sees every record it logs, so the same process says whether there was noise to drop.
    program = (
        "import logging; logging.basicConfig()\n"
        "logged = []\n"
        "logging.getLogger('torchao').addFilter(lambda record: logged.append(record.getMessage()) or True)\n"
        "from gaincurate.model import load_model, resolve_source\n"
        f"load_model(resolve_source({str(tiny_llama)!r}), dtype='float32', device='cpu')\n"
        "logging.getLogger('torchao').warning('another torchao warning')\n"
        f"print(any({NOISE!r} in message for message in logged))\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    shown = done.stderr
    assert NOISE not in shown and "another torchao warning" in shown, shown
    if done.stdout.strip() != "True":
        pytest.skip("this torchao loads its extensions here: nothing to drop")
