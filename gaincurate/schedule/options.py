"""Strategy options: each setting is defined once, in the module of the strategy that reads it.

    @dataclass(frozen=True, kw_only=True)
    class MoppsOptions(Options):
        target: float = option(0.5, "The pass rate to aim at.", RATE)
        forget: float = option(0.8, "Weight old evidence keeps at each update (1: never forget).", RATE)

`option(default, help, check)` is a `dataclasses.field` whose metadata holds the help text and the check
(TRL's `field(metadata={"help": ...})` pattern). Everything else is read from those fields: the checks run
in `Options.__post_init__` with one message form ("forget must be a number in [0, 1]; got 2", `--forget` on
the command line: `errors.setting`), the
`schedule init` options and their help come from them (`gaincurate.cli.schedule_options`), docs/cli.md is
generated from that CLI, and `to_dict` is the stored form in state.json. A check may normalise a value (a
size "2%" keeps its spelling, a stored JSON pair becomes a tuple).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gaincurate import settings
from gaincurate.errors import ConfigError, setting
from gaincurate.schedule import sizes
from gaincurate.settings import Check
from gaincurate.settings import flag as flag  # re-exported: strategies and the CLI spell flags through it


def option(
    default: Any,
    help: str,
    check: Check | None = None,
    *,
    cli: str | None = None,
    choices: tuple[str, ...] = (),
    shown: str = "",
) -> Any:
    """A strategy setting: its default, its help (one sentence, without the default) and its check.

    `choices` alone is a check: the value must be one of them (and the command line offers them). `cli` is how the
    command line spells a value when it is not a plain number: "size" (ranks or a share of N), "pair" (A,B), "path"
    or "text" (`gaincurate.settings.setting`). `shown` is what the help shows as the default when the value does not
    say it (None resolved later: "2/15 of N").
    """
    if check is None:
        if not choices:
            raise TypeError("an option needs a check, or the choices it must be one of")
        check = choice(*choices)
    return settings.setting(default, help, check=check, cli=cli, choices=choices, shown=shown or None)


def is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def _number(test: Callable[[float], bool], words: str) -> Check:
    def check(name: str, value: Any) -> float:
        if not is_number(value) or not test(value):
            raise ConfigError(f"{name} must be {words}; got {value!r}")
        return float(value)

    return check


RATE = _number(lambda v: 0 <= v <= 1, "a number in [0, 1]")
OPEN_RATE = _number(lambda v: 0 < v <= 1, "a number in (0, 1]")  # a weight whose log is taken: never 0
POSITIVE = _number(lambda v: v >= sizes.SMALLEST, f"a positive number ({sizes.SMALLEST:g} or more)")
NON_NEGATIVE = _number(lambda v: v >= 0, "a number 0 or more")
NUMBER = _number(lambda v: True, "a finite number")


def whole(low: int) -> Check:
    def check(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"{name} must be a whole number {low} or more; got {value!r}")
        return value

    return check


def optional(check: Check) -> Check:
    """`check`, or None (the strategy's own default) left as it is."""

    def optional_check(name: str, value: Any) -> Any:
        return None if value is None else check(name, value)

    return optional_check


def boolean(name: str, value: Any) -> bool:
    """A check: true or false, nothing else (a 1 in a config file is not a yes)."""
    if not isinstance(value, bool):
        raise ConfigError(f"{name} is true or false; got {value!r}")
    return value


def choice(*choices: str) -> Check:
    def check(name: str, value: Any) -> str:
        if value not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
        return value

    return check


def size(key: str) -> Check:
    """A size along the ranking (gaincurate.schedule.sizes): ranks, a share of N ("2%"), or None (the default)."""

    def check(name: str, value: Any) -> Any:
        return sizes.normalize_size(key, value)

    return check


def positive_pair(name: str, value: Any) -> tuple[float, float]:
    if not isinstance(value, tuple | list) or len(value) != 2 or not all(is_number(v) and v > 0 for v in value):
        raise ConfigError(f"{name} must be two positive numbers A,B (a Beta(A, B) prior); got {value!r}")
    return float(value[0]), float(value[1])


def text(name: str, value: Any) -> str | None:
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise ConfigError(f"{name} must be a file path; got {value!r}")
    return value


@dataclass(frozen=True, kw_only=True)
class Options:
    """The options of one strategy; a subclass declares them with `option(...)`. No options: this class itself."""

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = field.metadata["check"](setting(field.name), getattr(self, field.name))
            object.__setattr__(self, field.name, value)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(field.name for field in dataclasses.fields(cls))

    def changed(self) -> dict[str, Any]:
        """The options that differ from their defaults."""
        return {name: value for name, value in self.to_dict().items() if value != _default(type(self), name)}

    def to_dict(self) -> dict[str, Any]:
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}

    def resolved(self, manifest: dict[str, Any]) -> Options:
        """These options with those left to the data decided from the scores' `manifest`, before a run stores them."""
        return self

    def in_ranks(self, n_prompts: int) -> dict[str, Any]:
        """The sizes among these options in ranks of `n_prompts`, as `schedule init` reports them (stored, a size is
        as given: None for the default, "2%"); none for options that hold no size."""
        return {}


def _default(cls: type[Options], name: str) -> Any:
    field = next(field for field in dataclasses.fields(cls) if field.name == name)
    return field.default_factory() if field.default is dataclasses.MISSING else field.default
