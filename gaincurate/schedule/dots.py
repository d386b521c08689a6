"""The `dots` strategy: difficulty-targeted online data selection (DOTS, arXiv 2506.05316).

Each epoch every prompt q gets a pass rate p_q, and the epoch draws `subset_size` prompts without
replacement with

    P(q) ∝ exp(-|p_q - target| / tau)        (target 0.5, tau 1e-3 by default)

using the scheduler's Gumbel-top-k draw and `numpy.random.default_rng([seed, epoch])`, like `gain`.

* A prompt that has been measured (it was in an earlier epoch, or in the `--reference` feedback
  passed at init) uses its own adaptive pass rate: the mean reward over its recent rollouts (decay).
* Every other prompt gets the attention prediction over the measured prompts
  (`gaincurate.difficulty.predict`), with embeddings from `gaincurate score --embed` and the
  attention temperature `tau_attn`; older measurements weigh decay ** age in the softmax.
* Before any measurement (epoch 0 without `--reference`) every prompt is equally likely: there is
  nothing to aim with, and a uniform first epoch is the cheapest unbiased reference set.

The measured pass rates are the strategy's memory in the scheduler state (`state.json`), so a run
resumes exactly: `observe` folds each epoch's per-prompt feedback in before the next draw, and the
reference set grows by every prompt the trainer has trained on. The ranking is dataset order: the
positions an epoch draws are its gc_ids in ascending order, and `mu` is computed and logged only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from gaincurate.difficulty.predict import predict_pass_rates, prepare_embeddings, recency_log_weights
from gaincurate.difficulty.reference import PassRates, PromptEmbeddings, embeddings_from_table, read_pass_rates
from gaincurate.schedule.feedback import Feedback
from gaincurate.schedule.strategies import PromptSet, RankingContext, draw_without_replacement

if TYPE_CHECKING:
    from gaincurate.schedule.config import ScheduleConfig
    from gaincurate.schedule.inputs import ScoresInput
    from gaincurate.schedule.state import ScheduleState

REFERENCE_TIME = -1  # a --reference file is measured before epoch 0


def selection_log_weights(pass_rates: np.ndarray, *, target: float, tau: float) -> np.ndarray:
    """log P(q) up to a constant: -|p_q - target| / tau."""
    return -np.abs(np.asarray(pass_rates, dtype=np.float64) - target) / tau


def selection_probabilities(pass_rates: np.ndarray, *, target: float, tau: float) -> np.ndarray:
    """Single-draw probabilities (for tests and plots)."""
    log_weights = selection_log_weights(pass_rates, target=target, tau=tau)
    weights = np.exp(log_weights - log_weights.max())
    return weights / weights.sum()


class DotsStrategy:
    """Pick prompts whose (measured or predicted) pass rate is near the target."""

    name = "dots"

    def __init__(
        self,
        prompts: PromptEmbeddings,
        *,
        target: float = 0.5,
        tau: float = 1e-3,
        tau_attn: float = 0.1,
        decay: float = 1.0,
        reference: PassRates | None = None,
    ) -> None:
        self.gc_ids = prompts.gc_ids
        self.embeddings = prepare_embeddings(prompts.embeddings)
        self.target, self.tau, self.tau_attn, self.decay = target, tau, tau_attn, decay
        self.reference = reference if reference is not None else PassRates.empty()

    @classmethod
    def from_scores(cls, scores: ScoresInput, config: ScheduleConfig, *, read_reference: bool) -> DotsStrategy:
        """The strategy for a scores directory; `read_reference` at init (later it lives in the state)."""
        prompts = embeddings_from_table(scores.table, str(scores.directory))
        reference = None
        if read_reference and config.reference is not None:
            from pathlib import Path

            reference = read_pass_rates(
                [Path(config.reference)],
                known_ids=prompts.gc_ids,
                reward_max=config.reward_max,
                first_time=REFERENCE_TIME,
            )
        return cls(
            prompts,
            target=config.target,
            tau=config.tau,
            tau_attn=config.tau_attn,
            decay=config.decay,
            reference=reference,
        )

    def rank(self, prompts: PromptSet) -> np.ndarray:
        return np.argsort(prompts.gc_ids, kind="stable").astype(np.int64)

    def initial_memory(self) -> dict[str, Any]:
        return {"pass_rates": self.reference.to_json()}

    def measured(self, state: ScheduleState) -> PassRates:
        memory = state.memory or {}
        return PassRates.from_json(memory["pass_rates"]) if "pass_rates" in memory else PassRates.empty()

    def observe(self, state: ScheduleState, feedback: Feedback) -> dict[str, Any]:
        """The memory after epoch `state.epoch`'s feedback: its per-prompt rewards added to the reference set."""
        if feedback.per_prompt is None:
            raise ValueError(
                "the dots strategy needs per-rollout feedback ({'gc_id', 'reward'} records), not a bare accuracy"
            )
        rates = self.measured(state).add(feedback.per_prompt, time=state.epoch, decay=self.decay)
        return {**(state.memory or {}), "pass_rates": rates.to_json()}

    def pass_rates(self, state: ScheduleState) -> np.ndarray | None:
        """p_q for every prompt (gc_id order) before drawing epoch `state.epoch`; None before any measurement."""
        rates = self.measured(state)
        if not len(rates):
            return None
        now = state.epoch - 1  # the epoch whose feedback is the newest
        predicted = predict_pass_rates(
            self.embeddings,
            self.gc_ids,
            rates.gc_ids,
            rates.rates,
            tau=self.tau_attn,
            reference_log_weights=recency_log_weights(rates.last, now, self.decay),
        )
        # A prompt measured itself uses its own adaptive pass rate, not a prediction.
        predicted[np.searchsorted(self.gc_ids, rates.gc_ids)] = rates.rates
        return predicted

    def select(self, state: ScheduleState, context: RankingContext, rng: np.random.Generator) -> np.ndarray:
        params = context.params
        predicted = self.pass_rates(state)
        if predicted is None:
            log_weights = np.zeros(params.n_prompts)
        else:
            rows = np.searchsorted(self.gc_ids, context.gc_ids)
            log_weights = selection_log_weights(predicted[rows], target=self.target, tau=self.tau)
        return draw_without_replacement(log_weights, params.subset_size, rng)
