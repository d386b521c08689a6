"""`gaincurate schedule status` as a table: each epoch's accuracy, its savings readout and the strategy's figures.

Everything strategy-specific comes from the run's data: how the strategy draws (`draws`, its own line), the
readout each history line holds (`gaincurate.schedule.readout`), and the figures its report hook gave about each
draw (`selection`), named in the words it and the run's filters declare (`figure_names`; else the key), and the
columns it declares (`About.columns`: gain's mu, ang, delta).
"""

from __future__ import annotations

from typing import Any

from gaincurate.cli.render import Stdout
from gaincurate.schedule.gate import AIMING, LEVEL_WORDS, PAUSED
from gaincurate.schedule.readout_words import control_words, drawn_paused, epoch_words, r_words, share_words
from gaincurate.schedule.run.status import estimates_all_equal

NARROW = 60  # columns: below this each table row is one line of `heading: value` pairs, which the terminal wraps
PAUSED_CELL = "uniform (paused)"  # the aimed-at cell of an epoch drawn uniformly while aiming was paused
READOUT_COLUMNS = (
    "groups",
    "aimed at",
    "measured",
    "zero variance",
    "informative: aimed / control",
    "uniform (model)",
    "r",
)


def draw_status(stdout: Stdout, report: dict[str, Any]) -> None:
    from rich.table import Table

    from gaincurate.schedule.figures import STATE, cell, figure_words
    from gaincurate.schedule.run.timings import seconds_table
    from gaincurate.schedule.strategies.registry import FILTERS, status_about

    about = status_about(report)
    columns, turned_on = about.columns, [f for key, f in FILTERS.items() if report["params"].get(key) is not None]
    names = {**about.figure_names, **{key: name for f in turned_on for key, name in f.figure_names.items()}}
    where = figure_words(columns, report["draw"], report["n_prompts"]) or f"strategy {report['params']['strategy']}"
    finished = report["finished"]
    stage = (
        f"finished after {report['epoch']} epoch{'s' * (report['epoch'] != 1)}"
        if finished
        else f"epoch {report['epoch']}"
        if report["epoch"] >= 0
        else "not started: no epoch drawn yet"
    )
    table = Table(title=f"{report['run']}: {stage}, {where}")
    drawn = "selection" in report or any("selection" in line for line in report["history"])
    for heading in ("epoch", *(column.heading for column in columns), *(["selected"] if drawn else [])):
        table.add_column(heading, justify="right")
    for line in report["history"]:
        values = {**line, STATE.key: "trained"}
        cells = [cell(column, values.get(column.key)) for column in columns]
        table.add_row(str(line["epoch"]), *cells, *([figures(line.get("selection"), names)] if drawn else []))
    if report["epoch"] >= 0:
        waiting = "trained, feedback archived" if report["trained"] else "waiting for training"
        waiting = "drawn, not trained: finished" if finished else waiting
        # The waiting epoch: the numbers that draw it, and what it waits for in the last column.
        cells = [cell(column, report["draw"].get(column.key)) if column.drawn else "-" for column in columns]
        cells[-1] = waiting
        table.add_row(str(report["epoch"]), *cells, *([figures(report.get("selection"), names)] if drawn else []))
    stdout.line(f"how {report['params']['strategy']} draws: {report['draws']}")
    if aim := aim_line(report):
        stdout.line(aim)
    print_table(stdout, table)
    if report["history"]:  # what each epoch cost, where the choice of refresh and trainer settings is made
        print_table(stdout, seconds_table(report["history"]))
    if any(line.get("readout") for line in report["history"]):
        print_table(stdout, readout_table(report["history"]))
        stdout.line(spent_line(report["history"]))
        last = [line for line in report["history"] if line.get("readout")][-1]
        stdout.line(f"latest, epoch {last['epoch']}: {epoch_words(last)}")
        if stale_line(report["history"]):
            stdout.line(stale_line(report["history"]))
    for warning in report.get("warnings", []):
        stdout.line(f"warning: {warning}")
    if finished:
        stdout.line(
            f"finished: the trainer ended after {report['epoch']} epochs; epoch {report['epoch']} is drawn but not "
            "trained. To train on, run the trainer again (`schedule run --epochs` more, or train() with more epochs)"
        )
    if "plot" in report:
        stdout.line(f"plot: {report['plot']}")


def print_table(stdout: Stdout, table: Any) -> None:
    """`table` as drawn where its longest words fit, else its title and a line per row: rich would cut a word to fit
    ("no estima…") or break it over lines ("measure/d"), and below NARROW columns cut cells to a letter."""
    console = stdout.console
    unbounded = console.options.update_width(10**4)  # a table measures itself within the width it is given
    if console.width >= NARROW and console.measure(table, options=unbounded).minimum <= console.width:
        return stdout.print(table)
    stdout.line(str(table.title))
    headings = [str(column.header) for column in table.columns]
    for cells in zip(*(column.cells for column in table.columns), strict=True):
        stdout.line("; ".join(f"{heading}: {cell}" for heading, cell in zip(headings, cells, strict=True)))


def readout_table(history: list[dict[str, Any]]) -> Any:
    """Each epoch's savings readout (docs/readout.md): aimed at, measured, zero variance, uniform's, r."""
    from rich.table import Table

    table = Table(
        title=f"savings readout (aimed at: the strategy's estimate of its picks, {PAUSED_CELL} where aiming was "
        "paused; control: its uniform slice; uniform (model): what its own estimates expect of a uniform draw, not a "
        "measurement; r: its estimates against the measured pass rates, over every prompt measured with an estimate)"
    )
    for column in ("epoch", *READOUT_COLUMNS):
        table.add_column(column, justify="right")
    for line in history:
        if line.get("readout"):
            epoch = f"{line['epoch']} (stale)" if line.get("stale") else str(line["epoch"])
            table.add_row(epoch, *readout_cells(line["readout"]))
    return table


def stale_line(history: list[dict[str, Any]]) -> str:
    """Which epochs the strategy could not re-measure with the newest model after, and why (`schedule run
    --allow-stale`, or `schedule step` without a checkpoint)."""
    stale = [line for line in history if line.get("stale")]
    if not stale:
        return ""
    epochs = ", ".join(str(line["epoch"]) for line in stale)
    return (
        f"stale: after epoch(s) {epochs} nothing was re-measured with the newest model ({stale[-1]['stale']}), so "
        "the next draw used the estimates from before"
    )


def readout_cells(readout: dict[str, Any] | None) -> list[str]:
    """The readout's columns: groups, estimated pass rate (share in band), measured, zero variance (sides), uniform, r
    (or how many measured prompts it waits for)."""
    if not readout:
        return ["-"] * len(READOUT_COLUMNS)
    aimed = _rate(readout.get("estimated_pass_rate"))
    if readout.get("estimated_in_band") is not None:
        aimed += f" ({readout['estimated_in_band']:.0%} in band)"
    if readout.get("estimated_pass_rate") is None:
        aimed = "no estimate"
    if drawn_paused(readout):
        aimed = PAUSED_CELL
    zero = "-"
    if readout.get("zero_variance") is not None:
        zero = f"{readout['zero_variance']:.0%} ({readout['all_wrong']:.0%} wrong, {readout['all_right']:.0%} right)"
    uniform = readout.get("uniform_zero_variance_estimate")
    arms = "-"
    if readout.get("control_groups"):
        arms = f"{share_words(readout.get('aimed_informative'))} / {share_words(readout.get('control_informative'))}"
    return [
        str(readout.get("groups", "-")),
        aimed,
        _rate(readout.get("measured_pass_rate")),
        zero,
        arms,
        "no estimate" if estimates_all_equal(readout) else "-" if uniform is None else f"~{uniform:.0%}",
        r_words(readout, cell=True),
    ]


def aim_line(report: dict[str, Any]) -> str:
    """Whether the run aims now, refreshes, or draws uniformly because the aim saved nothing against its control
    (docs/readout.md), and since which epoch; nothing for a run without a control, which never pauses."""
    readouts = [(line["epoch"], line["readout"]) for line in report["history"] if line.get("readout")]
    if not any("aim" in readout or readout.get("control_groups") for _, readout in readouts):
        return ""
    level = readouts[-1][1].get("aim", LEVEL_WORDS[AIMING])
    changed = [epoch for epoch, readout in readouts if readout.get("aim_change")]
    since = f" since epoch {changed[-1] + 1}" if changed and level != LEVEL_WORDS[AIMING] else ""
    if level == LEVEL_WORDS[AIMING]:
        never = "" if report["params"].get("pause", True) else " (--no-pause: it never pauses)"
        return f"aim now: aiming{never}"
    if level == LEVEL_WORDS[PAUSED]:
        return (
            f"aim now: paused{since}: epochs are drawn uniformly, nothing asked of the model, until the estimates "
            "pick informative prompts again"
        )
    return f"aim now: {level}{since}: aiming with what the strategy has, nothing asked of the model"


def spent_line(history: list[dict[str, Any]]) -> str:
    """The rollouts spent in groups with nonzero variance so far, and the verdict against the run's control."""
    lines = [line for line in history if line.get("readout", {}).get("nonzero_rollouts") is not None]
    if not lines:
        return ""
    last = lines[-1]["readout"]
    total = sum(line.get("rollouts") or 0 for line in history if line.get("readout"))
    return (
        f"rollouts in groups with nonzero reward variance so far: {last['nonzero_rollouts']} of {total}; "
        f"{control_words(last, epoch_arms=False, epoch=lines[-1].get('epoch'))}"
    )


def figures(info: dict[str, Any] | None, names: dict[str, str] | None = None) -> str:
    """A strategy's own figures about a draw, by the words it declares for them (`figure_names`), else their keys."""
    if not info:
        return "-"
    return ", ".join(f"{(names or {}).get(key, key.replace('_', ' '))} {_value(value)}" for key, value in info.items())


def _value(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return {True: "yes", False: "no"}.get(value, "-")
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, list):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    return str(value)


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
