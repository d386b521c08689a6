"""The readable specification of the segment-sum kernel, and of the metric it exists for.

Every backend is tested against `segment_unit_sums_reference` run in float64; that is the oracle.
It is written for clarity, not speed, imports no Triton, and is never edited to match a kernel.

`cosine_means_naive` is the O(T^2) brute force that GAIN-RL's published code computes: normalise,
form the full cosine matrix, take masked means. `cosine_means_from_sums` gets the same numbers
from the O(T * D) sums, which is why the kernel only needs to produce sums and counts:

    mean cosine over ordered pairs i != j in segment q = (||S_q||^2 - n_q) / (n_q (n_q - 1))
    mean cosine between segments q != c               = (S_q . S_c) / (n_q n_c)

Tests check the two agree, and the benchmark times the brute force against the kernel.
"""

from __future__ import annotations

import torch

NORM_EPS = 1e-12  # the clamp of torch.nn.functional.normalize


def unit_vectors(hidden: torch.Tensor, compute_dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """h / max(||h||, 1e-12) along the last dim, every step in `compute_dtype`."""
    hidden = hidden.to(compute_dtype)
    norms = torch.linalg.vector_norm(hidden, dim=-1, keepdim=True)
    return hidden / norms.clamp_min(NORM_EPS)


def segment_unit_sums_reference(
    hidden: torch.Tensor,
    segment_ids: torch.Tensor,
    num_segments: int,
    compute_dtype: torch.dtype = torch.float64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sums [B, S, D] (in `compute_dtype`) and counts [B, S] (int32) of unit vectors per segment.

    A token with segment id s in 0..num_segments-1 adds h / ||h|| to row s of its sample; id -1
    (template tokens, padding) adds nothing. With `compute_dtype` set to the input's own dtype this
    is "the same math done in low precision", the baseline of the bf16/fp16 test tolerance.
    """
    units = unit_vectors(hidden, compute_dtype)
    zero = torch.zeros((), dtype=compute_dtype, device=hidden.device)
    sums = []
    counts = []
    for segment in range(num_segments):
        in_segment = segment_ids == segment  # [B, T]
        sums.append(torch.where(in_segment.unsqueeze(-1), units, zero).sum(dim=1))
        counts.append(in_segment.sum(dim=1))
    return torch.stack(sums, dim=1), torch.stack(counts, dim=1).to(torch.int32)


def packed_segment_unit_sums_reference(
    hidden: torch.Tensor,
    segment_ids: torch.Tensor,
    row_starts: list[int],
    num_segments: int,
    compute_dtype: torch.dtype = torch.float64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`segment_unit_sums_reference` of B rows packed end to end: `hidden` [N, D] and `segment_ids` [N], row b
    being tokens row_starts[b] to row_starts[b + 1]; sums [B, S, D] and counts [B, S], one row at a time."""
    rows = [
        segment_unit_sums_reference(hidden[None, low:high], segment_ids[None, low:high], num_segments, compute_dtype)
        for low, high in zip(row_starts[:-1], row_starts[1:], strict=True)
    ]
    return torch.cat([sums for sums, _ in rows]), torch.cat([counts for _, counts in rows])


def cosine_means_naive(
    hidden: torch.Tensor,
    segment_ids: torch.Tensor,
    num_segments: int,
    compute_dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """[B, S, S] mean cosines from the full cosine matrix, one sample at a time (O(T^2 * D)).

    Entry [b, q, q] averages over ordered pairs i != j inside segment q (NaN below 2 tokens); entry
    [b, q, c] averages over all pairs between segments q and c (NaN if either is empty).
    """
    batch, num_tokens, _ = hidden.shape
    means = torch.empty((batch, num_segments, num_segments), dtype=compute_dtype, device=hidden.device)
    not_self = ~torch.eye(num_tokens, dtype=torch.bool, device=hidden.device)
    for sample in range(batch):
        units = unit_vectors(hidden[sample], compute_dtype)
        cosines = units @ units.T  # [T, T]
        for q in range(num_segments):
            in_q = segment_ids[sample] == q
            for c in range(num_segments):
                in_c = segment_ids[sample] == c
                pairs = in_q.unsqueeze(1) & in_c.unsqueeze(0)
                if q == c:
                    pairs &= not_self
                # 0 / 0 = NaN when there are no pairs, as the docstring promises.
                means[sample, q, c] = torch.where(pairs, cosines, 0).sum() / pairs.sum()
    return means


def cosine_means_from_sums(sums: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """[B, S, S] mean cosines from segment sums and counts, in float64 (same layout as the naive)."""
    sums = sums.to(torch.float64)
    counts = counts.to(torch.float64)
    dots = sums @ sums.transpose(1, 2)  # [B, S, S]: S_q . S_c
    pairs = counts.unsqueeze(2) * counts.unsqueeze(1)  # n_q * n_c
    means = dots / pairs
    diagonal = torch.diagonal(dots, dim1=1, dim2=2)
    intra = (diagonal - counts) / (counts * (counts - 1))
    means = means.diagonal_scatter(intra, dim1=1, dim2=2)
    has_pairs = pairs > 0
    has_pairs = has_pairs.diagonal_scatter(counts >= 2, dim1=1, dim2=2)
    return torch.where(has_pairs, means, torch.full_like(means, float("nan")))
