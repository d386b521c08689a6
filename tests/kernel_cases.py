"""The kernel tests' shared cases: one shape matrix and one seeding rule for the reference, interpreter and GPU runs."""

from __future__ import annotations

import zlib

import pytest
import torch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def shape_matrix(num_tokens=(1, 7, 150), dims=(64, 96, 576, 896, 1000), batches=(1, 5)) -> list:
    """(batch, num_tokens, dim, dtype_name) cases; the default is the CPU matrix, the GPU tests pass larger ones.

    150 tokens are two whole 64-token chunks and a partial one: the interpreter runs every tile in Python."""
    return [
        pytest.param(batch, tokens, dim, dtype_name, id=f"B{batch}-T{tokens}-D{dim}-{dtype_name}")
        for batch in batches
        for tokens in num_tokens
        for dim in dims
        for dtype_name in DTYPES
    ]


def seed_for(*parts: object) -> int:
    """A stable seed per case, so one case's inputs never depend on which other cases run."""
    return zlib.crc32("-".join(map(str, parts)).encode())


def non_finite_case() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """fp16 hidden states whose first sample has an ignored token overflowed to inf and whose second has a NaN in
    a context (segment 1) token; and which of the reference's sums [B, S] are finite: all but that context's."""
    from gaincurate.kernels.accuracy import random_segment_inputs

    hidden, segment_ids = random_segment_inputs(2, 12, 65, torch.float16, seed=seed_for("non-finite"))
    segment_ids[:, 0], segment_ids[1, 5] = -1, 1
    hidden[0, 0, 3], hidden[1, 5, 7] = float("inf"), float("nan")
    return hidden, segment_ids, torch.tensor([[True, True], [True, False]])
