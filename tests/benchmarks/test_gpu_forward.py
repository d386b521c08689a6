"""`bench gpu --forward-variants`: one batch padded on the right (after a cached shared prefix, as scoring runs rows),
transformers' forward against each variant, compared at the real tokens only. On a CPU scoring's forward is
transformers' own, so it must match to the bit; the fused RMSNorm alone differs by its one rounding; a variant that
cannot run here (the Triton rotary embedding) says why instead of failing the bench."""

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
    assert all("GPU" in results[name]["error"] for name in ("fused_rotary", "fused_swiglu", "cuda_graph"))
    assert results["fused_rms_norm"]["difference"] <= 2 * results["tolerance"]
    assert all(results[name].get("seconds", 1.0) > 0 for name in VARIANTS)
    lines = forward_lines(results)
    assert lines[0].startswith("forward of 4 x 64 tokens") and len(lines) == 1 + len(VARIANTS)
    assert "did not run" in lines[1 + VARIANTS.index("fused_rotary")]
    assert results["cascade_prefix"] == {"error": "no shared prefix to attend apart"}


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


@pytest.mark.parametrize("prefix_length", [7, 40])  # shorter and longer than the rows, as the bench's 118 is
def test_rows_after_a_cached_prefix_read_what_the_whole_sequence_gives(prefix_length):
    """The batch as scoring runs it (each row from the shared prefix's cache) against each row run whole, prefix
    first, in float64: the same hidden states at every real token."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    from gaincurate.lab.benchmarks.gpu_forward import batch_forward, padded_batch

    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=512, max_position_embeddings=256, **TINY["tiny"])
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float64).eval()
    ids, lengths, mask = padded_batch(3, 32, config.vocab_size, "cpu")
    prefix = torch.randint(0, config.vocab_size, (1, prefix_length))

    got = batch_forward(model.model, ids, mask, prefix)()
    for row, length in enumerate(lengths.tolist()):
        whole = torch.cat([prefix[0], ids[row, :length]])[None]
        with torch.inference_mode():
            expected = model.model(input_ids=whole, use_cache=False).last_hidden_state[0, prefix_length:]
        torch.testing.assert_close(got[row, :length], expected, rtol=1e-10, atol=1e-10)


def test_the_variants_continue_from_the_scoring_loops_shared_prefix():
    from gaincurate.lab.benchmarks.gpu_forward import loop_prefix_tokens

    shape = TINY["tiny"]
    prefix = loop_prefix_tokens(None)
    results = forward_variants(shape, "cpu", "bfloat16", rows=2, tokens=32, flops_per_token=flops_per_token(shape),
                               prefix_tokens=prefix)  # fmt: skip

    assert prefix > 0  # the default format's system prompt and worked example: every bench row continues from them
    assert results["prefix_tokens"] == prefix and results["gaincurate"]["difference"] == 0.0
    assert set(results["without_prefix"]) == {"gaincurate", "cudnn_attention"}  # what the prefix's path costs
    assert all(seconds > 0 for seconds in results["without_prefix"].values())
    # the prefix attended apart: another rounding of the same forward, as near float32 as the plain one
    assert results["cascade_prefix"]["rms_from_float32"] <= 1.5 * results["rms_tolerance"]
    assert results["cascade_attention"] == "the reference (no GPU)"
    lines = forward_lines(results)
    assert lines[0].startswith(f"forward of 2 x 32 tokens after a prefix of {prefix}")
    assert lines[1 + VARIANTS.index("cascade_prefix")].endswith("attention by the reference (no GPU)")
    assert lines[-1].startswith("  the same rows without the prefix: gaincurate ")


def test_the_devices_forward_after_a_prefix_reads_what_the_plain_one_does(monkeypatch):
    """On a GPU scoring's forward attends without the padding mask, aligned to the lower right after the prefix
    (`forward_kernels.right_padded_causal`); forced here in float32, it matches transformers' masked forward at every
    real token, with and without the prefix."""
    from gaincurate import forward_kernels

    monkeypatch.setattr(forward_kernels, "right_padded_causal_applies", lambda model, device: True)
    shape = TINY["tiny"]
    results = forward_variants(shape, "cpu", "float32", rows=3, tokens=32, flops_per_token=flops_per_token(shape),
                               prefix_tokens=9)  # fmt: skip

    for name in ("gaincurate", "cudnn_attention", "cascade_prefix"):
        assert results[name]["difference"] <= 1e-5
    assert all(isinstance(seconds, float) for seconds in results["without_prefix"].values())


def test_a_graphed_forward_is_captured_once_after_two_warm_runs_and_replayed(monkeypatch):
    """`cuda_graph`'s capture, its CUDA calls stood in for on a CPU: two runs on a side stream (compiles, cuDNN's
    plans), one captured, and each replay relaunches the captured kernels into the captured output without running
    the host's forward again. On a GPU: `gaincurate bench gpu --forward-variants`."""
    import contextlib

    import torch

    from gaincurate.lab.benchmarks.gpu_forward import _graphed

    events = []

    class Graph:
        def replay(self):
            events.append("replay")

    @contextlib.contextmanager
    def capturing(graph):
        events.append("capture")
        yield

    fakes = {"Stream": lambda: type("Stream", (), {"wait_stream": lambda self, other: None})(),
             "current_stream": lambda: type("Stream", (), {"wait_stream": lambda self, other: None})(),
             "stream": lambda stream: contextlib.nullcontext(), "CUDAGraph": Graph, "graph": capturing}  # fmt: skip
    for name, fake in fakes.items():
        monkeypatch.setattr(torch.cuda, name, fake)
    outputs = iter(range(10))

    def run():
        events.append("run")
        return next(outputs)

    replay = _graphed(run)
    assert events == ["run", "run", "capture", "run"]
    assert replay() == 2 and replay() == 2  # the captured run's output, refilled by each replay
    assert events[4:] == ["replay", "replay"]


def test_a_variants_error_reads_in_one_line_even_without_a_message():
    from gaincurate.lab.benchmarks.gpu_forward import _why

    assert _why(RuntimeError("cuDNN: no plan\nat frame 3")) == "RuntimeError: cuDNN: no plan"
    assert _why(RuntimeError()) == "RuntimeError"
