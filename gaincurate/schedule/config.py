"""The schedule's configuration: what the user asks for, and the absolute numbers it resolves to.

`ScheduleConfig` holds the values as given. Sizes along the ranking (`sigma`, `step_size`,
`adj_min`, `adj_max`, `subset_size`) are rank units when given as a number, a share of the prompt
count N when spelled as a percentage ("2%"), and the scaled released value when left out (None);
see `gaincurate.schedule.sizes`. `ScheduleConfig.resolve(N)` turns them into a `ScheduleParams` of
absolute numbers, which is all the scheduler core ever looks at.

The defaults are the released GAIN-RL hyperparameters (n=500, sigma=1000, adj_max=1000, subset 256)
divided by 7,500, the size of the MATH training set they were tuned on, so at N=7,500 they are exactly
the released numbers and on other sets they keep the same shape relative to N. The subset size then
rounds to a multiple of `subset_multiple`, the prompts a trainer takes per batch.

    >>> ScheduleConfig().resolve(7500).sigma
    1000.0
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from gaincurate.config_file import check_keys
from gaincurate.errors import ConfigError
from gaincurate.schedule import gain_options, sizes

STRATEGIES = ("gain", "uniform", "length", "dots", "mopps", "greso", "screen")
# The strategy a schedule uses when none is named (`schedule init`, `ScheduleConfig`, `GainCurriculum`): chosen by
# the training-efficiency bench's declared comparison (docs/strategies.md, "Which strategy by default").
DEFAULT_STRATEGY = "dots"
# The strategies that draw around mu (a Gaussian over the ranking); the others keep mu but never use it.
MU_STRATEGIES = ("gain", "length")
# The strategies whose estimate of a prompt is a pass rate: --band LO,HI filters them.
BAND_STRATEGIES = ("dots", "mopps", "screen")
# screen (gaincurate.schedule.screen): candidates per epoch prompt, and rollouts per candidate.
SCREEN_FACTOR = 2
SCREEN_ROLLOUTS = 4
# Ceilings that only a benchmark may run: they measure every prompt with the current policy each epoch.
BENCH_ONLY_STRATEGIES = ("oracle",)
RESCORE_MODES = ("none", "subset", "window", "full")
FORMATS = ("trl", "verl")
# verl's default_compute_score gives 1/0 on \boxed{} answers for this data_source (verl 0.5-0.9.1).
VERL_DATA_SOURCE = "lighteval/MATH"
ANGLE_SIGNALS = ("raw", "centered")

REFERENCE_PROMPTS, RELEASED = sizes.REFERENCE_PROMPTS, sizes.RELEASED  # defaults: RELEASED / 7,500 of N
# dots (docs/dots.md shows the simulation that picked them): a measurement's weight per epoch of age, and
# the selection temperature. The paper's are 1 (no ageing: it rolls a fresh reference set each step) and 1e-3.
DOTS_DECAY = 0.4
DOTS_TAU = 0.05
# mopps: the weight old evidence keeps at each update (docs/strategies.md shows the simulation that picked it).
DEFAULT_FORGET = 0.8


@dataclass(frozen=True, kw_only=True)
class ScheduleConfig:
    """A schedule as the user asked for it; a size is ranks (a number), a share of N ("2%") or None (default)."""

    strategy: str = DEFAULT_STRATEGY
    subset_size: float | str | None = None  # None: 256/7,500 of N, rounded to a multiple of subset_multiple
    sigma: float | str | None = None  # None: 1,000/7,500 of N
    step_size: float | str | None = None  # None: 500/7,500 of N
    alpha: float = 2.0
    beta: float = 0.5
    adj_min: float | str | None = 0.0
    adj_max: float | str | None = None  # None: 1,000/7,500 of N
    subset_multiple: int = 1  # the subset size is a multiple of this (a trainer's prompts per batch)
    reward_max: float = 1.0
    reward_min: float = 0.0  # the reward of a wrong answer; --reward-range LO,HI sets both (verl's -1/+1 scorers)
    seed: int = 0
    # The angle term's source: the newest checkpoint's scores of the epoch's prompts (subset), or none (no angle
    # term). None: subset for gain and length, whose draws mu steers, and none for the others, which never use mu.
    rescore: str | None = None
    rescore_every: int = 1
    rescore_nproc: int = 1  # processes for checkpoint re-scoring (torchrun); 1 = in this process
    format: str = "trl"
    angle_signal: str = "raw"
    # dots (gaincurate.schedule.dots): P(q) ∝ exp(-|p_q - target| / tau), p_q from attention at tau_attn.
    # mopps aims its Thompson draws at the same target.
    target: float = 0.5
    tau: float = DOTS_TAU
    tau_attn: float = 0.1
    decay: float = DOTS_DECAY  # weight of a measurement per epoch of age (1: all rollouts count alike for ever)
    reference: str | None = None  # feedback JSON lines measured before epoch 0 (`gaincurate rollout`)
    reference_every: int = 0  # dots: every K epochs roll a fresh reference set with the newest checkpoint (0: never)
    reference_size: int = 0  # dots: prompts in that fresh reference set (0: the subset size)
    calibrator: str | None = None  # dots: an adapter and calibration head from `gaincurate difficulty fit`
    data_source: str | None = None  # --format verl: the rows' data_source (None: VERL_DATA_SOURCE)
    # mopps (gaincurate.schedule.mopps): a Beta(prior) per prompt; before each update its old evidence is
    # weighted by `forget` and the rest of the weight goes back to the prior (1: never forget).
    prior: tuple[float, float] = (1.0, 1.0)
    forget: float = DEFAULT_FORGET
    # greso, and the --skip-zero-variance filter over any other strategy (gaincurate.schedule.greso): the
    # exploration rates stay in [explore_min, explore_max] and steer the zero-variance share to its target.
    explore_min: float = 0.05
    explore_max: float = 0.95
    target_zero_variance: float = 0.25
    skip_zero_variance: bool = False
    # screen: k x subset candidates, r rollouts each with the current policy (None: SCREEN_FACTOR, SCREEN_ROLLOUTS).
    screen_factor: int | None = None
    screen_rollouts: int | None = None
    # dots, mopps, screen: keep prompts whose pass-rate estimate lies in [LO, HI] first (screen's default:
    # drop 0/r and r/r). None: no band.
    band: tuple[float, float] | None = None
    # gain's ablation options (gaincurate.schedule.gain_options): the ranking ("score" or a seeded "random"
    # permutation), how mu moves ("feedback", or "sweep" by sweep_rate ranks a step; None: step_size), and the
    # ranking's direction ("high-first", or "auto": kept or reversed by the first epoch's pass rates).
    ranking: str = "score"
    mu_control: str = "feedback"
    sweep_rate: float | str | None = None
    direction: str = "high-first"

    def __post_init__(self) -> None:
        if self.strategy in BENCH_ONLY_STRATEGIES:
            raise ConfigError(
                f"--strategy {self.strategy} is the benchmark's ceiling (it measures every prompt with the current "
                "policy each epoch), not a strategy to train with; run it with "
                f"`gaincurate bench curriculum --strategies uniform,{self.strategy}`"
            )
        _choice("--strategy", self.strategy, STRATEGIES)
        if self.rescore is None:
            object.__setattr__(self, "rescore", "subset" if self.strategy in MU_STRATEGIES else "none")
        _choice("--rescore", self.rescore, RESCORE_MODES)
        _choice("--format", self.format, FORMATS)
        _choice("--angle-signal", self.angle_signal, ANGLE_SIGNALS)
        for name in sizes.FLAGS:
            object.__setattr__(self, name, sizes.normalize_size(name, getattr(self, name)))
        for flag, value in [
            ("--alpha", self.alpha),
            ("--beta", self.beta),
            ("--reward-max", self.reward_max),
            ("--reward-range", self.reward_min),
            ("--target", self.target),
            ("--tau", self.tau),
            ("--tau-attn", self.tau_attn),
            ("--decay", self.decay),
        ]:
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ConfigError(f"{flag} must be a finite number; got {value!r}")
        if self.alpha < 0:
            raise ConfigError(f"--alpha must be 0 or more; got {self.alpha}")
        if not 0 <= self.beta <= 1:
            raise ConfigError(f"--beta is an accuracy target and must lie in [0, 1]; got {self.beta}")
        if self.reward_min == 0 and self.reward_max <= 0:
            raise ConfigError(f"--reward-max must be positive (the reward of a correct answer); got {self.reward_max}")
        if self.reward_min >= self.reward_max:
            raise ConfigError(
                f"--reward-range LO,HI needs LO (a wrong answer) below HI (a right one); got {self.reward_min:g},"
                f"{self.reward_max:g}"
            )
        if not 0 <= self.target <= 1:
            raise ConfigError(f"--target is a pass rate and must lie in [0, 1]; got {self.target}")
        if self.tau <= 0 or self.tau_attn <= 0:
            raise ConfigError(f"--tau and --tau-attn must be positive; got {self.tau} and {self.tau_attn}")
        if not 0 < self.decay <= 1:
            raise ConfigError(f"--decay must lie in (0, 1] (1: no recency weighting); got {self.decay}")
        if self.data_source is not None and (self.format != "verl" or not self.data_source.strip()):
            raise ConfigError(
                f"--data-source names verl's reward scorer; pass --format verl and a name, got {self.data_source!r}"
            )
        _check_reward_history_options(self)
        _check_screen_and_band_options(self)
        if self.reference is not None and self.strategy != "dots":
            raise ConfigError("--reference is a dots option; pass --strategy dots or drop --reference")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"--seed must be a whole number 0 or more; got {self.seed!r}")
        if isinstance(self.rescore_every, bool) or not isinstance(self.rescore_every, int) or self.rescore_every < 1:
            raise ConfigError(f"--rescore-every must be a whole number 1 or more; got {self.rescore_every!r}")
        if isinstance(self.rescore_nproc, bool) or not isinstance(self.rescore_nproc, int) or self.rescore_nproc < 1:
            raise ConfigError(f"--rescore-nproc must be a whole number 1 or more; got {self.rescore_nproc!r}")
        _check_dots_and_angle_options(self)
        gain_options.check_gain_options(self)
        # Bounds in ranks can be compared before N is known; shares of N are checked in resolve.
        low, high = self.adj_min, self.adj_max
        if isinstance(low, float) and isinstance(high, float) and low > high:
            raise ConfigError(f"--adj-min {low:g} is above --adj-max {high:g}; swap them")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScheduleConfig:
        """Rebuild a stored config; unknown keys are an error, not silently dropped."""
        check_keys("schedule config", data, (field.name for field in dataclasses.fields(cls)))
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """The stored form; gain's ablation options at their defaults are left out (state.json keeps its bytes)."""
        return gain_options.stored(dataclasses.asdict(self))

    def resolve(self, n_prompts: int) -> ScheduleParams:
        """Absolute rank units for a set of `n_prompts` prompts."""
        if n_prompts < 1:
            raise ConfigError("the scores directory holds no prompts; score a non-empty dataset first")

        def absolute(name: str) -> float:
            return sizes.absolute(name, getattr(self, name), n_prompts)

        subset = sizes.resolve_subset(self.subset_size, n_prompts, self.subset_multiple)
        adj_min, adj_max = absolute("adj_min"), absolute("adj_max")
        if adj_min > adj_max:
            raise ConfigError(
                f"--adj-min resolves to {adj_min:g}, above --adj-max {adj_max:g} for N={n_prompts}; swap them"
            )
        return ScheduleParams(
            n_prompts=n_prompts,
            subset_size=subset,
            sigma=absolute("sigma"),
            step_size=absolute("step_size"),
            subset_multiple=self.subset_multiple,
            alpha=float(self.alpha),
            beta=float(self.beta),
            adj_min=adj_min,
            adj_max=adj_max,
            reward_max=float(self.reward_max),
            reward_min=float(self.reward_min),
            seed=self.seed,
            strategy=self.strategy,
            rescore=self.rescore,
            rescore_every=self.rescore_every,
            rescore_nproc=self.rescore_nproc,
            format=self.format,
            angle_signal=self.angle_signal,
            target=float(self.target),
            tau=float(self.tau),
            tau_attn=float(self.tau_attn),
            decay=float(self.decay),
            reference_every=self.reference_every,
            reference_size=self.reference_size or subset,
            calibrator=self.calibrator,
            data_source=(self.data_source or VERL_DATA_SOURCE) if self.format == "verl" else None,
            prior=self.prior,
            forget=float(self.forget),
            explore_min=float(self.explore_min),
            explore_max=float(self.explore_max),
            target_zero_variance=float(self.target_zero_variance),
            skip_zero_variance=self.skip_zero_variance,
            screen_factor=self.screen_factor,
            screen_rollouts=self.screen_rollouts,
            band=self.band,
            ranking=self.ranking,
            mu_control=self.mu_control,
            sweep_rate=absolute("step_size") if self.sweep_rate is None else absolute("sweep_rate"),
            direction=self.direction,
        )


@dataclass(frozen=True, kw_only=True)
class ScheduleParams:
    """A `ScheduleConfig` resolved for N prompts: every size in absolute rank units.

    No defaults here: only `ScheduleConfig.resolve` builds one, so every default lives in `ScheduleConfig`.
    """

    n_prompts: int
    subset_size: int
    sigma: float
    step_size: float
    alpha: float
    beta: float
    adj_min: float
    adj_max: float
    reward_max: float
    seed: int
    strategy: str
    rescore: str
    rescore_every: int
    rescore_nproc: int
    format: str
    angle_signal: str
    target: float
    tau: float
    tau_attn: float
    decay: float
    reference_every: int
    reference_size: int
    calibrator: str | None
    subset_multiple: int
    data_source: str | None  # --format verl only
    reward_min: float
    prior: tuple[float, float]
    forget: float
    explore_min: float
    explore_max: float
    target_zero_variance: float
    skip_zero_variance: bool
    screen_factor: int | None
    screen_rollouts: int | None
    band: tuple[float, float] | None
    ranking: str
    mu_control: str
    sweep_rate: float  # ranks mu moves per epoch under mu_control "sweep"
    direction: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _check_dots_and_angle_options(config: ScheduleConfig) -> None:
    """Validate the subset multiple, the dots-only options, and that a centred angle has fresh statistics."""
    for flag, value, low in [
        ("--subset-multiple", config.subset_multiple, 1),
        ("--reference-every", config.reference_every, 0),
        ("--reference-size", config.reference_size, 0),
    ]:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"{flag} must be a whole number {low} or more; got {value!r}")
    dots_only = {"--reference-every": config.reference_every, "--calibrator": config.calibrator}
    for flag, value in dots_only.items():
        if value and config.strategy != "dots":
            raise ConfigError(f"{flag} is a dots option; pass --strategy dots or drop {flag}")
    if config.reference_size and not config.reference_every:
        raise ConfigError("--reference-size sizes the fresh reference set of --reference-every K; pass both")
    if config.angle_signal == "centered" and config.rescore in ("none", "subset"):
        # Centring needs the mean and spread of fresh scores beyond the epoch's own prompts: centred on itself,
        # the subset's mean is always 0; centred on the stored scores, it mixes two models' scales.
        raise ConfigError(
            f"--angle-signal centered compares the epoch's fresh scores with fresh scores around it; with --rescore "
            f"{config.rescore} there are none. Pass --rescore window or full, or --angle-signal raw"
        )


def _check_reward_history_options(config: ScheduleConfig) -> None:
    """Validate the mopps and greso options; a stored prior (a JSON list) becomes a tuple again."""
    prior = config.prior
    if (
        not isinstance(prior, tuple | list)
        or len(prior) != 2
        or not all(_is_number(value) and value > 0 for value in prior)
    ):
        raise ConfigError(f"--prior must be two positive numbers A,B (a Beta(A, B) prior); got {prior!r}")
    object.__setattr__(config, "prior", (float(prior[0]), float(prior[1])))
    for flag, value in [
        ("--forget", config.forget),
        ("--explore-min", config.explore_min),
        ("--explore-max", config.explore_max),
        ("--target-zero-variance", config.target_zero_variance),
    ]:
        if not _is_number(value) or not 0 <= value <= 1:
            raise ConfigError(f"{flag} must be a number in [0, 1]; got {value!r}")
    if config.explore_min > config.explore_max:
        raise ConfigError(f"--explore-min {config.explore_min} is above --explore-max {config.explore_max}; swap them")
    if not isinstance(config.skip_zero_variance, bool):
        raise ConfigError(f"--skip-zero-variance is a switch (true/false); got {config.skip_zero_variance!r}")
    if config.skip_zero_variance and config.strategy == "greso":
        raise ConfigError("--strategy greso already skips zero-variance prompts; drop --skip-zero-variance")


def _check_screen_and_band_options(config: ScheduleConfig) -> None:
    """Validate screen's sizes (defaults filled in for screen) and the band; a stored band becomes a tuple."""
    for flag, name, default in [
        ("--screen-factor", "screen_factor", SCREEN_FACTOR),
        ("--screen-rollouts", "screen_rollouts", SCREEN_ROLLOUTS),
    ]:
        value = getattr(config, name)
        if value is not None and config.strategy != "screen":
            raise ConfigError(f"{flag} is a screen option; pass --strategy screen or drop {flag}")
        if config.strategy == "screen" and value is None:
            object.__setattr__(config, name, default)
            value = default
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"{flag} must be a whole number 1 or more; got {value!r}")
    if config.strategy == "screen" and config.skip_zero_variance:
        raise ConfigError(
            "--strategy screen already drops prompts its screening found all right or all wrong; "
            "drop --skip-zero-variance"
        )
    band = config.band
    if band is None:
        return
    if config.strategy not in BAND_STRATEGIES:
        raise ConfigError(
            f"--band filters by pass-rate estimates, which {config.strategy} has none of; use it with "
            f"{', '.join(BAND_STRATEGIES)}"
        )
    if not isinstance(band, tuple | list) or len(band) != 2 or not all(_is_number(value) for value in band):
        raise ConfigError(f"--band must be two pass rates LO,HI such as 0.1,0.9; got {band!r}")
    low, high = float(band[0]), float(band[1])
    if not 0 <= low <= high <= 1:
        raise ConfigError(f"--band LO,HI needs 0 <= LO <= HI <= 1 (pass rates); got {low:g},{high:g}")
    object.__setattr__(config, "band", (low, high))


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def _choice(flag: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{flag} must be one of {', '.join(choices)}; got {value!r}")
