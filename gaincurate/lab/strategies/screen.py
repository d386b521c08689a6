"""The `screen` strategy: measure candidates with the current policy, train on those still in play (SPEED-RL).

SPEED-RL (arXiv 2506.09016) spends a few cheap rollouts per prompt before training and drops the prompts
the policy gets all right or all wrong: their GRPO groups would have zero reward variance. Each epoch:

1. draw k x m candidates uniformly without replacement (`default_rng([seed, epoch])`, like every draw);
2. roll each r times with the current policy (the integration's `Screener`: the live model in process,
   `gaincurate rollout` on the newest checkpoint out of process);
3. keep the m candidates whose measured rate lies in the band (default: 0 < p < 1, i.e. drop 0/r and
   r/r; `--band LO,HI`: LO <= p <= HI), nearest `target` first, ties by the epoch's draw. When fewer than
   m are in the band, the out-of-band candidates nearest the target fill the epoch, so it keeps its size.

k is `--screen-factor` (default 2), r `--screen-rollouts` (default 4), m the subset size. The screening
rollouts are a real cost, k x r per trained prompt beside the trainer's own: they are counted in the
epoch's history line (`selection`: screened, screen_rollouts, screen_tokens, screen_seconds) and in
`Metered.spent` (what the scheduler measures with), which the bench charges to the arm's rollouts, tokens and seconds.
Unlike the paper we do not reuse them as training rollouts: a stock trainer generates its own.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from gaincurate.errors import ConfigError
from gaincurate.lab.strategies.screening import screener_for
from gaincurate.schedule.options import RATE, Options, option, whole
from gaincurate.schedule.strategies import contract

if TYPE_CHECKING:
    from gaincurate.schedule.state import ScheduleState

# Candidates per epoch prompt, and rollouts per candidate.
SCREEN_FACTOR = 2
SCREEN_ROLLOUTS = 4


@dataclass(frozen=True, kw_only=True)
class ScreenOptions(Options):
    target: float = option(0.5, contract.TARGET_HELP, RATE)
    screen_factor: int = option(SCREEN_FACTOR, "Candidates screened per epoch prompt, k.", whole(1))
    screen_rollouts: int = option(SCREEN_ROLLOUTS, "Rollouts per candidate with the current policy, r.", whole(1))


def in_band(rates: np.ndarray, band: tuple[float, float] | None) -> np.ndarray:
    """Whether each rate is in the band: LO <= p <= HI, or 0 < p < 1 without one (SPEED's default)."""
    rates = np.asarray(rates, dtype=np.float64)
    if band is None:
        return (rates > 0.0) & (rates < 1.0)
    return (rates >= band[0]) & (rates <= band[1])


def keep_order(rates: np.ndarray, band: tuple[float, float] | None, target: float, ties: np.ndarray) -> np.ndarray:
    """Indices of `rates`, in-band first, then nearest `target`, then by `ties`: the first m are kept."""
    rates = np.asarray(rates, dtype=np.float64)
    return np.lexsort((ties, np.abs(rates - target), ~in_band(rates, band))).astype(np.int64)


class ScreenStrategy(contract.Strategy):
    """Candidates drawn uniformly and measured with the current policy; those in the band, nearest the target,
    make the epoch."""

    name = "screen"
    about = contract.About(
        options=ScreenOptions,
        summary="candidates measured with the current policy, kept in the band",
        draws="candidates drawn uniformly, measured with the current policy, the ones in the band nearest the target "
        "kept",
        needs=frozenset({contract.POLICY}),
        measure=screener_for,
        ordered=False,
        keeps_zero_variance=False,
        own_band=True,
    )

    def __init__(
        self,
        *,
        factor: int = SCREEN_FACTOR,
        rollouts: int = SCREEN_ROLLOUTS,
        band: tuple[float, float] | None = None,
        target: float = 0.5,
    ) -> None:
        self.factor, self.rollouts, self.band, self.target = int(factor), int(rollouts), band, float(target)
        self._measured: tuple[int, np.ndarray, np.ndarray] | None = None  # the last draw's (epoch, candidates, rates)

    @classmethod
    def build(cls, inputs: contract.StrategyInputs, options: Options) -> ScreenStrategy:
        assert isinstance(options, ScreenOptions)
        return cls(
            factor=options.screen_factor, rollouts=options.screen_rollouts, band=inputs.band, target=options.target
        )

    def report(
        self, state: ScheduleState, context: contract.RankingContext, drawn: contract.Selection
    ) -> contract.Report:
        """The screened candidates' measured pass rates (NaN for the prompts not screened), aiming at the band."""
        # 0 < k/r < 1 is, for rates of r rollouts, the closed band [1/(2r), 1 - 1/(2r)].
        band = self.band if self.band is not None else (0.5 / self.rollouts, 1.0 - 0.5 / self.rollouts)
        estimates = np.full(context.n_prompts, np.nan)
        if self._measured is not None and self._measured[0] == state.epoch:
            estimates[self._measured[1]] = self._measured[2]
        return contract.Report(estimates, f"screened pass rate ({self.rollouts} rollouts)", band, drawn.info)

    def candidates(self, context: contract.RankingContext, rng: np.random.Generator) -> np.ndarray:
        """The epoch's k x m candidate positions, in the order drawn (all prompts when there are fewer)."""
        count = min(self.factor * context.subset_size, context.n_prompts)
        return contract.draw_order(np.zeros(context.n_prompts), rng)[:count]

    def choose(
        self, state: ScheduleState, context: contract.RankingContext, rng: np.random.Generator
    ) -> contract.Selection:
        """The k x m candidates drawn uniformly, each measured with the current policy (`context.policy`, which the
        scheduler holds and meters), the m in the band nearest the target kept."""
        if context.policy is None:
            raise ConfigError(
                "the screen strategy measures candidates with the current policy, and no model was given to "
                "screen with; drive it through `gaincurate schedule`, GainCurriculum or the verl sampler"
            )
        candidates = self.candidates(context, rng)
        ties = rng.random(len(candidates))  # drawn after the candidates, so they are the uniform draw's own
        started = time.perf_counter()
        screening = context.policy(np.asarray(context.gc_ids)[candidates], int(state.epoch), self.rollouts)
        seconds = time.perf_counter() - started
        rates = screening.rates
        if len(rates) != len(candidates):
            raise ValueError(f"the screener measured {len(rates)} of {len(candidates)} candidates")
        order = keep_order(rates, self.band, self.target, ties)[: context.subset_size]
        rollouts = int(np.sum(screening.counts))
        self._measured = (int(state.epoch), candidates, rates)
        info: dict[str, Any] = {
            "screened": len(candidates),
            "screen_rollouts": rollouts,
            "screen_tokens": int(screening.tokens),
            "screen_seconds": seconds,
            "in_band": int(np.sum(in_band(rates, self.band))),
            "screened_pass_rate": float(rates.mean()) if len(rates) else None,
            "chosen_pass_rate": float(rates[order].mean()) if len(order) else None,
        }
        return contract.Selection(np.sort(candidates[order]).astype(np.int64), info)
