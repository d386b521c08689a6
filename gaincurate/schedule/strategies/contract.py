"""The strategy contract: eight members a strategy may define, and the draws they share.

A strategy is a subclass of `Strategy` in a module of its own, registered by one line in
`gaincurate.schedule.strategies.registry` (docs/strategies.md, "Adding a strategy"). The scheduler core calls nothing
else of it: `name` and `about` (what it declares of itself, as data, and what it draws, in words: `summary`, `draws`),
`build` (the object for a run), `start` (its ranking and memory before epoch 0), `choose` (an epoch's draw, with its
pass-rate estimates), `observe` (its memory after an epoch's feedback and what the newest model said), `wants` (what
it asks of the newest model) and `report` (what it says of a draw: the savings readout, status, the plot, TRL's logs
and the bench read nothing else).
Filters (`--band`, `--skip-zero-variance`: `gaincurate.schedule.strategies.filters`) step over a strategy's
`Priority`; they are not strategies.

The draw without replacement uses Gumbel-top-k: add independent Gumbel noise to each log-weight and keep the k
largest. That is exactly successive sampling without replacement with probability proportional to the weights, and
working with log-weights means positions far from the mode never underflow to probability zero.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from gaincurate.errors import InputError
from gaincurate.numerics import exp
from gaincurate.schedule.figures import DEFAULT_COLUMNS, Column, drawn_figures, figure_words
from gaincurate.schedule.options import Options

if TYPE_CHECKING:
    from gaincurate.schedule.feedback import Feedback
    from gaincurate.schedule.state import ScheduleState

# What a strategy may need from the run (`About.needs`), so an integration can refuse early what it lacks.
EMBEDDINGS = "embeddings"  # the scores table's question embeddings (`gaincurate score` stores them by default)
ROLLOUTS = "rollouts"  # per-prompt feedback: each rollout's gc_id and reward, not a bare accuracy
POLICY = "policy"  # the current policy, to measure candidates before a draw (`About.measure`, `PolicyAt`)
FRESH_SCORES = "fresh_scores"  # angle scores of the newest checkpoint (`Wants.rescore`)
LIKELIHOOD = "likelihood"  # the newest policy's log-probability of each reference answer (`Wants.rescore`)
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
    policy: Any = None  # what a strategy that needs `POLICY` measures with (`About.measure`)

    @property
    def n_prompts(self) -> int:
        return len(self.gc_ids)


@dataclass(frozen=True)
class Selection:
    """An epoch's rank positions plus JSON-ready numbers about how they were drawn (skips, posteriors), the
    strategy's pass-rate estimate at each rank position as it stood at the draw (None: it keeps none), and the
    positions of its control: a slice drawn uniformly from the whole pool whatever the aim picks (None: none)."""

    positions: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)
    estimates: np.ndarray | None = None
    control: np.ndarray | None = None


@dataclass(frozen=True)
class Priority:
    """Every rank position, the one a strategy wants most first, and its pass-rate estimate at each position
    (None: it keeps none). The scheduler keeps the first `subset_size`, after any filter's step over it.

    `control`: positions drawn uniformly from the whole pool, before and whatever the aim, placed first in `order`:
    the readout's randomized sample of a uniform draw (`gaincurate.schedule.control`). A filter steps over the rest
    only (`filters.chosen_through`): the control stays as drawn."""

    order: np.ndarray
    estimates: np.ndarray | None = None
    control: np.ndarray | None = None


NO_ESTIMATE = "no pass-rate estimate"


@dataclass(frozen=True)
class Report:
    """What a strategy says about an epoch it drew (`Strategy.report`).

    `estimates`: its pass-rate estimate at each rank position as it stood at the draw (NaN where it has none;
    None: it keeps no estimate); `source`: what the estimate is, or why there is none; `band`: the pass rates it
    aims at (None: it aims at none); `figures`: its own JSON-ready numbers about the draw (skips, posteriors), which
    the epoch's history line keeps as `selection`; `note`: a sentence the run prints after the draw, not kept.
    """

    estimates: np.ndarray | None
    source: str
    band: tuple[float, float] | None = None
    figures: dict[str, Any] = field(default_factory=dict)
    note: str | None = None


TARGET_HALF_WIDTH = 0.25  # the readout counts a strategy aiming at one pass rate as aiming at target +- this
TARGET_HELP = "The pass rate to aim at."  # the `target` option's help, in every strategy that aims at one


def target_band(target: float) -> tuple[float, float]:
    """The band a strategy aiming at one pass rate is counted as aiming at: the target +- 0.25, within [0, 1]."""
    return (max(0.0, target - TARGET_HALF_WIDTH), min(1.0, target + TARGET_HALF_WIDTH))


def per_prompt_feedback(feedback: Feedback, strategy: str) -> dict[int, tuple[float, int]]:
    """The epoch's per-prompt (correctness sum, rollouts); a bare accuracy cannot teach a per-prompt strategy."""
    if feedback.per_prompt is None:
        raise InputError(
            f"the {strategy} strategy learns from each prompt's own rollouts: pass per-rollout feedback "
            '({"gc_id": int, "reward": float} lines, or the records themselves), not a bare accuracy'
        )
    return feedback.per_prompt


@dataclass(frozen=True)
class Fresh:
    """What the newest model said after an epoch, for `Strategy.observe`: a mean angle score given in process
    (`ang`), fresh scores of some prompts (`gc_ids`, `scores`), its log-probability of their reference answers
    (`gc_ids`, `likelihood`: a strategy that needs `LIKELIHOOD`), the rollouts of a fresh reference set
    (`reference`: {gc_id: (sum of correctness, rollouts)}, asked by `Wants.reference`), and the policy itself
    (`policy`: what a strategy that needs `POLICY` measures with); any may be absent."""

    ang: float | None = None
    gc_ids: np.ndarray | None = None
    scores: np.ndarray | None = None
    likelihood: np.ndarray | None = None
    reference: dict[int, tuple[float, int]] | None = None
    policy: Any = None


NOTHING_FRESH = Fresh()


@dataclass(frozen=True)
class EpochEnd:
    """What `Strategy.wants` knows as the epoch ends: its `feedback`, and `upcoming()`, the gc_ids (ascending) the next
    draw takes if nothing is measured after it. Both None: asked ahead of the rollouts, for what it may ask."""

    feedback: Feedback | None = None
    upcoming: Callable[[], np.ndarray] | None = None


AHEAD = EpochEnd()


@dataclass(frozen=True)
class Observed:
    """What `Strategy.observe` made of an epoch, when it is more than the memory: the memory, the numbers the
    epoch's history line keeps about it (gain: mu, ang, delta), and a new ranking with its scores (None: kept)."""

    memory: dict[str, Any] | None
    numbers: dict[str, Any] = field(default_factory=dict)
    ranking: np.ndarray | None = None
    scores: np.ndarray | None = None


@dataclass(frozen=True)
class Wants:
    """What a strategy asks of the newest model after the current epoch: fresh scores or answer likelihoods (as
    `about.needs` says) of `rescore`'s gc_ids (ascending; None: none), and `reference` prompts of a fresh reference
    set to roll (0: none)."""

    rescore: np.ndarray | None = None
    reference: int = 0


@dataclass(frozen=True)
class PolicyAt:
    """Where the policy being trained is, as the integration driving a run can hand it over, for a strategy that needs
    `POLICY` (its `About.measure` makes its measurement of it): in process, the live `model` with its
    `tokenizer` (and TRL's `trainer`); out of process, the weights folder that holds the policy to measure epoch
    N's draw with (`weights(N)`; None: the model the prompts were scored with). `given`: a measurement the
    caller built itself, used instead."""

    scores_dir: Path
    seed: int
    run_dir: Path | None = None  # where a measurement out of process writes its files
    weights: Callable[[int], Path | None] | None = None
    model: Any = None
    tokenizer: Any = None
    trainer: Any = None
    given: Any = None
    progress: Any = None


@dataclass(frozen=True)
class About:
    """What a strategy declares of itself (`Strategy.about`), as data: docs/strategies.md's second table says what
    each field is for. `build` may narrow it for a run (`dataclasses.replace`): gain without rescoring needs no fresh
    scores, and says the sizes it resolved for the pool (`settings`) and how its angle term is fed (`notes`).

    `summary` and `draws` are the words the CLI prints, phrases shown as written (`draws()` reads both): declared
    here, not read from the docstring, so a docstring speaks to readers of the code and editing it changes no output."""

    options: type[Options] = Options
    summary: str = ""  # what it draws, in a line: `schedule strategies`
    draws: str = ""  # how it draws an epoch: `schedule status` ('': its summary)
    needs: frozenset[str] = frozenset()
    columns: tuple[Column, ...] = DEFAULT_COLUMNS
    figure_names: Mapping[str, str] = field(default_factory=dict)  # status's words for its figures' keys
    update_words: Callable[[dict[str, Any]], str] | None = None
    draw_words: Callable[[dict[str, Any]], str] | None = None
    ordered: bool = True
    estimates: bool = False
    keeps_zero_variance: bool = True
    own_band: bool = False
    settings: Mapping[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    answer_template: str = "{answer}"
    measured_before: str = ""  # the option naming a pass-rates file measured before epoch 0 (dots: `reference`)
    measure: Callable[[PolicyAt], Any] | None = None  # needing `POLICY`: what it measures with, from where it is


class Strategy:
    """A curriculum strategy: the eight members below, each with its default. Subclass it and override; what the
    CLI says of it is declared in its `about` (`About.summary`, `About.draws`)."""

    name: ClassVar[str]
    about: About = About()  # what it declares of itself; `build` may narrow it for a run

    @classmethod
    def build(cls, inputs: StrategyInputs, options: Options) -> Strategy:
        """The strategy for a run; the default takes no inputs and no options."""
        return cls()

    def start(self, prompts: PromptSet) -> tuple[np.ndarray, dict[str, Any] | None]:
        """Its ranking (indices into `prompts`, row order, giving rank positions 0..N-1; default: dataset order)
        and its memory before epoch 0 (JSON-ready; default: None, it keeps none)."""
        return np.argsort(prompts.gc_ids, kind="stable").astype(np.int64), None

    def choose(
        self, state: ScheduleState, context: RankingContext, rng: np.random.Generator
    ) -> np.ndarray | Priority | Selection:
        """The epoch's draw: every rank position, most wanted first (`about.ordered`), bare or as a `Priority` with
        its pass-rate estimate at each position (what `--band` and the default `report` read, when
        `about.estimates`), or a `Selection` of `context.subset_size` positions, unique and ascending."""
        raise NotImplementedError(f"the {self.name} strategy does not say how it chooses")

    def observe(self, state: ScheduleState, feedback: Feedback, fresh: Fresh = NOTHING_FRESH) -> Any:
        """The memory after epoch `state.epoch`'s feedback and `fresh` (a dict, None, or an `Observed`);
        default: unchanged."""
        return state.memory

    def wants(self, state: ScheduleState, end: EpochEnd = AHEAD) -> Wants:
        """What it asks of the newest model after the current epoch, given what `end` knows (default: nothing)."""
        return Wants()

    def report(self, state: ScheduleState, context: RankingContext, drawn: Selection) -> Report:
        """Its estimates of the whole pool at the draw of `drawn`, and its figures about it (default: the draw's
        estimates when it declares `about.estimates`, none otherwise; the draw's own numbers)."""
        if not self.about.estimates:
            return Report(None, NO_ESTIMATE, None, drawn.info)
        estimates = drawn.estimates
        return Report(estimates, "pass-rate estimate" if estimates is not None else "no estimate yet", None, drawn.info)


def observed(result: Any) -> Observed:
    """What `Strategy.observe` returned, as an `Observed` (a bare memory keeps the ranking and adds no numbers)."""
    return result if isinstance(result, Observed) else Observed(result)


def draws(strategy: Strategy | type[Strategy]) -> str:
    """How a strategy draws an epoch (`schedule status`): its declared `About.draws`, else its `About.summary`."""
    return strategy.about.draws or strategy.about.summary


def draw_info(strategy: Strategy | type[Strategy], memory: dict[str, Any] | None) -> dict[str, Any]:
    """The numbers about a draw its epoch file keeps in its metadata: its `columns` declared `drawn`, as the
    strategy's memory keeps them (gain: mu)."""
    return drawn_figures(strategy.about.columns, memory)


def update_words(strategy: Strategy | type[Strategy], record: dict[str, Any]) -> str:
    """What a strategy's update did in an epoch (a history line), as the end of a sentence; '' when it says nothing."""
    words = strategy.about.update_words
    return words(record) if words is not None else ""


def draw_words(strategy: Strategy | type[Strategy], draw: dict[str, Any]) -> str:
    """How a strategy drew an epoch, from its drawn numbers: "by uniform", "by mine (temperature 0.5)"."""
    if strategy.about.draw_words is not None:
        return strategy.about.draw_words(draw)
    words = figure_words(strategy.about.columns, draw)
    return f"by {strategy.name}" + (f" ({words})" if words else "")


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
