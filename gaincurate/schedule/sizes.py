"""Sizes along the ranking: how `--subset-size`, `--sigma`, `--step-size`, `--adj-min` and `--adj-max` are spelled.

A bare number is rank units (`--sigma 0.5` is half a rank). A share of the prompt count N has its own
spelling, a percentage: `--sigma 2%` is 2% of N. Left out (None), a size is the released GAIN-RL value
scaled to N: the released number divided by 7,500, the size of MATH train that it was tuned on, times N.
So at N = 7,500 the defaults are exactly the released values.

The subset size is also the number of rows a trainer sees per epoch, and trainers take whole batches
(TRL: `generation_batch_size / num_generations` prompts; verl: `data.train_batch_size`). With
`subset_multiple` K, a default or percentage subset rounds to the nearest multiple of K, and a count
that is not a multiple is refused with the nearest ones the pool holds. `subset_choice` says in words what was chosen.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

from gaincurate.errors import ConfigError, setting

# A temperature or width divides log-weights (gain's sigma squared): below SMALLEST the quotient leaves float64 and
# the draw turns NaN or skips its own centre.
SMALLEST = 1e-100

# The prompt count the released hyperparameters were tuned for (MATH train); defaults are shares of it.
REFERENCE_PROMPTS = 7500
RELEASED = {"step_size": 500, "sigma": 1000, "adj_min": 0, "adj_max": 1000, "subset_size": 256}
# The settings that are sizes; sweep_rate is gain's under --mu-control sweep (None: the step size).
SIZE_SETTINGS = ("subset_size", "sigma", "step_size", "adj_min", "adj_max", "sweep_rate")


def size_text(text: str) -> str:
    """A size as typed on the command line, checked to be a number or a percentage (for a CLI option parser)."""
    body = text.strip()
    try:
        number = float(body[:-1] if body.endswith("%") else body)
    except ValueError:
        raise ValueError("not a number of ranks or a share of N such as 2%") from None
    if not math.isfinite(number):
        raise ValueError("not finite")
    return body


def normalize_size(name: str, value: Any) -> int | float | str | None:
    """A size as stored in the config: None (the scaled default), ranks (a float; the subset size an int), or
    "X%" (a share of N).

    A string that is a plain number (from a config file or a CLI option) is ranks; "X%" keeps its spelling.
    """
    flag = setting(name)
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        percent = text.endswith("%")
        try:
            number = float(text[:-1] if percent else text)
        except ValueError:
            raise ConfigError(f"{flag} must be a number of ranks or a share of N such as 2%; got {value!r}") from None
        if not math.isfinite(number):
            raise ConfigError(f"{flag} must be finite; got {value!r}")
        if percent:
            _check_sign(name, number, f"{text}")
            if name == "subset_size" and number > 100:  # more than the pool, as a count above N is refused
                raise ConfigError(f"{flag} {text} is more than the whole pool; give at most 100%")
            return f"{number:g}%" if float(f"{number:g}") == number else f"{number!r}%"
        value = number
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{flag} must be a finite number of ranks or a percentage of N such as 2%; got {value!r}")
    _check_sign(name, float(value), f"{value:g}")
    if name == "subset_size":
        if value != int(value):
            raise ConfigError(
                f"{setting('subset_size', float(value))} is not a whole number of prompts; give a count, or a share "
                "of N such as 5%"
            )
        return int(value)
    return float(value)


def _check_sign(name: str, number: float, shown: str) -> None:
    flag = setting(name)
    if name in ("subset_size", "sigma") and number <= 0:
        raise ConfigError(f"{flag} must be positive; got {shown}")
    if name == "sigma" and number < SMALLEST:  # a share's sigma is as small as this times N / 100, still squarable
        raise ConfigError(f"{flag} must be {SMALLEST:g} or more; got {shown}")
    if name in ("step_size", "sweep_rate") and number < 0:
        raise ConfigError(f"{flag} must be 0 or more; got {shown}")


def is_share(value: float | str | None) -> bool:
    """Whether a stored size scales with N (the default, or a percentage)."""
    return value is None or isinstance(value, str)


def default_text(name: str) -> str:
    """A size's default as help shows it: the released value's share of N ("2/15 of N", "256/7500 of N")."""
    share = Fraction(RELEASED[name], REFERENCE_PROMPTS)
    shown = share if share.denominator <= 100 else f"{RELEASED[name]}/{REFERENCE_PROMPTS}"
    return f"{shown} of N"


def absolute(name: str, value: float | str | None, n_prompts: int) -> float:
    """A stored size in rank units for `n_prompts` prompts."""
    if value is None:
        return RELEASED[name] / REFERENCE_PROMPTS * n_prompts
    if isinstance(value, str):
        return float(value[:-1]) / 100.0 * n_prompts
    return float(value)


def resolve_subset(value: float | str | None, n_prompts: int, multiple: int) -> int:
    """The subset size in prompts: a share of N rounds to the nearest multiple of `multiple` (at least one)."""
    if multiple > n_prompts:  # no size is a whole number of batches, whatever was asked
        raise ConfigError(
            f"the {n_prompts} prompts are fewer than one batch of {setting('subset_multiple', multiple)}; lower it"
        )
    if not is_share(value):
        count = int(value)
        if count % multiple:
            low = count - count % multiple
            near = " or ".join(str(size) for size in (low, low + multiple) if 1 <= size <= n_prompts)
            raise ConfigError(
                f"{setting('subset_size', count)} is not a multiple of {setting('subset_multiple', multiple)}; the "
                f"trainer would drop {count % multiple} prompts each epoch. Use {near}, or give a share of N such as "
                "5%, which rounds by itself"
            )
    else:
        count = max(1, round(absolute("subset_size", value, n_prompts) / multiple)) * multiple
        if count > n_prompts:
            count = n_prompts - n_prompts % multiple
    if count > n_prompts:
        raise ConfigError(
            f"{setting('subset_size', count)} is more than the {n_prompts} prompts; pass at most {n_prompts}, or a "
            "share of N"
        )
    return count


def subset_choice(value: float | str | None, n_prompts: int, multiple: int, chosen: int) -> str:
    """One line on how the subset size was chosen, for `schedule init` and in-process trainers to print."""
    if not is_share(value):
        return f"subset size {chosen} prompts per epoch (as given)"
    spelled = "the default 256/7,500 of N" if value is None else f"{value} of N"
    exact = absolute("subset_size", value, n_prompts)
    rounded = "rounded" if multiple == 1 else f"rounded to a multiple of {multiple} ({setting('subset_multiple')})"
    return f"subset size {chosen} prompts per epoch: {spelled} = {exact:.1f} of {n_prompts}, {rounded}"
