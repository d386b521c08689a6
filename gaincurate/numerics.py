"""Floats that reach a file or a decision, the same on every CPU (numpy's SIMD loops differ in the last bit)."""

from __future__ import annotations

import math

RECORDED_DIGITS = 12


def recorded(value: float | None) -> float | None:
    """`value` as a file records it: 12 significant digits, so no SIMD path's last bit shows."""
    if value is None:
        return None
    value = float(value)
    if not math.isfinite(value):
        return value
    return float(f"{value:.{RECORDED_DIGITS}g}")
