"""`--band LO,HI` over dots and mopps: train first on prompts whose pass-rate estimate lies in [LO, HI].

The band-pass filter verl users ask for (drop what the policy already solves or cannot yet touch), over
the strategies that estimate a pass rate per prompt:

* dots: its aged estimate p_q (measured, or its neighbours' prediction);
* mopps: the posterior mean a_q / (a_q + b_q) (a never-measured prompt sits at the prior mean);
* screen applies the band to its own measurements (`gaincurate.schedule.strategies.screen`), not through this filter.

The base strategy orders every prompt (`priority`); the epoch is the first `subset_size` prompts of that
order whose estimate is in the band, and when fewer are, the next in the base's order fill it, so the
epoch keeps its size. Before any measurement (a dots run's first epoch without `--reference`) there is no
estimate and the base draws alone. The epoch's history line says how many were in the band.
`--skip-zero-variance` may wrap this filter in turn: it walks the banded order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from gaincurate.errors import ConfigError, setting
from gaincurate.schedule.options import is_number
from gaincurate.schedule.strategies.base import (
    Filter,
    RankingContext,
    Report,
    Selection,
    Strategy,
    StrategyInputs,
    first_positions,
)

if TYPE_CHECKING:
    from gaincurate.schedule.state import ScheduleState


def band_note(band: tuple[float, float]) -> str:
    """How the filter changes a draw, in words."""
    return f"; prompts estimated inside [{band[0]:g}, {band[1]:g}] first"


class BandFilter(Filter):
    """A base strategy's priority order with the prompts estimated inside [low, high] moved to the front."""

    setting = "band"
    pair_form = "two pass rates LO,HI such as 0.1,0.9"
    summary = (
        "Train first on prompts whose pass-rate estimate is in [LO, HI] (dots, mopps; screen and pilot "
        "without it: drop 0/r and r/r)."
    )

    @classmethod
    def configure(cls, value: Any, settings: dict[str, Any]) -> tuple[float, float] | None:
        if value is None:
            return None
        if not isinstance(value, tuple | list) or len(value) != 2 or not all(is_number(number) for number in value):
            raise ConfigError(f"{setting('band')} must be two pass rates LO,HI such as 0.1,0.9; got {value!r}")
        low, high = float(value[0]), float(value[1])
        if not 0 <= low <= high <= 1:
            raise ConfigError(f"{setting('band')} LO,HI needs 0 <= LO <= HI <= 1 (pass rates); got {low:g},{high:g}")
        return low, high

    @classmethod
    def applies_to(cls, strategy: type[Strategy]) -> bool:
        return strategy.own_band or (strategy.pass_rate_estimates and strategy.ordered)

    @classmethod
    def refusal(cls, strategy: type[Strategy], usable: list[str]) -> str:
        return (
            f"{setting('band')} filters by pass-rate estimates, which {strategy.name} has none of; use it with "
            f"{', '.join(usable)}"
        )

    @classmethod
    def applied_by(cls, strategy: type[Strategy]) -> bool:
        return strategy.own_band

    @classmethod
    def note(cls, value: tuple[float, float]) -> str:
        return band_note(value)

    @classmethod
    def over(cls, base: Strategy, value: tuple[float, float], inputs: StrategyInputs) -> BandFilter:
        return cls(base, value)

    def __init__(self, base: Strategy, band: tuple[float, float]) -> None:
        if not (base.ordered and base.pass_rate_estimates):
            raise ValueError(f"the {base.name} strategy has no pass-rate estimate to filter by a band")
        super().__init__(base)
        self.low, self.high = float(band[0]), float(band[1])
        self.draws = base.draws + band_note((self.low, self.high))

    def inside(self, estimates: np.ndarray) -> np.ndarray:
        return (estimates >= self.low) & (estimates <= self.high)

    def banded(self, order: np.ndarray, estimates: np.ndarray | None) -> np.ndarray:
        """The base's `order` with the in-band positions first, each part in the base's order."""
        if estimates is None:  # nothing measured yet: the base's own draw
            return order
        inside = self.inside(estimates[order])
        return np.concatenate([order[inside], order[~inside]])

    def priority(self, state: ScheduleState, context: RankingContext, rng: np.random.Generator) -> np.ndarray:
        return self.banded(self.base.priority(state, context, rng), self.base.band_estimates(state, context))

    def report(self, state: ScheduleState, context: RankingContext, drawn: Selection) -> Report:
        """The base's report, aiming at the band."""
        report = self.base.report(state, context, drawn)
        return Report(report.estimates, report.source, (self.low, self.high), report.figures)

    def describe(
        self,
        state: ScheduleState,
        context: RankingContext,
        positions: np.ndarray,
        estimates: np.ndarray | None = None,
    ) -> dict[str, Any]:
        """The base's description, the band, and how many chosen prompts are in it (`estimates`: if known)."""
        info = self.base.describe(state, context, positions)
        estimates = self.base.band_estimates(state, context) if estimates is None else estimates
        if estimates is not None:
            info["band_kept"] = int(np.sum(self.inside(estimates[positions])))
        return info | {"band": [self.low, self.high]}

    def select(self, state: ScheduleState, context: RankingContext, rng: np.random.Generator) -> Selection:
        estimates = self.base.band_estimates(state, context)  # once per draw: dots' estimate is an attention pass
        order = self.banded(self.base.priority(state, context, rng), estimates)
        positions = first_positions(order, context.subset_size)
        inside = len(order) if estimates is None else int(np.sum(self.inside(estimates)))
        return Selection(positions, self.describe(state, context, positions, estimates) | {"in_band": inside})
