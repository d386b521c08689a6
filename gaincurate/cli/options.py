"""Options shared by the commands, each defined once as an `Annotated` alias, and `--config FILE` for all.

Choices are `Literal[CONSTANT]` of the library's own constants (`Literal[STRATEGIES]`), so a new strategy or
backend appears in the CLI, its `--help` and its config check without a second list to keep in step.

`--config FILE` (JSON or TOML) gives option values by their long names, `prompt_column` or
`prompt-column`. It is read before the other options and its values act as defaults, so the order is
defaults, then the file, then flags. Every command reads it through `gaincurate.config_file`, the one
check of unknown keys and value types. `score` reads it as a scoring config instead (`ScoreConfigFile`),
so the `config` of any scores manifest can be passed back as `--config`.
"""

from __future__ import annotations

import inspect
import typing
from pathlib import Path
from typing import Annotated, Any

import typer
from typer._click.core import ParameterSource
from typer.core import TyperGroup

from gaincurate.config_file import Pair, read_config_file
from gaincurate.errors import settings_as_flags, settings_from_file
from gaincurate.schedule.config import BENCH_ONLY_STRATEGIES, STRATEGIES
from gaincurate.schedule.strategies.registry import KEPT_FOR_COMPARISON

# The commands a user's run is made of; every other command is a plug-in's (the lab's: `gaincurate.entry_points`).
PRODUCT_COMMANDS = frozenset({"score", "merge", "schedule", "show", "rollout", "verl", "example"})


class FlagErrors(TyperGroup):
    """A command group whose commands' errors name settings as the flags typed (`--subset-size`), not as the
    Python fields they set (`subset_size`): every group of the CLI, so it holds however a command is invoked."""

    def invoke(self, ctx: Any) -> Any:
        with settings_as_flags():
            return super().invoke(ctx)


def command_group(help: str, **settings: Any) -> typer.Typer:
    """A command group of the CLI: its errors name flags (`FlagErrors`), bare it prints its help, no locals shown."""
    return typer.Typer(cls=FlagErrors, no_args_is_help=True, pretty_exceptions_show_locals=False, help=help, **settings)


def apply_config_file(ctx: typer.Context, value: Path | None) -> Path | None:
    """`--config FILE`: check the file against this command's options, then make its values their defaults."""
    if value is None or ctx.resilient_parsing:
        return value
    by_key, schema = command_schema(ctx.command)
    values = read_config_file(value, schema)
    # An option with its own text parser (`--subset-size 1/8`) takes the number a file gives as that text, and an
    # `A,B` option the list of two numbers (state.json's form) as "A,B".
    defaults = {by_key[key].name: (",".join(map(str, item)) if isinstance(item, list) else str(item))
                if _parser(by_key[key]) and item is not None else item for key, item in values.items()}  # fmt: skip
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    # A value the file gave, and no flag overrode, is named as the file's key: by a setting's check here, and by
    # Typer's own (a type, a choice, a minimum) in `gaincurate.cli.main`, which sees the same source.
    settings_from_file(
        value, lambda name: name in defaults and ctx.get_parameter_source(name) is ParameterSource.DEFAULT_MAP
    )
    return value


def command_schema(command: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The config keys of a command (its long option names, underscored) mapped to its parameters and types."""
    hints = typing.get_type_hints(inspect.unwrap(command.callback))
    by_key = {}
    for param in command.params:
        if param.name in ("config", None) or not param.expose_value:
            continue
        long_names = [opt for opt in param.opts if opt.startswith("--")]
        by_key[(long_names[0][2:] if long_names else param.name).replace("-", "_")] = param
    return by_key, {key: _config_type(param, hints[param.name]) for key, param in by_key.items()}


def _config_type(param: Any, hint: Any) -> Any:
    """An option's type in a file: with a text parser also a number (`subset_size = 8`), and for an `A,B` option (a
    parser with a `pair_form`) its text or a list of two numbers."""
    form = getattr(_parser(param), "pair_form", None)
    return Pair(form) if form else hint | int | float if _parser(param) else hint


def _parser(param: Any) -> Any:
    """The option's own parser from text (Typer's `parser=`), or None."""
    info = getattr(getattr(param, "type_descriptor", None), "parameter_info", None)
    return getattr(info, "parser", None)


ConfigFile = Annotated[
    Path | None,
    typer.Option(
        "--config",
        metavar="FILE",
        is_eager=True,
        callback=apply_config_file,
        help='JSON or TOML table of option values by long name (`prompt_column = "q"`); flags override it.',
    ),
]
ScoreConfigFile = Annotated[
    Path | None,
    typer.Option(
        "--config",
        metavar="FILE",
        help="JSON or TOML table of scoring settings: the option names, or a manifest's `config`; flags override it.",
    ),
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Nothing on stderr: no progress, stage or log lines.")]
AsJson = Annotated[
    bool, typer.Option("--json", help="Print the result as JSON on stdout (NaN and infinities as null); no progress.")
]
ScoresDirArgument = Annotated[Path, typer.Argument(help="A directory written by `gaincurate score`.")]


def _strategy(text: str) -> str:
    """A strategy's name, checked at parse time: an unknown one is a usage error with the nearest names."""
    import difflib

    if text in STRATEGIES or text in BENCH_ONLY_STRATEGIES:  # the bench-only ones get the config's own refusal
        return text
    near = difflib.get_close_matches(text, list(STRATEGIES), n=2, cutoff=0.6)
    guess = f"did you mean {' or '.join(near)}? " if near else ""
    raise ValueError(f"no such strategy; {guess}`gaincurate schedule strategies` lists them")


# A name (the choices listed in `schedule strategies`, each described there) rather than a choice list: the bench's
# ceilings are accepted only to be refused with their own line, so they are not offered.
StrategyOption = Annotated[
    str,
    typer.Option(
        metavar="NAME",
        parser=_strategy,
        help=f"Which prompts each epoch trains on: {', '.join(n for n in STRATEGIES if n not in KEPT_FOR_COMPARISON)}; "
        f"kept for comparison (the lab): {', '.join(sorted(KEPT_FOR_COMPARISON))}. `gaincurate schedule strategies` "
        "says what each estimates and what it saved.",
    ),
]
