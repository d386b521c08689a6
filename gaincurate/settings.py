"""A setting declared once: a dataclass field whose metadata holds its help, its check and its command-line form.

    @dataclass(frozen=True, kw_only=True)
    class ScoreConfig:
        layer: int = setting(-1, "Decoder layer of the site; negative counts from the end.")
        batch_tokens: int | None = setting(None, "Padded tokens per forward batch.",
                                           shown="measured on CPU, from free memory on CUDA")

TRL's `field(metadata={"help": ...})` pattern. The default is the field's own; the help never repeats it, since
`gaincurate.cli.fields` writes "[default: ...]" from the field (or from `shown` when the value alone does not
say what it means), builds the command's options from the fields, and docs/cli.md is generated from that CLI.
Strategy options (`gaincurate.schedule.options.option`) are settings with a check.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from collections.abc import Callable
from typing import Any

from gaincurate import errors
from gaincurate.errors import ConfigError, OptionValueError, as_given

Check = Callable[[str, Any], Any]  # (flag, value) -> the value as stored; raises ConfigError


def flag(name: str) -> str:
    """A setting's command-line flag (`--forget`); errors name it with `errors.setting`, as the caller spells it."""
    return "--" + name.replace("_", "-")


def setting(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    check: Check | None = None,
    choices: tuple[str, ...] = (),
    cli: str | None = None,
    shown: str | None = None,
    flags: tuple[str, ...] = (),
    default_factory: Any = dataclasses.MISSING,
) -> Any:
    """A dataclass field with its help (one sentence, never the default) and how the command line takes it.

    `check(flag, value)` returns the value as stored or raises ConfigError (`choices` alone: one of them), which
    is the bad option value's error (`value_check`) however the value came.
    `cli` says how the command line spells a value when it is not plain: "size" (ranks or a share of N),
    "pair" (A,B), "choice" (one of `choices`), "path", "text" or "flag". `shown` is the default as the help
    shows it when the value alone does not say it (None meaning "measured on CPU, from free memory on CUDA"). `flags`
    are explicit spellings (`("--out", "-o")`; for a bool, `("--no-prefix-cache",)` turns it off).
    """
    if check is None and choices:
        check = one_of(choices)
    metadata = {
        "help": help,
        "check": value_check(check) if check is not None else None,
        "cli": cli or ("choice" if choices else None),
        "choices": choices,
        "shown": shown,
        "flags": flags,
    }
    return dataclasses.field(default=default, default_factory=default_factory, metadata=metadata)


def value_check(check: Check) -> Check:
    """`check` as every setting runs it: the value named as the user gave it (a flag, a Python keyword or a config
    file's key: `errors.as_given`), and its refusal an OptionValueError, which the command line exits 2 for, whichever
    check it is and wherever the value came from."""
    if getattr(check, "value_check", False):
        return check

    @functools.wraps(check)
    def checked(name: str, value: Any) -> Any:
        try:
            return check(as_given(name), value)
        except ConfigError as refusal:
            raise OptionValueError(str(refusal)) from None

    checked.value_check = True  # type: ignore[attr-defined]
    return checked


def check_fields(instance: Any) -> None:
    """Each field's own check, in field order; a check may normalise the value it keeps."""
    for field in dataclasses.fields(instance):
        if (check := field.metadata.get("check")) is not None:
            object.__setattr__(instance, field.name, check(errors.setting(field.name), getattr(instance, field.name)))


def one_of(choices: tuple[str, ...]) -> Check:
    """A check: one of `choices`."""

    def check(name: str, value: Any) -> Any:
        if value not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
        return value

    return value_check(check)


def device_name(name: str, value: Any) -> str:
    """A check: a device name, auto, cpu or cuda[:N] (whether it exists here is the model loader's question)."""
    if not isinstance(value, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", value):
        raise ConfigError(f"{name} must be auto, cpu or cuda[:N]; got {value!r}")
    return value


def at_least(low: int) -> Check:
    """A check: a finite number `low` or more (None, where the field allows it, passes). The command line takes
    `low` as the option's minimum (`gaincurate.cli.fields`), so a smaller number is a usage error before any work
    starts."""

    def check(name: str, value: Any) -> Any:
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | float) or not low <= value < math.inf
        ):
            raise ConfigError(f"{name} must be at least {low}; got {value}")
        return value

    check.minimum = low  # type: ignore[attr-defined]
    return value_check(check)
