"""`--help` says where to start and stays readable at 80 columns (issue 50's CLI points).

The top level puts the path a run takes (score, schedule, show) in a first panel of its own and the lab's commands
in a last one marked as the lab's; `schedule init` keeps its common settings in one panel of at most 15 options, the
default strategy's panel right after it, each other product strategy's in its own and the lab's strategies' last; no
option's help runs over 8 lines at 80 columns in any command; `--strategy` takes a name, with "did you mean" for a
misspelt one, and `schedule strategies` lists them (the bench's ceilings are not offered).
"""

from __future__ import annotations

import json
import re

import pytest
import typer

from gaincurate.cli import LAB, app
from gaincurate.cli.schedule_options import LAB_PANEL
from gaincurate.schedule.config import BENCH_ONLY_STRATEGIES, DEFAULT_STRATEGY
from gaincurate.schedule.strategies.registry import KEPT_FOR_COMPARISON, STRATEGIES

MAX_HELP_LINES = 8


def _panels(text: str) -> list[tuple[str, list[tuple[str, int]]]]:
    """Each rich panel of a `--help`: its title and its rows, each with the lines it takes."""
    panels = []
    for line in text.splitlines():
        if line.startswith("╭"):
            panels.append((line.strip("╭─╮ ").strip(" ─"), []))
        elif line.startswith("│") and panels:
            rows = panels[-1][1]
            starts = re.match(r"│ (?:\* |  )?\s{0,2}(-[-\w]+|[a-z][\w-]*)[\s,]", line)
            if starts and not line.startswith("│" + " " * 6):
                rows.append((starts.group(1), 1))
            elif rows:
                rows[-1] = (rows[-1][0], rows[-1][1] + 1)
    return panels


def _leaves(command: object, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    subcommands = getattr(command, "commands", None)
    if not subcommands:
        return [path]
    return [leaf for name, sub in subcommands.items() for leaf in _leaves(sub, (*path, name))]


def _help(args: tuple[str, ...], monkeypatch, capsys) -> str:
    from helpers import run_cli

    monkeypatch.setenv("COLUMNS", "80")
    code, out, err = run_cli([*args, "--help"], monkeypatch, capsys)
    assert code == 0, err
    return out


def test_the_top_level_help_starts_with_the_path_a_run_takes(gaincurate):
    shown = gaincurate("--help", env={"COLUMNS": "80"}).stdout
    first, *others = [panel for panel in _panels(shown) if panel[0] != "Options"]
    assert first[0] == "Start here" and sorted(name for name, _ in first[1]) == ["schedule", "score", "show"]
    assert len(first[1]) <= 4
    assert [title for title, _ in others] == ["Measure", "Integrations and cluster jobs", LAB]
    assert sorted(name for name, _ in others[-1][1]) == ["bench", "difficulty", "signal"]  # the lab's, marked so
    assert "GAIN-RL angle concentration)" not in shown  # the line says what the default does instead
    assert "by default" in shown and "dots" in shown


def test_schedule_init_keeps_its_common_settings_in_one_short_panel(monkeypatch, capsys):
    panels = dict(_panels(_help(("schedule", "init"), monkeypatch, capsys)))
    assert len(panels["Options"]) <= 15
    assert "--strategy" in dict(panels["Options"]) and "--target" not in dict(panels["Options"])
    assert "probe options" in panels and "dots options" in panels


def test_schedule_init_shows_the_default_strategy_first_and_the_lab_last(gaincurate):
    """Through the console script at 80 columns: the common panel, the default strategy's right after it, the other
    product strategies', and every option only a strategy kept for comparison has in one closing panel."""
    titles = [title for title, _ in _panels(gaincurate("schedule", "init", "--help", env={"COLUMNS": "80"}).stdout)]
    assert titles[:2] == ["Options", f"{DEFAULT_STRATEGY} options"]
    assert titles[-1] == LAB_PANEL and titles.count(LAB_PANEL) == 1
    product = [name for name in STRATEGIES if name not in KEPT_FOR_COMPARISON | {"gain", "length", "uniform"}]
    assert {f"{name} options" for name in product} <= set(titles[1:-1])
    assert not any(name in title for title in titles[:-1] for name in KEPT_FOR_COMPARISON)


def test_no_option_help_runs_over_eight_lines_at_80_columns(monkeypatch, capsys):
    long = []
    for path in _leaves(typer.main.get_command(app)):
        for title, rows in _panels(_help(path, monkeypatch, capsys)):
            long += [f"{' '.join(path)} [{title}] {name}: {lines}" for name, lines in rows if lines > MAX_HELP_LINES]
    assert long == []


def test_a_misspelt_strategy_gets_the_nearest_name(gaincurate, error_line, tmp_path):
    line = error_line(
        gaincurate("schedule", "init", "--scores", tmp_path, "--run", tmp_path / "r", "--strategy", "dost")
    )
    assert "did you mean dots?" in line and "gaincurate schedule strategies" in line
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("ceiling", BENCH_ONLY_STRATEGIES)
def test_the_bench_ceiling_is_refused_with_its_own_line_and_not_offered(ceiling, gaincurate, error_line, tmp_path):
    line = error_line(
        gaincurate("schedule", "init", "--scores", tmp_path, "--run", tmp_path / "r", "--strategy", ceiling)
    )
    assert "gaincurate bench curriculum" in line
    assert ceiling not in gaincurate("schedule", "init", "--help").stdout.split("--strategy")[1].split("--subset")[0]


def test_schedule_strategies_lists_every_strategy_once_with_the_default(gaincurate):
    listed = json.loads(gaincurate("schedule", "strategies", "--json").stdout)
    assert [row["strategy"] for row in listed] == list(STRATEGIES)
    assert [row["strategy"] for row in listed if row["default"]] == [DEFAULT_STRATEGY]
    assert "--likelihood" in next(row for row in listed if row["strategy"] == "probe")["options"]
    from_file = {row["strategy"] for row in listed if row["prompts_file"]}
    assert {"uniform", "mopps", "greso", "variance"} <= from_file and not from_file & {"gain", "dots", "probe"}
    table = gaincurate("schedule", "strategies").stdout
    assert f"{DEFAULT_STRATEGY} (default)" in table and "oracle" not in table
