"""The `oracle` arm of the bench: the ceiling of pass-rate-targeted selection, never a strategy to train with.

Every epoch, before drawing, it measures every pool prompt's pass rate with the current policy (`rollouts`
sampled completions each, at the training temperature) and trains on the `subset_size` prompts measured
nearest the target rate (ties broken by the epoch's seeded draw). Nothing a real strategy could do knows
more about pass rates than that, so the fraction of uniform's rollouts-to-target it needs is the most any
such selection can save on the setup.

Its measurement is reported apart (rollouts, tokens, seconds) and not charged: the bench pauses the clock
while it runs. It plugs into the scheduler like any strategy (a `Strategy` overriding `select`), so TRL trains
it through the same in-process curriculum as every other arm. `ScheduleConfig` does not know the name, so it
cannot be asked for outside the bench.

`oracle-nonzero` measures the same way but draws uniformly over the prompts measured with 0 < p < 1 (filling up
uniformly from the rest when there are fewer than an epoch's worth): it avoids zero-variance groups without aiming
at any pass rate, so oracle against oracle-nonzero says how much of the oracle's saving comes from each.

`oracle-drawn` measures the same way but draws as `probe` draws from its estimates (epoch 0 uniform; then its
uniform tenth and the rest by Gumbel-top-k with log-weight -|rate - target| / tau, at probe's default options): oracle
against oracle-drawn says what the probe's draw costs with the oracle's rates in place of the probe's estimates.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gaincurate.schedule.strategies.contract import About, Report, Selection, Strategy, target_band

NAME = "oracle"
NONZERO = "oracle-nonzero"
DRAWN = "oracle-drawn"

Measure = Callable[[np.ndarray, int], tuple[np.ndarray, int]]


@dataclass
class OracleCosts:
    """What measuring cost, per epoch and in all; reported apart from the arm's training figures."""

    rollouts: int = 0
    tokens: int = 0
    seconds: float = 0.0
    epochs: list[dict[str, Any]] = field(default_factory=list)


class OracleStrategy(Strategy):
    """Rank in gc_id order; each epoch select the prompts whose freshly measured pass rate is nearest `target`.

    `measure_pool(gc_ids, epoch)` returns the pass rates of `gc_ids` under the current policy and the tokens it
    generated; `rollouts` is the samples per prompt it draws (for the cost count).
    """

    name = NAME
    about = About(
        draws="every pool prompt measured with the current policy each epoch; the ones nearest the target kept"
    )

    def __init__(self, measure: Measure, *, target: float, rollouts: int) -> None:
        self.measure_pool = measure
        self.target = target
        self.rollouts = rollouts
        self.costs = OracleCosts()
        self._measured: tuple[int, np.ndarray] | None = None  # the last draw's (epoch, rates), for `report`

    def choose(self, state: Any, context: Any, rng: np.random.Generator) -> Selection:
        started = time.perf_counter()
        rates, tokens = self.measure_pool(np.asarray(context.gc_ids), int(state.epoch))
        seconds = time.perf_counter() - started
        self._measured = (int(state.epoch), np.asarray(rates, dtype=np.float64))
        chosen = self.pick(np.asarray(rates, dtype=np.float64), context.subset_size, rng)
        self.costs.rollouts += len(rates) * self.rollouts
        self.costs.tokens += tokens
        self.costs.seconds += seconds
        self.costs.epochs.append(
            {
                "epoch": int(state.epoch),
                "pool_pass_rate": float(rates.mean()),
                "pool_informative": float(np.mean((rates > 0) & (rates < 1))),
                "chosen_pass_rate": float(rates[chosen].mean()),
                "seconds": seconds,
                "chosen": [int(g) for g in np.asarray(context.gc_ids)[chosen]],  # what `draws.draw_lines` counts
            }
        )
        return Selection(np.asarray(chosen, dtype=np.int64))

    def pick(self, rates: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
        """The positions to train on, given every pool prompt's measured pass rate: the `count` nearest the target."""
        return nearest(rates, self.target, count, rng)

    def report(self, state: Any, context: Any, drawn: Selection) -> Report:
        """Its estimate is the pool's measurement itself, taken before the draw."""
        measured = self._measured
        rates = measured[1] if measured is not None and measured[0] == state.epoch else None
        source = f"measured pass rate ({self.rollouts} rollouts, the {self.name})"
        return Report(rates, source, self.band(), drawn.info)

    def band(self) -> tuple[float, float] | None:
        return target_band(self.target)


class OracleNonzeroStrategy(OracleStrategy):
    """The oracle's measurement, drawn uniformly over the prompts measured with 0 < p < 1: no pass rate aimed at."""

    name = NONZERO
    about = About(
        draws="every pool prompt measured with the current policy each epoch; uniform over those with 0 < p < 1"
    )

    def pick(self, rates: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
        return informative_uniform(rates, count, rng)

    def band(self) -> tuple[float, float] | None:
        return None  # it aims at no pass rate, only away from 0 and 1


class OracleDrawnStrategy(OracleStrategy):
    """The oracle's measurement, drawn as `probe` draws from its estimates (`probe.aimed_order`, default options)."""

    name = DRAWN
    about = About(draws="every pool prompt measured with the current policy each epoch; drawn as probe draws")

    def choose(self, state: Any, context: Any, rng: np.random.Generator) -> Selection:
        self._epoch = int(state.epoch)  # epoch 0 is uniform, as probe's is before anything is measured
        return super().choose(state, context, rng)

    def pick(self, rates: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
        from gaincurate.schedule.config import ScheduleConfig
        from gaincurate.schedule.strategies import contract
        from gaincurate.schedule.strategies.probe import aimed_order

        options = ScheduleConfig(strategy="probe", target=self.target).options  # probe's defaults, its target ours
        if self._epoch == 0:
            return np.sort(contract.draw_order(np.zeros(len(rates)), rng)[:count]).astype(np.int64)
        return np.sort(aimed_order(rates, options, count, rng)[0][:count])


ARMS: dict[str, type[OracleStrategy]] = {
    NAME: OracleStrategy,
    NONZERO: OracleNonzeroStrategy,
    DRAWN: OracleDrawnStrategy,
}


def nearest(rates: np.ndarray, target: float, count: int, rng: np.random.Generator) -> np.ndarray:
    """Positions of the `count` rates nearest `target`, ties broken at random by `rng`; ascending."""
    ties = rng.random(len(rates))
    order = np.lexsort((ties, np.abs(np.asarray(rates, dtype=np.float64) - target)))
    return np.sort(order[:count]).astype(np.int64)


def informative_uniform(rates: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` positions drawn uniformly among those with 0 < rate < 1, then uniformly among the rest if too few;
    ascending. With none informative it is a uniform draw over all."""
    rates = np.asarray(rates, dtype=np.float64)
    keys = rng.random(len(rates))  # one uniform key per prompt: the smallest keys are a uniform draw
    informative = (rates > 0.0) & (rates < 1.0)
    order = np.lexsort((keys, ~informative))  # informative first, each side in random order
    return np.sort(order[:count]).astype(np.int64)
