"""The training-efficiency bench (`gaincurate bench curriculum`): does a curriculum make GRPO cheaper here?

Each (strategy, seed) pair is a real stock TRL `GRPOTrainer` run, driven in process by the scheduler exactly
as a user drives it (`gaincurate.integrations.trl`). Every pair starts from the same weights, trains on the
same pool with the same GRPO settings and rollout budget, and is evaluated on the same held-out split; only
the choice of prompts differs. `oracle` (bench only) measures the headroom: how much any pass-rate-targeted
selection could save on the setup.

    from gaincurate.lab.benchmarks.curriculum import run_bench
    summary = run_bench("cpu-arith", "bench-out/", strategies=["uniform", "oracle"], seeds="100-111", workers=2)

    gaincurate bench curriculum --bench cpu-arith --out bench-out/ --smoke
    gaincurate bench curriculum --report docs/results/cpu-arith      # the published tables, re-derived
"""

from __future__ import annotations

import importlib
from typing import Any

# Each name and its module, imported on first use: the harness loads torch, and the CLI reads this package's
# light modules (`run_options`) at start-up.
_EXPORTS = {
    "finish": "bench", "known_strategies": "bench", "run_bench": "bench",
    "BUNDLED": "bundled", "BenchConfig": "configs", "load_config": "bundled",
}  # fmt: skip

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
