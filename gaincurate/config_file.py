"""Read a `--config FILE` (JSON or TOML) and check it against a schema: one reader for every command.

A schema maps each known key to its Python type (`int | None`, `tuple[dict[str, str], ...]`, a `Literal`,
an `Enum`...). `read_config_file(path, schema)` returns the file's values with dashes in keys turned into
underscores; an unknown key, a value of the wrong type, a file that is not a table, or one that cannot be
parsed raises `ConfigError` as one line naming the key and what it should be (a value of the wrong type:
`OptionValueError`, a usage error as from a flag). `check_keys` is the same unknown-key check for settings that
come from elsewhere (a stored config, a trainer's config section). An `A,B` option's type is `Pair(form)`: its
text, or the list of two numbers that state.json stores.

    schema = {"limit": int | None, "strategy": Literal["gain", "dots"]}
    values = read_config_file("run.toml", schema)      # {"limit": 100}
"""

from __future__ import annotations

import datetime
import enum
import json
import tomllib
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePath
from typing import Any

from gaincurate.errors import ConfigError, OptionValueError


def check_keys(where: str, keys: Iterable[str], known: Iterable[str]) -> None:
    """Refuse keys outside `known`, naming them and the known ones."""
    known = set(known)
    unknown = sorted(set(keys) - known)
    if unknown:
        raise ConfigError(f"{where} has unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")


def read_config_file(path: str | PurePath, schema: Mapping[str, Any]) -> dict[str, Any]:
    """The file's values, keys with underscores; every key known to `schema` and every value of its type."""
    where = f"--config {path}"
    data = _parse(Path(path), where)
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must hold a table of option names and values; it holds {_kind(data)}")
    values = {str(key).replace("-", "_"): value for key, value in data.items()}
    for name in values:  # two spellings of one setting (`subset-size`, `subset_size`): neither may silently win
        if len(spelled := [str(key) for key in data if str(key).replace("-", "_") == name]) > 1:
            raise ConfigError(f"{where} sets {name} twice ({' and '.join(spelled)}); keep one")
    check_keys(where, values, schema)
    for key, value in values.items():
        if not matches(value, schema[key]):
            raise OptionValueError(f"{where}: {key} must be {describe(schema[key])}; got {_shown(value)[:80]}")
    return values


def _shown(value: Any) -> str:
    """A file's value as it was written, for an error message: JSON's spelling, and TOML's dates and times, which JSON
    has no spelling for, as TOML writes them (a date inside a list is quoted)."""
    if isinstance(value, datetime.date | datetime.time):
        kind = "date and time" if isinstance(value, datetime.datetime) else type(value).__name__
        return f"{value.isoformat()} (a TOML {kind})"
    return json.dumps(value, default=str)


class Pair(str):
    """The type of an `A,B` option (`--band 0.2,0.8`), named by how its flag spells it ("two pass rates LO,HI such
    as 0.1,0.9"): that text (its option's parser checks it), or a list of two numbers, the form state.json stores."""


def _parse(file: Path, where: str) -> Any:
    if file.is_dir():
        raise ConfigError(f"{where} is a folder; pass a JSON or TOML file")
    if not file.is_file():
        raise ConfigError(f"{where} does not exist; pass a JSON or TOML file")
    toml = file.suffix.lower() == ".toml"
    try:
        text = file.read_text(encoding="utf-8-sig")  # a byte-order mark (Windows editors write one) is skipped
        return tomllib.loads(text) if toml else json.loads(text)
    except UnicodeDecodeError:
        raise ConfigError(f"{where} is not UTF-8 text; save it as UTF-8 JSON or TOML") from None
    except RecursionError:
        raise ConfigError(f"{where} is nested too deeply to read; a config is a flat table") from None
    except ValueError as error:
        kind = "TOML" if toml else "JSON (name it .toml for TOML)"
        raise ConfigError(f"{where} is not valid {kind}: {error}") from None


def matches(value: Any, annotation: Any) -> bool:
    """Whether a JSON/TOML value can stand for `annotation`: strict, so 1.5 is no int and "3" no number."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any:
        return True
    if isinstance(annotation, Pair):
        pair = isinstance(value, list) and len(value) == 2 and all(matches(item, float) for item in value)
        return value is None or isinstance(value, str) or pair
    if annotation is None or annotation is type(None):
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(matches(value, arg) for arg in args)
    if origin is typing.Literal:
        return value in args
    if origin in (list, tuple):  # a tuple too: what a frozen config holds (JSON and TOML give lists)
        inner = args[0] if args else Any
        return isinstance(value, list | tuple) and all(matches(item, inner) for item in value)
    if origin is dict:
        inner = args[1] if args else Any
        return isinstance(value, dict) and all(matches(item, inner) for item in value.values())
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return value in {member.value for member in annotation}
    checks = {
        bool: lambda: isinstance(value, bool),
        int: lambda: isinstance(value, int) and not isinstance(value, bool),
        float: lambda: isinstance(value, int | float) and not isinstance(value, bool),
        str: lambda: isinstance(value, str),
        Path: lambda: isinstance(value, str),
    }
    return annotation in checks and checks[annotation]()


def describe(annotation: Any) -> str:
    """`annotation` in words, for the error message: "a whole number or null", "one of gain, dots"."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if isinstance(annotation, Pair):
        return f"{annotation}, as text or a list of two numbers, or null"
    if annotation is None or annotation is type(None):
        return "null"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(arg) for arg in sorted(args, key=lambda arg: arg is type(None)))
    if origin is typing.Literal:
        return "one of " + ", ".join(map(str, args))
    if origin in (list, tuple):
        return f"a list of {_plural(describe(args[0]) if args else 'values')}"
    if origin is dict:
        return "a table"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "one of " + ", ".join(str(member.value) for member in annotation)
    words = {bool: "true or false", int: "a whole number", float: "a number", str: "a string", Path: "a path"}
    return words.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _plural(words: str) -> str:
    return words.removeprefix("a ").removeprefix("an ") + "s" if words.startswith(("a ", "an ")) else words


def _kind(value: Any) -> str:
    """What a file holds instead of a table, in JSON's words."""
    words = {list: "a list", str: "a string", int: "a number", float: "a number"}
    return words.get(type(value), json.dumps(value))  # null, true or false
