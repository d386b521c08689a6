"""The product apart from the lab (issue 50): what a user's run imports, and that none of it is the lab's.

The product path is every `gaincurate` module that a `score`, `schedule`, `show` or `rollout` command, or a TRL or
verl integration, loads: the console script with a product command on its command line, each command's module and
the library functions they call, every registered strategy, and the integrations' public modules. Measured in a
fresh interpreter, so nothing another test imported counts.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gaincurate.cli import _asks_for_the_lab

ROOT = Path(__file__).resolve().parents[1]

ENTRY_POINTS = (
    "gaincurate.cli",
    *(f"gaincurate.cli.{name}" for name in ("score", "schedule", "show", "status", "rollout", "verl", "example")),
    "gaincurate.scoring.run",
    "gaincurate.scoring.merge",
    "gaincurate.show",
    "gaincurate.schedule.run.driver",
    "gaincurate.schedule.strategies.registry",
    "gaincurate.rollout.job",
    *(f"gaincurate.integrations.trl.{name}" for name in ("trainer", "curriculum", "epoch", "rewards")),
    *(f"gaincurate.integrations.verl.{name}" for name in ("one_launch", "sampler", "reward", "checkpoint")),
    "gaincurate.integrations.command",
    "gaincurate.integrations.supervisor",
)
LAB = ("gaincurate.lab", "gaincurate.benchmarks")

# Lines of the product path's modules: 17,908 once the lab moved out of it (issue 50, whose goal is 12,000: the
# strategy contract and the research strategies are still on it); 18,062 with the eight-member strategy contract
# (a33f02d), 18,169 with the one run object (`schedule.run.run`, its API for every trainer path, and
# `schedule.run.steps` split off so that no module passes 400 lines and `driver` imports it without a cycle).
# The bound keeps it from growing back.
PRODUCT_LINES = 18_200


def loaded_modules() -> dict[str, int]:
    """{module: lines} of every gaincurate module the entry points load, in a fresh interpreter."""
    code = (
        "import importlib, json, sys\n"
        "sys.argv = ['gaincurate', 'schedule']\n"
        f"for name in {list(ENTRY_POINTS)!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps({name: module.__file__ for name, module in sys.modules.items()\n"
        "                  if name.split('.')[0] == 'gaincurate' and getattr(module, '__file__', None)}))\n"
    )
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    files = json.loads(found.stdout.splitlines()[-1])
    return {name: len(Path(path).read_text().splitlines()) for name, path in files.items() if path.endswith(".py")}


def test_a_product_run_imports_no_lab_module_and_its_lines_stay_bounded():
    modules = loaded_modules()
    assert [name for name in modules if name.startswith(LAB)] == []
    total = sum(modules.values())
    print(f"product path: {total:,} lines in {len(modules)} modules")
    assert total <= PRODUCT_LINES, f"{total:,} lines on the product path (bound {PRODUCT_LINES:,})"


@pytest.mark.parametrize(
    ("argv", "lab"),
    [
        (["gaincurate"], True),  # the help lists every command
        (["gaincurate", "--help"], True),
        (["gaincurate", "benc"], True),  # "did you mean" sees every command
        (["gaincurate", "bench", "scale"], True),
        (["gaincurate", "difficulty", "fit"], True),
        (["gaincurate", "score", "data.jsonl", "--out", "scores"], False),
        (["gaincurate", "schedule", "next", "--run", "run"], False),
        (["python -m gaincurate", "--version"], True),
    ],
)
def test_only_a_command_line_that_may_reach_the_lab_mounts_it(argv, lab):
    assert _asks_for_the_lab(argv) is lab


def test_a_product_command_runs_without_the_lab_and_a_lab_command_with_it(tmp_path):
    code = (
        "import sys\n"
        "from gaincurate.cli import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(any(name.startswith('gaincurate.lab') for name in sys.modules))\n"
    )

    def lab_loaded(*args: str) -> bool:
        done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT)
        return done.stdout.strip().splitlines()[-1] == "True"

    assert not lab_loaded("schedule", "status", "--run", str(tmp_path / "no-run"))
    assert lab_loaded("bench", "scale", "--help")
