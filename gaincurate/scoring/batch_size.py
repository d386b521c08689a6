"""`--batch-tokens` on CPU, chosen by timing a few sizes once per machine instead of one fixed number.

The best padded-token budget per forward batch depends on the CPU's caches and matmul units: on a
2-core EPYC 512 tokens beat 2,048 by about 30%, while a Xeon with AMX wants larger batches. So one
decoder layer's linear shapes (`gaincurate.scoring.dtype.probe_layer`) are timed in the chosen dtype
at each of `BATCH_SIZES` tokens; the size with the least time per token wins, and within `TOLERANCE`
of it the largest (fewer batches: less per-batch overhead, which the probe does not see). The result
is cached per machine, model, dtype and thread count.
"""

from __future__ import annotations

from typing import Any

BATCH_SIZES = (256, 512, 1024, 2048)
TOLERANCE = 0.05
BUDGET_SECONDS = 0.4


def measure_batch_sizes(
    shapes: dict[str, Any], dtype: str, sizes: tuple[int, ...] = BATCH_SIZES, budget: float = BUDGET_SECONDS
) -> dict[str, float]:
    """Seconds per token of one layer's linears at each size, keyed by the size as a string (JSON keys)."""
    from gaincurate.scoring.dtype import probe_layer, race

    parts = probe_layer(shapes, dtype)
    return race({str(size): (parts, size) for size in sizes}, budget)


def choose_batch_tokens(timings: dict[str, float]) -> tuple[int, str]:
    """The chosen size and a one-line reason, from seconds per token by size."""
    best = min(timings.values())
    size = max(int(key) for key, value in timings.items() if value <= best * (1 + TOLERANCE))
    by_size = sorted(timings.items(), key=lambda item: int(item[0]))
    measured = ", ".join(f"{key}: {best / value:.2f}" for key, value in by_size)
    return size, f"measured relative speed by size ({measured}); the largest within {TOLERANCE:.0%} of the best"
