"""The compiled Triton kernel on CUDA: the CPU checks again, plus the shapes of real models.

Run on a CUDA machine, without TRITON_INTERPRET: pytest -m gpu tests/kernels
Every test skips cleanly where there is no CUDA device (or when the interpreter is on).
"""

from __future__ import annotations

from dataclasses import asdict

import pytest
import torch
from kernel_cases import DTYPES, seed_for, shape_matrix

from gaincurate.kernels import bench, resolve_backend, segment_unit_sums
from gaincurate.kernels.accuracy import agreement_with_reference, random_segment_inputs
from gaincurate.kernels.launch import LaunchConfig, launch_config
from gaincurate.kernels.reference import cosine_means_from_sums, cosine_means_naive

pytestmark = [pytest.mark.gpu, pytest.mark.triton, pytest.mark.usefixtures("cuda")]

MATRIX = shape_matrix(num_tokens=(1, 7, 300, 4096), dims=(64, 96, 576, 896, 1000, 1536, 3584, 8192))


def cuda_inputs(batch, num_tokens, dim, dtype, num_segments=2, layout="runs", seed_parts=()):
    return random_segment_inputs(
        batch, num_tokens, dim, dtype, num_segments, layout=layout, device="cuda", seed=seed_for(*seed_parts)
    )


def test_auto_picks_triton_on_cuda():
    assert resolve_backend("auto", "cuda") == "triton"


@pytest.mark.parametrize(("batch", "num_tokens", "dim", "dtype_name"), MATRIX)
def test_matches_float64_reference_on_cuda(batch, num_tokens, dim, dtype_name):
    hidden, segment_ids = cuda_inputs(
        batch, num_tokens, dim, DTYPES[dtype_name], seed_parts=(batch, num_tokens, dim, dtype_name)
    )
    if batch > 1:
        segment_ids[batch // 2] = -1

    sums, counts = segment_unit_sums(hidden, segment_ids, 2, backend="triton")

    assert sums.is_cuda and sums.dtype == torch.float32 and counts.dtype == torch.int32
    agreement = agreement_with_reference(hidden, segment_ids, 2, sums, counts)
    assert agreement.ok, agreement


@pytest.mark.parametrize("num_segments", [1, 3, 8])
@pytest.mark.parametrize("dim", [896, 3584, 8192])
def test_every_segment_count_on_cuda(dim, num_segments):
    hidden, segment_ids = cuda_inputs(4, 1000, dim, torch.bfloat16, num_segments, seed_parts=(dim, num_segments))

    sums, counts = segment_unit_sums(hidden, segment_ids, num_segments, backend="triton")

    agreement = agreement_with_reference(hidden, segment_ids, num_segments, sums, counts)
    assert agreement.ok, agreement


@pytest.mark.parametrize("id_dtype", [torch.int8, torch.int16, torch.int32, torch.int64], ids=str)
def test_strides_and_id_dtypes_on_cuda(id_dtype):
    big_hidden, big_ids = cuda_inputs(10, 2100, 3600, torch.bfloat16, seed_parts=("strides",))
    hidden = big_hidden[::2, 3:2003:2, 5:3589]  # rows start unaligned: no 16-byte specialisation
    segment_ids = big_ids.t().contiguous().t()[1::2, 5:1005].to(id_dtype)

    sums, counts = segment_unit_sums(hidden, segment_ids, 2, backend="triton")

    agreement = agreement_with_reference(hidden, segment_ids, 2, sums, counts)
    assert agreement.ok, agreement


@pytest.mark.parametrize(("dim", "num_warps", "chunk_t"), [(896, 1, 256), (1536, 1, 256), (3584, 2, 512)])
def test_the_sweep_winners_at_the_swept_widths(dim, num_warps, chunk_t):
    """launch.py's tiles where the GPU sweep measured them (one token per tile, 64 row values per thread): against
    the reference, and a sample's bits the same whatever its batch-mates."""
    config = launch_config(dim, 2, interpret=False)
    assert (config.block_t, config.num_warps, config.chunk_t) == (1, num_warps, chunk_t)
    hidden, segment_ids = cuda_inputs(64, 512, dim, torch.bfloat16, layout="prompt", seed_parts=("swept", dim))

    sums, counts = segment_unit_sums(hidden, segment_ids, 2, backend="triton")

    agreement = agreement_with_reference(hidden, segment_ids, 2, sums, counts)
    assert agreement.ok, agreement
    alone = segment_unit_sums(hidden[5:6].clone(), segment_ids[5:6].clone(), 2, backend="triton")
    assert torch.equal(alone[0], sums[5:6]) and torch.equal(alone[1], counts[5:6])


SWEEP_GRID = [
    (block_t, values, stages, chunk_t)
    for block_t in bench.SWEEP_BLOCK_T
    for values in bench.SWEEP_ROW_VALUES
    for stages in bench.SWEEP_STAGES
    for chunk_t in bench.SWEEP_CHUNK_T
    if block_t * values <= bench.SWEEP_TILE_VALUES
]


@pytest.mark.parametrize(("block_t", "values", "stages", "chunk_t"), SWEEP_GRID)
def test_every_config_the_sweep_times(block_t, values, stages, chunk_t):
    """What `bench kernel` times must be right: each swept config against the reference at a 7B width."""
    default = launch_config(3584, 2, interpret=False)
    tiles = {"block_t": block_t, "num_warps": default.block_d // (32 * values), "num_stages": stages}
    config = LaunchConfig(**asdict(default) | tiles | {"chunk_t": chunk_t})
    hidden, segment_ids = cuda_inputs(8, 1000, 3584, torch.bfloat16, layout="prompt", seed_parts=("grid", block_t))

    from gaincurate.kernels.triton_impl import segment_unit_sums_triton

    sums, counts = segment_unit_sums_triton(hidden, segment_ids, 2, config=config)

    agreement = agreement_with_reference(hidden, segment_ids, 2, sums, counts)
    assert agreement.ok, agreement


def test_realistic_batch_of_a_7b_model():
    hidden, segment_ids = cuda_inputs(16, 4096, 3584, torch.bfloat16, layout="prompt", seed_parts=("7b",))

    sums, counts = segment_unit_sums(hidden, segment_ids, 2, backend="triton")

    agreement = agreement_with_reference(hidden, segment_ids, 2, sums, counts)
    assert agreement.ok, agreement
    torch_sums, torch_counts = segment_unit_sums(hidden, segment_ids, 2, backend="torch")
    assert torch.equal(counts, torch_counts)
    assert agreement_with_reference(hidden, segment_ids, 2, torch_sums, torch_counts).ok


def test_determinism_permutation_and_padding_on_cuda():
    hidden, segment_ids = cuda_inputs(8, 4096, 1536, torch.bfloat16, layout="prompt", seed_parts=("bits",))
    order = torch.randperm(8, generator=torch.Generator().manual_seed(0)).cuda()
    segment_ids[3, 2000:] = -1  # sample 3 is 2000 tokens plus padding

    first = segment_unit_sums(hidden, segment_ids, 2, backend="triton")
    second = segment_unit_sums(hidden, segment_ids, 2, backend="triton")
    permuted = segment_unit_sums(hidden[order], segment_ids[order], 2, backend="triton")
    alone = segment_unit_sums(hidden[3:4, :2000], segment_ids[3:4, :2000], 2, backend="triton")

    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert torch.equal(permuted[0], first[0][order]) and torch.equal(permuted[1], first[1][order])
    assert torch.equal(alone[0], first[0][3:4]) and torch.equal(alone[1], first[1][3:4])


def test_metric_from_kernel_sums_matches_brute_force_on_cuda():
    hidden, segment_ids = cuda_inputs(4, 2048, 3584, torch.bfloat16, layout="prompt", seed_parts=("metric",))

    sums, counts = segment_unit_sums(hidden, segment_ids, 2, backend="triton")

    from_sums = cosine_means_from_sums(sums, counts)
    brute_force = cosine_means_naive(hidden, segment_ids, 2)
    torch.testing.assert_close(from_sums, brute_force, rtol=0, atol=1e-5, equal_nan=True)


def test_offsets_beyond_int32_on_cuda():
    """More than 2**31 elements: pointer offsets must be int64. Checked through batch independence
    (the last sample copied out alone gives the same bits), so no 20 GB float64 copy is needed."""
    if torch.cuda.get_device_properties(0).total_memory < 24 * 2**30:
        pytest.skip("needs a GPU with at least 24 GiB")
    generator = torch.Generator(device="cuda").manual_seed(0)
    hidden = torch.randn((4, 150_000, 4096), generator=generator, device="cuda", dtype=torch.bfloat16)
    segment_ids = torch.randint(-1, 2, (4, 150_000), generator=generator, device="cuda", dtype=torch.int8)
    assert hidden.numel() > 2**31

    sums, counts = segment_unit_sums(hidden, segment_ids, 2, backend="triton")

    last_sums, last_counts = segment_unit_sums(hidden[3:].clone(), segment_ids[3:].clone(), 2, backend="triton")
    assert torch.equal(sums[3:], last_sums) and torch.equal(counts[3:], last_counts)
    expected_counts = torch.stack([(segment_ids[3] == s).sum() for s in range(2)]).to(torch.int32)
    assert torch.equal(counts[3], expected_counts)
