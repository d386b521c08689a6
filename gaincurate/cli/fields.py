"""A command's options generated from a dataclass's fields (`gaincurate.settings.setting`), so each default and its
help are written once: in the field.

Every generated option is keyword-only with the default None, meaning "not given", so `--config FILE` and the
dataclass's own default still show through; the help ends "[default: ...]" written from the field (`default_text`).
A command takes them through `install`, which gives the command the signature Typer reads:

    install(bench, fixed_parameters(bench), field_parameters(ScoringBench, exclude=("out",)))
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from gaincurate.settings import flag

Parser = Callable[[str], Any]


def default_value(field: dataclasses.Field) -> Any:
    """The field's default (its factory's value), or MISSING for a required field."""
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def value_text(value: Any) -> str:
    """A value as a user types it: floats with :g (1, not 1.0), pairs as A,B."""
    if isinstance(value, tuple | list):
        return ",".join(value_text(item) for item in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def default_text(field: dataclasses.Field) -> str:
    """The default as the help shows it; "" when there is none to show.

    `shown` when the field has it; nothing for None (the help says what leaving it out means) or a required
    field; a bool as the flag that keeps it (`embed`, `no-embed`, as Typer shows an on/off pair), nothing for
    a one-way switch (`--overwrite`, `--no-prefix-cache`: leaving it out is the default).
    """
    shown = field.metadata.get("shown")
    if shown is not None:
        return shown
    value = default_value(field)
    if value is None or value is dataclasses.MISSING:
        return ""
    if isinstance(value, bool):
        on, off = _switches(field)
        kept = on if value else off
        return kept.removeprefix("--") if kept else ""
    return value_text(value)


def help_text(field: dataclasses.Field) -> str:
    """The field's help with its default: "Rows per shard. [default: 1000]"."""
    return with_default(field.metadata.get("help", ""), default_text(field))


def with_default(help: str, default: str) -> str:
    """A help text with the default it shows, in Typer's own form; an option that is not one field's uses it too."""
    return f"{help}{f' [default: {default}]' if default else ''}".strip()


def option_annotation(
    field: dataclasses.Field,
    base: Any,
    *,
    help: str,
    panel: str | None = None,
    parsers: dict[str, Parser] | None = None,
) -> Any:
    """`Annotated[base | None, typer.Option(...)]` for a field.

    The field's `cli` kind picks the type: a kind in `parsers` is text checked by its parser, a field with
    `choices` is one of them, "path" a Path; a bool is an on/off switch; a check's
    minimum (`settings.at_least`) is the option's.
    """
    kind = field.metadata.get("cli")
    declared = {"help": help, "rich_help_panel": panel}
    minimum = getattr(field.metadata.get("check"), "minimum", None)  # `settings.at_least`: Typer checks it too
    if minimum is not None:
        declared["min"] = minimum
    flags = _declarations(field, base)
    if base is bool and _switches(field)[0] == "":  # `--no-x` alone: a flag row of its own in --help
        return Annotated[bool | None, typer.Option(*flags, callback=_turned_off, **declared)]
    if kind in (parsers or {}):
        return Annotated[str | None, typer.Option(*flags, parser=parsers[kind], **declared)]
    if field.metadata.get("choices"):
        return Annotated[Literal[field.metadata["choices"]] | None, typer.Option(*flags, **declared)]
    if kind == "path":
        return Annotated[Path | None, typer.Option(*flags, **declared)]
    return Annotated[base | None, typer.Option(*flags, **declared)]


def field_named(cls: type, name: str) -> dataclasses.Field:
    """The field `name` of the dataclass `cls`."""
    return next(field for field in dataclasses.fields(cls) if field.name == name)


def field_parameters(
    cls: type,
    *,
    only: Iterable[str] | None = None,
    exclude: Iterable[str] = (),
    panel: str | None = None,
    panels: dict[str, str] | None = None,
    parsers: dict[str, Parser] | None = None,
) -> list[inspect.Parameter]:
    """A keyword-only parameter (default None: not given) per field of `cls`, in `only`'s order when given; a field
    without a default is a required option. `panels` puts named fields in a `--help` panel of their own."""
    fields = {field.name: field for field in dataclasses.fields(cls)}
    names = [name for name in (fields if only is None else only) if name not in set(exclude)]
    hints = typing.get_type_hints(cls)
    parameters = []
    for name in names:
        field = fields[name]
        where = (panels or {}).get(name, panel)
        annotation = option_annotation(field, _plain(hints[name]), help=help_text(field), panel=where, parsers=parsers)
        required = default_value(field) is dataclasses.MISSING  # a field without a default: a required option
        default = inspect.Parameter.empty if required else None
        parameters.append(
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
        )
    return parameters


def given(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """The values of `cls`'s fields that were given (not None), to build it with its own defaults for the rest."""
    names = {field.name for field in dataclasses.fields(cls)}
    return {name: value for name, value in values.items() if name in names and value is not None}


def fixed_parameters(command: Callable[..., Any]) -> list[inspect.Parameter]:
    """The command's own parameters, their annotations resolved, without its `**values` catch-all."""
    hints = typing.get_type_hints(command, include_extras=True)
    return [
        parameter.replace(annotation=hints[parameter.name])
        for parameter in inspect.signature(command).parameters.values()
        if parameter.kind is not inspect.Parameter.VAR_KEYWORD
    ]


def install(
    command: Callable[..., Any], fixed: list[inspect.Parameter], generated: list[inspect.Parameter]
) -> Callable[..., Any]:
    """Give `command` the signature Typer reads: its fixed parameters, then the generated ones as keywords."""
    command.__signature__ = inspect.Signature([*fixed, *generated], return_annotation=None)
    command.__annotations__ = {p.name: p.annotation for p in (*fixed, *generated)} | {"return": None}
    return command


def _declarations(field: dataclasses.Field, base: Any) -> tuple[str, ...]:
    """The flags Typer declares: the field's own spellings, `--x/--no-x` for a bool, else `--name`."""
    if base is not bool:
        return field.metadata.get("flags") or (flag(field.name),)
    on, off = _switches(field)
    return (f"{on}/{off}",) if on and off else (on or off,)


def _turned_off(given: bool | None) -> bool | None:
    """An off-only switch (`--no-prefix-cache`) sets its field to False when given, and is "not given" (None)
    otherwise, so `--config FILE` and the field's default still apply."""
    return False if given else None


def _switches(field: dataclasses.Field) -> tuple[str, str]:
    """A bool field's on and off flags ("" for a side it lacks): `--no-...` among its flags turns it off."""
    flags = field.metadata.get("flags") or (flag(field.name), "--no-" + field.name.replace("_", "-"))
    off = next((spelled for spelled in flags if spelled.startswith("--no-")), "")
    on = next((spelled for spelled in flags if not spelled.startswith("--no-")), "")
    return on, off


def _plain(hint: Any) -> Any:
    """`int | None` as `int`: every generated option is optional anyway (None: not given)."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        rest = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return rest[0] if len(rest) == 1 else str
    return hint
