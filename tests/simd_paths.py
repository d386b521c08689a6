"""The narrowest vector paths numpy, torch and its BLAS can take on this machine, as environment variables.

numpy, torch, MKL and oneDNN pick their SIMD loops by CPU once, at start-up, so another path needs another process.
numpy reads `NPY_DISABLE_CPU_FEATURES` (the names of its dispatched targets: numpy 2.4 calls them X86_V3, X86_V4,
AVX512_ICL, AVX512_SPR; naming one the CPU lacks is no error, naming a baseline one is) and torch
`ATEN_CPU_CAPABILITY`. Switching off every dispatched target leaves numpy's baseline loops, the same set on an
AVX-512 machine and on one without it. torch's float32 matmuls are MKL's (`MKL_ENABLE_INSTRUCTIONS`; MKL on an AMD
CPU ignores it, but `MKL_CBWR=COMPATIBLE` moves every x86 CPU to its oldest kernels), its bfloat16 ones oneDNN's
(`ONEDNN_MAX_CPU_ISA`). `make test-determinism` runs the `determinism` tests a second time under them all:

    env $(python tests/simd_paths.py) pytest -m determinism
"""

from __future__ import annotations

import numpy as np


def _umath():
    core = getattr(np, "_core", None)  # numpy 2; numpy 1 names it `core`
    return (core or np.core)._multiarray_umath


def dispatched_targets() -> list[str]:
    """The SIMD targets this numpy build can dispatch to beyond its baseline, whether or not the CPU has them."""
    return list(_umath().__cpu_dispatch__)


def enabled_targets() -> list[str]:
    """The dispatched targets this process uses (after `NPY_DISABLE_CPU_FEATURES`)."""
    features = _umath().__cpu_features__
    return [name for name in dispatched_targets() if features.get(name)]


# The BLAS and oneDNN paths an Intel AVX-512 CPU takes when held to AVX2 (#56: its scores moved with the batch).
AVX2_BLAS = {"MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
NARROWEST_BLAS = {"MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "MKL_CBWR": "COMPATIBLE", "ONEDNN_MAX_CPU_ISA": "SSE41"}


def narrowest_environment() -> dict[str, str]:
    """Environment variables that hold a new process to numpy's baseline loops, torch's default kernels and the
    oldest BLAS and oneDNN kernels."""
    targets = {"NPY_DISABLE_CPU_FEATURES": " ".join(dispatched_targets()), "ATEN_CPU_CAPABILITY": "default"}
    return targets | NARROWEST_BLAS


if __name__ == "__main__":
    print(" ".join(f"{name}={value.replace(' ', ',')}" for name, value in narrowest_environment().items()))
