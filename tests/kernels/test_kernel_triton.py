"""The Triton kernel against the float64 reference, in the CPU interpreter.

Run: TRITON_INTERPRET=1 pytest -m triton tests/kernels
(the interpreter must be on before Triton kernels are imported, hence their own process).
Triton is imported inside the tests, never at collection, so the normal run never imports it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from kernel_cases import DTYPES, non_finite_case, seed_for, shape_matrix

from gaincurate.kernels import BackendError, resolve_backend, segment_unit_sums
from gaincurate.kernels.accuracy import agreement_with_reference, random_segment_inputs
from gaincurate.kernels.launch import MAX_DIM, LaunchConfig, launch_config
from gaincurate.kernels.reference import cosine_means_from_sums, cosine_means_naive, segment_unit_sums_reference

pytestmark = [pytest.mark.triton, pytest.mark.usefixtures("interpreter")]

MATRIX = shape_matrix()
TESTS = Path(__file__).parents[1]  # kernel_compile.py, the test-only compiler check


def triton_sums(hidden, segment_ids, num_segments, config: LaunchConfig | None = None):
    from gaincurate.kernels.triton_impl import segment_unit_sums_triton

    return segment_unit_sums_triton(hidden, segment_ids, num_segments, config=config)


def test_an_ignored_non_finite_token_changes_nothing():
    """An ignored token is never loaded, so its overflow (an fp16 one is often at a template token) reaches no sum; a
    scored one spoils its sample's sums (0 * inf: the kernel weighs rows by 0 rather than select them, which would
    spill registers: test_kernel_compiles_for_sm80_and_sm90_without_spills)."""
    hidden, segment_ids, _ = non_finite_case()
    sums, counts = segment_unit_sums(hidden, segment_ids, 2, backend="triton")
    expected, _ = segment_unit_sums_reference(hidden, segment_ids, 2)
    assert sums[0].isfinite().all() and not sums[1, 1].isfinite().all()
    torch.testing.assert_close(sums[0], expected[0].float(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("batch", "num_tokens", "dim", "dtype_name"), MATRIX)
def test_matches_float64_reference(batch, num_tokens, dim, dtype_name):
    hidden, segment_ids = random_segment_inputs(
        batch, num_tokens, dim, DTYPES[dtype_name], seed=seed_for(batch, num_tokens, dim, dtype_name)
    )
    if batch > 1:
        segment_ids[batch // 2] = -1  # a sample with no scored token at all

    sums, counts = segment_unit_sums(hidden, segment_ids, 2, backend="triton")

    assert sums.shape == (batch, 2, dim) and sums.dtype == torch.float32
    assert counts.shape == (batch, 2) and counts.dtype == torch.int32
    agreement = agreement_with_reference(hidden, segment_ids, 2, sums, counts)
    assert agreement.ok, agreement


@pytest.mark.parametrize("dtype_name", DTYPES)
def test_ignored_runs_and_empty_segments(dtype_name):
    hidden, _ = random_segment_inputs(4, 300, 96, DTYPES[dtype_name], seed=seed_for("runs", dtype_name))
    segment_ids = torch.full((4, 300), -1, dtype=torch.int8)
    segment_ids[0, 10:40] = 0  # a long run of ignored tokens on either side
    segment_ids[0, 200:290] = 1
    # sample 1: every token ignored
    segment_ids[2, ::2] = 0  # ignored and scored tokens alternate
    segment_ids[2, 1::4] = 1
    segment_ids[3, 50:200] = 1  # segment 0 empty; segment 1 crosses chunk boundaries

    sums, counts = segment_unit_sums(hidden, segment_ids, 2, backend="triton")

    agreement = agreement_with_reference(hidden, segment_ids, 2, sums, counts)
    assert agreement.ok, agreement
    assert counts.tolist() == [[30, 90], [0, 0], [150, 75], [0, 150]]
    assert torch.equal(sums[1], torch.zeros_like(sums[1]))
    assert torch.equal(sums[3, 0], torch.zeros_like(sums[3, 0]))


@pytest.mark.parametrize("dtype_name", DTYPES)
def test_non_contiguous_batch_and_token_strides(dtype_name):
    big_hidden, big_ids = random_segment_inputs(6, 340, 700, DTYPES[dtype_name], seed=seed_for("strides", dtype_name))
    hidden = big_hidden[::2, 3:303:2, 5:605]  # batch and token strides doubled, rows start unaligned
    segment_ids = big_ids.t().contiguous().t()[1::2, 5:155]  # column-major ids, another slice
    assert hidden.stride() == (2 * 340 * 700, 2 * 700, 1)
    assert not segment_ids.is_contiguous()

    sums, counts = segment_unit_sums(hidden, segment_ids, 2, backend="triton")

    agreement = agreement_with_reference(hidden, segment_ids, 2, sums, counts)
    assert agreement.ok, agreement
    contiguous_sums, contiguous_counts = segment_unit_sums(
        hidden.contiguous(), segment_ids.contiguous(), 2, backend="triton"
    )
    assert torch.equal(sums, contiguous_sums) and torch.equal(counts, contiguous_counts)


def test_every_segment_id_dtype_gives_the_same_bits():
    hidden, segment_ids = random_segment_inputs(3, 150, 576, torch.bfloat16, seed=seed_for("ids"))
    assert segment_ids.dtype == torch.int64

    expected_sums, expected_counts = segment_unit_sums(hidden, segment_ids, 2, backend="triton")

    agreement = agreement_with_reference(hidden, segment_ids, 2, expected_sums, expected_counts)
    assert agreement.ok, agreement
    for id_dtype in (torch.int8, torch.int16, torch.int32):
        sums, counts = segment_unit_sums(hidden, segment_ids.to(id_dtype), 2, backend="triton")
        assert torch.equal(sums, expected_sums) and torch.equal(counts, expected_counts), id_dtype


@pytest.mark.parametrize("num_segments", [1, 3, 8])
def test_every_segment_count(num_segments):
    hidden, segment_ids = random_segment_inputs(
        3, 300, 96, torch.float32, num_segments, seed=seed_for("segments", num_segments)
    )

    sums, counts = segment_unit_sums(hidden, segment_ids, num_segments, backend="triton")

    assert sums.shape == (3, num_segments, 96)
    agreement = agreement_with_reference(hidden, segment_ids, num_segments, sums, counts)
    assert agreement.ok, agreement


def gpu_config(dim: int) -> LaunchConfig:
    return launch_config(dim, 2, interpret=False)


def hand_config(block_t: int, chunk_t: int) -> LaunchConfig:
    return LaunchConfig(
        block_t=block_t,
        block_d=1024,
        chunk_t=chunk_t,
        num_warps=4,
        num_stages=1,
        reduce_block_d=256,  # several feature blocks in the reduction
        reduce_num_warps=4,
    )


@pytest.mark.parametrize(
    ("dim", "config"),
    [
        pytest.param(64, gpu_config(64), id="gpu-config-D64"),
        pytest.param(576, gpu_config(576), id="gpu-config-D576"),
        pytest.param(1000, gpu_config(1000), id="gpu-config-D1000"),
        pytest.param(1536, gpu_config(1536), id="gpu-config-D1536"),
        pytest.param(1000, hand_config(1, 4), id="one-token-tiles-38-chunks"),
        pytest.param(1000, hand_config(4, 8), id="two-tiles-per-chunk"),
        pytest.param(1000, hand_config(16, 16), id="one-tile-per-chunk"),
    ],
)
def test_every_launch_config(dim, config):
    hidden, segment_ids = random_segment_inputs(3, 150, dim, torch.float32, seed=seed_for("config", dim))

    sums, counts = triton_sums(hidden, segment_ids, 2, config)

    agreement = agreement_with_reference(hidden, segment_ids, 2, sums, counts)
    assert agreement.ok, agreement


def test_two_runs_are_bitwise_identical():
    hidden, segment_ids = random_segment_inputs(3, 150, 1000, torch.bfloat16, seed=seed_for("repeat"))

    first = segment_unit_sums(hidden, segment_ids, 2, backend="triton")
    second = segment_unit_sums(hidden, segment_ids, 2, backend="triton")

    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


def test_permuting_the_batch_permutes_the_outputs():
    hidden, segment_ids = random_segment_inputs(5, 150, 896, torch.bfloat16, seed=seed_for("permute"))
    order = torch.tensor([3, 0, 4, 2, 1])

    sums, counts = segment_unit_sums(hidden, segment_ids, 2, backend="triton")
    permuted_sums, permuted_counts = segment_unit_sums(hidden[order], segment_ids[order], 2, backend="triton")

    assert torch.equal(permuted_sums, sums[order]) and torch.equal(permuted_counts, counts[order])


def test_a_samples_bits_do_not_depend_on_batch_mates_or_padding():
    hidden, segment_ids = random_segment_inputs(4, 200, 576, torch.float16, seed=seed_for("alone"))
    alone_sums, alone_counts = segment_unit_sums(hidden[2:3, :130], segment_ids[2:3, :130], 2, backend="triton")
    # The same sample padded to 200 tokens (ignored ids), beside three other samples.
    segment_ids[2, 130:] = -1

    sums, counts = segment_unit_sums(hidden, segment_ids, 2, backend="triton")

    assert torch.equal(sums[2:3], alone_sums) and torch.equal(counts[2:3], alone_counts)


def test_a_zero_vector_counts_but_adds_nothing():
    hidden, segment_ids = random_segment_inputs(2, 7, 64, torch.float32, seed=seed_for("zero"))
    segment_ids[:] = 0
    segment_ids[0, 3] = 1
    hidden[0, 3] = 0.0  # F.normalize maps it to zero rather than NaN

    sums, counts = segment_unit_sums(hidden, segment_ids, 2, backend="triton")

    assert counts[0].tolist() == [6, 1]
    assert torch.equal(sums[0, 1], torch.zeros(64))
    agreement = agreement_with_reference(hidden, segment_ids, 2, sums, counts)
    assert agreement.ok, agreement


@pytest.mark.parametrize(("batch", "num_tokens"), [(0, 7), (3, 0)])
def test_empty_inputs_give_zero_sums_and_counts(batch, num_tokens):
    hidden = torch.randn(batch, num_tokens, 96)
    segment_ids = torch.zeros(batch, num_tokens, dtype=torch.int64)

    sums, counts = segment_unit_sums(hidden, segment_ids, 2, backend="triton")

    assert torch.equal(sums, torch.zeros(batch, 2, 96))
    assert torch.equal(counts, torch.zeros(batch, 2, dtype=torch.int32))


def test_kernel_sums_give_the_brute_force_mean_cosines():
    hidden, segment_ids = random_segment_inputs(4, 150, 576, torch.float32, seed=seed_for("metric"))
    segment_ids[3, 1:] = -1  # one question token: intra is NaN, inter is NaN

    sums, counts = segment_unit_sums(hidden, segment_ids, 2, backend="triton")

    from_sums = cosine_means_from_sums(sums, counts)
    brute_force = cosine_means_naive(hidden, segment_ids, 2)
    torch.testing.assert_close(from_sums, brute_force, rtol=0, atol=1e-5, equal_nan=True)
    assert from_sums[3].isnan().all()


def test_the_interpreter_is_what_dispatch_picks_on_cpu():
    assert resolve_backend("triton", "cpu") == "triton"
    assert resolve_backend("auto", "cpu") == "torch"  # the interpreter only when asked for
    assert resolve_backend("auto", "cuda") == "torch"  # never interpreted kernels on GPU tensors


def test_an_oversized_hidden_size_names_the_value():
    hidden = torch.randn(1, 1, MAX_DIM + 1)

    with pytest.raises(BackendError, match=f"D={MAX_DIM + 1}.*backend='torch'"):
        segment_unit_sums(hidden, torch.zeros(1, 1, dtype=torch.int64), 2, backend="triton")


def test_the_kernel_leaves_its_inputs_unchanged():
    hidden, segment_ids = random_segment_inputs(2, 300, 96, torch.bfloat16, seed=seed_for("read-only"))
    hidden_before, ids_before = hidden.clone(), segment_ids.clone()

    segment_unit_sums(hidden, segment_ids, 2, backend="triton")

    assert torch.equal(hidden, hidden_before) and torch.equal(segment_ids, ids_before)


COMPILE_SCRIPT = """
import json, torch
from kernel_compile import compile_report, rotary_compile_report, silu_mul_compile_report
reports = [compile_report(dim, 2) for dim in (896, 1536, 3584)]
reports += [compile_report(896, s) for s in (1, 3, 8)] + [compile_report(8192, 4), compile_report(3584, 8)]
reports += [compile_report(1000, 2, dtype, ids, arch=arch)
            for dtype, ids, arch in ((torch.float16, torch.int8, 90), (torch.float32, torch.int16, 80),
                                     (torch.bfloat16, torch.int32, 80))]
reports += [compile_report(dim, 2, id_dtype=torch.int8, packed=True) for dim in (1536, 3584)]
print(json.dumps({"segment_sums": reports, "rotary": [rotary_compile_report(arch) for arch in (80, 90)],
                  "silu_mul": [silu_mul_compile_report(90, aligned) for aligned in (True, False)]}))
"""


def test_kernel_compiles_for_sm80_and_sm90_without_spills():
    """The interpreter accepts code the compiler rejects; compile for real (Triton ships ptxas). No config spills.
    The rotary embedding's and SiLU-and-product's kernels (elementwise.py) too, in the same child."""
    environment = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), environment.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-c", COMPILE_SCRIPT], capture_output=True, text=True, env=environment, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    reports = found["segment_sums"]
    assert [report["stack_bytes"] for report in found["rotary"]] == [0, 0]  # elementwise.py's kernel, without spills
    # SiLU and product loads 16 bytes at a time once its element count is known a multiple of 16, and only then
    assert [(report["stack_bytes"], report["vector_loads"]) for report in found["silu_mul"]] == [(0, True), (0, False)]
    assert len(reports) == 13
    for report in reports:
        assert report["stack_bytes"] == 0 and report["reduce_stack_bytes"] == 0, report
        if report["dim"] % 16 == 0:  # as for every real model: the row loads are issued ahead of use
            assert report["pipelined_hidden_loads"], report
