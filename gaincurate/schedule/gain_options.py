"""gain's ablation options: which part of GAIN-RL moves the draws (docs/strategies.md, "GAIN-RL ablation options").

Each option replaces one part of the published schedule and leaves the rest as it is:

* `ranking`: "score" (published: the angle ranking, highest first) or "random": a permutation of the prompts
  seeded by the schedule's seed, fixed for the run, so the accuracy-driven centre runs over an order that
  knows nothing of the prompts (the controller alone).
* `mu_control`: "feedback" (published: the GAIN-RL update of mu) or "sweep": mu moves by `sweep_rate` ranks
  every epoch whatever the feedback (the order alone). `sweep_rate` is a size along the ranking like
  `step_size`; left out it is the step size n, the step the published update takes when accuracy sits at
  beta and the raw angle term is saturated (n tanh(0) + n tanh(2 x 1.4) = 0.993 n).
* `direction`: "high-first" (published) or "auto": after the first epoch, the sign of the Spearman
  correlation between the ranking and the pass rates measured in that epoch keeps or reverses the ranking
  (`gaincurate.schedule.direction`).

A negative `adj_min` (a size, like the others) lets the feedback update move mu back; it needs no option of
its own. The defaults are the published schedule, and at the defaults these fields stay out of state.json
(`ScheduleConfig.to_dict`), so run directories keep the bytes they had before the options existed.
"""

from __future__ import annotations

from typing import Any

from gaincurate.errors import ConfigError

RANKINGS = ("score", "random")
MU_CONTROLS = ("feedback", "sweep")
DIRECTIONS = ("high-first", "auto")
# The published schedule: these values change nothing, and are left out of a stored config.
DEFAULTS: dict[str, Any] = {"ranking": "score", "mu_control": "feedback", "sweep_rate": None, "direction": "high-first"}
FLAGS = {"ranking": "--ranking", "mu_control": "--mu-control", "sweep_rate": "--sweep-rate", "direction": "--direction"}


def check_gain_options(config: Any) -> None:
    """Refuse a bad value, or an option that would change nothing, in one line naming it and the fix."""
    for name, choices in (("ranking", RANKINGS), ("mu_control", MU_CONTROLS), ("direction", DIRECTIONS)):
        value = getattr(config, name)
        if value not in choices:
            raise ConfigError(f"{FLAGS[name]} must be one of {', '.join(choices)}; got {value!r}")
    changed = [name for name, default in DEFAULTS.items() if getattr(config, name) != default]
    if changed and config.strategy != "gain":
        flag = FLAGS[changed[0]]
        raise ConfigError(f"{flag} is a gain option; pass --strategy gain or drop {flag}")
    if config.sweep_rate is not None and config.mu_control != "sweep":
        raise ConfigError(
            "--sweep-rate is how far mu moves each epoch under --mu-control sweep; pass --mu-control sweep "
            "or drop --sweep-rate"
        )
    if config.direction == "auto" and config.rescore == "full":
        raise ConfigError(
            "--direction auto with --rescore full: each full re-score re-ranks highest score first and would undo "
            "a reversal; pass --rescore subset or window"
        )
    if config.direction == "auto" and config.ranking == "random":
        raise ConfigError(
            "--direction auto orients the angle ranking, and a random ranking has no direction to take from the "
            "data; pass --ranking score or drop --direction auto"
        )


def stored(data: dict[str, Any]) -> dict[str, Any]:
    """A config's fields as stored in state.json: gain's options only where they differ from the defaults."""
    return {key: value for key, value in data.items() if key not in DEFAULTS or value != DEFAULTS[key]}
