"""Filters: steps over a base strategy's draw (`--band`, `--skip-zero-variance`), and the draw through them.

A filter is not a strategy and answers for none of a strategy's members; the scheduler (`gaincurate.schedule.core`)
asks the base strategy for everything and passes its draw through the run's filters (`chosen_through`), its
memory through their `initial_memory` and `observe`, its report through their `aim`.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from gaincurate import errors
from gaincurate.schedule.options import Options
from gaincurate.schedule.strategies import contract

if TYPE_CHECKING:
    from gaincurate.schedule.feedback import Feedback
    from gaincurate.schedule.state import ScheduleState


class Filter:
    """A step over a base strategy's draw, turned on by a setting of its own, listed in `registry.FILTERS`.

    A filter is not a strategy and answers for none of a strategy's hooks: the scheduler asks the base strategy for
    everything it asks a strategy (its order, estimates, report, updates), and each filter, in `FILTERS` order, only
    changes the draw (`chosen_through`) and keeps a memory of its own beside the base's. Its steps, each changing
    nothing by default:

    * `reorder(order, estimates)`: the base's `Priority` order, reordered (band: the prompts inside it first);
    * `walk(state, context, rng, order)`: the epoch's positions from that order, with its figures about them
      (zero variance: walking past skipped prompts); None: the first `subset_size`;
    * `describe(info, context, positions, estimates, outermost)`: its numbers about the draw in the history line,
      beside the base's (`Strategy.report`);
    * `aim(report)`: the base's report as the readout should read it (band: aiming at the band);
    * `initial_memory(memory)` / `observe(state, feedback, memory)`: the memory with its own keys beside the base's.

    What it declares: `setting`, the `ScheduleConfig` field and flag that turn it on (its value None: off);
    `pair_form`, how the command line spells that value (an `LO,HI` pair; None: a switch, on or off); its own
    `options_class`, given flat beside the switch as a strategy's options are; `summary`, the flag's help;
    `figure_names`, status's words for its figures; and which strategies it goes over (`applies_to`, from their
    `about`; `refusal(strategy, usable)`, the one-line error for the others).
    """

    setting: ClassVar[str]
    pair_form: ClassVar[str | None] = None
    options_class: ClassVar[type[Options]] = Options
    summary: ClassVar[str] = ""
    figure_names: ClassVar[dict[str, str]] = {}  # status's words for its figures' keys (default: the key, spaced)

    @classmethod
    def configure(cls, value: Any, settings: dict[str, Any]) -> Any:
        """The config's value of `setting` from what the caller gave (`settings`: its own options, flat); None: off."""
        return value

    @classmethod
    def applies_to(cls, strategy: type[contract.Strategy]) -> bool:
        """Whether it can go over `strategy`, from the strategy's declarations."""
        return True

    @classmethod
    def refusal(cls, strategy: type[contract.Strategy], usable: list[str]) -> str:
        """The one-line error for a strategy it cannot go over (`applies_to` False); a filter may say why."""
        return f"{errors.setting(cls.setting)} cannot go over {strategy.name}; use it with {', '.join(usable)}"

    @classmethod
    def applied_by(cls, strategy: type[contract.Strategy]) -> bool:
        """Whether `strategy` applies it itself (from `StrategyInputs`), so that it is not put over it."""
        return False

    @classmethod
    def note(cls, value: Any) -> str:
        """How it changes a draw, in words, appended to the base's `draws`."""
        return ""

    @classmethod
    def over(cls, base: contract.Strategy, value: Any, inputs: contract.StrategyInputs) -> Filter:
        """It over `base`, for a run whose config gives it `value`."""
        raise NotImplementedError(f"the {cls.setting} filter does not say how it is built")

    def reorder(self, order: np.ndarray, estimates: np.ndarray | None) -> np.ndarray:
        return order

    def walk(
        self, state: ScheduleState, context: contract.RankingContext, rng: np.random.Generator, order: np.ndarray
    ) -> contract.Selection | None:
        return None

    def describe(
        self,
        info: dict[str, Any],
        context: contract.RankingContext,
        positions: np.ndarray,
        estimates: np.ndarray | None,
        *,
        outermost: bool,
    ) -> dict[str, Any]:
        return info

    def aim(self, report: contract.Report) -> contract.Report:
        return report

    def initial_memory(self, memory: dict[str, Any] | None) -> dict[str, Any] | None:
        return memory

    def observe(self, state: ScheduleState, feedback: Feedback, memory: dict[str, Any] | None) -> dict[str, Any] | None:
        return memory


def chosen_through(
    base: contract.Strategy,
    filters: tuple[Filter, ...],
    state: ScheduleState,
    context: contract.RankingContext,
    rng: np.random.Generator,
) -> contract.Selection:
    """The draw of `base` (`Strategy.choose`) through `filters`: its priority order, reordered by each filter in
    turn, walked by the last that walks (or its first `subset_size`), and described by each filter."""
    chosen = base.choose(state, context, rng)
    if isinstance(chosen, contract.Selection):  # it selects itself: no filter goes over it (`registry.check_filters`)
        assert not filters, f"the {base.name} strategy selects its epochs itself, so no filter goes over it"
        return chosen
    priority = chosen if isinstance(chosen, contract.Priority) else contract.Priority(np.asarray(chosen, np.int64))
    estimates, control = priority.estimates, priority.control
    kept = control if filters and control is not None else np.zeros(0, dtype=np.int64)  # the control stays as drawn
    order = priority.order[~np.isin(priority.order, kept)]  # the filters step over the aim only
    aimed = dataclasses.replace(context, subset_size=context.subset_size - len(kept))
    for step in filters:
        order = step.reorder(order, estimates)
    walked = None
    for step in filters:
        walked = step.walk(state, aimed, rng, order) or walked
    positions = contract.first_positions(order, aimed.subset_size) if walked is None else walked.positions
    positions = np.sort(np.concatenate([kept, positions])).astype(np.int64)
    info = described(filters, context, positions, estimates) | (walked.info if walked is not None else {})
    return contract.Selection(positions, info, estimates, control)


def described(
    filters: tuple[Filter, ...], context: contract.RankingContext, positions: np.ndarray, estimates: np.ndarray | None
) -> dict[str, Any]:
    """What each filter says of the epoch's `positions`, in turn (the outermost also of the pool)."""
    info: dict[str, Any] = {}
    for number, step in enumerate(filters):
        info = step.describe(info, context, positions, estimates, outermost=number == len(filters) - 1)
    return info
