"""Curriculum strategies: how prompts are ranked, and which rank positions an epoch draws.

Every strategy has the same two methods, so the scheduler, its state and its files do not care which
one runs (a later `dots` strategy plugs in the same way):

* `rank(prompts)` orders the prompt set; position 0 is where a curriculum starts.
* `select(state, context, rng)` returns the epoch's rank positions, unique and ascending.

`gain` ranks by score, highest first, and draws from a Gaussian over positions centred on mu;
`length` draws the same Gaussian over a shortest-question-first ranking (the confound baseline);
`uniform` ranks in dataset order and draws uniformly (plain GRPO's sampling).

The Gaussian draw without replacement uses Gumbel-top-k: add independent Gumbel noise to each
log-weight and keep the k largest. That is exactly successive sampling without replacement with
probability proportional to the weights, and working with log-weights means positions far from mu
never underflow to probability zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from gaincurate.schedule.config import ScheduleParams

if TYPE_CHECKING:
    from gaincurate.schedule.state import ScheduleState


@dataclass(frozen=True)
class PromptSet:
    """What the scheduler knows of each prompt, in gc_id order (one entry per scored row)."""

    gc_ids: np.ndarray  # int64, ascending
    scores: np.ndarray  # float64 gc_score; NaN where unscorable
    ranking_scores: np.ndarray  # float64 score a ranking uses (debiased when the scores were)
    question_tokens: np.ndarray  # int64
    debias: dict[str, Any] | None = None  # the manifest's length fit, reapplied to fresh scores

    def __post_init__(self) -> None:
        sizes = {len(self.gc_ids), len(self.scores), len(self.ranking_scores), len(self.question_tokens)}
        if len(sizes) != 1:
            raise ValueError(f"PromptSet arrays differ in length: {sorted(sizes)}")
        if len(self.gc_ids) > 1 and not np.all(np.diff(self.gc_ids) > 0):
            raise ValueError("PromptSet.gc_ids must be unique and ascending")

    def __len__(self) -> int:
        return len(self.gc_ids)


@dataclass(frozen=True)
class RankingContext:
    """The ranking an epoch is drawn from, plus the resolved schedule numbers."""

    gc_ids: np.ndarray  # gc_id at each rank position
    scores: np.ndarray  # current gc_score at each rank position
    params: ScheduleParams


class Strategy(Protocol):
    name: str

    def rank(self, prompts: PromptSet) -> np.ndarray:
        """Indices into `prompts` (row order) giving rank positions 0..N-1."""
        ...

    def select(self, state: ScheduleState, context: RankingContext, rng: np.random.Generator) -> np.ndarray:
        """Rank positions for the epoch: `params.subset_size` of them, unique, ascending."""
        ...


def gaussian_log_weights(n_prompts: int, mu: float, sigma: float) -> np.ndarray:
    """log p_i up to a constant, for p_i proportional to exp(-(i - mu)^2 / (2 sigma^2))."""
    positions = np.arange(n_prompts, dtype=np.float64)
    return -((positions - mu) ** 2) / (2.0 * sigma * sigma)


def gaussian_probabilities(n_prompts: int, mu: float, sigma: float) -> np.ndarray:
    """The normalised single-draw probabilities p_i (for tests and plots)."""
    log_weights = gaussian_log_weights(n_prompts, mu, sigma)
    weights = np.exp(log_weights - log_weights.max())
    return weights / weights.sum()


def draw_without_replacement(log_weights: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` distinct indices, drawn successively with probability proportional to exp(log_weights).

    Returned ascending (rank order), so the draw order never leaks into the epoch file.
    """
    keys = log_weights + rng.gumbel(size=len(log_weights))
    chosen = np.argsort(-keys, kind="stable")[:count]
    return np.sort(chosen).astype(np.int64)


def rank_by_score(prompts: PromptSet) -> np.ndarray:
    """Highest ranking score first, ties by gc_id ascending, unscorable (NaN) rows last by gc_id."""
    ranking = prompts.ranking_scores
    finite = np.isfinite(ranking)
    # lexsort sorts by the last key first: not-finite flag, then descending score, then gc_id.
    order = np.lexsort((prompts.gc_ids, np.where(finite, -ranking, 0.0), ~finite))
    return order.astype(np.int64)


class GainStrategy:
    """GAIN-RL: rank by angle concentration, sample a Gaussian over positions around mu."""

    name = "gain"

    def rank(self, prompts: PromptSet) -> np.ndarray:
        return rank_by_score(prompts)

    def select(self, state: ScheduleState, context: RankingContext, rng: np.random.Generator) -> np.ndarray:
        params = context.params
        log_weights = gaussian_log_weights(params.n_prompts, state.mu, params.sigma)
        return draw_without_replacement(log_weights, params.subset_size, rng)


class LengthStrategy(GainStrategy):
    """The length confound baseline: the GAIN-RL schedule over a shortest-question-first ranking."""

    name = "length"

    def rank(self, prompts: PromptSet) -> np.ndarray:
        return np.lexsort((prompts.gc_ids, prompts.question_tokens)).astype(np.int64)


class UniformStrategy:
    """Plain GRPO sampling: every prompt equally likely; ranking is dataset order."""

    name = "uniform"

    def rank(self, prompts: PromptSet) -> np.ndarray:
        return np.argsort(prompts.gc_ids, kind="stable").astype(np.int64)

    def select(self, state: ScheduleState, context: RankingContext, rng: np.random.Generator) -> np.ndarray:
        params = context.params
        return draw_without_replacement(np.zeros(params.n_prompts), params.subset_size, rng)


STRATEGIES: dict[str, type] = {cls.name: cls for cls in (GainStrategy, UniformStrategy, LengthStrategy)}


def get_strategy(name: str) -> Strategy:
    if name == "dots":
        raise ValueError(
            "the dots strategy needs prompt embeddings: build it with "
            "gaincurate.schedule.dots.DotsStrategy and pass Scheduler(..., strategy=...)"
        )
    return STRATEGIES[name]()
