"""`bench gpu --forward-variants`: one batch padded on the right, transformers' forward against each variant, compared
at the real tokens only. On a CPU scoring's forward is transformers' own, so it must match to the bit; the fused
RMSNorm alone differs by its one rounding; a variant that cannot run here (the Triton rotary embedding) says why
instead of failing the bench."""

from __future__ import annotations

import pytest

from gaincurate.lab.benchmarks.gpu import TINY, flops_per_token
from gaincurate.lab.benchmarks.gpu_forward import VARIANTS, forward_lines, forward_variants


def test_each_variant_is_timed_against_transformers_forward_on_a_padded_batch(monkeypatch):
    shape = TINY["tiny"]
    results = forward_variants(shape, "cpu", "bfloat16", rows=4, tokens=64, flops_per_token=flops_per_token(shape))

    assert results["gaincurate"]["difference"] == 0.0  # a CPU runs the model's own forward
    assert results["gaincurate"]["from_float32"] == results["tolerance"]
    assert results["gaincurate"]["rms_from_float32"] == results["rms_tolerance"]
    assert results["cudnn_attention"]["difference"] == 0.0  # nor with cuDNN's attention allowed
    assert "GPU" in results["fused_rotary"]["error"] and "GPU" in results["fused_swiglu"]["error"]
    assert results["fused_rms_norm"]["difference"] <= 2 * results["tolerance"]
    assert all(results[name].get("seconds", 1.0) > 0 for name in VARIANTS)
    lines = forward_lines(results)
    assert lines[0].startswith("forward of 4 x 64 tokens") and len(lines) == 1 + len(VARIANTS)
    assert "did not run" in lines[1 + VARIANTS.index("fused_rotary")]


@pytest.mark.parametrize("rows", [1, 5])
def test_the_batch_is_padded_on_the_right_within_its_last_sixteenth(rows, monkeypatch):
    shape = TINY["tiny"]
    results = forward_variants(shape, "cpu", "float32", rows=rows, tokens=64, flops_per_token=flops_per_token(shape))

    lengths = results["lengths"]
    assert len(lengths) == rows and lengths[0] == 64 and all(60 <= length <= 64 for length in lengths)
    assert rows == 1 or len(set(lengths)) > 1  # rows of several lengths, so the padding mask has work to do


def test_a_shorter_lease_scores_the_classes_up_to_the_largest_asked():
    from gaincurate.lab.benchmarks.gpu import MATH, MODELS, cases

    assert [(name, kind) for name, _, kind in cases(False, "qwen2-1.5b-class")] == [
        ("qwen2-0.5b-class", "long"), ("qwen2-1.5b-class", "long"), ("qwen2-1.5b-class", MATH)]  # fmt: skip
    assert len(cases(False)) == len(MODELS) + 2  # every class's long prompts, and the 1.5B and 7B MATH rows
