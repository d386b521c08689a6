"""Curriculum strategies: how prompts are ranked, and which rank positions an epoch draws.

Every strategy has the same two methods, so the scheduler, its state and its files do not care which
one runs (`dots`, `mopps` and `greso` plug in the same way, built by `gaincurate.schedule.registry`):

* `rank(prompts)` orders the prompt set; position 0 is where a curriculum starts.
* `select(state, context, rng)` returns the epoch's rank positions, unique and ascending (or a `Selection`:
  the positions plus a few numbers about the draw that the epoch's history line keeps).
* `priority(state, context, rng)`, where a strategy has it, returns every position, the one it wants most
  first; `select` then takes the first `subset_size`. A filter (`--skip-zero-variance`) walks it past the
  prompts it skips, so the epoch keeps its size with the base strategy's next choices.

`gain` ranks by score, highest first (or by a seeded permutation, `--ranking random`), and draws from a
Gaussian over positions centred on mu;
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
from gaincurate.schedule.direction import orient

if TYPE_CHECKING:
    from gaincurate.schedule.config import ScheduleConfig
    from gaincurate.schedule.feedback import Feedback
    from gaincurate.schedule.state import ScheduleState

# `gain --ranking random`: its permutation's stream in the seed sequence, apart from the draws seeded by
# (seed, epoch) and the training-order shuffle's (seed, epoch, 1) (gaincurate.schedule.order).
RANKING_STREAM = 2


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


@dataclass(frozen=True)
class Selection:
    """An epoch's rank positions plus JSON-ready numbers about how they were drawn (skips, posteriors)."""

    positions: np.ndarray
    info: dict[str, Any]


class Strategy(Protocol):
    name: str

    def rank(self, prompts: PromptSet) -> np.ndarray:
        """Indices into `prompts` (row order) giving rank positions 0..N-1."""
        ...

    def select(self, state: ScheduleState, context: RankingContext, rng: np.random.Generator) -> np.ndarray | Selection:
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


def draw_order(log_weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Every index, in the order of a successive draw without replacement ∝ exp(log_weights).

    Any prefix of it is a draw of that many; `draw_without_replacement` keeps the first `count`.
    """
    keys = log_weights + rng.gumbel(size=len(log_weights))
    return np.argsort(-keys, kind="stable").astype(np.int64)


def draw_without_replacement(log_weights: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` distinct indices, drawn successively with probability proportional to exp(log_weights).

    Returned ascending (rank order), so the draw order never leaks into the epoch file.
    """
    return first_positions(draw_order(log_weights, rng), count)


def first_positions(order: np.ndarray, count: int) -> np.ndarray:
    """The first `count` entries of a priority order, ascending (rank order)."""
    return np.sort(order[:count]).astype(np.int64)


def rank_by_score(prompts: PromptSet) -> np.ndarray:
    """Highest ranking score first, ties by gc_id ascending, unscorable (NaN) rows last by gc_id."""
    ranking = prompts.ranking_scores
    finite = np.isfinite(ranking)
    # lexsort sorts by the last key first: not-finite flag, then descending score, then gc_id.
    order = np.lexsort((prompts.gc_ids, np.where(finite, -ranking, 0.0), ~finite))
    return order.astype(np.int64)


class GainStrategy:
    """GAIN-RL: rank by angle concentration, sample a Gaussian over positions around mu.

    `ranking="random"` ranks by a permutation seeded by `seed` instead; `direction="auto"` keeps or reverses
    the ranking after the first epoch (`orient`, `gaincurate.schedule.direction`). Both are ablation options
    (`gaincurate.schedule.gain_options`); the defaults are the published schedule.
    """

    name = "gain"

    def __init__(self, *, ranking: str = "score", direction: str = "high-first", seed: int = 0) -> None:
        self.ranking, self.direction, self.seed = ranking, direction, seed

    @classmethod
    def from_config(cls, config: ScheduleConfig) -> GainStrategy:
        return cls(ranking=config.ranking, direction=config.direction, seed=config.seed)

    def rank(self, prompts: PromptSet) -> np.ndarray:
        if self.ranking == "random":  # fixed for the run: a rerank (--rescore full) gives the same order
            return np.random.default_rng([self.seed, 0, RANKING_STREAM]).permutation(len(prompts)).astype(np.int64)
        return rank_by_score(prompts)

    def orient(
        self, state: ScheduleState, following: ScheduleState, feedback: Feedback
    ) -> tuple[ScheduleState, dict[str, Any] | None]:
        """`following` with its ranking kept or reversed by the first epoch's pass rates (`--direction auto`)."""
        if self.direction != "auto":
            return following, None
        return orient(state, following, feedback)

    def priority(self, state: ScheduleState, context: RankingContext, rng: np.random.Generator) -> np.ndarray:
        params = context.params
        return draw_order(gaussian_log_weights(params.n_prompts, state.mu, params.sigma), rng)

    def select(self, state: ScheduleState, context: RankingContext, rng: np.random.Generator) -> np.ndarray:
        return first_positions(self.priority(state, context, rng), context.params.subset_size)


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

    def priority(self, state: ScheduleState, context: RankingContext, rng: np.random.Generator) -> np.ndarray:
        return draw_order(np.zeros(context.params.n_prompts), rng)

    def select(self, state: ScheduleState, context: RankingContext, rng: np.random.Generator) -> np.ndarray:
        return first_positions(self.priority(state, context, rng), context.params.subset_size)


STRATEGIES: dict[str, type] = {cls.name: cls for cls in (GainStrategy, UniformStrategy, LengthStrategy)}


def get_strategy(name: str) -> Strategy:
    if name not in STRATEGIES:
        need = "needs prompt embeddings" if name == "dots" else "keeps per-prompt memory"
        raise ValueError(
            f"the {name} strategy {need}: build it with gaincurate.schedule.registry.build_strategy "
            "and pass Scheduler(..., strategy=...)"
        )
    return STRATEGIES[name]()
