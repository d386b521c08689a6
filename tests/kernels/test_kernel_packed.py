"""Segment sums of rows packed end to end (`packed_segment_unit_sums`), each backend against the float64 reference.

The torch backend runs in the normal process; the Triton kernel in the CPU interpreter, in its own process:
TRITON_INTERPRET=1 pytest -m triton tests/kernels/test_kernel_packed.py.
"""

from __future__ import annotations

import pytest
import torch
from kernel_cases import DTYPES, seed_for

from gaincurate.kernels import packed_segment_unit_sums
from gaincurate.kernels.accuracy import agreement_with_reference, random_segment_inputs
from gaincurate.kernels.reference import packed_segment_unit_sums_reference, segment_unit_sums_reference

# Row lengths: a one-token row, an empty row, rows across the interpreter's 16-token tiles and the GPU's chunks.
LENGTHS = [150, 1, 0, 37, 150, 64]


def packed_case(dim: int, dtype: torch.dtype, seed: int):
    """(packed hidden [N, D], packed ids [N], row starts, padded hidden [B, T, D], padded ids [B, T]): the padded
    batch's rows cut at LENGTHS, ids past a row's length -1, as the packed rows would be if padded."""
    hidden, ids = random_segment_inputs(len(LENGTHS), max(LENGTHS), dim, dtype, seed=seed, layout="prompt")
    for row, length in enumerate(LENGTHS):
        ids[row, length:] = -1
    starts = torch.tensor([0, *LENGTHS]).cumsum(0).tolist()
    packed_hidden = torch.cat([hidden[row, :length] for row, length in enumerate(LENGTHS)])
    packed_ids = torch.cat([ids[row, :length] for row, length in enumerate(LENGTHS)])
    return packed_hidden, packed_ids, starts, hidden, ids


def test_the_packed_reference_is_the_padded_reference_row_by_row():
    packed_hidden, packed_ids, starts, hidden, ids = packed_case(96, torch.float32, seed_for("packed-reference"))
    sums, counts = packed_segment_unit_sums_reference(packed_hidden, packed_ids, starts, 2)
    expected_sums, expected_counts = segment_unit_sums_reference(hidden, ids, 2)
    assert torch.equal(counts, expected_counts)
    torch.testing.assert_close(sums, expected_sums, rtol=0, atol=1e-12)
    assert counts[2].tolist() == [0, 0] and not sums[2].any()  # the empty row


def _check(backend: str, dim: int, dtype_name: str, device: str = "cpu") -> None:
    packed_hidden, packed_ids, starts, hidden, ids = packed_case(dim, DTYPES[dtype_name], seed_for(dim, dtype_name))
    sums, counts = packed_segment_unit_sums(packed_hidden.to(device), packed_ids.to(device), starts, 2,
                                            backend=backend)  # fmt: skip
    assert sums.shape == (len(LENGTHS), 2, dim) and counts.shape == (len(LENGTHS), 2)
    agreement = agreement_with_reference(hidden, ids, 2, sums.cpu(), counts.cpu())  # the reference runs on the CPU
    assert agreement.ok, agreement


@pytest.mark.parametrize("dtype_name", DTYPES)
@pytest.mark.parametrize("dim", [96, 1000])
def test_torch_backend_reads_packed_rows_like_the_float64_reference(dim, dtype_name):
    _check("torch", dim, dtype_name)


def test_torch_backend_on_packed_rows_slices_without_changing_bits(monkeypatch):
    from gaincurate.kernels import torch_impl

    packed_hidden, packed_ids, starts, _, _ = packed_case(96, torch.float32, seed_for("packed-slices"))
    whole = packed_segment_unit_sums(packed_hidden, packed_ids, starts, 2, backend="torch")
    monkeypatch.setattr(torch_impl, "SLICE_BYTES", 1)  # one row per slice
    sliced = packed_segment_unit_sums(packed_hidden, packed_ids, starts, 2, backend="torch")
    assert all(torch.equal(a, b) for a, b in zip(whole, sliced, strict=True))


def test_row_starts_that_do_not_cover_the_packed_tokens_are_refused():
    packed_hidden, packed_ids, starts, _, _ = packed_case(64, torch.float32, seed_for("packed-bad"))
    with pytest.raises(ValueError, match="row_starts"):
        packed_segment_unit_sums(packed_hidden, packed_ids, starts[:-1], 2, backend="torch")


@pytest.mark.triton
@pytest.mark.usefixtures("interpreter")
@pytest.mark.parametrize("dtype_name", DTYPES)
@pytest.mark.parametrize("dim", [96, 1000])
def test_triton_kernel_reads_packed_rows_like_the_float64_reference(dim, dtype_name):
    _check("triton", dim, dtype_name)


@pytest.mark.gpu
@pytest.mark.triton
@pytest.mark.usefixtures("cuda")
@pytest.mark.parametrize("backend", ["triton", "torch"])
@pytest.mark.parametrize("dim", [1536, 3584])
def test_both_backends_read_packed_rows_on_cuda(dim, backend):
    _check(backend, dim, "bf16", device="cuda")
