"""The strategies a run can name, one line each, and the one place that builds a run's strategy from its config.

A new strategy is a module with a `Strategy` subclass and its `Options` dataclass, plus its line here: the
config, the CLI (`schedule init` options and help), docs/cli.md and the bench all read this table.

The filters wrap the strategy the config names: `--band` (`gaincurate.schedule.strategies.band`) over a strategy that
declares `pass_rate_estimates` (one that declares `own_band` applies the band itself), then `--skip-zero-variance`
(`gaincurate.schedule.strategies.greso`) outermost, over one that declares `ordered` and `keeps_zero_variance`.
"""

from __future__ import annotations

from typing import Any

from gaincurate.errors import ConfigError, setting
from gaincurate.schedule.strategies.band import BandFilter, band_note
from gaincurate.schedule.strategies.base import Strategy, StrategyInputs, UniformStrategy
from gaincurate.schedule.strategies.dots import DotsStrategy
from gaincurate.schedule.strategies.gain import GainStrategy, LengthStrategy
from gaincurate.schedule.strategies.greso import SKIP_NOTE, GresoStrategy, ZeroVarianceFilter
from gaincurate.schedule.strategies.mopps import MoppsStrategy
from gaincurate.schedule.strategies.pilot import PilotStrategy
from gaincurate.schedule.strategies.predict import PredictStrategy
from gaincurate.schedule.strategies.screen import ScreenStrategy
from gaincurate.schedule.strategies.variance import VarianceStrategy

STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls
    for cls in (
        GainStrategy,
        UniformStrategy,
        LengthStrategy,
        DotsStrategy,
        MoppsStrategy,
        GresoStrategy,
        ScreenStrategy,
        VarianceStrategy,
        PilotStrategy,
        PredictStrategy,
    )
}


def strategy_class(name: str) -> type[Strategy]:
    if name not in STRATEGIES:
        raise ConfigError(f"{setting('strategy')} must be one of {', '.join(STRATEGIES)}; got {name!r}")
    return STRATEGIES[name]


def check_filters(config: Any) -> None:
    """Refuse a filter the strategy cannot take, from its declarations, in one line naming the fix."""
    cls = strategy_class(config.strategy)
    if config.band is not None and not (cls.own_band or (cls.pass_rate_estimates and cls.ordered)):
        usable = ", ".join(name for name, other in STRATEGIES.items() if other.own_band or other.pass_rate_estimates)
        raise ConfigError(
            f"{setting('band')} filters by pass-rate estimates, which {config.strategy} has none of; use it with "
            f"{usable}"
        )
    if config.skip_zero_variance is not None:
        if not cls.keeps_zero_variance:
            what = "skips" if cls.ordered else "drops prompts its screening found all right or all wrong, as"
            raise ConfigError(
                f"{setting('strategy', config.strategy)} already {what} zero-variance prompts; drop "
                f"{setting('skip_zero_variance')}"
            )
        if not cls.ordered:
            raise ConfigError(
                f"{setting('skip_zero_variance')} needs an order to walk, which {config.strategy} has not"
            )


def how_it_draws(config: Any) -> str:
    """How a run's strategy draws its epochs, in words (`schedule status`), from the strategy's and filters' own."""
    cls = strategy_class(config.strategy)
    text = cls.draws or cls.summary
    if config.band is not None and not cls.own_band:
        text += band_note(config.band)
    return text + (SKIP_NOTE if config.skip_zero_variance is not None else "")


def build_strategy(config: Any, inputs: StrategyInputs) -> Strategy:
    """The strategy object for `config` under the filters it asks for: the band first, zero-variance skipping
    around it."""
    cls = strategy_class(config.strategy)
    strategy = cls.build(inputs, config.options)
    if config.band is not None and not cls.own_band:
        strategy = BandFilter(strategy, config.band)
    if config.skip_zero_variance is not None:
        strategy = ZeroVarianceFilter(strategy, inputs.prompts.gc_ids, config.skip_zero_variance)
    return strategy


def top_level(draw: dict[str, Any], *, uses: bool = False) -> dict[str, Any]:
    """gaincurate 0.x's JSON (`schedule status/next/run --json`): every number a registered strategy declares
    `top_level`, at the top, null where this run's strategy keeps none; `uses`: status's `uses_<key>` beside it."""
    keys = dict.fromkeys(c.key for cls in STRATEGIES.values() for c in cls.columns if c.top_level)
    return {key: draw.get(key) for key in keys} | ({f"uses_{key}": key in draw for key in keys} if uses else {})
