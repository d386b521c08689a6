"""The `dots` strategy: difficulty-targeted online data selection (DOTS, arXiv 2506.05316).

Each epoch every prompt q gets a pass-rate estimate p_q, and the epoch draws `subset_size` prompts
without replacement with

    P(q) ∝ exp(-|p_q - target| / tau)        (target 0.5, tau 0.05 by default)

using the scheduler's Gumbel-top-k draw and `numpy.random.default_rng([seed, epoch])`, like `gain`.

* Every prompt has a neighbours' prediction m_q: attention over the measured prompts
  (`gaincurate.difficulty.predict`), leave-one-out, with embeddings from `gaincurate score --embed`,
  the attention temperature `tau_attn`, older measurements weighing decay ** age in the softmax, and
  optionally a calibrator from `gaincurate difficulty fit` (`--calibrator`).
* Measurements age (`gaincurate.difficulty.estimate`): a measured prompt's estimate blends its own
  rollouts, weighed decay ** (epochs since measured), with m_q weighed as NEIGHBOUR_ROLLOUTS rollouts. So
  a fresh measurement dominates and an old one gives way to its neighbours: a stale 0 or 1 never bars a
  prompt for ever while the policy improves. An unmeasured prompt's estimate is m_q.
* Before any measurement (epoch 0 without `--reference`) every prompt is equally likely: there is
  nothing to aim with, and a uniform first epoch is the cheapest unbiased reference set.

The measured pass rates are the strategy's memory in the scheduler state (`state.json`), so a run
resumes exactly: `observe` folds each epoch's per-prompt feedback in before the next draw, and the
reference set grows by every prompt the trainer has trained on. `measure` folds in extra rollouts, such
as a fresh reference set rolled with the newest checkpoint (`--reference-every`). The ranking is
dataset order: the positions an epoch draws are its gc_ids in ascending order, and `mu` is logged only.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gaincurate.difficulty.estimate import Estimates, estimate_pass_rates
from gaincurate.difficulty.predict import prepare_embeddings
from gaincurate.difficulty.reference import PassRates, PromptEmbeddings, embeddings_from_table, read_pass_rates
from gaincurate.schedule.config import DOTS_DECAY, DOTS_TAU
from gaincurate.schedule.feedback import Feedback
from gaincurate.schedule.strategies import PromptSet, RankingContext, draw_order, first_positions

if TYPE_CHECKING:
    from gaincurate.difficulty.calibrate import FittedCalibrator
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
        tau: float = DOTS_TAU,
        tau_attn: float = 0.1,
        decay: float = DOTS_DECAY,
        reference: PassRates | None = None,
        calibrator: FittedCalibrator | None = None,
        center: np.ndarray | None = None,
    ) -> None:
        self.gc_ids = prompts.gc_ids
        # A calibrator is applied to embeddings centred as it was fitted (`center`, from its file).
        self.embeddings = prepare_embeddings(prompts.embeddings, center=center)
        self.target, self.tau, self.tau_attn, self.decay = target, tau, tau_attn, decay
        self.reference = reference if reference is not None else PassRates.empty()
        self.calibrator = calibrator
        self._last: tuple[ScheduleState, Estimates | None] | None = None

    @classmethod
    def from_scores(cls, scores: ScoresInput, config: ScheduleConfig, *, read_reference: bool) -> DotsStrategy:
        """The strategy for a scores directory; `read_reference` at init (later it lives in the state)."""
        prompts = embeddings_from_table(scores.table, str(scores.directory))
        reference = None
        if read_reference and config.reference is not None:
            reference = read_pass_rates(
                [Path(config.reference)],
                known_ids=prompts.gc_ids,
                reward_max=config.reward_max,
                reward_min=config.reward_min,
                first_time=REFERENCE_TIME,
            )
        calibrator, center = None, None
        if config.calibrator is not None:
            from gaincurate.difficulty.jobs import load_calibrator

            calibrator, center = load_calibrator(Path(config.calibrator), prompts)
        return cls(
            prompts,
            target=config.target,
            tau=config.tau,
            tau_attn=config.tau_attn,
            decay=config.decay,
            reference=reference,
            calibrator=calibrator,
            center=center,
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
        return self.measure(state, feedback.per_prompt, time=state.epoch)

    def measure(self, state: ScheduleState, per_prompt: dict[int, tuple[float, int]], *, time: int) -> dict[str, Any]:
        """The memory with extra measurements at `time` (a fresh reference set) added to the reference set."""
        rates = self.measured(state).add(per_prompt, time=time, decay=self.decay)
        return {**(state.memory or {}), "pass_rates": rates.to_json()}

    def estimates(self, state: ScheduleState) -> Estimates | None:
        """The neighbours' prediction and the aged estimate of every prompt (gc_id order) before drawing epoch
        `state.epoch`; None before any measurement."""
        if self._last is not None and self._last[0] is state:  # the same draw asks again (priority, --band)
            return self._last[1]
        rates = self.measured(state)
        estimates = None
        if len(rates):
            estimates = estimate_pass_rates(
                self.embeddings,
                self.gc_ids,
                rates,
                now=state.epoch - 1,  # the epoch whose feedback is the newest
                tau=self.tau_attn,
                decay=self.decay,
                calibrator=self.calibrator,
            )
        self._last = (state, estimates)  # states are frozen: the same object always gives the same estimates
        return estimates

    def pass_rates(self, state: ScheduleState) -> np.ndarray | None:
        """p_q, what selection aims with, for every prompt (gc_id order); None before any measurement."""
        estimates = self.estimates(state)
        return None if estimates is None else estimates.estimate

    def band_estimates(self, state: ScheduleState, context: RankingContext) -> np.ndarray | None:
        """p_q at each rank position, for `--band` (None before any measurement)."""
        predicted = self.pass_rates(state)
        return None if predicted is None else predicted[np.searchsorted(self.gc_ids, context.gc_ids)]

    def priority(self, state: ScheduleState, context: RankingContext, rng: np.random.Generator) -> np.ndarray:
        """Every rank position in the order of the draw (`--skip-zero-variance` walks past the skipped)."""
        predicted = self.pass_rates(state)
        if predicted is None:
            log_weights = np.zeros(context.params.n_prompts)
        else:
            rows = np.searchsorted(self.gc_ids, context.gc_ids)
            log_weights = selection_log_weights(predicted[rows], target=self.target, tau=self.tau)
        return draw_order(log_weights, rng)

    def select(self, state: ScheduleState, context: RankingContext, rng: np.random.Generator) -> np.ndarray:
        return first_positions(self.priority(state, context, rng), context.params.subset_size)
