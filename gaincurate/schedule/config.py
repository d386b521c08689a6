"""The schedule's configuration: the settings every run has, plus the options of the strategy it names.

`ScheduleConfig` holds the common settings (the strategy, the seed, the epoch's size, the reward range, the
epoch file format, the filters) and `options`, the named strategy's `Options` dataclass, defined in that
strategy's module (`gaincurate.schedule.strategies.registry` lists them). A strategy's options may be given flat:

    ScheduleConfig(strategy="dots", subset_size="5%", tau=0.1)      # options=DotsOptions(tau=0.1)

An option of another strategy is refused in one line ("tau is a dots option; pass strategy='dots' or drop tau";
errors name settings as the caller spells them, `--tau` and `--strategy dots` on the command line), and an old
name is read with a one-line deprecation notice (`decay`, dots' name for mopps' `forget`).

The subset size is rank units when given as a number, a share of the prompt count N when spelled as a
percentage ("2%"), and 256/7,500 of N when left out (the released GAIN-RL subset on MATH's 7,500 prompts),
rounded to a multiple of `subset_multiple`, the prompts a trainer takes per batch (`subset_count`).

    >>> ScheduleConfig(strategy="gain").subset_count(7500)
    256
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any

from gaincurate.errors import ConfigError, setting, settings_as_flags_now
from gaincurate.schedule import sizes
from gaincurate.schedule.options import Options, is_number
from gaincurate.schedule.strategies.greso import ZeroVarianceOptions
from gaincurate.schedule.strategies.registry import FILTERS, STRATEGIES, check_filters, strategy_class

# The strategy a schedule uses when none is named (`schedule init`, `ScheduleConfig`, `GainCurriculum`): chosen by
# the training-efficiency bench's declared comparison (docs/strategies.md, "Which strategy by default").
DEFAULT_STRATEGY = "dots"
# Ceilings that only a benchmark may run: they measure every prompt with the current policy each epoch.
BENCH_ONLY_STRATEGIES = ("oracle",)
FORMATS = ("trl", "verl")
# verl's default_compute_score gives 1/0 on \boxed{} answers for this data_source (verl 0.5-0.9.1).
VERL_DATA_SOURCE = "lighteval/MATH"


@dataclass(frozen=True, kw_only=True, init=False)
class ScheduleConfig:
    """A schedule as the user asked for it: the common settings and the strategy's options."""

    strategy: str
    seed: int
    subset_size: float | str | None  # None: 256/7,500 of N, rounded to a multiple of subset_multiple
    subset_multiple: int  # the subset size is a multiple of this (a trainer's prompts per batch)
    reward_max: float
    reward_min: float  # the reward of a wrong answer; --reward-range LO,HI sets both (verl's -1/+1 scorers)
    format: str
    data_source: str | None  # --format verl: data_source of rows without their own (None: VERL_DATA_SOURCE)
    rescore_nproc: int  # processes for checkpoint re-scoring (torchrun); 1 = in this process
    # One field per filter (`registry.FILTERS`, named by its `setting`; None: off), set and checked by the filter.
    band: tuple[float, float] | None  # keep prompts whose pass-rate estimate lies in [LO, HI] first
    skip_zero_variance: ZeroVarianceOptions | None  # GRESO's filter over the strategy
    options: Options  # the strategy's own (gaincurate.schedule.strategies.registry)

    def __init__(
        self,
        *,
        strategy: str = DEFAULT_STRATEGY,
        seed: int = 0,
        subset_size: float | str | None = None,
        subset_multiple: int = 1,
        reward_max: float = 1.0,
        reward_min: float = 0.0,
        format: str = "trl",
        data_source: str | None = None,
        rescore_nproc: int = 1,
        options: Options | None = None,
        **settings: Any,
    ) -> None:
        """`settings`: the strategy's options, flat, and each filter's (`band=(0.2, 0.8)`, `skip_zero_variance=True`
        with its options flat beside it, or a dict of them)."""
        if strategy in BENCH_ONLY_STRATEGIES:
            raise ConfigError(
                f"{setting('strategy', strategy)} is the benchmark's ceiling (it measures every prompt with the "
                "current policy each epoch), not a strategy to train with; run it with "
                f"`gaincurate bench curriculum --strategies uniform,{strategy}`"
            )
        cls = strategy_class(strategy)
        switches = {name: settings.pop(name, None) for name in FILTERS}
        own, filter_settings = _split_settings(strategy, cls.options_class, settings, switches)
        if options is None:
            options = cls.options_class(**own)
        elif own:
            raise ConfigError(f"pass {next(iter(own))} inside options=, or options= alone; not both")
        elif not isinstance(options, cls.options_class):
            raise ConfigError(f"options= of {setting('strategy', strategy)} must be {cls.options_class.__name__}")
        filters = {name: FILTERS[name].configure(value, filter_settings[name]) for name, value in switches.items()}
        values = {
            "strategy": strategy, "seed": seed, "subset_size": subset_size, "subset_multiple": subset_multiple,
            "reward_max": reward_max, "reward_min": reward_min, "format": format, "data_source": data_source,
            "rescore_nproc": rescore_nproc, **filters, "options": options,
        }  # fmt: skip
        for name, value in values.items():
            object.__setattr__(self, name, value)
        self._check()

    def _check(self) -> None:
        if self.format not in FORMATS:
            raise ConfigError(f"{setting('format')} must be one of {', '.join(FORMATS)}; got {self.format!r}")
        object.__setattr__(self, "subset_size", sizes.normalize_size("subset_size", self.subset_size))
        # The command line sets reward_min with --reward-range LO,HI (both ends); Python sets each by name.
        as_range = "--reward-range" if settings_as_flags_now() else setting("reward_min")
        for name, value in ((setting("reward_max"), self.reward_max), (as_range, self.reward_min)):
            if not is_number(value):
                raise ConfigError(f"{name} must be a finite number; got {value!r}")
        if self.reward_min == 0 and self.reward_max <= 0:
            raise ConfigError(
                f"{setting('reward_max')} must be positive (the reward of a correct answer); got {self.reward_max}"
            )
        if self.reward_min >= self.reward_max:
            wanted = (
                "--reward-range LO,HI needs LO (a wrong answer) below HI (a right one)"
                if settings_as_flags_now()
                else "reward_min (a wrong answer) must be below reward_max (a right one)"
            )
            raise ConfigError(f"{wanted}; got {self.reward_min:g},{self.reward_max:g}")
        for name, value, low in [
            (setting("seed"), self.seed, 0),
            (setting("subset_multiple"), self.subset_multiple, 1),
            (setting("rescore_nproc"), self.rescore_nproc, 1),
        ]:
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{name} must be a whole number {low} or more; got {value!r}")
        if self.data_source is not None and (self.format != "verl" or not str(self.data_source).strip()):
            raise ConfigError(
                f"{setting('data_source')} names verl's reward scorer; pass {setting('format', 'verl')} and a name, "
                f"got {self.data_source!r}"
            )
        check_filters(self)

    @property
    def verl_data_source(self) -> str | None:
        """The data_source of verl rows (None for TRL rows)."""
        return (self.data_source or VERL_DATA_SOURCE) if self.format == "verl" else None

    def subset_count(self, n_prompts: int) -> int:
        """The subset size in prompts for a set of `n_prompts` prompts."""
        if n_prompts < 1:
            raise ConfigError("the scores directory holds no prompts; score a non-empty dataset first")
        return sizes.resolve_subset(self.subset_size, n_prompts, self.subset_multiple)

    def settings(self) -> dict[str, Any]:
        """The common settings and the strategy's options, flat, as `ScheduleConfig(**settings)` takes them."""
        common = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        del common["options"]
        for name in FILTERS:  # a filter's options as a dict; a pair as a list (`to_dict`)
            common[name] = common[name].to_dict() if isinstance(common[name], Options) else common[name]
        return {**common, **self.options.to_dict()}

    def to_dict(self) -> dict[str, Any]:
        """The stored form (state.json): `settings()`, pairs as lists."""
        return {key: list(value) if isinstance(value, tuple) else value for key, value in self.settings().items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScheduleConfig:
        """Rebuild a stored config; unknown keys are an error, not silently dropped."""
        return cls(**data)

    @classmethod
    def from_legacy(cls, data: dict[str, Any]) -> ScheduleConfig:
        """A config stored by gaincurate 0.x (state version 1): every strategy's options flat, most at defaults.

        The options of other strategies never changed that run's draws, so they are dropped; dots' `decay` is
        its `forget`; `skip_zero_variance` was a switch with the exploration rates beside it (a filter's options
        sat flat beside its switch).
        """
        strategy = data.get("strategy", "gain")
        cls_options = strategy_class(strategy).options_class
        own = set(cls_options.names()) | set(cls_options.renamed)
        switches = {name for name, filter_class in FILTERS.items() if filter_class.options_class.names()}
        common = {field.name for field in dataclasses.fields(cls)} - {"options"} - switches
        kept = {key: value for key, value in data.items() if key in common or key in own}
        for old, new in cls_options.renamed.items():  # in 0.x `new` was another strategy's (dots' decay, mopps' forget)
            if old in kept:
                kept[new] = kept.pop(old)
        if strategy in ("gain", "length") and kept.get("rescore") is None:
            kept.pop("rescore", None)
        if strategy != "gain":
            for key in ("ranking", "mu_control", "sweep_rate", "direction"):
                kept.pop(key, None)
        for name in switches:
            if data.get(name):
                kept[name] = {key: data[key] for key in FILTERS[name].options_class.names() if key in data}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # a stored 0.x name is not the user's to rename
            return cls(**kept)


def options_owners(name: str) -> list[str]:
    """The strategies whose options include `name`."""
    return [strategy for strategy, cls in STRATEGIES.items() if name in cls.options_class.names()]


def _split_settings(
    strategy: str, options_class: type[Options], settings: dict[str, Any], switches: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(the strategy's own options, each filter's by its setting) from flat settings; a filter's count only when
    its switch is on (`switches`); anything else is refused."""
    own: dict[str, Any] = {}
    filter_settings: dict[str, dict[str, Any]] = {name: {} for name in switches}
    for key, value in settings.items():
        if key in options_class.renamed:
            new = options_class.renamed[key]
            warnings.warn(
                f"{setting(key)} is now {setting(new)} (the same setting); pass {setting(new)}", FutureWarning, 2
            )
            key = new
        filters = [name for name, on in switches.items() if on and key in FILTERS[name].options_class.names()]
        if key in options_class.names():
            own[key] = value
        elif filters:
            filter_settings[filters[0]][key] = value
        elif owners := options_owners(key):
            raise ConfigError(
                f"{setting(key)} is {_article(owners)} option; pass {setting('strategy', owners[0])} or drop "
                f"{setting(key)}"
            )
        else:
            raise ConfigError(f"{setting(key)} is not a schedule setting of any strategy; drop it")
    return own, filter_settings


def _article(owners: list[str]) -> str:
    names = " or ".join(owners)
    return f"a {names}"
