"""The strategy plug-in: the hooks the scheduler calls, declared once, and the draws they share.

A strategy is a subclass of `Strategy` in a module of its own, registered by one line in
`gaincurate.schedule.strategies.registry`. It declares its options (an `Options` dataclass,
`gaincurate.schedule.options`),
what it needs from the run (`needs`), and overrides the hooks it uses; every other hook has a default here,
and the scheduler core calls nothing that is not declared on this class:

* `build(inputs, options)` makes it for a run (the prompt set, the scores table, the common settings);
* `rank(prompts)` orders the prompt set; position 0 is where a curriculum starts (default: dataset order);
* `initial_memory()` is its state before epoch 0, JSON-ready, kept in `ScheduleState.memory`;
* `priority(state, context, rng)` returns every position, the one it wants most first (`ordered`); `select`
  then takes the first `subset_size` (or returns a `Selection`: the positions plus numbers about the draw);
* `observe(state, feedback)` folds an epoch's feedback into the memory; `measure` folds in extra rollouts
  (a fresh reference set); `update(state, following, feedback, fresh)` may change the state that draws the
  next epoch from the model's fresh scores (gain moves mu there) and returns the numbers its history line keeps;
* `band_estimates(state, context)`: a pass-rate estimate per position (declared by `pass_rate_estimates`);
* `rescore_ids(state)`: the prompts whose fresh scores it wants after the current epoch (default: none);
* `draw_info(state)`: the numbers an epoch file's metadata keeps about the draw (default: its `columns` declared
  `drawn`, from its memory; gain: mu);
* `columns`: the numbers its history line keeps that `schedule status` shows, the plot draws and a trainer's log
  logs, with their formats (`gaincurate.schedule.figures.Column`); `update_words(record)` and `draw_words(draw)`
  say in words what an update did and how an epoch was drawn (`schedule next`, the verl and TRL logs);
* `report(state, context, drawn)`: after each draw, its pass-rate estimate of every prompt as it stood at the draw,
  what that estimate is, the band it aims at, and its own figures about the draw (a `Report`). The savings readout
  (`gaincurate.schedule.readout`), status, the plot, TRL's logs and the bench read nothing else of a strategy;
  `draws` says in a line how it draws its epochs, for `schedule status`.

Filters (`--band`, `--skip-zero-variance`) are `Filter`s (`gaincurate.schedule.strategies.filters`,
`registry.FILTERS`): steps over a base strategy's draw, not strategies, built only over a base whose declarations
they need (`ordered`, ...).

`uniform` ranks in dataset order and draws uniformly (plain GRPO's sampling). The draw without replacement
uses Gumbel-top-k: add independent Gumbel noise to each log-weight and keep the k largest. That is exactly
successive sampling without replacement with probability proportional to the weights, and working with
log-weights means positions far from the mode never underflow to probability zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from gaincurate.numerics import exp
from gaincurate.schedule.figures import DEFAULT_COLUMNS, Column, drawn_figures, figure_words
from gaincurate.schedule.options import Options

if TYPE_CHECKING:
    from gaincurate.schedule.feedback import Feedback
    from gaincurate.schedule.state import ScheduleState

# What a strategy may need from the run (`Strategy.needs`), so an integration can refuse early what it lacks.
EMBEDDINGS = "embeddings"  # the scores table's question embeddings (`gaincurate score` stores them by default)
ROLLOUTS = "rollouts"  # per-prompt feedback: each rollout's gc_id and reward, not a bare accuracy
POLICY = "policy"  # the current policy, to measure candidates before a draw (`use_screener`)
FRESH_SCORES = "fresh_scores"  # angle scores of the newest checkpoint (`rescore_ids`)
LIKELIHOOD = "likelihood"  # the newest policy's log-probability of each reference answer (`rescore_ids`)
SCORES = "scores"  # the scoring pass's angle scores or question lengths (`schedule init --prompts` has neither)


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
class StrategyInputs:
    """What a strategy is built from: the prompt set, the run's common settings (the seed, the epoch's size, the
    reward range), and (when the run has one) its scores table.

    `initial` is True when a run starts (dots then reads its `--reference` file), False on resume.
    """

    prompts: PromptSet
    subset_size: int
    seed: int = 0
    reward_min: float = 0.0
    reward_max: float = 1.0
    band: tuple[float, float] | None = None  # read by a strategy that declares `own_band`
    scores: Any = None  # a `gaincurate.schedule.run.inputs.ScoresInput` (which imports this module)
    initial: bool = True


@dataclass(frozen=True)
class RankingContext:
    """The ranking an epoch is drawn from: gc_id and current score at each rank position, and the epoch's size."""

    gc_ids: np.ndarray
    scores: np.ndarray
    subset_size: int

    @property
    def n_prompts(self) -> int:
        return len(self.gc_ids)


@dataclass(frozen=True)
class Selection:
    """An epoch's rank positions plus JSON-ready numbers about how they were drawn (skips, posteriors)."""

    positions: np.ndarray
    info: dict[str, Any]


NO_ESTIMATE = "no pass-rate estimate"


@dataclass(frozen=True)
class Report:
    """What a strategy says about an epoch it drew (`Strategy.report`).

    `estimates`: its pass-rate estimate at each rank position as it stood at the draw (NaN where it has none;
    None: it keeps no estimate); `source`: what the estimate is, or why there is none; `band`: the pass rates it
    aims at (None: it aims at none); `figures`: its own JSON-ready numbers about the draw (skips, posteriors), which
    the epoch's history line keeps as `selection`.
    """

    estimates: np.ndarray | None
    source: str
    band: tuple[float, float] | None = None
    figures: dict[str, Any] = field(default_factory=dict)


TARGET_HALF_WIDTH = 0.25  # the readout counts a strategy aiming at one pass rate as aiming at target +- this


def target_band(target: float) -> tuple[float, float]:
    """The band a strategy aiming at one pass rate is counted as aiming at: the target +- 0.25, within [0, 1]."""
    return (max(0.0, target - TARGET_HALF_WIDTH), min(1.0, target + TARGET_HALF_WIDTH))


@dataclass(frozen=True)
class Fresh:
    """The model's signal after an epoch, for `Strategy.update`: a mean angle score given in process (`ang`), or
    fresh scores of some prompts from the newest model (`gc_ids`, `scores`), or that model's log-probability of
    their reference answers (`gc_ids`, `likelihood`: a strategy that needs `LIKELIHOOD`); any may be absent."""

    ang: float | None = None
    gc_ids: np.ndarray | None = None
    scores: np.ndarray | None = None
    likelihood: np.ndarray | None = None


@dataclass
class Spent:
    """What a strategy's own measurements have cost this process so far (screen; the bench charges it to the arm)."""

    rollouts: int = 0
    tokens: int = 0
    seconds: float = 0.0


class Strategy:
    """A curriculum strategy: every hook the scheduler calls, with its default. Subclass it and override."""

    name: ClassVar[str]
    options_class: ClassVar[type[Options]] = Options  # its settings; `Options` itself: none
    summary: ClassVar[str] = ""  # one line for `--strategy`'s help
    needs: ClassVar[frozenset[str]] = frozenset()
    ordered: ClassVar[bool] = True  # `priority` orders every prompt, so a filter can walk past skipped ones
    pass_rate_estimates: ClassVar[bool] = False  # `band_estimates` gives a pass rate per prompt: `--band` applies
    keeps_zero_variance: ClassVar[bool] = True  # False: it drops zero-variance prompts itself (no --skip-zero-variance)
    own_band: ClassVar[bool] = False  # it applies `--band` itself (`StrategyInputs.band`), not through the band filter
    draws: ClassVar[str] = ""  # how it draws its epochs, in a line, for `schedule status`
    columns: ClassVar[tuple[Column, ...]] = DEFAULT_COLUMNS  # its numbers per epoch: status, plot, logs

    @classmethod
    def update_words(cls, record: dict[str, Any]) -> str:
        """What its update did in an epoch (a history line), as the end of a sentence; '' when it says nothing."""
        return ""

    @classmethod
    def draw_words(cls, draw: dict[str, Any]) -> str:
        """How it drew an epoch, from its `draw_info` numbers: "by uniform", "by mine (temperature 0.5)"."""
        words = figure_words(cls.columns, draw)
        return f"by {cls.name}" + (f" ({words})" if words else "")

    @classmethod
    def build(cls, inputs: StrategyInputs, options: Options) -> Strategy:
        """The strategy for a run; the default takes no inputs and no options."""
        return cls()

    def rank(self, prompts: PromptSet) -> np.ndarray:
        """Indices into `prompts` (row order) giving rank positions 0..N-1; default: dataset (gc_id) order."""
        return np.argsort(prompts.gc_ids, kind="stable").astype(np.int64)

    def initial_memory(self) -> dict[str, Any] | None:
        """The strategy's state before epoch 0 (JSON-ready), or None when it keeps none."""
        return None

    def priority(self, state: ScheduleState, context: RankingContext, rng: np.random.Generator) -> np.ndarray:
        """Every rank position, the one it wants most first (strategies that declare `ordered`)."""
        raise NotImplementedError(f"the {self.name} strategy has no priority order")

    def select(self, state: ScheduleState, context: RankingContext, rng: np.random.Generator) -> np.ndarray | Selection:
        """The epoch's rank positions, `context.subset_size` of them, unique and ascending."""
        positions = first_positions(self.priority(state, context, rng), context.subset_size)
        info = self.describe(state, context, positions)
        return Selection(positions, info) if info else positions

    def describe(self, state: ScheduleState, context: RankingContext, positions: np.ndarray) -> dict[str, Any]:
        """JSON-ready numbers about a draw, for the epoch's history line (default: none)."""
        return {}

    def band_estimates(self, state: ScheduleState, context: RankingContext) -> np.ndarray | None:
        """A pass-rate estimate at each rank position (declared by `pass_rate_estimates`); None: none yet."""
        return None

    def report(self, state: ScheduleState, context: RankingContext, drawn: Selection) -> Report:
        """Its estimates of the whole pool at the draw of `drawn`, and its figures about it (default: the band
        estimates of a strategy that declares `pass_rate_estimates`, none otherwise; the draw's own numbers)."""
        if not self.pass_rate_estimates:
            return Report(None, NO_ESTIMATE, None, drawn.info)
        estimates = self.band_estimates(state, context)
        return Report(estimates, "pass-rate estimate" if estimates is not None else "no estimate yet", None, drawn.info)

    def observe(self, state: ScheduleState, feedback: Feedback) -> dict[str, Any] | None:
        """The memory after epoch `state.epoch`'s feedback (default: unchanged)."""
        return state.memory

    def measure(
        self, state: ScheduleState, per_prompt: dict[int, tuple[float, int]], *, time: int
    ) -> dict[str, Any] | None:
        """The memory with extra measurements (a fresh reference set) folded in."""
        raise ValueError(f"the {self.name} strategy keeps no pass rates for a fresh reference set")

    def update(
        self, state: ScheduleState, following: ScheduleState, feedback: Feedback, fresh: Fresh
    ) -> tuple[ScheduleState, dict[str, Any]]:
        """`following` (the state that draws the next epoch) moved by the model's fresh signal, and the numbers
        the epoch's history line keeps about it (default: unchanged, nothing)."""
        return following, {}

    def rescore_ids(self, state: ScheduleState) -> np.ndarray | None:
        """gc_ids (ascending) whose fresh scores it wants after the current epoch; None: none."""
        return None

    def reference_due(self, state: ScheduleState) -> int:
        """Prompts of a fresh reference set to roll with the newest checkpoint after the current epoch (0: none)."""
        return 0

    def draw_info(self, state: ScheduleState) -> dict[str, Any]:
        """Numbers about the draw of `state`'s epoch that its epoch file keeps in its metadata (default: its
        `columns` declared `drawn`, as its memory keeps them)."""
        return drawn_figures(self.columns, state.memory)

    def settings(self, n_prompts: int) -> dict[str, Any]:
        """The strategy's settings resolved for `n_prompts` prompts, for `schedule init` to show."""
        return {}

    def notes(self) -> list[str]:
        """Lines `schedule init` prints about how this run will behave (default: none)."""
        return []

    def use_screener(self, screener: Any) -> None:
        """Measure candidates with this policy before each draw (strategies that need `POLICY`)."""
        raise ValueError(f"the {self.name} strategy does not screen with the policy")

    @property
    def spent(self) -> Spent:
        """What its own measurements have cost so far (default: nothing)."""
        return Spent()


def gaussian_log_weights(n_prompts: int, mu: float, sigma: float) -> np.ndarray:
    """log p_i up to a constant, for p_i proportional to exp(-(i - mu)^2 / (2 sigma^2))."""
    offsets = np.arange(n_prompts, dtype=np.float64) - mu
    return -(offsets * offsets) / (2.0 * sigma * sigma)  # a product, not np.power: its AVX-512 loop rounds otherwise


def gaussian_probabilities(n_prompts: int, mu: float, sigma: float) -> np.ndarray:
    """The normalised single-draw probabilities p_i (for tests and plots)."""
    log_weights = gaussian_log_weights(n_prompts, mu, sigma)
    weights = exp(log_weights - log_weights.max())  # the same bits on every CPU, unlike np.exp
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
