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

# Live fp32 values per thread the tile sizes aim at: the [S, BLOCK_D] accumulator, the
# [BLOCK_T, BLOCK_D] tile and its [BLOCK_T, S, BLOCK_D] one-hot product. Compiled for sm_90 with
# Triton 3.9 (ptxas), 32 keeps the kernel between about 35 and 100 registers and free of spills for
# D up to 8192 with S <= 4, and up to 3584 with S = 8 (docs/kernel.md lists the numbers).
_VALUES_PER_THREAD = 32
_MAX_BLOCK_T = 16
# Partial sums cost 2 * 4 bytes per (segment, feature) per chunk (written, then read back); 32 tokens
# per padded segment keeps that at most an eighth of the bf16 bytes the chunk itself reads.
_CHUNK_TOKENS_PER_SEGMENT = 32
_MIN_CHUNK_T = 64
# The interpreter's cost is per Triton call, not per element: it gets the biggest tiles that still
# leave several tiles per chunk, so the CPU tests also walk the token loop.
_INTERPRETER_BLOCK_T = 16
# Tiles in flight per program. Without pipelining a program waits out the full memory latency for
# each tile; with it Triton issues the loads of the next tiles (cp.async into shared memory) while
# the current one is reduced. Compiled for sm_90 this also lowered registers (54 -> 48 at D=1536).
_NUM_STAGES = 3
_REDUCE_BLOCK_D = 1024
# Where the GPU sweep measured (`gaincurate bench kernel`: BLOCK_T x warps x stages at D 896, 1536 and 3584 with 2
# segments; docs/kernel.md, "GPU numbers"), its fastest tiles: 2 tokens, 4 warps, 3 stages, 1.35-1.5x the register
# budget rule's bandwidth at every D measured, although ptxas spills 16 bytes at D 1536 and 3584. Elsewhere the
# budget rule holds.
_MEASURED_TILES = {"block_t": 2, "num_warps": 4, "num_stages": 3}
_MEASURED_BLOCK_D = (1024, 4096)
_MEASURED_MAX_SEGMENTS = 2
MEASURED_SPILL_BYTES = 16  # what ptxas spills for the measured tiles where they were measured


@dataclass(frozen=True, kw_only=True)
class LaunchConfig:
    """Tile sizes for one (hidden size, segment count) pair; all powers of two."""

    block_t: int  # tokens per tile
    block_d: int  # hidden size rounded up: one tile row is a whole hidden vector
    chunk_t: int  # tokens per program; each program writes one partial sum per segment
    segments_pad: int  # num_segments rounded up (Triton tensor shapes are powers of two)
    num_warps: int
    num_stages: int  # software-pipelining depth of the token loop (1 = none)
    reduce_block_d: int  # features per program in the fixed-order chunk reduction
    reduce_num_warps: int

    def __post_init__(self) -> None:
        for name in ("block_t", "block_d", "chunk_t", "segments_pad", "reduce_block_d"):
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


def measured(dim: int, num_segments: int) -> bool:
    """Whether (dim, num_segments) lies where the GPU sweep measured its tiles (see _MEASURED_TILES)."""
    low, high = _MEASURED_BLOCK_D
    return low <= next_power_of_two(dim) <= high and num_segments <= _MEASURED_MAX_SEGMENTS


def launch_config(dim: int, num_segments: int, *, interpret: bool | None = None) -> LaunchConfig:
    """The single config for hidden size `dim` and `num_segments` segments (see module docstring).

    `interpret` (default: read TRITON_INTERPRET) picks the interpreter's config instead of the GPU's.
    """
    check_shape(1, dim, num_segments)
    if interpret is None:
        interpret = interpret_requested()
    block_d = next_power_of_two(dim)
    segments_pad = next_power_of_two(num_segments)
    chunk_t = max(_MIN_CHUNK_T, _CHUNK_TOKENS_PER_SEGMENT * segments_pad)
    num_warps, num_stages = (16 if block_d >= 4096 else 8 if block_d >= 1024 else 4), _NUM_STAGES
    if measured(dim, num_segments):
        block_t, num_warps, num_stages = (_MEASURED_TILES[key] for key in ("block_t", "num_warps", "num_stages"))
    else:
        budget = _VALUES_PER_THREAD * 32 * num_warps
        block_t = 1
        while block_t < _MAX_BLOCK_T and (2 * block_t * (segments_pad + 1) + segments_pad) * block_d <= budget:
            block_t *= 2
    if interpret:
        block_t = _INTERPRETER_BLOCK_T
    return LaunchConfig(
        block_t=block_t,
        block_d=block_d,
        chunk_t=chunk_t,
        segments_pad=segments_pad,
        num_warps=num_warps,
        num_stages=num_stages,
        reduce_block_d=min(block_d, _REDUCE_BLOCK_D),
        reduce_num_warps=4,
    )
