"""The training-efficiency bench (`gaincurate bench curriculum`): does a curriculum make GRPO cheaper here?

Each (strategy, seed) pair is a real stock TRL `GRPOTrainer` run, driven in process by the scheduler exactly
as a user drives it (`gaincurate.integrations.trl`). Every pair starts from the same weights, trains on the
same pool with the same GRPO settings and rollout budget, and is evaluated on the same held-out split; only
the choice of prompts differs. `oracle` (bench only) measures the headroom: how much any pass-rate-targeted
selection could save on the setup.

    from gaincurate.benchmarks.curriculum import run_bench
    summary = run_bench("cpu-arith", "bench-out/", strategies=["uniform", "oracle"], seeds="100-111", workers=2)

    gaincurate bench curriculum --bench cpu-arith --out bench-out/ --smoke
    gaincurate bench curriculum --report docs/results/cpu-arith      # the published tables, re-derived
"""

from gaincurate.benchmarks.curriculum.bench import finish, known_strategies, run_bench
from gaincurate.benchmarks.curriculum.configs import BUNDLED, BenchConfig, load_config

__all__ = ["BUNDLED", "BenchConfig", "finish", "known_strategies", "load_config", "run_bench"]
