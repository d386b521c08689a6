"""The schedule's configuration: the settings every run has, plus the options of the strategy it names.

`ScheduleConfig` holds the common settings (the strategy, the seed, the epoch's size, the reward range, the
epoch file format), each declared once on its field with its default, help and check; the filters
(`registry.FILTERS`, each setting and checking its own field); and `options`, the named strategy's `Options`
dataclass, defined in that strategy's module (`registry.STRATEGIES` lists them). A strategy's options may be given
flat:

    ScheduleConfig(strategy="dots", subset_size="5%", tau=0.1)      # options=DotsOptions(tau=0.1)

An option of another strategy is refused in one line ("tau is a dots option; pass strategy='dots' or drop tau";
errors name settings as the caller spells them, `--tau` and `--strategy dots` on the command line).

The subset size is rank units when given as a number, a share of the prompt count N when spelled as a
percentage ("2%"), and 256/7,500 of N when left out (the released GAIN-RL subset on MATH's 7,500 prompts),
rounded to a multiple of `subset_multiple`, the prompts a trainer takes per batch (`subset_count`).

    >>> ScheduleConfig(strategy="gain").subset_count(7500)
    256
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gaincurate.difficulty.reference import check_reward_range
from gaincurate.errors import ConfigError, setting, settings_as_flags_now
from gaincurate.schedule import sizes
from gaincurate.schedule.options import Options, choice, is_number, size, whole
from gaincurate.schedule.strategies.contract import FRESH_SCORES
from gaincurate.schedule.strategies.registry import FILTERS, STRATEGIES, check_filters, strategy_class
from gaincurate.settings import check_fields
from gaincurate.settings import setting as declare  # a field with its help and check (errors' `setting` names one)

if TYPE_CHECKING:
    from gaincurate.schedule.strategies.contract import Strategy

# The strategy a schedule uses when none is named (`schedule init`, `ScheduleConfig`, `GainCurriculum`): chosen by
# the training-efficiency bench's declared comparisons (docs/strategies.md, "Which strategy should I use?"): probe is
# the strongest significant saving on both tasks of the probe verdict.
DEFAULT_STRATEGY = "probe"
# Ceilings that only a benchmark may run: they measure every prompt with the current policy each epoch.
BENCH_ONLY_STRATEGIES = ("oracle",)
FORMATS = ("trl", "verl")
# verl's default_compute_score gives 1/0 on \boxed{} answers for this data_source (verl 0.5-0.9.1).
VERL_DATA_SOURCE = "lighteval/MATH"


def _finite(name: str, value: Any) -> Any:
    """A reward: a finite number, kept as given (an int stays an int in state.json)."""
    if not is_number(value):
        raise ConfigError(f"{name} must be a finite number; got {value!r}")
    return value


def _reward_min(name: str, value: Any) -> Any:
    # The command line sets reward_min with --reward-range LO,HI (both ends); Python sets each by name.
    return _finite("--reward-range" if settings_as_flags_now() else name, value)


@dataclass(frozen=True, kw_only=True, init=False)
class ScheduleConfig:
    """A schedule as the user asked for it: the common settings and the strategy's options.

    Each common setting is declared once, below: its default, its help and its check (`gaincurate.settings.setting`);
    `schedule init`'s options are generated from these fields (`gaincurate.cli.schedule_options`).
    """

    strategy: str  # `--strategy`: one of `registry.STRATEGIES` (DEFAULT_STRATEGY when not named)
    seed: int = declare(0, "Seed of every epoch's draw.", check=whole(0))
    subset_size: float | str | None = declare(
        None,
        "Prompts per epoch. A number is ranks; a share of the prompt count N is a percentage, e.g. 2%.",
        check=size("subset_size"),
        cli="size",
        shown=f"{sizes.default_text('subset_size')}, rounded to --subset-multiple",
    )
    subset_multiple: int = declare(
        1, "The subset size is a multiple of K: the prompts your trainer takes per batch.", check=whole(1)
    )
    reward_max: float = declare(1.0, "Reward of a correct rollout.", check=_finite)
    # The reward of a wrong answer; --reward-range LO,HI sets both ends (verl's -1/+1 scorers).
    reward_min: float = declare(0.0, "Reward of a wrong rollout.", check=_reward_min)
    format: str = declare("trl", "Epoch file layout.", check=choice(*FORMATS), choices=FORMATS)
    data_source: str | None = declare(
        None, "verl: data_source of rows without their own, verl's reward key.", shown=VERL_DATA_SOURCE
    )
    pause: bool = declare(
        True,
        "Stop paying for aiming (the refresh, then the aim) while the run's uniform control shows no saving "
        "(--no-pause: aim whatever it shows).",
        flags=("--no-pause",),
    )
    rescore_nproc: int = declare(
        1, "gain, length: re-score with N processes via torchrun (1: in this process).", check=whole(1)
    )
    # One field per filter (`registry.FILTERS`, named by its `setting`; None: off), set and checked by the filter.
    band: tuple[float, float] | None  # keep prompts whose pass-rate estimate lies in [LO, HI] first
    skip_zero_variance: Options | None  # GRESO's filter over the strategy (its `options_class`)
    options: Options  # the strategy's own (gaincurate.schedule.strategies.registry)

    def __init__(self, *, strategy: str = DEFAULT_STRATEGY, options: Options | None = None, **settings: Any) -> None:
        """`settings`: the common settings (the fields above), the strategy's options flat, and each filter's
        (`band=(0.2, 0.8)`, `skip_zero_variance=True` with its options flat beside it, or a dict of them)."""
        if strategy in BENCH_ONLY_STRATEGIES:
            raise ConfigError(
                f"{setting('strategy', strategy)} is the benchmark's ceiling (it measures every prompt with the "
                "current policy each epoch), not a strategy to train with; run it with "
                f"`gaincurate bench curriculum --strategies uniform,{strategy}`"
            )
        cls = strategy_class(strategy)
        common = {field.name: settings.pop(field.name, field.default) for field in common_fields()}
        switches = {name: settings.pop(name, None) for name in FILTERS}
        own, filter_settings = _split_settings(strategy, cls.about.options, settings, switches)
        if options is None:
            options = cls.about.options(**own)
        elif own:
            raise ConfigError(f"pass {next(iter(own))} inside options=, or options= alone; not both")
        elif not isinstance(options, cls.about.options):
            raise ConfigError(f"options= of {setting('strategy', strategy)} must be {cls.about.options.__name__}")
        filters = {name: FILTERS[name].configure(value, filter_settings[name]) for name, value in switches.items()}
        for name, value in {"strategy": strategy, **common, **filters, "options": options, "_class": cls}.items():
            object.__setattr__(self, name, value)
        self._check()

    @property
    def strategy_class(self) -> type[Strategy]:
        """The class `strategy` names, resolved once, when the config is made: what the run reads."""
        return self._class

    def _check(self) -> None:
        """Each common setting's own check (on its field), then the ones between settings."""
        check_fields(self)
        check_reward_range(self.reward_min, self.reward_max)  # the rule every reader of rewards applies
        if self.data_source is not None and (self.format != "verl" or not str(self.data_source).strip()):
            raise ConfigError(
                f"{setting('data_source')} names verl's reward scorer; pass {setting('format', 'verl')} and a name, "
                f"got {self.data_source!r}"
            )
        check_filters(self)
        self._check_rescoring()

    def _check_rescoring(self) -> None:
        """Refuse a re-scoring setting where nothing re-scores: a setting recorded but never read misleads."""
        if self.rescore_nproc != 1 and FRESH_SCORES not in self._class.about.needs:
            fresh = [name for name, cls in STRATEGIES.items() if FRESH_SCORES in cls.about.needs]
            raise _elsewhere("rescore_nproc", fresh, [])
        unread = [name for name in ("rescore_nproc", "rescore_every") if self.settings().get(name, 1) != 1]
        if unread and getattr(self.options, "rescore", None) == "none":  # gain and length make no fresh scores then
            raise ConfigError(
                f"{setting(unread[0])} has nothing to re-score with {setting('rescore', 'none')}; drop it, or pass "
                f"{setting('rescore', 'subset')}"
            )

    @property
    def verl_data_source(self) -> str | None:
        """The data_source of verl rows (None for TRL rows)."""
        return (self.data_source or VERL_DATA_SOURCE) if self.format == "verl" else None

    def resolved(self, manifest: dict[str, Any]) -> ScheduleConfig:
        """This config with the options its strategy leaves to the data decided from the scores' `manifest`
        (`Options.resolved`)."""
        return ScheduleConfig.from_dict(self.to_dict() | self.options.resolved(manifest).to_dict())

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


def common_fields() -> list[dataclasses.Field]:
    """The common settings every schedule has, declared with their help and check (`gaincurate.settings.setting`)."""
    return [field for field in dataclasses.fields(ScheduleConfig) if "help" in field.metadata]


def options_owners(name: str) -> list[str]:
    """The strategies whose options include `name`."""
    return [strategy for strategy, cls in STRATEGIES.items() if name in cls.about.options.names()]


def _split_settings(
    strategy: str, options_class: type[Options], settings: dict[str, Any], switches: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(the strategy's own options, each filter's by its setting) from flat settings; a filter's count only when
    its switch is on (`switches`); anything else is refused."""
    own: dict[str, Any] = {}
    filter_settings: dict[str, dict[str, Any]] = {name: {} for name in switches}
    for key, value in settings.items():
        filters = [name for name, on in switches.items() if on and key in FILTERS[name].options_class.names()]
        if key in options_class.names():
            own[key] = value
        elif filters:
            filter_settings[filters[0]][key] = value
        else:
            switches_of = [name for name, cls in FILTERS.items() if key in cls.options_class.names()]
            if not (owners := options_owners(key)) and not switches_of:
                raise ConfigError(f"{setting(key)} is not a schedule setting of any strategy; drop it")
            raise _elsewhere(key, owners, switches_of)
    return own, filter_settings


def _elsewhere(key: str, strategies: list[str], switches: list[str]) -> ConfigError:
    """The refusal of an option only other strategies, or filters' switches, read: "--tau is a dots or probe option;
    pass --strategy dots or drop --tau"."""
    fixes = [setting("strategy", name) for name in strategies[:1]]
    fixes += [setting(name) if settings_as_flags_now() else setting(name, True) for name in switches]
    return ConfigError(
        f"{setting(key)} is a {' or '.join([*strategies, *map(setting, switches)])} option; pass "
        f"{' or '.join(fixes)}{',' * (len(fixes) > 1)} or drop {setting(key)}"
    )
