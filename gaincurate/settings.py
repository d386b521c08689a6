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
from collections.abc import Callable
from typing import Any

from gaincurate.errors import ConfigError

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

    `check(flag, value)` returns the value as stored or raises ConfigError (None: no check of its own).
    `cli` says how the command line spells a value when it is not plain: "size" (ranks or a share of N),
    "pair" (A,B), "choice" (one of `choices`), "path", "text" or "flag". `shown` is the default as the help
    shows it when the value alone does not say it (None meaning "measured on CPU, from free memory on CUDA"). `flags`
    are explicit spellings (`("--out", "-o")`; for a bool, `("--no-prefix-cache",)` turns it off).
    """
    metadata = {
        "help": help,
        "check": check,
        "cli": cli or ("choice" if choices else None),
        "choices": choices,
        "shown": shown,
        "flags": flags,
    }
    return dataclasses.field(default=default, default_factory=default_factory, metadata=metadata)


def at_least(low: int) -> Check:
    """A check: a number `low` or more (None, where the field allows it, passes). The command line takes `low` as
    the option's minimum (`gaincurate.cli.fields`), so a smaller number is a usage error before any work starts."""

    def check(name: str, value: Any) -> Any:
        if value is not None and value < low:
            raise ConfigError(f"{name} must be at least {low}; got {value}")
        return value

    check.minimum = low  # type: ignore[attr-defined]
    return check
