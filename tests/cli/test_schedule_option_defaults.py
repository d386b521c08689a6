"""Every default `schedule init --help` shows is its field's: the common settings' (`ScheduleConfig`), each strategy's
and filter's options', read from the dataclasses here and compared with what the real console script prints; and no
help string in cli/schedule_options.py has a default typed into it by hand."""

from __future__ import annotations

import ast
import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from gaincurate.schedule.config import DEFAULT_STRATEGY, ScheduleConfig
from gaincurate.schedule.options import flag
from gaincurate.schedule.strategies.registry import FILTERS, STRATEGIES

OPTIONS_MODULE = Path(__file__).resolve().parents[2] / "gaincurate" / "cli" / "schedule_options.py"
# The command's own options, which are no setting: none shows a default.
OWN = {
    "--scores": None,
    "--prompts": None,
    "--prompt-column": None,
    "--drop-duplicates": None,
    "--run": None,
    "--config": None,
    "--json": None,
    "--help": None,
}


def shown_defaults() -> dict[str, str | None]:
    """Each option of `schedule init --help` (its first flag) and the text of its "[default: ...]" (None: none)."""
    script = Path(sys.executable).with_name("gaincurate")
    env = {**os.environ, "COLUMNS": "3000"}
    result = subprocess.run(
        [str(script), "schedule", "init", "--help"], env=env, capture_output=True, text=True, timeout=300, check=True
    )
    rows: dict[str, list[str]] = {}
    current = None
    for line in result.stdout.splitlines():
        cells = line.strip().strip("│").strip()
        start = re.match(r"^\*?\s*(--[a-z0-9-]+)", cells)
        if start:
            current = start.group(1)
            rows[current] = []
        elif not line.strip().startswith("│"):
            current = None  # a panel's border: the next row starts a new option
        if current is not None:
            rows[current].append(cells)
    shown = {}
    for option, parts in rows.items():
        found = re.search(r"\[default: (.*?)\]", " ".join(" ".join(parts).split()))
        shown[option] = found.group(1) if found else None
    return shown


def text(value: Any) -> str:
    """A default as a user would type it: 1 not 1.0, a pair as A,B."""
    if isinstance(value, tuple | list):
        return ",".join(text(item) for item in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def expected_defaults() -> dict[str, str | None]:
    """The default each option should show, from the dataclass fields alone."""
    expected: dict[str, str | None] = {**OWN, "--strategy": DEFAULT_STRATEGY}
    fields = {field.name: field for field in dataclasses.fields(ScheduleConfig)}
    for name, field in fields.items():
        if "help" in field.metadata and name != "reward_min":  # --reward-range sets reward_min, below
            shown = field.metadata.get("shown")
            spelled = (field.metadata.get("flags") or (flag(name),))[0]
            if spelled.startswith("--no-"):  # a switch that only turns off: its help says what it does
                expected[spelled] = None
                continue
            expected[spelled] = shown if shown is not None else None if field.default is None else text(field.default)
    expected["--reward-range"] = text((fields["reward_min"].default, fields["reward_max"].default))
    for setting, filter_class in FILTERS.items():
        expected[flag(setting)] = None if filter_class.pair_form else f"no-{flag(setting)[2:]}"  # a switch, off
    owners: dict[str, dict[str, Any]] = {}  # the default strategy first, as the help shows it
    for owner, options_class in [
        *((name, STRATEGIES[name].about.options) for name in dict.fromkeys([DEFAULT_STRATEGY, *STRATEGIES])),
        *((flag(setting), cls.options_class) for setting, cls in FILTERS.items()),
    ]:
        for field in dataclasses.fields(options_class):
            owners.setdefault(field.name, {})[owner] = field.metadata.get("shown") or field.default
    for name, defaults in owners.items():
        if None in defaults.values():
            expected[flag(name)] = None  # resolved later and the field shows nothing: the help says what it means
        elif len({repr(default) for default in defaults.values()}) == 1:
            default = next(iter(defaults.values()))
            switch = flag(name)[2:] if default else f"no-{flag(name)[2:]}"  # Typer shows an on/off switch's side
            expected[flag(name)] = switch if isinstance(default, bool) else text(default)
        else:
            expected[flag(name)] = ", ".join(f"{owner} {text(default)}" for owner, default in defaults.items())
    return expected


def test_every_default_shown_is_its_field_s():
    shown, expected = shown_defaults(), expected_defaults()
    assert set(shown) == set(expected)
    assert {option: shown[option] for option in expected} == expected
    assert shown["--subset-multiple"] == "1" and shown["--format"] == "trl" and shown["--reward-range"] == "0,1"


def test_no_help_string_has_a_default_typed_by_hand():
    """A help= given as text says no default ("(default 1)", "[default: 1]"); a formatted one takes it from a field."""
    typed = []
    for node in ast.walk(ast.parse(OPTIONS_MODULE.read_text())):
        if isinstance(node, ast.keyword) and node.arg == "help":
            parts = node.value.values if isinstance(node.value, ast.JoinedStr) else [node.value]
            for part in parts:
                written = part.value if isinstance(part, ast.Constant) and isinstance(part.value, str) else ""
                if re.search(r"\(default\b|default:\s*[^\s\]]", written, re.IGNORECASE):
                    typed.append(written)
    assert typed == []
