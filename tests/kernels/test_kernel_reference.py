"""The float64 reference against brute force, and the torch backend against the reference.

These run in the normal process (`pytest -m "not triton"`); nothing here imports Triton.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from kernel_cases import DTYPES, non_finite_case, seed_for, shape_matrix

from gaincurate.kernels import segment_unit_sums, torch_impl
from gaincurate.kernels.accuracy import (
    agreement_with_reference,
    max_row_relative_error,
    random_segment_inputs,
)
from gaincurate.kernels.reference import (
    cosine_means_from_sums,
    cosine_means_naive,
    segment_unit_sums_reference,
)
from gaincurate.kernels.torch_impl import segment_unit_sums_torch

MATRIX = shape_matrix()


def test_reference_equals_a_token_by_token_loop():
    hidden, segment_ids = random_segment_inputs(3, 40, 96, torch.float32, 3, seed=seed_for("loop"))
    expected_sums = torch.zeros(3, 3, 96, dtype=torch.float64)
    expected_counts = torch.zeros(3, 3, dtype=torch.int32)
    for sample in range(3):
        for token in range(40):
            segment = int(segment_ids[sample, token])
            if segment >= 0:
                vector = hidden[sample, token].double()
                expected_sums[sample, segment] += vector / vector.norm()
                expected_counts[sample, segment] += 1

    sums, counts = segment_unit_sums_reference(hidden, segment_ids, 3)

    torch.testing.assert_close(sums, expected_sums, rtol=1e-12, atol=1e-12)
    assert torch.equal(counts, expected_counts)


def test_reference_normalises_like_f_normalize():
    hidden = torch.randn(2, 5, 64, dtype=torch.float64)
    hidden[0, 2] = 0.0
    segment_ids = torch.arange(5).expand(2, 5) % 2

    sums, _ = segment_unit_sums_reference(hidden, segment_ids, 2)

    units = F.normalize(hidden, dim=-1)  # eps 1e-12: the zero vector stays zero
    expected = torch.stack([units[:, 0::2].sum(1), units[:, 1::2].sum(1)], dim=1)
    torch.testing.assert_close(sums, expected, rtol=1e-14, atol=1e-14)


def test_sums_give_the_brute_force_mean_cosines():
    hidden, segment_ids = random_segment_inputs(4, 120, 96, torch.float64, 3, seed=seed_for("cosines"))
    segment_ids[1] = -1
    segment_ids[2, :] = 2
    segment_ids[2, 7] = 0  # a one-token segment: no pairs, so intra is NaN

    sums, counts = segment_unit_sums_reference(hidden, segment_ids, 3)

    from_sums = cosine_means_from_sums(sums, counts)
    brute_force = cosine_means_naive(hidden, segment_ids, 3)
    torch.testing.assert_close(from_sums, brute_force, rtol=1e-10, atol=1e-12, equal_nan=True)
    assert from_sums[1].isnan().all()
    assert from_sums[2, 0, 0].isnan() and not from_sums[2, 0, 2].isnan()


@pytest.mark.parametrize(("batch", "num_tokens", "dim", "dtype_name"), MATRIX)
def test_torch_backend_matches_float64_reference(batch, num_tokens, dim, dtype_name):
    hidden, segment_ids = random_segment_inputs(
        batch, num_tokens, dim, DTYPES[dtype_name], seed=seed_for(batch, num_tokens, dim, dtype_name)
    )
    if batch > 1:
        segment_ids[batch // 2] = -1

    sums, counts = segment_unit_sums(hidden, segment_ids, 2, backend="torch")

    assert sums.shape == (batch, 2, dim) and sums.dtype == torch.float32
    assert counts.shape == (batch, 2) and counts.dtype == torch.int32
    agreement = agreement_with_reference(hidden, segment_ids, 2, sums, counts)
    assert agreement.ok, agreement


@pytest.mark.parametrize("id_dtype", [torch.int8, torch.int16, torch.int32, torch.int64], ids=str)
def test_torch_backend_takes_every_id_dtype_and_stride(id_dtype):
    big_hidden, big_ids = random_segment_inputs(6, 200, 128, torch.bfloat16, 3, seed=seed_for("strides"))
    hidden = big_hidden[::2, 1:181:2, 5:101]
    segment_ids = big_ids.t().contiguous().t()[1::2, 20:110].to(id_dtype)

    sums, counts = segment_unit_sums(hidden, segment_ids, 3, backend="torch")

    agreement = agreement_with_reference(hidden, segment_ids, 3, sums, counts)
    assert agreement.ok, agreement


def test_torch_backend_keeps_a_non_finite_token_in_its_own_segment():
    """A non-finite token spoils its own segment's sum and no other; an ignored one, none (an fp16 overflow is often
    at a template token)."""
    hidden, segment_ids, finite = non_finite_case()
    sums, counts = segment_unit_sums(hidden, segment_ids, 2, backend="torch")
    expected, _ = segment_unit_sums_reference(hidden, segment_ids, 2)
    assert torch.equal(sums.isfinite().all(dim=-1), finite) and torch.equal(expected.isfinite().all(dim=-1), finite)
    torch.testing.assert_close(sums[finite], expected[finite].float(), rtol=1e-5, atol=1e-5)


def test_torch_backend_slices_the_batch_without_changing_bits(monkeypatch):
    hidden, segment_ids = random_segment_inputs(5, 300, 96, torch.bfloat16, seed=seed_for("slices"))
    whole = segment_unit_sums_torch(hidden, segment_ids, 2)

    monkeypatch.setattr(torch_impl, "SLICE_BYTES", 2 * 300 * 96 * 4)  # two samples per slice
    sliced = segment_unit_sums_torch(hidden, segment_ids, 2)

    assert torch.equal(whole[0], sliced[0]) and torch.equal(whole[1], sliced[1])


def test_torch_backend_permuting_the_batch_permutes_the_outputs():
    hidden, segment_ids = random_segment_inputs(5, 300, 576, torch.float32, seed=seed_for("permute"))
    order = torch.tensor([4, 2, 0, 3, 1])

    sums, counts = segment_unit_sums(hidden, segment_ids, 2, backend="torch")
    permuted = segment_unit_sums(hidden[order], segment_ids[order], 2, backend="torch")

    assert torch.equal(permuted[0], sums[order]) and torch.equal(permuted[1], counts[order])


def test_nan_poisoned_outputs_would_fail_the_comparison():
    """The poisoning fixture is active, and the accuracy rules treat NaN as an error."""
    assert torch.empty(4).isnan().all()
    assert (torch.empty(3, dtype=torch.int32) == torch.iinfo(torch.int32).min).all()

    hidden, segment_ids = random_segment_inputs(2, 7, 64, torch.float32, seed=seed_for("nan"))
    segment_ids[1] = -1
    for dtype in (torch.float32, torch.bfloat16):
        sums, counts = segment_unit_sums_reference(hidden.to(dtype), segment_ids, 2)
        written = sums.float()
        assert agreement_with_reference(hidden.to(dtype), segment_ids, 2, written, counts).ok
        unwritten = written.clone()
        unwritten[1, 0, 3] = float("nan")  # inside an empty segment's row
        agreement = agreement_with_reference(hidden.to(dtype), segment_ids, 2, unwritten, counts)
        assert not agreement.ok, agreement
    assert max_row_relative_error(torch.full((1, 8), float("nan")), torch.zeros(1, 8)) == float("inf")
