"""Bench configurations: one frozen dataclass of everything a bench fixes (the bundled ones: bundled.py).

A config fixes everything but the strategy and the seed: the task and its data split, the model and its warm
start, the GRPO hyper-parameters and rollout budget, and how the summary reads the curves. Every strategy of a
bench runs with the same config; only the prompts it trains on differ.

    BenchConfig.from_dict({"name": "mine", "steps": 80})   # unknown keys are an error
    config.smoke()                                          # the same code at smoke size: 1 seed, a few steps
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

from gaincurate.errors import ConfigError
from gaincurate.lab.benchmarks.curriculum import chain
from gaincurate.lab.benchmarks.curriculum import task as arith
from gaincurate.lab.benchmarks.curriculum.run_options import parse_seeds

TASKS = ("arith", "chain", "math")
HEADLINES = ("greedy", "sampled")
DEFAULT_STRATEGIES = ("uniform", "length", "gain", "dots")

# Fields checked before anything runs: a value TRL, torch or the summary would refuse (or read as nan) only after the
# data split and the warm start, with a traceback.
_WHOLE_FROM_ONE = ("steps", "prompts_per_step", "num_generations", "subset_size", "eval_every", "eval_samples",
                   "smooth", "threads", "oracle_rollouts", "eval_batch", "max_completion_length", "warm_start_batch",
                   "pool_rows", "eval_rows")  # fmt: skip
_POSITIVE = ("learning_rate", "warm_start_lr", "temperature")  # a zero temperature divides the logits by zero


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_values(config: BenchConfig) -> None:
    """Each numeric field within its range, named in one line, before any data is drawn or a model is built."""
    for name in _WHOLE_FROM_ONE:
        value = getattr(config, name)
        if not _whole(value) or value < 1:
            raise ConfigError(f"{name} must be a whole number 1 or more; got {value!r}")
    if not _whole(config.warm_start_steps) or config.warm_start_steps < 0:
        raise ConfigError(f"warm_start_steps must be a whole number 0 or more; got {config.warm_start_steps!r}")
    for name in _POSITIVE:
        value = getattr(config, name)
        if not _number(value) or value <= 0:
            raise ConfigError(f"{name} must be a number above 0; got {value!r}")
    unit = "terms" if config.task == "chain" else "digits"
    for name in ("pool", "eval"):
        for pair in getattr(config, name):
            if not isinstance(pair, list | tuple) or len(pair) != 2 or not all(_whole(x) and x >= 1 for x in pair):
                raise ConfigError(f"{name} lists ({unit}, count) pairs of whole numbers 1 or more; got {_shown(pair)}")
    for name, value in (("target", config.target), *(("other_targets", t) for t in config.other_targets)):
        if value is not None and (not _number(value) or not 0 < value <= 1):
            raise ConfigError(f"{name} is a held-out accuracy in (0, 1]; got {value!r}")
    for name in ("target_fraction", "oracle_target"):
        value = getattr(config, name)
        low_open = name == "target_fraction"  # a fraction 0 of the way puts the target at the start
        if not _number(value) or not (0 < value <= 1 if low_open else 0 <= value <= 1):
            raise ConfigError(f"{name} must lie in {'(0, 1]' if low_open else '[0, 1]'}; got {value!r}")


def _shown(value: Any) -> str:
    return json.dumps(value) if isinstance(value, list | tuple) else repr(value)


@dataclass(frozen=True, kw_only=True)
class BenchConfig:
    """One bench: task, model, warm start, GRPO settings, evaluation and summary rules."""

    name: str
    task: str = "arith"
    # arith: "+" adds two d-digit integers, "*" multiplies a d-digit integer by one digit. chain: sums of 2-digit
    # terms, answered after their running totals (chain.py); "+" only.
    operator: str = "+"
    # arith: (digits, count) pairs for the training pool and the held-out split, drawn with data_seed (chain: (terms,
    # count) pairs; so for warm_start_digits and warm_start_noise).
    pool: tuple[tuple[int, int], ...] = ((1, 96), (2, 64), (3, 176), (4, 176))
    eval: tuple[tuple[int, int], ...] = ((2, 240),)
    data_seed: int = 0
    # arith: the warm-started model, built from a config and fine-tuned on answers inside the bench.
    model_shape: dict[str, int] = field(default_factory=lambda: {"layers": 4, "hidden": 128, "heads": 4})
    warm_start_digits: tuple[int, ...] = (1, 2)
    warm_start_steps: int = 1500
    warm_start_batch: int = 64
    warm_start_lr: float = 1e-3
    warm_start_seed: int = 0
    warm_start_noise: tuple[tuple[int, float], ...] = ()  # (digits, rate): supervise those sums with a slip
    # math: a local model folder, GGUF or Hub id (None: the embedded SmolLM2-135M-Instruct), and rows of a dataset.
    model: str | None = None
    dataset: str | None = None  # None: the bundled sample prompt set
    pool_rows: int = 256
    eval_rows: int = 64
    # GRPO (stock TRL GRPOTrainer): the same for every strategy.
    steps: int = 400
    prompts_per_step: int = 8
    num_generations: int = 8
    subset_size: int = 64  # prompts per curriculum epoch; the schedule steps every subset_size / prompts_per_step
    learning_rate: float = 1e-4
    temperature: float = 1.0
    max_completion_length: int = 8
    # Evaluation: held-out greedy accuracy and sampled pass rate (eval_samples per prompt) every eval_every steps.
    eval_every: int = 25
    eval_samples: int = 4
    eval_batch: int = 256
    # The analysis, declared before any pair runs (summary.py, stats.py): the headline metric; the absolute target
    # on it (None: target_fraction of the way from the start to the best final, which moves with the arms); the
    # arms compared with the baseline (Holm across them); other targets read for sensitivity; the rollout budget
    # of the partial AUC (None: the baseline's whole run); a centred mean over `smooth` points (odd) before
    # crossings are interpolated.
    headline: str = "greedy"
    target: float | None = None
    target_fraction: float = 0.9
    primary: tuple[str, ...] = ()
    other_targets: tuple[float, ...] = ()
    pauc_budget: int | None = None
    smooth: int = 1
    # Strategies and seeds (an int: a count from 0; text: "A-B" inclusive, or a comma list of those); per-strategy
    # ScheduleConfig fields ("*" applies to all).
    strategies: tuple[str, ...] = DEFAULT_STRATEGIES
    seeds: int | str = 3
    schedule: dict[str, dict[str, Any]] = field(default_factory=dict)
    baseline: str = "uniform"  # plain GRPO: the paired ratios' denominator, charged no gaincurate scoring
    oracle_rollouts: int = 8
    oracle_target: float = 0.5
    # Bench only (diagnosis.py): measure every pool prompt with the current policy at every draw, in every arm, with
    # oracle_rollouts samples each; reported apart (OUT/diagnosis.jsonl), never charged, no training draw changed.
    measure_pool: bool = False
    threads: int = 1
    device: str = "cpu"
    # What --smoke changes (any fields above).
    smoke_overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_values(self)
        if self.task not in TASKS:
            raise ConfigError(f"task must be one of {', '.join(TASKS)}; got {self.task!r}")
        if self.headline not in HEADLINES:
            raise ConfigError(f"headline must be one of {', '.join(HEADLINES)}; got {self.headline!r}")
        if self.num_generations < 2:
            raise ConfigError("num_generations must be at least 2: GRPO compares the rollouts of a group")
        if self.subset_size % self.prompts_per_step:
            raise ConfigError(
                f"subset_size {self.subset_size} must be a multiple of prompts_per_step {self.prompts_per_step}"
            )
        if self.smooth % 2 == 0:
            raise ConfigError(f"smooth is a centred window, so it is odd (1: no smoothing); got {self.smooth}")
        parse_seeds(self.seeds)
        if not isinstance(self.measure_pool, bool):
            raise ConfigError(f"measure_pool is true or false; got {self.measure_pool!r}")
        if self.pauc_budget is not None and (not _whole(self.pauc_budget) or self.pauc_budget < 1):
            raise ConfigError(f"pauc_budget is a number of rollouts, 1 or more; got {self.pauc_budget!r}")
        if self.baseline in self.primary:
            raise ConfigError(f"primary lists the arms compared with the baseline; {self.baseline!r} is the baseline")
        object.__setattr__(self, "pool", tuple(tuple(int(x) for x in pair) for pair in self.pool))
        object.__setattr__(self, "eval", tuple(tuple(int(x) for x in pair) for pair in self.eval))
        object.__setattr__(self, "warm_start_digits", tuple(int(d) for d in self.warm_start_digits))
        if self.operator not in arith.OPERATORS or (self.task == "chain" and self.operator != "+"):
            allowed = "+" if self.task == "chain" else " ".join(arith.OPERATORS)
            raise ConfigError(f"operator must be one of {allowed} for task {self.task}; got {self.operator!r}")
        for digits in {d for d, _ in (*self.pool, *self.eval)}:
            wanted = sum(c for d, c in (*self.pool, *self.eval) if d == digits)
            if self.task == "chain":  # a sum of 2 terms or more
                possible, kind = (chain.distinct_problems(digits) if digits >= 2 else 0), f"{digits}-term sums"
            else:
                possible = arith.distinct_problems(digits, self.operator) if digits >= 1 else 0
                kind = f"{digits}-digit problems ({self.operator})"
            if wanted > possible:
                raise ConfigError(f"pool and eval ask for {wanted} distinct {kind}; there are {possible}")
        noise = tuple((int(d), float(rate)) for d, rate in self.warm_start_noise)
        if any(not 0 <= rate <= 1 for _, rate in noise):
            raise ConfigError(f"warm_start_noise rates must lie in [0, 1]; got {noise}")
        object.__setattr__(self, "warm_start_noise", noise)
        object.__setattr__(self, "strategies", tuple(self.strategies))
        object.__setattr__(self, "primary", tuple(self.primary))
        object.__setattr__(self, "other_targets", tuple(float(t) for t in self.other_targets))

    @property
    def steps_per_epoch(self) -> int:
        return self.subset_size // self.prompts_per_step

    @property
    def epochs(self) -> int:
        """Curriculum epochs needed to cover `steps` optimizer steps (the last one may be cut short)."""
        return -(-self.steps // self.steps_per_epoch)

    @property
    def seed_list(self) -> tuple[int, ...]:
        return parse_seeds(self.seeds)

    def smoke(self) -> BenchConfig:
        """The same bench at smoke size (one seed, a few steps): what CI runs."""
        return dataclasses.replace(self, **{"seeds": 1, **self.smoke_overrides, "smoke_overrides": {}})

    def schedule_fields(self, arm: str) -> dict[str, Any]:
        """The ScheduleConfig fields this bench sets for `arm` (besides seed and subset_size).

        An arm is a strategy's name, or a name of the `schedule` field whose entry names its strategy:
        `{"gain-random": {"strategy": "gain", "ranking": "random"}}` runs gain with that option as its own arm.
        """
        return {**self.schedule.get("*", {}), **self.schedule.get(arm, {})}

    def defined_arms(self) -> tuple[str, ...]:
        """The arms the `schedule` field defines under names of their own."""
        return tuple(name for name, fields in self.schedule.items() if "strategy" in fields)

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"bench config has unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return cls(**data)
