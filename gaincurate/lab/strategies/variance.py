"""The `variance` strategy: train where GRPO's signal is expected largest, with an uncertainty bonus.

In the spirit of Pilot-Commit (arXiv 2605.26606) and HIVE (arXiv 2603.25184): a GRPO group's advantage is zero
when every rollout agrees, and the expected reward variance of a prompt with pass rate p is p(1 - p). Each prompt
keeps mopps' discounted Beta(a, b) posterior of its pass rate (`mopps`, the same update and `forget`),
and each epoch scores it by the posterior's expected variance plus a bonus for what is not known yet:

    value_q = E[p(1 - p)] + bonus * sd(p) = a b / ((a + b)(a + b + 1)) + bonus * sqrt(a b / ((a + b)^2 (a + b + 1)))

then draws `subset_size` prompts without replacement with P(q) ∝ exp(value_q / tau) (Gumbel-top-k with
`default_rng([seed, epoch])`, like every draw). An unmeasured prompt sits at the prior (1/6 + 0.29 bonus under
Beta(1, 1)), so it is tried before the prompts measured all right or all wrong, and after those measured mixed
once the bonus has shrunk. Unlike mopps nothing aims at a target rate: the variance peaks at p = 1/2 by itself.

Where the papers differ: Pilot-Commit spends pilot rollouts before committing a prompt and HIVE screens with
entropy; both need the trainer's generation loop. This plug-in uses only the trainer's own feedback, as mopps
does, so it runs through every integration unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from gaincurate.schedule.options import NON_NEGATIVE, POSITIVE, RATE, Options, option, positive_pair
from gaincurate.schedule.strategies import contract
from gaincurate.schedule.strategies.mopps import DEFAULT_FORGET, MoppsStrategy, posterior_mean, posterior_sd

if TYPE_CHECKING:
    from gaincurate.schedule.state import ScheduleState


@dataclass(frozen=True, kw_only=True)
class VarianceOptions(Options):
    prior: tuple[float, float] = option((1.0, 1.0), "Beta prior A,B of every pass rate.", positive_pair, cli="pair")
    forget: float = option(DEFAULT_FORGET, "Weight old evidence keeps at each update (1: never forget).", RATE)
    bonus: float = option(0.5, "Weight of the posterior's sd beside the expected variance p(1-p).", NON_NEGATIVE)
    tau: float = option(0.02, "Selection temperature: P(q) ∝ exp(value / tau).", POSITIVE)


def expected_variance(alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """E[p(1 - p)] under Beta(alpha, beta): alpha beta / ((alpha + beta)(alpha + beta + 1))."""
    total = alpha + beta
    return alpha * beta / (total * (total + 1.0))


def values(alpha: np.ndarray, beta: np.ndarray, *, bonus: float) -> np.ndarray:
    """What each prompt is worth to train on: the expected reward variance plus `bonus` times the posterior sd."""
    return expected_variance(alpha, beta) + bonus * posterior_sd(alpha, beta)


class VarianceStrategy(MoppsStrategy):
    """`MoppsStrategy`'s posterior, drawn by expected reward variance p(1-p) plus an uncertainty bonus."""

    name = "variance"
    about = replace(
        MoppsStrategy.about,
        options=VarianceOptions,
        summary="expected reward variance p(1-p) plus an uncertainty bonus (Pilot-Commit, HIVE)",
        draws="by each prompt's expected reward variance p(1-p) plus a bonus for what is not known; epoch 0 is uniform",
    )

    def __init__(self, gc_ids: np.ndarray, options: VarianceOptions) -> None:
        super().__init__(gc_ids, prior=options.prior, forget=options.forget)
        self.bonus, self.tau = options.bonus, options.tau

    @classmethod
    def build(cls, inputs: contract.StrategyInputs, options: Options) -> VarianceStrategy:
        assert isinstance(options, VarianceOptions)
        return cls(inputs.prompts.gc_ids, options)

    def choose(
        self, state: ScheduleState, context: contract.RankingContext, rng: np.random.Generator
    ) -> contract.Priority:
        alpha, beta = self.posterior(state)
        rows = self._rows(context)
        alpha, beta = alpha[rows], beta[rows]
        return contract.Priority(
            contract.draw_order(values(alpha, beta, bonus=self.bonus) / self.tau, rng), posterior_mean(alpha, beta)
        )

    def describe(self, state: ScheduleState, context: contract.RankingContext, positions: np.ndarray) -> dict[str, Any]:
        """mopps' posterior mean and sd, then the expected variance, averaged over the epoch's prompts at the draw."""
        alpha, beta = self._drawn_posterior(state, context, positions)
        variance = float(np.mean(expected_variance(alpha, beta)))
        return {**super().describe(state, context, positions), "expected_variance": variance}
