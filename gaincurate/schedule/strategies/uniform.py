"""The `uniform` strategy: plain GRPO's sampling, the baseline every other strategy is measured against."""

from __future__ import annotations

import numpy as np

from gaincurate.schedule.state import ScheduleState
from gaincurate.schedule.strategies import contract


class UniformStrategy(contract.Strategy):
    """Every prompt equally likely each epoch: a Gumbel-top-k draw over equal log-weights."""

    name = "uniform"
    about = contract.About(
        summary="the baseline: every prompt equally likely (plain GRPO)",
        draws="every prompt equally likely, every epoch (plain GRPO's sampling); it keeps no pass-rate estimate",
    )

    def choose(self, state: ScheduleState, context: contract.RankingContext, rng: np.random.Generator) -> np.ndarray:
        return contract.draw_order(np.zeros(context.n_prompts), rng)
