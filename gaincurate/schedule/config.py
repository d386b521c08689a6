"""The schedule's configuration: what the user asks for, and the absolute numbers it resolves to.

`ScheduleConfig` holds the values as given. Sizes along the ranking (`sigma`, `step_size`,
`adj_min`, `adj_max`, `subset_size`) may be absolute rank units or, when their magnitude is below 1,
fractions of the prompt count N. `ScheduleConfig.resolve(N)` turns them into a `ScheduleParams` of
absolute numbers, which is all the scheduler core ever looks at.

The defaults are the released GAIN-RL hyperparameters (n=500, sigma=1000, adj_max=1000, subset 256)
divided by 7,500, the size of the MATH training set they were tuned on, so at N=7,500 they are exactly
the released numbers and on other sets they keep the same shape relative to N.

    >>> ScheduleConfig().resolve(7500).sigma
    1000.0
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from gaincurate.errors import ConfigError

STRATEGIES = ("gain", "uniform", "length", "dots")
RESCORE_MODES = ("none", "subset", "window", "full")
FORMATS = ("trl", "verl")
ANGLE_SIGNALS = ("raw", "centered")

# The prompt count the released hyperparameters were tuned for (MATH train); defaults are fractions of it.
REFERENCE_PROMPTS = 7500
RELEASED = {"step_size": 500, "sigma": 1000, "adj_min": 0, "adj_max": 1000, "subset_size": 256}


def _is_fraction(value: float) -> bool:
    return value != 0 and abs(value) < 1


@dataclass(frozen=True, kw_only=True)
class ScheduleConfig:
    """A schedule as the user asked for it; sizes below 1 in magnitude are fractions of N."""

    strategy: str = "gain"
    subset_size: float = RELEASED["subset_size"] / REFERENCE_PROMPTS
    sigma: float = RELEASED["sigma"] / REFERENCE_PROMPTS
    step_size: float = RELEASED["step_size"] / REFERENCE_PROMPTS
    alpha: float = 2.0
    beta: float = 0.5
    adj_min: float = 0.0
    adj_max: float = RELEASED["adj_max"] / REFERENCE_PROMPTS
    reward_max: float = 1.0
    seed: int = 0
    rescore: str = "none"
    rescore_every: int = 1
    rescore_nproc: int = 1  # processes for checkpoint re-scoring (torchrun); 1 = in this process
    format: str = "trl"
    angle_signal: str = "raw"
    # dots only (gaincurate.schedule.dots): P(q) ∝ exp(-|p_q - target| / tau), p_q from attention at tau_attn.
    target: float = 0.5
    tau: float = 1e-3
    tau_attn: float = 0.1
    decay: float = 1.0  # weight of a measurement per epoch of age (1: all rollouts count alike)
    reference: str | None = None  # feedback JSON lines measured before epoch 0 (`gaincurate rollout`)

    def __post_init__(self) -> None:
        _choice("--strategy", self.strategy, STRATEGIES)
        _choice("--rescore", self.rescore, RESCORE_MODES)
        _choice("--format", self.format, FORMATS)
        _choice("--angle-signal", self.angle_signal, ANGLE_SIGNALS)
        for flag, value in [
            ("--subset-size", self.subset_size),
            ("--sigma", self.sigma),
            ("--step-size", self.step_size),
            ("--alpha", self.alpha),
            ("--beta", self.beta),
            ("--adj-min", self.adj_min),
            ("--adj-max", self.adj_max),
            ("--reward-max", self.reward_max),
            ("--target", self.target),
            ("--tau", self.tau),
            ("--tau-attn", self.tau_attn),
            ("--decay", self.decay),
        ]:
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ConfigError(f"{flag} must be a finite number; got {value!r}")
        if self.subset_size <= 0:
            raise ConfigError(
                f"--subset-size must be positive (a count, or a fraction of N below 1); got {self.subset_size}"
            )
        if self.subset_size >= 1 and self.subset_size != int(self.subset_size):
            raise ConfigError(f"--subset-size {self.subset_size} is neither a whole count nor a fraction below 1")
        if self.sigma <= 0:
            raise ConfigError(f"--sigma must be positive (rank units, or a fraction of N below 1); got {self.sigma}")
        if self.step_size < 0:
            raise ConfigError(f"--step-size must be 0 or more; got {self.step_size}")
        if self.alpha < 0:
            raise ConfigError(f"--alpha must be 0 or more; got {self.alpha}")
        if not 0 <= self.beta <= 1:
            raise ConfigError(f"--beta is an accuracy target and must lie in [0, 1]; got {self.beta}")
        if self.reward_max <= 0:
            raise ConfigError(f"--reward-max must be positive (the reward of a correct answer); got {self.reward_max}")
        if not 0 <= self.target <= 1:
            raise ConfigError(f"--target is a pass rate and must lie in [0, 1]; got {self.target}")
        if self.tau <= 0 or self.tau_attn <= 0:
            raise ConfigError(f"--tau and --tau-attn must be positive; got {self.tau} and {self.tau_attn}")
        if not 0 < self.decay <= 1:
            raise ConfigError(f"--decay must lie in (0, 1] (1: no recency weighting); got {self.decay}")
        if self.reference is not None and self.strategy != "dots":
            raise ConfigError("--reference is a dots option; pass --strategy dots or drop --reference")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"--seed must be a whole number 0 or more; got {self.seed!r}")
        if isinstance(self.rescore_every, bool) or not isinstance(self.rescore_every, int) or self.rescore_every < 1:
            raise ConfigError(f"--rescore-every must be a whole number 1 or more; got {self.rescore_every!r}")
        if isinstance(self.rescore_nproc, bool) or not isinstance(self.rescore_nproc, int) or self.rescore_nproc < 1:
            raise ConfigError(f"--rescore-nproc must be a whole number 1 or more; got {self.rescore_nproc!r}")
        # Bounds of the same kind can be compared before N is known; mixed kinds are checked in resolve.
        if _is_fraction(self.adj_min) == _is_fraction(self.adj_max) and self.adj_min > self.adj_max:
            raise ConfigError(f"--adj-min {self.adj_min} is above --adj-max {self.adj_max}; swap them")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScheduleConfig:
        """Rebuild a stored config; unknown keys are an error, not silently dropped."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"schedule config has unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def resolve(self, n_prompts: int) -> ScheduleParams:
        """Absolute rank units for a set of `n_prompts` prompts."""
        if n_prompts < 1:
            raise ConfigError("the scores directory holds no prompts; score a non-empty dataset first")

        def absolute(value: float) -> float:
            return float(value) * n_prompts if _is_fraction(value) else float(value)

        subset = (
            max(1, round(self.subset_size * n_prompts)) if _is_fraction(self.subset_size) else int(self.subset_size)
        )
        if subset > n_prompts:
            raise ConfigError(
                f"--subset-size {subset} is more than the {n_prompts} prompts; "
                f"pass at most {n_prompts}, or a fraction below 1"
            )
        adj_min, adj_max = absolute(self.adj_min), absolute(self.adj_max)
        if adj_min > adj_max:
            raise ConfigError(
                f"--adj-min resolves to {adj_min:g}, above --adj-max {adj_max:g} for N={n_prompts}; swap them"
            )
        return ScheduleParams(
            n_prompts=n_prompts,
            subset_size=subset,
            sigma=absolute(self.sigma),
            step_size=absolute(self.step_size),
            alpha=float(self.alpha),
            beta=float(self.beta),
            adj_min=adj_min,
            adj_max=adj_max,
            reward_max=float(self.reward_max),
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
        )


@dataclass(frozen=True, kw_only=True)
class ScheduleParams:
    """A `ScheduleConfig` resolved for N prompts: every size in absolute rank units."""

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
    target: float = 0.5
    tau: float = 1e-3
    tau_attn: float = 0.1
    decay: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _choice(flag: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{flag} must be one of {', '.join(choices)}; got {value!r}")
