"""Strategy construction: the one place that maps a run's config to the `Strategy` object that selects.

The run directory, the in-process integrations, the benches and a bare `Scheduler(config, prompts)` all
get the same object for the same config:

* `gain` (with its ablation options), `length`, `uniform`: rank positions only (`gaincurate.schedule.strategies`);
* `mopps`: a Beta posterior per prompt (`gaincurate.schedule.mopps`);
* `greso`: zero-variance skipping over a uniform order (`gaincurate.schedule.greso`);
* `screen`: candidates measured by the integration's screener (`gaincurate.schedule.screen`);
* `dots`: needs the scores table's embeddings, so only `build_strategy` makes it;
* `band` wraps dots and mopps in the band-pass filter (`gaincurate.schedule.band`; screen bands its own);
* `skip_zero_variance` wraps any of them but greso and screen in the GRESO filter, outermost.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gaincurate.schedule.band import BandFilter
from gaincurate.schedule.greso import ZeroVarianceFilter
from gaincurate.schedule.mopps import MoppsStrategy
from gaincurate.schedule.screen import ScreenStrategy
from gaincurate.schedule.strategies import GainStrategy, get_strategy

if TYPE_CHECKING:
    from gaincurate.schedule.config import ScheduleConfig
    from gaincurate.schedule.inputs import ScoresInput
    from gaincurate.schedule.strategies import PromptSet, Strategy


def build_strategy(scores: ScoresInput, config: ScheduleConfig, *, initial: bool) -> Strategy:
    """The strategy object for `config` over a scores directory.

    `initial` is True when a run starts (dots then reads its `--reference` file), False on resume.
    """
    if config.strategy != "dots":
        return prompt_strategy(scores.prompts, config)
    from gaincurate.schedule.dots import DotsStrategy

    return _filtered(DotsStrategy.from_scores(scores, config, read_reference=initial), scores.prompts, config)


def prompt_strategy(prompts: PromptSet, config: ScheduleConfig) -> Strategy:
    """The strategy object for `config` when the prompt set is all there is (every strategy but dots)."""
    if config.strategy == "greso":
        return ZeroVarianceFilter.greso(prompts, config)
    if config.strategy == "screen":
        return ScreenStrategy.from_config(config)
    if config.strategy == "mopps":
        base: Strategy = MoppsStrategy.from_config(prompts, config)
    elif config.strategy == "gain":
        base = GainStrategy.from_config(config)
    else:
        base = get_strategy(config.strategy)  # dots raises here: it needs build_strategy's scores table
    return _filtered(base, prompts, config)


def _filtered(base: Strategy, prompts: PromptSet, config: ScheduleConfig) -> Strategy:
    """`base` under the filters the config asks for: the band first, zero-variance skipping around it."""
    if config.band is not None:
        base = BandFilter(base, config.band)
    return ZeroVarianceFilter.from_config(base, prompts, config) if config.skip_zero_variance else base
