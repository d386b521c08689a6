"""The `mopps` strategy: Bayesian pass-rate tracking with Thompson sampling (MoPPS, arXiv 2507.04632).

Every prompt q keeps a Beta(a_q, b_q) posterior over its pass rate, starting at the prior Beta(a0, b0).
After an epoch, a prompt with k_q rollouts whose correctness ((reward - reward_min) / (reward_max - reward_min))
sums to s_q becomes

    a_q <- forget * a_q + (1 - forget) * a0 + s_q
    b_q <- forget * b_q + (1 - forget) * b0 + (k_q - s_q)

so old evidence is discounted toward the prior and the posterior follows a policy that improves
(`forget` = 1 never forgets). A prompt without a rollout in the epoch keeps its posterior. Each epoch
draws one value theta_q ~ Beta(a_q, b_q) per prompt with `numpy.random.default_rng([seed, epoch])` and
takes the `subset_size` prompts whose draws lie closest to `target` (ties by gc_id).

The posteriors of the prompts measured so far are the strategy's memory in the scheduler state
(`state.json`), as JSON floats that read back exactly, so a resumed run draws the same epochs. Epoch 0
draws every theta from the prior: with Beta(1, 1) that is a uniform draw of prompts. No forward pass and
no embedding are needed; `docs/strategies.md` compares it with the released code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from gaincurate.schedule.options import RATE, Options, option, positive_pair
from gaincurate.schedule.strategies import contract

if TYPE_CHECKING:
    from gaincurate.schedule.feedback import Feedback
    from gaincurate.schedule.state import ScheduleState

MEMORY_KEY = "posterior"
# The weight old evidence keeps at each update (docs/strategies.md shows the simulation that picked it).
DEFAULT_FORGET = 0.8


@dataclass(frozen=True, kw_only=True)
class MoppsOptions(Options):
    target: float = option(0.5, contract.TARGET_HELP, RATE)
    prior: tuple[float, float] = option((1.0, 1.0), "Beta prior A,B of every pass rate.", positive_pair, cli="pair")
    forget: float = option(DEFAULT_FORGET, "Weight old evidence keeps at each update (1: never forget).", RATE)


def update_posterior(
    alpha: np.ndarray,
    beta: np.ndarray,
    successes: np.ndarray,
    trials: np.ndarray,
    *,
    prior: tuple[float, float],
    forget: float,
) -> tuple[np.ndarray, np.ndarray]:
    """One discounted Beta update per prompt: old evidence weighs `forget`, the prior takes the rest."""
    successes = np.asarray(successes, dtype=np.float64)
    failures = np.asarray(trials, dtype=np.float64) - successes
    new_alpha = forget * np.asarray(alpha, dtype=np.float64) + (1.0 - forget) * prior[0] + successes
    new_beta = forget * np.asarray(beta, dtype=np.float64) + (1.0 - forget) * prior[1] + failures
    return new_alpha, new_beta


def posterior_mean(alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
    return alpha / (alpha + beta)


def posterior_sd(alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
    total = alpha + beta
    return np.sqrt(alpha * beta / (total * total * (total + 1.0)))


class MoppsStrategy(contract.Strategy):
    """A discounted Beta posterior of each prompt's pass rate, from its own rollouts; the epoch is a Thompson draw
    nearest the target."""

    name = "mopps"
    about = contract.About(
        options=MoppsOptions,
        summary="a Thompson draw of each prompt's Beta posterior, nearest --target (0.69x uniform's rollouts on "
        "cpu-arith, 1.05x on cpu-mult)",
        draws="epoch 0 is uniform (every posterior at the prior); then nearest the target pass rate, by a Thompson "
        "draw",
        needs=frozenset({contract.ROLLOUTS}),
        estimates=True,
    )

    def __init__(
        self,
        gc_ids: np.ndarray,
        *,
        target: float = 0.5,
        prior: tuple[float, float] = (1.0, 1.0),
        forget: float = DEFAULT_FORGET,
    ) -> None:
        self.gc_ids = np.asarray(gc_ids, dtype=np.int64)  # ascending, as in PromptSet
        self.target, self.prior, self.forget = float(target), (float(prior[0]), float(prior[1])), float(forget)

    @classmethod
    def build(cls, inputs: contract.StrategyInputs, options: Options) -> MoppsStrategy:
        assert isinstance(options, MoppsOptions)
        return cls(inputs.prompts.gc_ids, target=options.target, prior=options.prior, forget=options.forget)

    def start(self, prompts: contract.PromptSet) -> tuple[np.ndarray, dict[str, Any]]:
        return contract.Strategy.start(self, prompts)[0], {MEMORY_KEY: {"gc_ids": [], "alpha": [], "beta": []}}

    def posterior(self, state: ScheduleState) -> tuple[np.ndarray, np.ndarray]:
        """(alpha, beta) of every prompt in gc_id order; prompts never measured are at the prior."""
        alpha = np.full(len(self.gc_ids), self.prior[0])
        beta = np.full(len(self.gc_ids), self.prior[1])
        stored = (state.memory or {}).get(MEMORY_KEY)
        if stored and stored["gc_ids"]:
            rows = np.searchsorted(self.gc_ids, np.asarray(stored["gc_ids"], dtype=np.int64))
            alpha[rows] = np.asarray(stored["alpha"], dtype=np.float64)
            beta[rows] = np.asarray(stored["beta"], dtype=np.float64)
        return alpha, beta

    def observe(
        self, state: ScheduleState, feedback: Feedback, fresh: contract.Fresh = contract.NOTHING_FRESH
    ) -> dict[str, Any]:
        """The memory after epoch `state.epoch`: each prompt with rollouts gets its discounted update."""
        per_prompt = contract.per_prompt_feedback(feedback, self.name)
        alpha, beta = self.posterior(state)
        measured = {int(i) for i in (state.memory or {}).get(MEMORY_KEY, {}).get("gc_ids", [])}
        if per_prompt:
            ids = np.fromiter(per_prompt, dtype=np.int64, count=len(per_prompt))
            rows = np.searchsorted(self.gc_ids, ids)
            sums = np.array([per_prompt[int(i)][0] for i in ids])
            counts = np.array([per_prompt[int(i)][1] for i in ids])
            alpha[rows], beta[rows] = update_posterior(
                alpha[rows], beta[rows], sums, counts, prior=self.prior, forget=self.forget
            )
            measured.update(int(i) for i in ids)
        kept = np.searchsorted(self.gc_ids, np.array(sorted(measured), dtype=np.int64))
        stored = {"gc_ids": self.gc_ids[kept].tolist(), "alpha": alpha[kept].tolist(), "beta": beta[kept].tolist()}
        return {**(state.memory or {}), MEMORY_KEY: stored}

    def _rows(self, context: contract.RankingContext) -> np.ndarray:
        """Index into gc_id order of each rank position."""
        return np.searchsorted(self.gc_ids, context.gc_ids)

    def report(
        self, state: ScheduleState, context: contract.RankingContext, drawn: contract.Selection
    ) -> contract.Report:
        """The posterior mean of every prompt at the draw (the prior mean where never measured)."""
        figures = self.describe(state, context, drawn.positions) | drawn.info
        return contract.Report(drawn.estimates, "posterior mean", contract.target_band(self.target), figures)

    def choose(
        self, state: ScheduleState, context: contract.RankingContext, rng: np.random.Generator
    ) -> contract.Priority:
        """Every rank position, nearest draw to the target first (ties by position), with the posterior mean at
        each (the prior mean where never measured)."""
        alpha, beta = self.posterior(state)
        rows = self._rows(context)
        draws = rng.beta(alpha[rows], beta[rows])
        order = np.argsort(np.abs(draws - self.target), kind="stable").astype(np.int64)
        return contract.Priority(order, posterior_mean(alpha[rows], beta[rows]))

    def describe(self, state: ScheduleState, context: contract.RankingContext, positions: np.ndarray) -> dict[str, Any]:
        """Posterior mean and sd, averaged over the epoch's prompts, as the posterior stood when it was drawn."""
        alpha, beta = self._drawn_posterior(state, context, positions)
        return {
            "posterior_mean": float(np.mean(posterior_mean(alpha, beta))),
            "posterior_sd": float(np.mean(posterior_sd(alpha, beta))),
        }

    def _drawn_posterior(
        self, state: ScheduleState, context: contract.RankingContext, positions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The Beta(alpha, beta) posterior of each prompt at the rank `positions` drawn."""
        alpha, beta = self.posterior(state)
        rows = self._rows(context)[positions]
        return alpha[rows], beta[rows]
