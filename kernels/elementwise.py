"""Fused Triton kernels for a decoder layer's elementwise work on a GPU: the rotary position embedding of queries
and keys, and a gated MLP's SiLU and product.

transformers runs the rotary embedding as about five kernels per tensor in the half dtype, each a pass over the
activations (`rotate_half`'s negation and concatenation, two products and a sum). Here queries and keys are one pass,
computed in float32 and rounded once to the half dtype, where transformers rounds after every step: the results differ
from its by at most a unit in the last place or two, as the fused RMSNorm's do. SiLU and product read the gate and up
projections once and write once, where transformers' two kernels write and read the activation in between. Scoring's
forward runs them on a GPU (`gaincurate.layer_fusions`).

Like `triton_impl`, this module imports Triton, and only on a GPU. TRITON_INTERPRET=1 set before it is first imported
runs the kernels on CPU tensors (the tests).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from triton import knobs

# Whether the kernels below were built for the CPU interpreter (fixed at import, as in `triton_impl`).
INTERPRETED: bool = bool(knobs.runtime.interpret)
# Elements a SiLU-and-product program takes: whole 16-byte vectors per thread at 4 warps.
_SILU_BLOCK = 1024


# The element count is specialised (Triton's default): knowing it a multiple of 16, the kernel loads and stores 16
# bytes at a time. Left unspecialised it went element by element and ran slower than transformers' two kernels.
@triton.jit
def _silu_mul_kernel(gate_ptr, up_ptr, out_ptr, numel, BLOCK: tl.constexpr):
    offsets = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    inside = offsets < numel
    gate = tl.load(gate_ptr + offsets, mask=inside).to(tl.float32)
    up = tl.load(up_ptr + offsets, mask=inside).to(tl.float32)
    tl.store(out_ptr + offsets, (gate * tl.sigmoid(gate) * up).to(out_ptr.dtype.element_ty), mask=inside)


def silu_mul(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up for two contiguous tensors of one shape and half dtype, in one pass, computed in float32 and
    rounded once."""
    out = torch.empty_like(gate)
    numel = gate.numel()
    if numel:  # a grid of no programs is not launched
        _silu_mul_kernel[(triton.cdiv(numel, _SILU_BLOCK),)](gate, up, out, numel, BLOCK=_SILU_BLOCK, num_warps=4)
    return out


@triton.jit
def _rotate(x_ptr, out_ptr, row, stride_h, out_row, out_stride_h, heads, cos_low, cos_high, sin_low, sin_high, dim,
            HALF: tl.constexpr, BLOCK_H: tl.constexpr):  # fmt: skip
    """Every head of one token of `x` rotated by that token's angles."""
    head = tl.arange(0, BLOCK_H)[:, None]
    inside = (head < heads) & (dim < HALF)
    x = x_ptr + row + head * stride_h + dim
    low = tl.load(x, mask=inside).to(tl.float32)
    high = tl.load(x + HALF, mask=inside).to(tl.float32)
    out = out_ptr + out_row + head * out_stride_h + dim
    kind = out_ptr.dtype.element_ty
    tl.store(out, (low * cos_low - high * sin_low).to(kind), mask=inside)
    tl.store(out + HALF, (high * cos_high + low * sin_high).to(kind), mask=inside)


@triton.jit(do_not_specialize=["tokens"])
def _rotary_kernel(q_ptr, k_ptr, cos_ptr, sin_ptr, q_out_ptr, k_out_ptr, tokens, q_heads, k_heads,
                   q_stride_b, q_stride_h, q_stride_t, k_stride_b, k_stride_h, k_stride_t, angle_stride_b,
                   angle_stride_t, q_out_stride_b, q_out_stride_h, q_out_stride_t, k_out_stride_b, k_out_stride_h,
                   k_out_stride_t, HALF: tl.constexpr, BLOCK_HALF: tl.constexpr, BLOCK_QH: tl.constexpr,
                   BLOCK_KH: tl.constexpr):  # fmt: skip
    """Program (b, t): every query and key head of token t of row b, its angles read once."""
    position = tl.program_id(0).to(tl.int64)
    b, t = position // tokens, position % tokens
    dim = tl.arange(0, BLOCK_HALF)[None, :]
    angles = b * angle_stride_b + t * angle_stride_t + dim
    cos_low = tl.load(cos_ptr + angles, mask=dim < HALF).to(tl.float32)
    cos_high = tl.load(cos_ptr + angles + HALF, mask=dim < HALF).to(tl.float32)
    sin_low = tl.load(sin_ptr + angles, mask=dim < HALF).to(tl.float32)
    sin_high = tl.load(sin_ptr + angles + HALF, mask=dim < HALF).to(tl.float32)
    _rotate(q_ptr, q_out_ptr, b * q_stride_b + t * q_stride_t, q_stride_h, b * q_out_stride_b + t * q_out_stride_t,
            q_out_stride_h, q_heads, cos_low, cos_high, sin_low, sin_high, dim, HALF, BLOCK_QH)  # fmt: skip
    _rotate(k_ptr, k_out_ptr, b * k_stride_b + t * k_stride_t, k_stride_h, b * k_out_stride_b + t * k_out_stride_t,
            k_out_stride_h, k_heads, cos_low, cos_high, sin_low, sin_high, dim, HALF, BLOCK_KH)  # fmt: skip


def rotary(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(x * cos + rotate_half(x) * sin for x in q, k), rotate_half(x) being (-x[..., D/2:], x[..., :D/2]), in one
    pass: `q` [B, H, T, D] and `k` [B, Hkv, T, D] with any strides but a contiguous last dimension, `cos` and `sin`
    [B or 1, T, D] of one layout with a contiguous last dimension. Each result has its input's layout."""
    batch, _, tokens, width = q.shape
    q_out, k_out = torch.empty_like(q), torch.empty_like(k)
    if not q.numel() or not k.numel():
        return q_out, k_out
    half = width // 2
    _rotary_kernel[(batch * tokens,)](
        q, k, cos, sin, q_out, k_out, tokens, q.shape[1], k.shape[1],
        q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
        cos.stride(0) if cos.shape[0] == batch else 0, cos.stride(1),
        q_out.stride(0), q_out.stride(1), q_out.stride(2), k_out.stride(0), k_out.stride(1), k_out.stride(2),
        HALF=half, BLOCK_HALF=triton.next_power_of_2(half), BLOCK_QH=triton.next_power_of_2(q.shape[1]),
        BLOCK_KH=triton.next_power_of_2(k.shape[1]), num_warps=4,
    )  # fmt: skip
    return q_out, k_out
