"""`--band LO,HI` over a strategy that estimates pass rates: train first on prompts whose estimate lies in [LO, HI].

The band-pass filter verl users ask for (drop what the policy already solves or cannot yet touch), over
the strategies that estimate a pass rate per prompt:

* dots: its aged estimate p_q (measured, or its neighbours' prediction);
* mopps: the posterior mean a_q / (a_q + b_q) (a never-measured prompt sits at the prior mean);
* probe: its ridge prediction across prompts; variance (the lab's): its estimate per prompt;
* a strategy that declares `own_band` applies the band to its own measurements, not through this filter.

The base strategy orders every prompt (`choose` returns a `Priority`); the epoch is the first `subset_size`
prompts of that order whose estimate is in the band, and when fewer are, the next in the base's order fill it, so the
epoch keeps its size. Before any measurement (a dots run's first epoch without `--reference`) there is no
estimate and the base draws alone. The epoch's history line says how many were in the band.
`--skip-zero-variance` may step after this filter: it walks the banded order.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gaincurate.errors import ConfigError, setting
from gaincurate.schedule.options import is_number
from gaincurate.schedule.strategies import contract
from gaincurate.schedule.strategies.filters import Filter


def band_note(band: tuple[float, float]) -> str:
    """How the filter changes a draw, in words."""
    return f"; prompts estimated inside [{band[0]:g}, {band[1]:g}] first"


class BandFilter(Filter):
    """A base strategy's priority order with the prompts estimated inside [low, high] moved to the front."""

    setting = "band"
    figure_names = {"band_kept": "picks in band", "in_band": "pool in band"}
    pair_form = "two pass rates LO,HI such as 0.1,0.9"
    summary = (
        "Train first on prompts whose pass-rate estimate is in [LO, HI] (dots, mopps, probe; one that measures "
        "the policy applies it itself)."
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
    def applies_to(cls, strategy: type[contract.Strategy]) -> bool:
        return strategy.about.own_band or (strategy.about.estimates and strategy.about.ordered)

    @classmethod
    def refusal(cls, strategy: type[contract.Strategy], usable: list[str]) -> str:
        return (
            f"{setting('band')} filters by pass-rate estimates, which {strategy.name} has none of; use it with "
            f"{', '.join(usable)}"
        )

    @classmethod
    def applied_by(cls, strategy: type[contract.Strategy]) -> bool:
        return strategy.about.own_band

    @classmethod
    def note(cls, value: tuple[float, float]) -> str:
        return band_note(value)

    @classmethod
    def over(cls, base: contract.Strategy, value: tuple[float, float], inputs: contract.StrategyInputs) -> BandFilter:
        if not (base.about.ordered and base.about.estimates):
            raise ValueError(f"the {base.name} strategy has no pass-rate estimate to filter by a band")
        return cls(value)

    def __init__(self, band: tuple[float, float]) -> None:
        self.low, self.high = float(band[0]), float(band[1])

    def inside(self, estimates: np.ndarray) -> np.ndarray:
        return (estimates >= self.low) & (estimates <= self.high)

    def reorder(self, order: np.ndarray, estimates: np.ndarray | None) -> np.ndarray:
        """The base's `order` with the in-band positions first, each part in the base's order."""
        if estimates is None:  # nothing measured yet: the base's own draw
            return order
        inside = self.inside(estimates[order])
        return np.concatenate([order[inside], order[~inside]])

    def describe(
        self,
        info: dict[str, Any],
        context: contract.RankingContext,
        positions: np.ndarray,
        estimates: np.ndarray | None,
        *,
        outermost: bool,
    ) -> dict[str, Any]:
        """How many chosen prompts are in the band, the band, and (outermost) how many of the pool are in it."""
        if estimates is not None:
            info["band_kept"] = int(np.sum(self.inside(estimates[positions])))
        info = info | {"band": [self.low, self.high]}
        if outermost:
            info["in_band"] = context.n_prompts if estimates is None else int(np.sum(self.inside(estimates)))
        return info

    def aim(self, report: contract.Report) -> contract.Report:
        """The base's report, aiming at the band."""
        return contract.Report(report.estimates, report.source, (self.low, self.high), report.figures)
