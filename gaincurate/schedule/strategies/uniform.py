"""The `uniform` strategy: plain GRPO's sampling, the baseline every other strategy is measured against."""

from __future__ import annotations

import numpy as np

from gaincurate.schedule.state import ScheduleState
from gaincurate.schedule.strategies import plugin


class UniformStrategy(plugin.Strategy):
    """Every prompt equally likely each epoch: a Gumbel-top-k draw over equal log-weights."""

    name = "uniform"
    about = plugin.About(
        summary="the baseline: every prompt equally likely (plain GRPO)",
        draws="every prompt equally likely, every epoch (plain GRPO's sampling); it keeps no pass-rate estimate",
    )

    def choose(self, state: ScheduleState, context: plugin.RankingContext, rng: np.random.Generator) -> np.ndarray:
        return plugin.draw_order(np.zeros(context.n_prompts), rng)
