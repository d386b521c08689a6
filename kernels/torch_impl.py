"""Vectorised PyTorch backend of `segment_unit_sums`: the default on CPU and wherever Triton is absent.

Normalise every token in fp32 (torch.nn.functional.normalize, eps 1e-12), then add the unit
vectors of each segment with one batched matmul against a 0/1 membership matrix [B, S, T]. The
matmul accumulates in fp32 on CPU. On CUDA it is only as precise as cuBLAS is allowed to be: if
TF32 matmuls are enabled (torch.backends.cuda.matmul.allow_tf32 or
torch.set_float32_matmul_precision("high")), use the Triton backend, which the auto backend already
picks on CUDA.

The fp32 copy of the hidden states is made a slice of the batch at a time so that a large batch
does not double its memory; every sample's result is the same however the batch is sliced.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .reference import NORM_EPS

# Upper bound on the fp32 copy of hidden states made at once (bytes).
SLICE_BYTES = 512 * 1024 * 1024


def segment_unit_sums_torch(
    hidden: torch.Tensor, segment_ids: torch.Tensor, num_segments: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Torch backend of `gaincurate.kernels.segment_unit_sums`; inputs are already validated."""
    batch, num_tokens, dim = hidden.shape
    segments = torch.arange(num_segments, dtype=segment_ids.dtype, device=segment_ids.device)
    membership = segment_ids.unsqueeze(1) == segments.view(1, -1, 1)  # [B, S, T]
    counts = membership.sum(dim=-1, dtype=torch.int32)

    sums = torch.zeros((batch, num_segments, dim), dtype=torch.float32, device=hidden.device)
    samples_per_slice = max(1, SLICE_BYTES // max(1, num_tokens * dim * 4))
    for start in range(0, batch, samples_per_slice):
        stop = min(batch, start + samples_per_slice)
        units = F.normalize(hidden[start:stop].to(torch.float32), dim=-1, eps=NORM_EPS)
        # The 0/1 matmul would spread a non-finite token (an fp16 overflow, often at a template token) to every
        # segment of its sample as 0 * inf: it adds nothing here, and makes its own segment's sum NaN below.
        finite = units.isfinite().all(dim=-1)
        units.masked_fill_(~finite[..., None], 0.0)
        torch.bmm(membership[start:stop].to(torch.float32), units, out=sums[start:stop])
        spoiled = (membership[start:stop] & ~finite[:, None, :]).any(dim=-1)
        sums[start:stop].masked_fill_(spoiled[..., None], float("nan"))
    return sums, counts


def padded_index(row_starts: Sequence[int], device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    """For rows packed end to end (`row_starts`: B + 1 cumulative offsets), the packed position of each row's t-th
    token `[B, W]` (W the longest row; positions past a row's end repeat its last valid one) and which are real."""
    starts = np.asarray(row_starts, dtype=np.int64)
    lengths = np.diff(starts)
    width = int(lengths.max(initial=0))
    offsets = np.arange(width, dtype=np.int64)
    valid = offsets[None, :] < lengths[:, None]
    index = np.where(valid, starts[:-1, None] + offsets[None, :], np.maximum(starts[1:, None] - 1, 0))
    return to_device(torch.from_numpy(index), device), to_device(torch.from_numpy(valid), device)


def to_device(tensor: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """A host tensor on `device`; on a GPU through pinned memory, without waiting: a copy from pageable memory would
    wait for the work queued on the device."""
    if torch.device(device).type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def segment_unit_sums_packed_torch(
    hidden: torch.Tensor, segment_ids: torch.Tensor, row_starts: Sequence[int], num_segments: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Torch backend of `gaincurate.kernels.packed_segment_unit_sums`: `hidden` [N, D] and `segment_ids` [N] hold
    B rows end to end. A slice of rows at a time is laid out padded to its longest row and summed as above, so each
    row gets the arithmetic of its padded batch."""
    rows, dim = len(row_starts) - 1, hidden.shape[-1]
    sums = torch.zeros((rows, num_segments, dim), dtype=torch.float32, device=hidden.device)
    counts = torch.zeros((rows, num_segments), dtype=torch.int32, device=hidden.device)
    widest = int(np.diff(np.asarray(row_starts, dtype=np.int64)).max(initial=0))
    rows_per_slice = max(1, SLICE_BYTES // max(1, widest * dim * 4))
    for start in range(0, rows, rows_per_slice):
        stop = min(rows, start + rows_per_slice)
        index, valid = padded_index(row_starts[start : stop + 1], hidden.device)
        ids = torch.where(valid, segment_ids[index], torch.full_like(index, -1, dtype=segment_ids.dtype))
        padded = torch.where(valid[..., None], hidden[index], torch.zeros((), dtype=hidden.dtype, device=hidden.device))
        sums[start:stop], counts[start:stop] = segment_unit_sums_torch(padded, ids, num_segments)
    return sums, counts
