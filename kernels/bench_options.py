"""What `gaincurate bench kernel` runs: its options, one field each, importable without torch (the CLI reads them)."""

from __future__ import annotations

from dataclasses import dataclass

from gaincurate.settings import setting

DEVICES = ("auto", "cuda", "cpu")


@dataclass(frozen=True, kw_only=True)
class KernelBench:
    """One kernel bench: where it checks and times, and how much (`gaincurate.kernels.bench.run_kernel_bench`)."""

    device: str = setting("auto", "Where to check and time (auto: cuda when there is one).", choices=DEVICES)
    quick: bool = setting(False, "Fewer shapes, no config sweep.", flags=("--quick",))
    sweep: bool = setting(True, "Sweep launch configs on CUDA after the timings (--no-sweep: skip it).",
                          flags=("--no-sweep",))  # fmt: skip
