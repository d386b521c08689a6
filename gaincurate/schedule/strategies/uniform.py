"""The `uniform` strategy: plain GRPO's sampling, the baseline every other strategy is measured against."""

from __future__ import annotations

import numpy as np

from gaincurate.schedule.state import ScheduleState
from gaincurate.schedule.strategies.base import (
    About,
    RankingContext,
    Strategy,
    draw_order,
)


class UniformStrategy(Strategy):
    """Plain GRPO sampling: every prompt equally likely; ranking is dataset order."""

    name = "uniform"
    about = About(
        summary="the baseline: every prompt equally likely (plain GRPO)",
        draws="every prompt equally likely, every epoch (plain GRPO's sampling); it keeps no pass-rate estimate",
    )

    def choose(self, state: ScheduleState, context: RankingContext, rng: np.random.Generator) -> np.ndarray:
        return draw_order(np.zeros(context.n_prompts), rng)
