"""Every option's default appears once in the source: in its dataclass field, never typed into a help string.

The first test runs each command's `--help` through the real console script and compares every `[default: X]`
it shows with the field the option comes from (its default, or the `shown` text when the value alone does not
say it), and checks that no field with a default to show lost it. The second reads gaincurate/cli/*.py with `ast`
and refuses a `help=` text that mentions a default: a default is written by `gaincurate.cli.fields` from the field.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import pytest

from gaincurate.kernels.bench_options import KernelBench
from gaincurate.lab.benchmarks.curriculum.run_options import BenchRun
from gaincurate.lab.benchmarks.gpu import GpuBench
from gaincurate.lab.benchmarks.replay import BenchConfig as ReplayBench
from gaincurate.lab.benchmarks.scoring import ScoringBench
from gaincurate.lab.benchmarks.scoring_profile import ProfileBench
from gaincurate.lab.benchmarks.signal import SignalCheck
from gaincurate.rollout.config import RolloutConfig
from gaincurate.scoring.config import RunOptions, ScoreConfig

CLI = Path(__file__).resolve().parents[2] / "gaincurate" / "cli"

# Each command, and the dataclasses whose fields are its options (fields that are no option of it left out).
COMMANDS = {
    ("score",): [(ScoreConfig, {"dataset"}), (RunOptions, {"quiet"})],
    ("bench", "curriculum"): [(BenchRun, set())],
    ("bench", "scoring"): [(ScoringBench, set())],
    ("bench", "kernel"): [(KernelBench, set())],
    ("bench", "gpu"): [(GpuBench, set())],
    ("bench", "replay"): [(ReplayBench, set())],
    ("bench", "profile"): [(ProfileBench, set())],
    ("signal", "check"): [(SignalCheck, set())],
    ("rollout",): [(RolloutConfig, {"scores"})],
}


def _expected(field: dataclasses.Field) -> str | None:
    """What `[default: ...]` should say for `field`, written here from the field itself; None: no default shown."""
    if field.metadata.get("shown"):
        return field.metadata["shown"]
    value = field.default if field.default_factory is dataclasses.MISSING else field.default_factory()
    if value is None or value is dataclasses.MISSING or value == ():
        return None
    if isinstance(value, bool):  # Typer's on/off pair shows the side that is kept; a one-way switch shows none
        flags = field.metadata.get("flags") or ()
        if flags:
            return None
        return field.name.replace("_", "-") if value else "no-" + field.name.replace("_", "-")
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _flag(field: dataclasses.Field) -> str:
    flags = field.metadata.get("flags") or ("--" + field.name.replace("_", "-"),)
    return flags[0]


def _shown_defaults(help_text: str) -> dict[str, str | None]:
    """Each option row of a rich `--help` (one line each at this width): its first long flag and its default."""
    rows = {}
    for line in help_text.splitlines():
        flag = re.match(r"│\s*\*?\s*(--[a-z][a-z0-9-]*)", line)
        if flag:
            default = re.search(r"\[default: (.*?)\]\s*│", line)
            rows[flag.group(1)] = default.group(1) if default else None
    return rows


def _check_help_defaults(command: tuple[str, ...], configs, gaincurate) -> None:
    """Every field of `configs` ((dataclass, fields that are no option) pairs) is an option of `command` whose
    `--help` shows the field's default."""
    result = gaincurate(*command, "--help", env={"COLUMNS": "400"})
    assert result.returncode == 0, result.stderr
    shown = _shown_defaults(result.stdout)
    checked = 0
    for cls, not_options in configs:
        for field in dataclasses.fields(cls):
            if field.name in not_options:
                continue
            assert _flag(field) in shown, f"{' '.join(command)}: {_flag(field)} missing from --help"
            assert shown[_flag(field)] == _expected(field), f"{' '.join(command)} {_flag(field)}"
            checked += 1
    assert checked == sum(len(dataclasses.fields(cls)) - len(skip) for cls, skip in configs)


@pytest.mark.parametrize("command", list(COMMANDS), ids=" ".join)
def test_every_default_that_help_shows_is_the_fields(command, gaincurate):
    _check_help_defaults(command, COMMANDS[command], gaincurate)


def test_the_score_argument_shows_its_fields_default(gaincurate):
    result = gaincurate("score", "--help", env={"COLUMNS": "400"})
    [line] = [line for line in result.stdout.splitlines() if re.match(r"│\s+dataset\s", line)]
    assert f"[default: {_expected(dataclasses.fields(ScoreConfig)[0])}]" in line


def _help_texts(path: Path):
    """Every `help=` keyword's literal text in a module (string pieces joined; an f-string's literal parts)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.keyword) and node.arg == "help":
            pieces = [part.value for part in ast.walk(node.value) if isinstance(part, ast.Constant)]
            yield node.lineno, "".join(piece for piece in pieces if isinstance(piece, str))


def test_no_help_string_types_a_default_by_hand():
    typed = []
    for path in sorted(CLI.glob("*.py")):
        for line, text in _help_texts(path):
            if "default" not in text.lower():
                continue
            typed.append(f"{path.name}:{line}: {text}")
    assert typed == []


# `difficulty predict|fit|evaluate` (imports here, below, so the list above stays as it was): each command's library
# config, and `--reward-max` from ScheduleConfig, the same reading of the same feedback lines.
DIFFICULTY = [("difficulty", "predict"), ("difficulty", "fit"), ("difficulty", "evaluate")]


def _difficulty_configs(command: tuple[str, ...]) -> list[tuple[type, set[str]]]:
    """Like COMMANDS: the dataclasses whose fields are the command's options, and their fields that are not."""
    from gaincurate.lab.difficulty.evaluate import EvaluateConfig
    from gaincurate.lab.difficulty.fit import FitConfig
    from gaincurate.lab.difficulty.jobs import PredictConfig
    from gaincurate.schedule.config import ScheduleConfig

    not_reward_max = {field.name for field in dataclasses.fields(ScheduleConfig)} - {"reward_max"}
    own = {
        "predict": (PredictConfig, set()),
        "fit": (FitConfig, {"learning_rate", "anchor"}),  # fixed by the method; settable from Python
        "evaluate": (EvaluateConfig, {"fit_dim", "fit_steps"}),  # the fitted method's adapter: FitConfig's defaults
    }
    return [own[command[-1]], (ScheduleConfig, not_reward_max)]


@pytest.mark.parametrize("command", DIFFICULTY, ids=" ".join)
def test_every_difficulty_default_that_help_shows_is_the_fields(command, gaincurate):
    _check_help_defaults(command, _difficulty_configs(command), gaincurate)


def test_the_attention_temperature_is_one_setting():
    """`--tau-attn` of predict, fit and evaluate: one declaration (`calibrate.attention_temperature`), one default;
    evaluate's fitted adapter takes `difficulty fit`'s defaults."""
    from gaincurate.cli.fields import field_named
    from gaincurate.lab.difficulty.evaluate import EvaluateConfig
    from gaincurate.lab.difficulty.fit import FitConfig
    from gaincurate.lab.difficulty.jobs import PredictConfig

    fields = [field_named(cls, name) for cls, name in ((PredictConfig, "tau_attn"), (FitConfig, "tau"))]
    fields.append(field_named(EvaluateConfig, "tau_attn"))
    assert {(field.default, field.metadata["help"], field.metadata["flags"]) for field in fields} == {
        (0.1, "Attention temperature on cosine similarity.", ("--tau-attn",))
    }
    assert (EvaluateConfig().fit_dim, EvaluateConfig().fit_steps) == (FitConfig().dim, FitConfig().steps)


def test_an_off_only_switch_is_false_when_given_and_not_given_otherwise():
    """`--no-prefix-cache` (a field that defaults to True with only its off flag) has a row of its own in --help, and
    leaves the field to `--config FILE` and its default unless it is typed."""
    import typer
    from typer.main import get_command

    from gaincurate.cli.fields import field_parameters, install
    from gaincurate.settings import setting

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Run:
        prefix_cache: bool = setting(True, "Reuse the prefix.", flags=("--no-prefix-cache",))

    seen = []
    app = typer.Typer()
    app.command()(install(lambda **values: seen.append(values), [], field_parameters(Run)))
    command = get_command(app)
    command.main([], standalone_mode=False)
    command.main(["--no-prefix-cache"], standalone_mode=False)
    assert seen == [{"prefix_cache": None}, {"prefix_cache": False}]
    assert [param.opts for param in command.params if param.name == "prefix_cache"] == [["--no-prefix-cache"]]
