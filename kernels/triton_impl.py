"""Fused Triton kernel: per-sample, per-segment sums of unit hidden vectors in one read of HBM.

With `elementwise.py`, the only module of gaincurate that imports Triton. `gaincurate.kernels` imports it lazily,
and only when the Triton backend is chosen, so gaincurate works where Triton is missing or broken.
TRITON_INTERPRET=1 must be set before this module is first imported: `@triton.jit` decides at
decoration time whether it builds a compiled or an interpreted kernel.

Design (docs/kernel.md has the long form):

* Grid (chunks, batch). Program (c, b) reads tokens [c * CHUNK_T, (c + 1) * CHUNK_T) of sample b,
  BLOCK_T tokens at a time, each as a whole hidden row (BLOCK_D >= D). Holding the whole row lets
  the fp32 norm and the accumulation use the same registers: every hidden state is read from HBM
  exactly once. Ignored tokens (id -1) and padding are masked out of the load and cost no bytes.
* Splitting T into chunks fills the GPU when B is small and T is long. Each program writes fp32
  partial sums [S, D] and int32 partial counts [S] to a workspace.
* `_reduce_chunks_kernel` adds the partials in chunk order 0, 1, 2, ... No atomics anywhere, so two
  runs give identical bits, and a sample's bits do not depend on its batch-mates or its padding.
  With a single chunk the workspace is the output and the reduction is skipped.

Run `gaincurate bench kernel` to check and time it. tests/kernel_compile.py compiles it for sm_80/sm_90
on any machine (Triton ships ptxas), the CPU-side check that it passes the real compiler without spills.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import triton
import triton.language as tl
from triton import knobs

from .launch import NORM_EPS, LaunchConfig, check_shape, launch_config

# Whether the kernels below were built for the CPU interpreter (fixed at import, see docstring).
INTERPRETED: bool = bool(knobs.runtime.interpret)
TRITON_VERSION: str = triton.__version__
# Fused multiply-adds in the norm and the scaling: Triton 3.9 fuses by default and 3.10 will not;
# saying so pins the generated code (and the bits) across that change.
ENABLE_FP_FUSION = True


@triton.jit
def _add_segment(sums, counts, rows, segment, inverse_norms, SEGMENT: tl.constexpr):
    """sums += the tile's unit rows of SEGMENT, counts += its members: one FMA per element, no layout change."""
    member = segment == SEGMENT
    sums += tl.sum(rows * tl.where(member, inverse_norms, 0.0)[:, None], axis=0)
    return sums, counts + member.to(tl.int32)


@triton.jit
def _store_segment(partial_sums, partial_counts, sums, counts, features, feature_mask, stride_s,
                   SEGMENT: tl.constexpr):  # fmt: skip
    tl.store(partial_sums + SEGMENT * stride_s + features, sums, mask=feature_mask)
    tl.store(partial_counts + SEGMENT, tl.sum(counts, axis=0))


@triton.jit
def _add_tile(sums0, sums1, sums2, sums3, sums4, sums5, sums6, sums7,
              counts0, counts1, counts2, counts3, counts4, counts5, counts6, counts7,
              rows, segment, inverse_norms, NUM_SEGMENTS: tl.constexpr):  # fmt: skip
    """The tile added to each of the first NUM_SEGMENTS accumulators; the others are left as they are."""
    sums0, counts0 = _add_segment(sums0, counts0, rows, segment, inverse_norms, 0)
    if NUM_SEGMENTS > 1:
        sums1, counts1 = _add_segment(sums1, counts1, rows, segment, inverse_norms, 1)
    if NUM_SEGMENTS > 2:
        sums2, counts2 = _add_segment(sums2, counts2, rows, segment, inverse_norms, 2)
    if NUM_SEGMENTS > 3:
        sums3, counts3 = _add_segment(sums3, counts3, rows, segment, inverse_norms, 3)
    if NUM_SEGMENTS > 4:
        sums4, counts4 = _add_segment(sums4, counts4, rows, segment, inverse_norms, 4)
    if NUM_SEGMENTS > 5:
        sums5, counts5 = _add_segment(sums5, counts5, rows, segment, inverse_norms, 5)
    if NUM_SEGMENTS > 6:
        sums6, counts6 = _add_segment(sums6, counts6, rows, segment, inverse_norms, 6)
    if NUM_SEGMENTS > 7:
        sums7, counts7 = _add_segment(sums7, counts7, rows, segment, inverse_norms, 7)
    return (sums0, sums1, sums2, sums3, sums4, sums5, sums6, sums7,
            counts0, counts1, counts2, counts3, counts4, counts5, counts6, counts7)  # fmt: skip


@triton.jit
def _store_tile(sums_out, counts_out, features, feature_mask, stride_s,
                sums0, sums1, sums2, sums3, sums4, sums5, sums6, sums7,
                counts0, counts1, counts2, counts3, counts4, counts5, counts6, counts7,
                NUM_SEGMENTS: tl.constexpr):  # fmt: skip
    """The first NUM_SEGMENTS accumulators' partial sums and counts, written to the program's workspace row."""
    _store_segment(sums_out, counts_out, sums0, counts0, features, feature_mask, stride_s, 0)
    if NUM_SEGMENTS > 1:
        _store_segment(sums_out, counts_out, sums1, counts1, features, feature_mask, stride_s, 1)
    if NUM_SEGMENTS > 2:
        _store_segment(sums_out, counts_out, sums2, counts2, features, feature_mask, stride_s, 2)
    if NUM_SEGMENTS > 3:
        _store_segment(sums_out, counts_out, sums3, counts3, features, feature_mask, stride_s, 3)
    if NUM_SEGMENTS > 4:
        _store_segment(sums_out, counts_out, sums4, counts4, features, feature_mask, stride_s, 4)
    if NUM_SEGMENTS > 5:
        _store_segment(sums_out, counts_out, sums5, counts5, features, feature_mask, stride_s, 5)
    if NUM_SEGMENTS > 6:
        _store_segment(sums_out, counts_out, sums6, counts6, features, feature_mask, stride_s, 6)
    if NUM_SEGMENTS > 7:
        _store_segment(sums_out, counts_out, sums7, counts7, features, feature_mask, stride_s, 7)


@triton.jit
def _segment_unit_sums_kernel(
    # pointers
    hidden_ptr,  # [B, T, D], bf16 / fp16 / fp32, last dim contiguous (PACKED: [1, N, D])
    segment_ids_ptr,  # [B, T], int8..int64, -1 = ignored (PACKED: [1, N])
    row_starts_ptr,  # PACKED only: [B + 1] int32, where each row starts in the packed tokens
    partial_sums_ptr,  # [B, C, S, D] fp32, contiguous
    partial_counts_ptr,  # [B, C, S] int32, contiguous
    # sizes
    num_tokens,
    dim,
    # strides, in elements
    stride_hidden_b,
    stride_hidden_t,
    stride_ids_b,
    stride_ids_t,
    stride_partial_sums_b,
    stride_partial_sums_c,
    stride_partial_sums_s,
    stride_partial_counts_b,
    stride_partial_counts_c,
    # meta
    NUM_SEGMENTS: tl.constexpr,
    CHUNK_T: tl.constexpr,
    BLOCK_T: tl.constexpr,
    BLOCK_D: tl.constexpr,
    NUM_STAGES: tl.constexpr,
    NORM_EPS: tl.constexpr,
    PACKED: tl.constexpr,
):
    chunk = tl.program_id(0).to(tl.int64)
    batch = tl.program_id(1).to(tl.int64)

    features = tl.arange(0, BLOCK_D)
    feature_mask = features < dim
    if PACKED:
        # Row b is tokens [starts[b], starts[b + 1]) of the one packed sequence; chunks past its end load nothing.
        row_start = tl.load(row_starts_ptr + batch).to(tl.int64)
        num_tokens = tl.load(row_starts_ptr + batch + 1).to(tl.int64) - row_start
        hidden_sample = hidden_ptr + row_start * stride_hidden_t
        ids_sample = segment_ids_ptr + row_start * stride_ids_t
    else:
        hidden_sample = hidden_ptr + batch * stride_hidden_b
        ids_sample = segment_ids_ptr + batch * stride_ids_b

    # One [BLOCK_D] accumulator per segment (MAX_SEGMENTS of them; those past NUM_SEGMENTS are never touched):
    # a row's features stay in the layout they were loaded in, where a [S, D] accumulator would make Triton move
    # every tile through shared memory.
    zeros = tl.zeros((BLOCK_D,), dtype=tl.float32)
    no_tokens = tl.zeros((BLOCK_T,), dtype=tl.int32)
    sums0, sums1, sums2, sums3, sums4, sums5, sums6, sums7 = zeros, zeros, zeros, zeros, zeros, zeros, zeros, zeros
    counts0, counts1, counts2, counts3 = no_tokens, no_tokens, no_tokens, no_tokens
    counts4, counts5, counts6, counts7 = no_tokens, no_tokens, no_tokens, no_tokens
    # NUM_STAGES > 1: the next tiles' loads are issued (cp.async) while this one is reduced.
    for tile_start in tl.range(0, CHUNK_T, BLOCK_T, num_stages=NUM_STAGES):
        tokens = chunk * CHUNK_T + tile_start + tl.arange(0, BLOCK_T)
        segment = tl.load(ids_sample + tokens * stride_ids_t, mask=tokens < num_tokens, other=-1)
        segment = segment.to(tl.int32)
        # Ids outside 0..S-1 (the -1 of template tokens and padding) are never loaded and match no segment.
        wanted = (segment >= 0) & (segment < NUM_SEGMENTS)
        rows = tl.load(
            hidden_sample + tokens[:, None] * stride_hidden_t + features[None, :],
            mask=wanted[:, None] & feature_mask[None, :],
            other=0.0,
        ).to(tl.float32)
        # F.normalize semantics, h / max(||h||, eps), as 1 / sqrt(max(||h||^2, eps^2)) in fp32: one reciprocal
        # square root (correct to about 2 ulp) in place of a rounded square root and a division.
        inverse_norms = tl.math.rsqrt(tl.maximum(tl.sum(rows * rows, axis=1), NORM_EPS * NORM_EPS))
        (sums0, sums1, sums2, sums3, sums4, sums5, sums6, sums7,
         counts0, counts1, counts2, counts3, counts4, counts5, counts6, counts7) = _add_tile(
            sums0, sums1, sums2, sums3, sums4, sums5, sums6, sums7,
            counts0, counts1, counts2, counts3, counts4, counts5, counts6, counts7,
            rows, segment, inverse_norms, NUM_SEGMENTS)  # fmt: skip

    sums_out = partial_sums_ptr + batch * stride_partial_sums_b + chunk * stride_partial_sums_c
    counts_out = partial_counts_ptr + batch * stride_partial_counts_b + chunk * stride_partial_counts_c
    _store_tile(sums_out, counts_out, features, feature_mask, stride_partial_sums_s,
                sums0, sums1, sums2, sums3, sums4, sums5, sums6, sums7,
                counts0, counts1, counts2, counts3, counts4, counts5, counts6, counts7, NUM_SEGMENTS)  # fmt: skip


@triton.jit
def _reduce_chunks_kernel(
    # pointers
    partial_sums_ptr,  # [B, C, S, D] fp32, contiguous
    partial_counts_ptr,  # [B, C, S] int32, contiguous
    sums_ptr,  # [B, S, D] fp32, contiguous
    counts_ptr,  # [B, S] int32, contiguous
    # sizes
    num_chunks,
    dim,
    # strides, in elements
    stride_partial_sums_b,
    stride_partial_sums_c,
    stride_partial_sums_s,
    stride_partial_counts_b,
    stride_partial_counts_c,
    stride_sums_b,
    stride_sums_s,
    stride_counts_b,
    # meta
    NUM_SEGMENTS: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    sample_segment = tl.program_id(0).to(tl.int64)
    feature_block = tl.program_id(1).to(tl.int64)
    batch = sample_segment // NUM_SEGMENTS
    segment = sample_segment % NUM_SEGMENTS

    features = feature_block * BLOCK_D + tl.arange(0, BLOCK_D)
    feature_mask = features < dim
    partial = partial_sums_ptr + batch * stride_partial_sums_b + segment * stride_partial_sums_s + features
    total = tl.zeros((BLOCK_D,), dtype=tl.float32)
    # Chunk order 0, 1, 2, ...: the fixed summation order that makes the output reproducible.
    for chunk in range(0, num_chunks):
        total += tl.load(partial + chunk * stride_partial_sums_c, mask=feature_mask, other=0.0)
    tl.store(sums_ptr + batch * stride_sums_b + segment * stride_sums_s + features, total, mask=feature_mask)

    if feature_block == 0:
        partial_count = partial_counts_ptr + batch * stride_partial_counts_b + segment
        count = tl.load(partial_count)
        for chunk in range(1, num_chunks):
            count += tl.load(partial_count + chunk * stride_partial_counts_c)
        tl.store(counts_ptr + batch * stride_counts_b + segment, count)


def segment_unit_sums_triton(
    hidden: torch.Tensor,
    segment_ids: torch.Tensor,
    num_segments: int,
    config: LaunchConfig | None = None,
    *,
    row_starts: torch.Tensor | None = None,
    longest: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Triton backend of `gaincurate.kernels.segment_unit_sums`; inputs are already validated.

    `config` overrides `launch_config(D, num_segments)`; tests use it to reach every code path. With `row_starts`
    ([B + 1] int32 on the device) `hidden` is [1, N, D], B rows packed end to end, the longest `longest` tokens.
    """
    batch, num_tokens, dim = hidden.shape
    if row_starts is not None:
        batch, num_tokens = row_starts.shape[0] - 1, longest
    check_shape(batch, dim, num_segments)
    if config is None:
        config = launch_config(dim, num_segments, interpret=INTERPRETED)
    if config.block_d < dim:
        raise ValueError(f"{config} cannot hold D={dim} and num_segments={num_segments}")
    device = hidden.device
    if batch == 0 or num_tokens == 0:
        return (
            torch.zeros((batch, num_segments, dim), dtype=torch.float32, device=device),
            torch.zeros((batch, num_segments), dtype=torch.int32, device=device),
        )

    num_chunks = triton.cdiv(num_tokens, config.chunk_t)
    partial_sums = torch.empty((batch, num_chunks, num_segments, dim), dtype=torch.float32, device=device)
    partial_counts = torch.empty((batch, num_chunks, num_segments), dtype=torch.int32, device=device)
    _segment_unit_sums_kernel[(num_chunks, batch)](
        hidden,
        segment_ids,
        segment_ids if row_starts is None else row_starts,
        partial_sums,
        partial_counts,
        num_tokens,
        dim,
        hidden.stride(0),
        hidden.stride(1),
        segment_ids.stride(0),
        segment_ids.stride(1),
        partial_sums.stride(0),
        partial_sums.stride(1),
        partial_sums.stride(2),
        partial_counts.stride(0),
        partial_counts.stride(1),
        NUM_SEGMENTS=num_segments,
        CHUNK_T=config.chunk_t,
        BLOCK_T=config.block_t,
        BLOCK_D=config.block_d,
        NUM_STAGES=config.num_stages,
        NORM_EPS=NORM_EPS,
        PACKED=row_starts is not None,
        num_warps=config.num_warps,
        enable_fp_fusion=ENABLE_FP_FUSION,
    )
    if num_chunks == 1:
        return partial_sums.view(batch, num_segments, dim), partial_counts.view(batch, num_segments)
    return _reduce_chunks(partial_sums, partial_counts, config)


def _reduce_chunks(
    partial_sums: torch.Tensor, partial_counts: torch.Tensor, config: LaunchConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """The chunks' partial sums [B, C, S, D] and counts [B, C, S] added in chunk order: [B, S, D] and [B, S]."""
    batch, num_chunks, num_segments, dim = partial_sums.shape
    device = partial_sums.device
    sums = torch.empty((batch, num_segments, dim), dtype=torch.float32, device=device)
    counts = torch.empty((batch, num_segments), dtype=torch.int32, device=device)
    _reduce_chunks_kernel[(batch * num_segments, triton.cdiv(dim, config.reduce_block_d))](
        partial_sums,
        partial_counts,
        sums,
        counts,
        num_chunks,
        dim,
        partial_sums.stride(0),
        partial_sums.stride(1),
        partial_sums.stride(2),
        partial_counts.stride(0),
        partial_counts.stride(1),
        sums.stride(0),
        sums.stride(1),
        counts.stride(0),
        NUM_SEGMENTS=num_segments,
        BLOCK_D=config.reduce_block_d,
        num_warps=config.reduce_num_warps,
        enable_fp_fusion=ENABLE_FP_FUSION,
    )
    return sums, counts


def do_bench(function: Callable[[], object], quantiles: tuple[float, ...] = (0.5, 0.2, 0.8)) -> list[float]:
    """triton.testing.do_bench (milliseconds at `quantiles`), here so Triton stays in this module."""
    from triton.testing import do_bench as triton_do_bench

    return list(triton_do_bench(function, quantiles=list(quantiles)))
