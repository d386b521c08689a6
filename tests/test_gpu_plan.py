"""What scoring does on a GPU, checked on any machine: the batch plan, the budget from free memory, the backend.

A GPU pays per batch, so there rows are laid end to end where its torch has variable-length attention (`packed_forward`)
and their buckets would carry at least `engine.PACK_FROM_PADDING` of padding, else padded to their bucket
(`engine.padded_width`), and a batch holds what free memory allows (`gpu_budget.budget`); the torch backend replaces the
Triton kernel where the kernel's first compile would cost more than it saves (`kernels.resolve_backend`). The scores
those paddings give stay within the tolerance of exact widths: tests/test_score_invariance.py, and packed rows
tests/test_packed_forward.py. The throughput itself needs a GPU: `gaincurate bench gpu`.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

import gaincurate.kernels as kernels
from gaincurate.lab.benchmarks.gpu import LONG, MATH, MODELS, cuda_plan
from gaincurate.scoring.engine import BUCKETS_PER_OCTAVE, MIN_BUCKET_STEP, PACK_FROM_PADDING, pack_batches, padded_width
from gaincurate.scoring.gpu_budget import GPU_BATCH_TOKENS, budget, gpu_memory

H100_FREE = 79 * 2**30  # an idle H100's free memory


def test_a_rows_gpu_width_is_its_own_length_in_a_bucket_a_sixteenth_of_an_octave_wide():
    lengths = np.random.default_rng(3).integers(1, 9000, size=2000).tolist()
    for length in lengths:
        width = padded_width(length, "cuda")
        assert length <= width < max(length * (1 + 1 / BUCKETS_PER_OCTAVE), length + MIN_BUCKET_STEP)
        assert width % MIN_BUCKET_STEP == 0
        assert padded_width(length, "cpu") == length  # a CPU pads nothing
    assert {padded_width(length, "cuda") for length in range(1, 129)} == set(range(16, 129, 16))
    widths = {padded_width(length, "cuda") for length in range(1024, 2048)}
    assert len(widths) <= BUCKETS_PER_OCTAVE + 1  # a few shapes per doubling of length (its top rounds up to 2048)
    for batch in pack_batches(lengths, 65_536, "cuda"):
        assert len({padded_width(lengths[i], "cuda") for i in batch}) == 1
        assert len(batch) * padded_width(lengths[batch[0]], "cuda") <= 65_536 or len(batch) == 1


def test_the_budget_is_what_free_memory_holds_as_a_power_of_two_within_bounds():
    config = SimpleNamespace(**MODELS["qwen2-1.5b-class"], vocab_size=49_152, tie_word_embeddings=True)
    weights, per_token = gpu_memory(config, "bfloat16", 2048)
    assert 2.5e9 < weights < 4e9  # 1.5B parameters (their embedding among them) in two bytes each
    low, high = GPU_BATCH_TOKENS
    assert budget(H100_FREE, weights, per_token) == high
    small = budget(8 * 2**30, weights, per_token)
    assert low <= small < high and small & (small - 1) == 0
    assert budget(weights, weights, per_token) == low  # a full GPU still gets the smallest budget
    # A little more or less free memory gives the same budget.
    assert budget(int(8.1 * 2**30), weights, per_token) == small


def test_every_architecture_of_the_suite_gets_a_budget(tiny_models):
    from transformers import AutoConfig

    for folder in tiny_models.values():  # Llama, Qwen2 and GPT-2 (which names no intermediate size)
        weights, per_token = gpu_memory(AutoConfig.from_pretrained(folder), "bfloat16", None)
        assert weights > 0 and per_token > 0
        assert GPU_BATCH_TOKENS[0] <= budget(H100_FREE, weights, per_token) <= GPU_BATCH_TOKENS[1]


def test_the_15b_benchs_prompts_make_few_large_batches_with_little_padding():
    plan = cuda_plan(MODELS["qwen2-1.5b-class"], LONG, rows=512, prompt_tokens=1024, free_bytes=H100_FREE)
    assert plan["batches"] <= 16 and plan["padding"] <= 0.10, plan
    assert plan["padding"] <= 0.03, plan  # buckets a sixteenth of an octave wide: an eighth gave 6.3%


def test_short_prompts_share_a_few_batches():
    """The bundled problems run 20-150 tokens past the shared prefix: by length alone they would make 23 batches of a
    few rows, each bound by its kernel launches."""
    plan = cuda_plan(MODELS["qwen2-1.5b-class"], MATH, rows=512, prompt_tokens=1024, free_bytes=H100_FREE)
    assert plan["batches"] <= 6, plan


def test_short_prompts_pack_and_long_ones_stay_padded():
    """Rows pack where their buckets would carry at least PACK_FROM_PADDING of padding: the bundled problems do, the
    bench's ~1,024-token prompts do not (packing's own attention work would cost more than their padding)."""
    short, long_ = (cuda_plan(MODELS["qwen2-1.5b-class"], kind, rows=512, prompt_tokens=1024, free_bytes=H100_FREE)
                    for kind in (MATH, LONG))  # fmt: skip
    assert short["padding"] >= PACK_FROM_PADDING > long_["padding"], (short, long_)


@pytest.mark.parametrize("batch_tokens", [None, 2048], ids=["H100-budget", "small-budget"])
def test_packed_rows_fill_batches_with_real_tokens(batch_tokens):
    """Packed end to end, the bundled problems go through the model at least 95% real tokens (none is padding),
    and every batch but the last holds at least 95% of the budget in real tokens."""
    plan = cuda_plan(MODELS["qwen2-1.5b-class"], MATH, rows=512, prompt_tokens=1024, free_bytes=H100_FREE,
                     packed=True, batch_tokens=batch_tokens)  # fmt: skip
    assert 1 / (1 + plan["padding"]) >= 0.95 and plan["least_fill"] >= 0.95, plan
    if batch_tokens:
        assert plan["batches"] > 5, plan  # several full batches: the fill is measured, not vacuous
    else:
        assert plan["batches"] <= 2, plan  # one budget of an idle H100 holds them all


def test_auto_takes_the_kernel_on_cuda_only_for_work_that_repays_its_compile(monkeypatch):
    monkeypatch.setattr(kernels, "_load_triton_impl", lambda: (SimpleNamespace(INTERPRETED=False), None))
    assert kernels.resolve_backend("auto", "cuda") == "triton"  # no size given: the kernel
    assert kernels.resolve_backend("auto", "cuda", work_bytes=kernels.TRITON_REPAYS_BYTES) == "triton"
    assert kernels.resolve_backend("auto", "cuda", work_bytes=kernels.TRITON_REPAYS_BYTES - 1) == "torch"
    assert kernels.resolve_backend("auto", "cpu", work_bytes=10**15) == "torch"
    matmul = torch.backends.cuda.matmul
    before, matmul.allow_tf32 = matmul.allow_tf32, True  # the torch backend's matmul would lose precision
    try:
        assert kernels.resolve_backend("auto", "cuda", work_bytes=1) == "triton"
    finally:
        matmul.allow_tf32 = before


@pytest.mark.parametrize("budget", [4096, 131_072])
def test_the_plan_keeps_every_row_once_and_in_input_order_within_a_width(budget):
    lengths = np.random.default_rng(4).integers(20, 3000, size=700).tolist()
    batches = pack_batches(lengths, budget, "cuda")
    assert sorted(i for batch in batches for i in batch) == list(range(700))
    assert all(batch == sorted(batch) for batch in batches)
