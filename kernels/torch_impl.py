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
        torch.bmm(membership[start:stop].to(torch.float32), units, out=sums[start:stop])
    return sums, counts
