"""The one way a command's result reaches stdout: JSON with `--json`, rich text otherwise.

    emit(report, as_json=as_json, human=lambda stdout: stdout.line(f"{report['rows']} rows"))

JSON is indented, key-sorted and strict: NaN and infinities become `null` (Python's json would print
`NaN`, which no JSON parser accepts), numpy scalars become numbers, paths and tuples become strings and
lists. `json_line` is the compact one-line form for JSON-lines output. Progress and notes go to stderr
(`note`), never here.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from collections.abc import Callable, Mapping
from pathlib import PurePath
from typing import Any


def plain(value: Any) -> Any:
    """`value` as JSON-ready data: finite numbers, None for non-finite ones, lists for tuples and arrays."""
    if isinstance(value, bool) or value is None or isinstance(value, str | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(item) for item in value]
    if isinstance(value, PurePath):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain(dataclasses.asdict(value))
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return plain(value.tolist())
    if hasattr(value, "value") and isinstance(value.value, str):  # enum members
        return value.value
    raise TypeError(f"cannot render {type(value).__name__} as JSON")


def json_text(data: Any) -> str:
    return json.dumps(plain(data), indent=2, sort_keys=True, allow_nan=False, ensure_ascii=False)


def json_line(data: Any) -> str:
    return json.dumps(plain(data), sort_keys=True, allow_nan=False, ensure_ascii=False) + "\n"


class Stdout:
    """A command's human-readable output: `line` for text (never wrapped, so it stays greppable), `print` for
    rich tables; both on stdout."""

    def __init__(self) -> None:
        from rich.console import Console

        # Prompts, paths and templates are printed as they are: rich's markup would eat `[x]` and `\[`, fail on
        # `[/]`, and its emoji codes would turn `1:100:` into a picture. Styles come as `rich.text.Text`.
        self.console = Console(highlight=False, markup=False, emoji=False)
        # A stdout that cannot encode a glyph (PYTHONIOENCODING=ascii) prints it as `?`: the result stays whole, and
        # rich draws its tables with ASCII lines there.
        if hasattr(sys.stdout, "reconfigure"):
            sys.stdout.reconfigure(errors="replace")

    def line(self, text: str) -> None:
        self.console.print(text, soft_wrap=True)

    def print(self, renderable: Any) -> None:
        self.console.print(renderable)

    def write(self, text: str) -> None:
        """Text exactly as given (JSON lines)."""
        sys.stdout.write(text)


def emit(data: Any, *, as_json: bool, human: Callable[[Stdout], None]) -> None:
    """Print `data` as JSON, or call `human(stdout)` to draw it for a person."""
    if as_json:
        sys.stdout.write(json_text(data) + "\n")
    else:
        human(Stdout())
    sys.stdout.flush()


def note(message: str) -> None:
    """A side remark for the person running the command: stderr, so stdout stays the result."""
    print(message, file=sys.stderr)
