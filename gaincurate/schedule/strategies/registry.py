"""The strategies a run can name, one line each, and the one place that builds a run's strategy from its config.

A new strategy is a module with a `Strategy` subclass and its `Options` dataclass, plus its line here: the
config, the CLI (`schedule init` options and help), docs/cli.md and the bench all read this table. A strategy from
another package joins it by an entry point in the `gaincurate.strategies` group (`gaincurate.entry_points`), after the
product's own: the lab's strategies, kept for comparison, register so. One is imported when a run names it, or when
`schedule init`'s help and `schedule strategies` list them all.

A filter is a `Filter` subclass, listed in `FILTERS` the same way, by the setting that turns it on; the config
(its value, its options, its check against the strategy), the CLI, state.json and `schedule status` read that
table. Filters step over the strategy's draw in `FILTERS` order: `--band` (`gaincurate.schedule.strategies.band`)
over a strategy whose `about` declares `estimates` (one that declares `own_band` applies the band itself), then
`--skip-zero-variance` (`gaincurate.schedule.strategies.greso`) last, over one that declares `ordered` and
`keeps_zero_variance`. `ScheduleConfig` declares a field per filter, named by its `setting`.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, MutableMapping
from typing import Any

from gaincurate import entry_points
from gaincurate.errors import ConfigError, setting
from gaincurate.schedule.strategies.band import BandFilter
from gaincurate.schedule.strategies.contract import About, Strategy, StrategyInputs, draws
from gaincurate.schedule.strategies.dots import DotsStrategy
from gaincurate.schedule.strategies.filters import Filter
from gaincurate.schedule.strategies.gain import GainStrategy, LengthStrategy
from gaincurate.schedule.strategies.greso import GresoStrategy, ZeroVarianceFilter
from gaincurate.schedule.strategies.mopps import MoppsStrategy
from gaincurate.schedule.strategies.probe import ProbeStrategy
from gaincurate.schedule.strategies.uniform import UniformStrategy


class Registry(MutableMapping[str, type[Strategy]]):
    """Strategy classes by name, in the order the help lists them. An entry may be a class or the module path of
    one ("module:Class"), imported when first read: a plug-in's, which a run of the product's never loads."""

    def __init__(self, entries: dict[str, type[Strategy] | str]) -> None:
        self._entries = dict(entries)

    def __getitem__(self, name: str) -> type[Strategy]:
        entry = self._entries[name]
        if isinstance(entry, str):
            module, _, attribute = entry.partition(":")
            entry = self._entries[name] = getattr(importlib.import_module(module), attribute)
        return entry

    def __setitem__(self, name: str, cls: type[Strategy]) -> None:
        self._entries[name] = cls

    def __delitem__(self, name: str) -> None:
        del self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries  # without importing a lab strategy's module, as Mapping's default would

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


_ENTRIES: dict[str, type[Strategy] | str] = {
    "gain": GainStrategy,
    "uniform": UniformStrategy,
    "length": LengthStrategy,
    "dots": DotsStrategy,
    "mopps": MoppsStrategy,
    "greso": GresoStrategy,
    "probe": ProbeStrategy,
}
# The plug-ins' strategies (the lab's, kept for comparison), by entry point; none takes a product strategy's name.
_PLUGGED_IN = {
    name: path for name, path in entry_points.registered(entry_points.STRATEGIES).items() if name not in _ENTRIES
}
STRATEGIES = Registry(_ENTRIES | _PLUGGED_IN)
KEPT_FOR_COMPARISON = frozenset(_PLUGGED_IN)


# The filters a config can turn on, by the setting that does it, in the order they step over the strategy's draw.
FILTERS: dict[str, type[Filter]] = {cls.setting: cls for cls in (BandFilter, ZeroVarianceFilter)}


def strategy_class(name: str) -> type[Strategy]:
    """The class `name` names, or a one-line refusal listing the names: `ScheduleConfig` resolves its strategy so,
    once, and everything after reads `config.strategy_class`."""
    if name not in STRATEGIES:
        raise ConfigError(f"{setting('strategy')} must be one of {', '.join(STRATEGIES)}; got {name!r}")
    return STRATEGIES[name]


def status_about(status: dict[str, Any]) -> About:
    """What the strategy of a run's status (`run_status`, whose config checked its name) declares of itself."""
    return STRATEGIES[status["params"]["strategy"]].about


def check_filters(config: Any) -> None:
    """Refuse a filter the strategy cannot take, from its declarations, in one line naming the fix."""
    cls = config.strategy_class
    for name, filter_class in FILTERS.items():
        if getattr(config, name) is not None and not filter_class.applies_to(cls):
            usable = [strategy for strategy, other in STRATEGIES.items() if filter_class.applies_to(other)]
            raise ConfigError(filter_class.refusal(cls, usable))


def how_it_draws(config: Any) -> str:
    """How a run's strategy draws its epochs, in words (`schedule status`), from the strategy's and filters' own."""
    cls = config.strategy_class
    text = draws(cls)
    for name, filter_class in FILTERS.items():
        value = getattr(config, name)
        if value is not None and not filter_class.applied_by(cls):
            text += filter_class.note(value)
    return text


def build_strategy(config: Any, inputs: StrategyInputs) -> Strategy:
    """The strategy object for `config` (its filters apart: `build_filters`)."""
    return config.strategy_class.build(inputs, config.options)


def build_filters(config: Any, strategy: Strategy, inputs: StrategyInputs) -> tuple[Filter, ...]:
    """The filters `config` turns on over `strategy`, in `FILTERS` order (a strategy that applies one itself, none)."""
    cls = config.strategy_class
    return tuple(
        filter_class.over(strategy, getattr(config, name), inputs)
        for name, filter_class in FILTERS.items()
        if getattr(config, name) is not None and not filter_class.applied_by(cls)
    )


def top_level(draw: dict[str, Any], *, uses: bool = False) -> dict[str, Any]:
    """The numbers of `schedule status/next/run --json` kept at its top: every one declared `top_level` (gain's and
    length's mu), null where this run's strategy keeps none; `uses`: status's `uses_<key>` beside it."""
    keys = dict.fromkeys(c.key for cls in (GainStrategy, LengthStrategy) for c in cls.about.columns if c.top_level)
    return {key: draw.get(key) for key in keys} | ({f"uses_{key}": key in draw for key in keys} if uses else {})
