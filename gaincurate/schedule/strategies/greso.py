"""Zero-variance skipping (GRESO, arXiv 2506.02177): `--strategy greso`, or `--skip-zero-variance` over another.

A prompt whose rollouts were all right, or all wrong, gave GRPO no gradient, and tends to stay that way.
Each prompt keeps a streak: +k after k epochs in a row whose rollouts were all correct, -k after k all
wrong; an epoch with mixed rewards resets it to 0, and an epoch without a rollout of the prompt leaves it
as it was. Before rollout the prompt is skipped with probability

    P(skip) = 1 - max(p ** |streak|, 0.01),   p = explore_easy (streak > 0) or explore_hard (streak < 0)

The exploration rates start at 0.5. After each epoch the share of its prompts whose rollouts were all
correct is compared with target_zero_variance / 3, and the all-wrong share with 2 * target_zero_variance / 3
(hard prompts get more exploration: they are the ones a learning policy turns around). At or above its
target a rate drops by EXPLORE_STEP (skip more), below it rises by EXPLORE_STEP, within
[explore_min, explore_max].

`ZeroVarianceFilter` steps over any strategy that declares `about.ordered` (its `choose` returns an order):
the base orders every prompt, one uniform per position decides the skips, and the epoch is the first
`subset_size` prompts not skipped, so it keeps its size with the base strategy's next choices (if too few are
left, skipped ones fill it in the base's order). `greso` alone is the filter over `uniform`, the released code's
random order, as a strategy of its own. The streaks and rates live in the scheduler state, and each epoch's history
line says how many prompts were skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from gaincurate.errors import ConfigError, setting
from gaincurate.numerics import int_powers
from gaincurate.schedule.feedback import EXACT
from gaincurate.schedule.options import RATE, Options, option
from gaincurate.schedule.strategies import contract
from gaincurate.schedule.strategies.filters import Filter, chosen_through
from gaincurate.schedule.strategies.uniform import UniformStrategy

if TYPE_CHECKING:
    from gaincurate.schedule.feedback import Feedback
    from gaincurate.schedule.state import ScheduleState

MEMORY_KEY = "zero_variance"
EXPLORE_START = 0.5  # the released scripts' p_easy = p_hard = 0.5
KEEP_FLOOR = 0.01  # a prompt is never skipped with certainty
# Per epoch; the released code steps 0.01 per optimizer step, about a hundred per pass over its data.
EXPLORE_STEP = 0.1
EASY_SHARE, HARD_SHARE = 1 / 3, 2 / 3  # how the zero-variance target splits between all-correct and all-wrong
SKIP_NOTE = "; skipping, at random, prompts whose recent rollouts all agreed"  # how the filter changes a draw


def skip_probabilities(streaks: np.ndarray, *, explore_easy: float, explore_hard: float) -> np.ndarray:
    """P(skip) per prompt: 1 - max(p ** |streak|, KEEP_FLOOR); 0 for a prompt without a streak."""
    streaks = np.asarray(streaks, dtype=np.int64)
    rates = np.where(streaks > 0, explore_easy, explore_hard)
    keep = np.maximum(int_powers(rates, np.abs(streaks)), KEEP_FLOOR)  # not np.power: its bits vary by CPU
    return np.where(streaks == 0, 0.0, 1.0 - keep)


def next_streaks(streaks: np.ndarray, sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Streaks after one epoch's rollouts (correctness sum and count per prompt)."""
    streaks = np.asarray(streaks, dtype=np.int64)
    all_correct = sums >= counts - EXACT * counts
    all_wrong = sums <= EXACT * counts
    return np.where(all_correct, np.maximum(streaks, 0) + 1, np.where(all_wrong, np.minimum(streaks, 0) - 1, 0))


def next_rate(rate: float, share: float, target: float, *, low: float, high: float) -> float:
    """An exploration rate after an epoch whose zero-variance share of one kind was `share`."""
    moved = max(rate - EXPLORE_STEP, low) if share >= target else min(rate + EXPLORE_STEP, high)
    return round(moved, 12)  # no float drift in state.json: 0.2, not 0.20000000000000004


@dataclass(frozen=True, kw_only=True)
class ZeroVarianceOptions(Options):
    """GRESO's exploration rates: `--strategy greso`, and `--skip-zero-variance` over another strategy."""

    explore_min: float = option(0.05, "Lowest exploration rate of the zero-variance filter.", RATE)
    explore_max: float = option(0.95, "Highest exploration rate of the zero-variance filter.", RATE)
    target_zero_variance: float = option(
        0.25, "Share of all-right or all-wrong prompts the zero-variance filter steers to.", RATE
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.explore_min > self.explore_max:
            raise ConfigError(
                f"{setting('explore_min', self.explore_min)} is above {setting('explore_max', self.explore_max)}; "
                "swap them"
            )


class ZeroVarianceFilter(Filter):
    """Skip, before rollout, the prompts a base strategy picks whose recent rollouts all agreed."""

    setting = "skip_zero_variance"
    options_class = ZeroVarianceOptions
    summary = "Skip prompts whose recent rollouts all agreed (GRESO's filter) over this strategy."
    figure_names = {"explore_easy": "keep chance after all right", "explore_hard": "keep chance after all wrong"}

    @classmethod
    def configure(cls, value: Any, settings: dict[str, Any]) -> ZeroVarianceOptions | None:
        """A switch (True: the rates in `settings`, or their defaults), or the rates themselves (a stored dict)."""
        if not (value is None or isinstance(value, bool | dict | ZeroVarianceOptions)):
            raise ConfigError(f"{setting('skip_zero_variance')} is a switch (true/false); got {value!r}")
        if isinstance(value, dict):
            return ZeroVarianceOptions(**value)
        if value is True:
            return ZeroVarianceOptions(**settings)
        return value or None

    @classmethod
    def applies_to(cls, strategy: type[contract.Strategy]) -> bool:
        return strategy.about.keeps_zero_variance and strategy.about.ordered

    @classmethod
    def refusal(cls, strategy: type[contract.Strategy], usable: list[str]) -> str:
        if not strategy.about.keeps_zero_variance:
            what = (
                "skips" if strategy.about.ordered else "drops prompts its measurements found all right or all wrong, as"
            )
            return (
                f"{setting('strategy', strategy.name)} already {what} zero-variance prompts; drop "
                f"{setting('skip_zero_variance')}"
            )
        return f"{setting('skip_zero_variance')} needs an order to walk, which {strategy.name} has not"

    @classmethod
    def note(cls, value: ZeroVarianceOptions) -> str:
        return SKIP_NOTE

    @classmethod
    def over(
        cls, base: contract.Strategy, value: ZeroVarianceOptions, inputs: contract.StrategyInputs
    ) -> ZeroVarianceFilter:
        if not base.about.ordered:
            raise ValueError(f"the {base.name} strategy has no priority order, so skipped prompts cannot be replaced")
        return cls(base.name, inputs.prompts.gc_ids, value)

    def __init__(self, base_name: str, gc_ids: np.ndarray, options: ZeroVarianceOptions | None = None) -> None:
        self.base_name = base_name  # the strategy it goes over, named in its errors
        options = options or ZeroVarianceOptions()
        self.gc_ids = np.asarray(gc_ids, dtype=np.int64)  # ascending, as in PromptSet
        self.low, self.high, self.target = options.explore_min, options.explore_max, options.target_zero_variance

    def initial_memory(self, memory: dict[str, Any] | None) -> dict[str, Any]:
        start = min(max(EXPLORE_START, self.low), self.high)
        own = {"gc_ids": [], "streaks": [], "explore_easy": start, "explore_hard": start}
        return {**(memory or {}), MEMORY_KEY: own}

    def memory(self, state: ScheduleState) -> tuple[np.ndarray, float, float]:
        """(streak of every prompt in gc_id order, explore_easy, explore_hard)."""
        stored = (state.memory or {})[MEMORY_KEY]
        streaks = np.zeros(len(self.gc_ids), dtype=np.int64)
        if stored["gc_ids"]:
            streaks[np.searchsorted(self.gc_ids, np.asarray(stored["gc_ids"], dtype=np.int64))] = stored["streaks"]
        return streaks, float(stored["explore_easy"]), float(stored["explore_hard"])

    def observe(self, state: ScheduleState, feedback: Feedback, memory: dict[str, Any] | None) -> dict[str, Any]:
        """The memory after epoch `state.epoch`: the base's (`memory`), then the streaks and rates moved by its
        rollouts."""
        per_prompt = contract.per_prompt_feedback(feedback, self.base_name)
        streaks, easy, hard = self.memory(state)
        if per_prompt:
            ids = np.fromiter(per_prompt, dtype=np.int64, count=len(per_prompt))
            rows = np.searchsorted(self.gc_ids, ids)
            sums = np.array([per_prompt[int(i)][0] for i in ids])
            counts = np.array([per_prompt[int(i)][1] for i in ids])
            streaks[rows] = next_streaks(streaks[rows], sums, counts)
            easy_share = float(np.mean(streaks[rows] > 0))
            hard_share = float(np.mean(streaks[rows] < 0))
            easy = next_rate(easy, easy_share, self.target * EASY_SHARE, low=self.low, high=self.high)
            hard = next_rate(hard, hard_share, self.target * HARD_SHARE, low=self.low, high=self.high)
        kept = np.flatnonzero(streaks)
        own = {
            "gc_ids": self.gc_ids[kept].tolist(),
            "streaks": streaks[kept].tolist(),
            "explore_easy": easy,
            "explore_hard": hard,
        }
        return {**(memory or {}), MEMORY_KEY: own}

    def skips(
        self, state: ScheduleState, context: contract.RankingContext, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """(skipped per rank position, streak per rank position)."""
        streaks, easy, hard = self.memory(state)
        streaks = streaks[np.searchsorted(self.gc_ids, context.gc_ids)]
        # Drawn after the base's draw, one per position, so the base draws exactly what it draws alone.
        skipped = rng.random(len(streaks)) < skip_probabilities(streaks, explore_easy=easy, explore_hard=hard)
        return skipped, streaks

    def walk(
        self, state: ScheduleState, context: contract.RankingContext, rng: np.random.Generator, order: np.ndarray
    ) -> contract.Selection:
        """The first `subset_size` prompts of `order` not skipped, and how many were skipped, of which kind."""
        count = context.subset_size
        skipped, streaks = self.skips(state, context, rng)
        kept = ~skipped[order]
        taken = np.cumsum(kept)
        if count <= 0:  # a control that fills the epoch leaves the aim nothing to take (nor the order anything)
            chosen, passed = order[:0], order[:0]
        elif taken[-1] >= count:
            walked = order[: int(np.searchsorted(taken, count)) + 1]  # up to the count-th prompt kept
            chosen, passed = walked[kept[: len(walked)]], walked[~kept[: len(walked)]]
        else:  # too few left: the skipped ones the base wanted most fill the epoch after all
            fill = order[~kept][: count - int(taken[-1])]
            chosen, passed = np.concatenate([order[kept], fill]), order[~kept][len(fill) :]
        _, easy, hard = self.memory(state)
        info = {
            "skipped": len(passed),
            "skipped_easy": int(np.sum(streaks[passed] > 0)),
            "skipped_hard": int(np.sum(streaks[passed] < 0)),
            "explore_easy": easy,
            "explore_hard": hard,
        }
        return contract.Selection(np.sort(chosen).astype(np.int64), info)


class GresoStrategy(contract.Strategy):
    """`UniformStrategy`'s draw under the zero-variance filter (`ZeroVarianceFilter`): GRESO as a strategy."""

    name = "greso"
    about = contract.About(
        options=ZeroVarianceOptions,
        summary="uniform, skipping prompts whose recent rollouts all agreed (GRESO)",
        draws="every prompt equally likely" + SKIP_NOTE + "; it keeps no pass-rate estimate",  # the filter's own note
        needs=frozenset({contract.ROLLOUTS}),
        keeps_zero_variance=False,
        figure_names=ZeroVarianceFilter.figure_names,
    )

    def __init__(self, gc_ids: np.ndarray, options: ZeroVarianceOptions | None = None) -> None:
        self.order, self.skipping = UniformStrategy(), ZeroVarianceFilter(self.name, gc_ids, options)

    @classmethod
    def build(cls, inputs: contract.StrategyInputs, options: Options) -> GresoStrategy:
        assert isinstance(options, ZeroVarianceOptions)
        return cls(inputs.prompts.gc_ids, options)

    def start(self, prompts: contract.PromptSet) -> tuple[np.ndarray, dict[str, Any]]:
        order, memory = self.order.start(prompts)
        return order, self.skipping.initial_memory(memory)

    def observe(
        self, state: ScheduleState, feedback: Feedback, fresh: contract.Fresh = contract.NOTHING_FRESH
    ) -> dict[str, Any]:
        return self.skipping.observe(state, feedback, self.order.observe(state, feedback, fresh))

    def choose(
        self, state: ScheduleState, context: contract.RankingContext, rng: np.random.Generator
    ) -> contract.Selection:
        return chosen_through(self.order, (self.skipping,), state, context, rng)
