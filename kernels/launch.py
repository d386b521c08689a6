"""Launch configuration for the Triton segment-sum kernels: the one place where tile sizes are chosen.

There is no autotuning. `launch_config(dim, num_segments)` returns exactly one config, and it
depends only on the hidden size and the number of segments, never on the batch size, the padded
length or the GPU model. Two reasons:

* Reproducible bytes. The tile and chunk sizes fix the order in which fp32 partial sums are added.
  An autotuner picks by timing, so two processes (a scoring run and its resume) could pick
  different configs and write different bits. A fixed config keeps a sample's sums bitwise
  identical whatever batch it lands in and however much padding that batch has (on a given GPU
  model and Triton version; the compiled code itself may differ between those).
* The Triton interpreter (`TRITON_INTERPRET=1`) cannot run `@triton.autotune` with more than one
  config, so one config is also what the CPU test run needs.

Nothing here imports Triton; `gaincurate.kernels` reads these limits before deciding whether to
import it. Shapes the kernel cannot hold raise `BackendError` naming the value and the fix.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from gaincurate.errors import BackendError

# The contract allows at most 8 segments; the accumulator holds one fp32 row per segment.
MAX_SEGMENTS = 8
# The kernel holds a whole hidden row (padded to a power of two) per token in registers, so the
# norm and the sums come from one read. 16384 covers every open model up to 405B parameters.
MAX_DIM = 16384
# The batch is the grid's second axis, which CUDA caps at 65535 programs.
MAX_BATCH = 65535
# The same clamp as torch.nn.functional.normalize: a zero vector contributes zero, not NaN.
NORM_EPS = 1e-12

# The tiles (docs/kernel.md, "GPU numbers", has the sweep behind them): one token per tile, as many values of a row
# per thread as the registers allow, 256 tokens a program. The kernel is bound by instructions, not bytes: a per-tile
# cost (the row norm's reduction across warps, the pipeline's bookkeeping) is paid once per row slice a thread holds,
# so the more of a row a thread holds, the less that cost weighs.
_ROW_VALUES_PER_THREAD = 64
# A thread holds its slice of the row and one accumulator slice per segment: (segments + 1) x values. 192 fp32
# values stay unspilled in 255 registers; past 2 segments the slice halves until it fits. Past 8 warps a thread gets
# fewer than 255 registers, so where the accumulators alone outgrow the register file (8 segments of rows wider than
# about 5,000) the kernel spills: right, and slower.
_LIVE_VALUES = 192
_MAX_WARPS = 32
_BLOCK_T = 1
# Tokens per program: each program writes one fp32 partial sum per segment, read back by the chunk reduction; 256
# tokens keep that traffic under 2% of a bf16 chunk's bytes. Where a row takes two warps or more, 512: fewer, longer
# programs still fill the GPU there, where one-warp programs at 512 leave it idle.
_CHUNK_T = 256
_WIDE_CHUNK_T = 512
# Tiles in flight per program: Triton issues the loads of the next tiles (cp.async into shared memory) while the
# current one is reduced.
_NUM_STAGES = 4
# The interpreter's cost is per Triton call, not per element: it gets the biggest tiles that still
# leave several tiles per chunk, so the CPU tests also walk the token loop.
_INTERPRETER_BLOCK_T = 16
_REDUCE_BLOCK_D = 1024


@dataclass(frozen=True, kw_only=True)
class LaunchConfig:
    """Tile sizes for one (hidden size, segment count) pair; all powers of two."""

    block_t: int  # tokens per tile
    block_d: int  # hidden size rounded up: one tile row is a whole hidden vector
    chunk_t: int  # tokens per program; each program writes one partial sum per segment
    num_warps: int
    num_stages: int  # software-pipelining depth of the token loop (1 = none)
    reduce_block_d: int  # features per program in the fixed-order chunk reduction
    reduce_num_warps: int

    def __post_init__(self) -> None:
        for name in ("block_t", "block_d", "chunk_t", "reduce_block_d"):
            value = getattr(self, name)
            if value < 1 or value & (value - 1):
                raise ValueError(f"LaunchConfig.{name}={value} must be a power of two")
        if self.chunk_t % self.block_t:
            raise ValueError(f"LaunchConfig.chunk_t={self.chunk_t} must be a multiple of block_t={self.block_t}")


def next_power_of_two(value: int) -> int:
    return 1 << max(0, value - 1).bit_length()


def interpret_requested() -> bool:
    """Whether TRITON_INTERPRET asks for the CPU interpreter, read the way Triton reads it."""
    return os.environ.get("TRITON_INTERPRET", "").strip().lower() in {"1", "true", "on", "yes"}


def check_shape(batch: int, dim: int, num_segments: int) -> None:
    """Raise BackendError if the Triton kernel cannot take this shape; the torch backend can."""
    if dim > MAX_DIM:
        raise BackendError(f"hidden size D={dim} exceeds the Triton kernel's limit of {MAX_DIM}; use backend='torch'")
    if batch > MAX_BATCH:
        raise BackendError(
            f"batch size B={batch} exceeds the Triton kernel's limit of {MAX_BATCH}; "
            "split the batch or use backend='torch'"
        )
    if not 1 <= num_segments <= MAX_SEGMENTS:
        raise BackendError(f"num_segments={num_segments} is outside 1..{MAX_SEGMENTS}")


def launch_config(dim: int, num_segments: int, *, interpret: bool | None = None) -> LaunchConfig:
    """The single config for hidden size `dim` and `num_segments` segments (see module docstring).

    `interpret` (default: read TRITON_INTERPRET) picks the interpreter's config instead of the GPU's.
    """
    check_shape(1, dim, num_segments)
    if interpret is None:
        interpret = interpret_requested()
    block_d = next_power_of_two(dim)
    values = _ROW_VALUES_PER_THREAD
    while (num_segments + 1) * values > _LIVE_VALUES and values > 1:
        values //= 2
    num_warps = min(_MAX_WARPS, max(1, block_d // (32 * values)))
    return LaunchConfig(
        block_t=_INTERPRETER_BLOCK_T if interpret else _BLOCK_T,
        block_d=block_d,
        chunk_t=_WIDE_CHUNK_T if num_warps > 1 else _CHUNK_T,
        num_warps=num_warps,
        num_stages=_NUM_STAGES,
        reduce_block_d=min(block_d, _REDUCE_BLOCK_D),
        reduce_num_warps=4,
    )
