"""`bench gpu --forward-variants`: one batch padded on the right, transformers' forward against each variant, compared
at the real tokens only. On a CPU scoring's forward is transformers' own, so it must match to the bit; the fused
RMSNorm alone differs by its one rounding; a variant that cannot run here (the Triton fusions) says why instead of
failing the bench."""

from __future__ import annotations

import pytest
import torch

from gaincurate.lab.benchmarks.gpu import TINY, flops_per_token
from gaincurate.lab.benchmarks.gpu_forward import VARIANTS, forward_lines, forward_variants


def test_each_variant_is_timed_against_transformers_forward_on_a_padded_batch(monkeypatch):
    monkeypatch.setattr(torch, "compile", lambda module: module)  # its first call alone would take the test's time
    shape = TINY["tiny"]
    results = forward_variants(shape, "cpu", "bfloat16", rows=4, tokens=64, flops_per_token=flops_per_token(shape))

    assert results["gaincurate"]["difference"] == 0.0  # a CPU runs the model's own forward
    assert results["without_triton"]["difference"] == 0.0
    assert results["torch_compile"]["difference"] == 0.0
    assert "GPU" in results["fused_swiglu"]["error"] and "GPU" in results["fused_rotary"]["error"]
    assert results["fused_rms_norm"]["difference"] <= 2 * results["tolerance"]
    assert all(results[name].get("seconds", 1.0) > 0 for name in VARIANTS)
    lines = forward_lines(results)
    assert lines[0].startswith("forward of 4 x 64 tokens") and len(lines) == 1 + len(VARIANTS)
    assert "did not run" in lines[1 + VARIANTS.index("fused_swiglu")]


@pytest.mark.parametrize("rows", [1, 5])
def test_the_batch_is_padded_on_the_right_within_its_last_sixteenth(rows, monkeypatch):
    monkeypatch.setattr(torch, "compile", lambda module: module)
    shape = TINY["tiny"]
    results = forward_variants(shape, "cpu", "float32", rows=rows, tokens=64, flops_per_token=flops_per_token(shape))

    lengths = results["lengths"]
    assert len(lengths) == rows and lengths[0] == 64 and all(60 <= length <= 64 for length in lengths)
    assert rows == 1 or len(set(lengths)) > 1  # rows of several lengths, so the padding mask has work to do
