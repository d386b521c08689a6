"""The narrowest vector paths numpy, torch and its BLAS can take on this machine, as environment variables.

numpy, torch, MKL and oneDNN pick their SIMD loops by CPU once, at start-up, so another path needs another process.
numpy reads `NPY_DISABLE_CPU_FEATURES` (the names of its dispatched targets: numpy 2.4 calls them X86_V3, X86_V4,
AVX512_ICL, AVX512_SPR; naming one the CPU lacks is no error, naming a baseline one is) and torch
`ATEN_CPU_CAPABILITY`. Switching off every dispatched target leaves numpy's baseline loops, the same set on an
AVX-512 machine and on one without it. torch's float32 matmuls are MKL's (`MKL_ENABLE_INSTRUCTIONS`; MKL on an AMD
CPU ignores it, but `MKL_CBWR=COMPATIBLE` moves every x86 CPU to its oldest kernels), its bfloat16 ones oneDNN's
(`ONEDNN_MAX_CPU_ISA`). `make test-determinism` runs the `determinism` tests a second time under them all:

    env $(python tests/simd_paths.py) pytest -m determinism

`PATHS` is every narrowed path the suite runs, and each must be one torch can take on every x86 CPU. torch's
bfloat16 flash attention on CPU (torch 2.13) packs its blocks for AMX whenever oneDNN reports AMX tiles, with a
packing routine built only into ATen's AVX-512 kernels: with `ATEN_CPU_CAPABILITY` below avx512 and oneDNN free to
use AMX, it raises "pack_vnni2 is only supported when avx512 is supported". So a path that lowers ATen's capability
also holds oneDNN below AMX (`problem_with`); an AMD machine, which has no AMX, then still catches a path that only an
AMX machine would crash on.
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


# The BLAS and oneDNN paths an Intel AVX-512 CPU takes when held to AVX2: there its scores move with the batch.
AVX2_BLAS = {"MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
NARROWEST_BLAS = {"MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "MKL_CBWR": "COMPATIBLE", "ONEDNN_MAX_CPU_ISA": "SSE41"}
# ATen's capabilities below the one whose kernels hold the AMX packing, and oneDNN's ISA names below AMX.
ATEN_BELOW_AVX512 = ("default", "avx2")
ONEDNN_BELOW_AMX = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI",
                    "AVX512_CORE_BF16", "AVX10_1_512")  # fmt: skip


def narrowest_environment() -> dict[str, str]:
    """Environment variables that hold a new process to numpy's baseline loops, torch's default kernels and the
    oldest BLAS and oneDNN kernels."""
    targets = {"NPY_DISABLE_CPU_FEATURES": " ".join(dispatched_targets()), "ATEN_CPU_CAPABILITY": "default"}
    return targets | NARROWEST_BLAS


# Every narrowed path the suite runs. `compatible`: MKL's conditional-reproducibility path for the oldest ISA (another
# GEMM kernel on every x86 CPU) with ATen's default kernels; `avx2`: what an Intel AVX-512 machine takes held to AVX2;
# `narrowest`: the determinism leg's.
PATHS = {
    "compatible": {"MKL_CBWR": "COMPATIBLE", "ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "avx2": AVX2_BLAS,
    "narrowest": narrowest_environment(),
}


def problem_with(path: dict[str, str]) -> str | None:
    """Why torch cannot take `path` on every x86 CPU, or None when it can (see the module docstring)."""
    capability = path.get("ATEN_CPU_CAPABILITY", "").lower()
    onednn = path.get("ONEDNN_MAX_CPU_ISA", "").upper()
    if capability in ATEN_BELOW_AVX512 and onednn not in ONEDNN_BELOW_AMX:
        return (f"ATEN_CPU_CAPABILITY={capability} with ONEDNN_MAX_CPU_ISA={onednn or 'unset'}: bfloat16 attention "
                f"crashes on AMX CPUs; hold oneDNN to one of {', '.join(ONEDNN_BELOW_AMX)}")  # fmt: skip
    return None


if __name__ == "__main__":
    print(" ".join(f"{name}={value.replace(' ', ',')}" for name, value in PATHS["narrowest"].items()))
