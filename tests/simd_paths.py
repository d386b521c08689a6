"""The narrowest vector paths numpy and torch can take on this machine, as environment variables.

numpy and torch pick their SIMD loops by CPU once, at import, so another path needs another process. numpy reads
`NPY_DISABLE_CPU_FEATURES` (the names of its dispatched targets: numpy 2.4 calls them X86_V3, X86_V4, AVX512_ICL,
AVX512_SPR; naming one the CPU lacks is no error, naming a baseline one is) and torch `ATEN_CPU_CAPABILITY`.
Switching off every dispatched target leaves numpy's baseline loops, the same set on an AVX-512 machine and on one
without it. `make test-determinism` runs the `determinism` tests a second time under them:

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


def narrowest_environment() -> dict[str, str]:
    """Environment variables that hold a new process to numpy's baseline loops and torch's default kernels."""
    return {"NPY_DISABLE_CPU_FEATURES": " ".join(dispatched_targets()), "ATEN_CPU_CAPABILITY": "default"}


if __name__ == "__main__":
    print(" ".join(f"{name}={value.replace(' ', ',')}" for name, value in narrowest_environment().items()))
