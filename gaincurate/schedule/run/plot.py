"""A picture of a run: accuracy per epoch, its savings readout and the numbers its strategy declares plotted.

`save_plot(path, status)` writes the chart that `gaincurate schedule status --plot PATH` asks for: a PNG
with matplotlib (the `plot` extra) when PATH ends in .png, a plain text chart otherwise. `write_plot(run_dir,
status)` writes `RUN/status.png` or `RUN/status.txt`, whichever this machine can draw.

The series are on [0, 1]: each epoch's accuracy and every number the run's strategy declares with a plot `mark`
(`About.columns`; gain and length: `m`, the centre mu that drew the epoch, over N - 1, a rank position).
Beside them, the savings readout of every
strategy (`gaincurate.schedule.readout`, read from each history line): the share of rollout groups with zero
reward variance beside the strategy's model of uniform's, the informative share of the aimed draw against its uniform
control where it keeps one, the estimated against the measured pass rate of the picks, and r, the estimates'
correlation with the measured pass rates (on [-1, 1]: the readout panel reaches below 0 when r does). Where the
status table shows no figure (`UNSHOWN`) the charts draw none, and they mark each epoch drawn while aiming was paused.
"""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path
from typing import Any

from gaincurate.errors import ConfigError
from gaincurate.fileio import atomic_write_bytes
from gaincurate.schedule.figures import Column, plot_label, plotted
from gaincurate.schedule.readout_words import drawn_paused
from gaincurate.schedule.run.status import estimates_all_equal
from gaincurate.schedule.strategies.registry import status_about

CHART_ROWS = 10


def strategy_series(status: dict[str, Any]) -> list[tuple[Column, list[float | None]]]:
    """Each number the run's strategy declares plotted, per epoch of `series` (the waiting one: the number that
    draws it, for a number declared `drawn`), on [0, 1]."""
    columns = status_about(status).columns
    n_prompts, waiting = status["n_prompts"], status["epoch"] >= 0 and status["epoch"] not in _epochs(status)
    found = []
    for column in (column for column in columns if column.mark is not None):
        values = [plotted(column, line.get(column.key), n_prompts) for line in status["history"]]
        if waiting:
            values.append(plotted(column, status["draw"].get(column.key), n_prompts) if column.drawn else None)
        found.append((column, values))
    return found


def series(status: dict[str, Any]) -> tuple[list[int], list[float | None]]:
    """Epochs and accuracy (None while waiting)."""
    epochs = _epochs(status)
    accuracies: list[float | None] = [line["accuracy"] for line in status["history"]]
    if status["epoch"] >= 0 and status["epoch"] not in epochs:
        epochs.append(status["epoch"])
        accuracies.append(None)
    return epochs, accuracies


def _epochs(status: dict[str, Any]) -> list[int]:
    return [line["epoch"] for line in status["history"]]


READOUT_SERIES = (  # (readout key, label, style) of the PNG's readout panel
    ("zero_variance", "zero-variance groups", "o-"),
    ("uniform_zero_variance_estimate", "uniform's zero-variance by the strategy's model", "o--"),
    ("aimed_informative", "informative groups, aimed draw", "x-"),
    ("control_informative", "informative groups, uniform slice (the control)", "x--"),
    ("estimated_pass_rate", "estimated pass rate of the picks", "^-"),
    ("measured_pass_rate", "measured pass rate of the picks", "v-"),
    ("correlation", "r: estimate vs measured, so far", "s:"),
)


# Figures the status table shows no number for, and when: the same checks decide "no estimate" and "uniform (paused)".
UNSHOWN = {"uniform_zero_variance_estimate": estimates_all_equal, "estimated_pass_rate": drawn_paused}


def readout_series(status: dict[str, Any], key: str) -> list[float | None]:
    """One readout figure per epoch of `series` (None where an epoch has none, the table shows none, or it waits for
    its feedback)."""
    readouts = [line.get("readout") or {} for line in status["history"]]
    values = [None if key in UNSHOWN and UNSHOWN[key](readout) else readout.get(key) for readout in readouts]
    return values + ([None] if status["epoch"] >= 0 and status["epoch"] not in _epochs(status) else [])


def paused_epochs(status: dict[str, Any]) -> list[int]:
    """The epochs drawn uniformly while aiming was paused (the table's "uniform (paused)")."""
    return [line["epoch"] for line in status["history"] if drawn_paused(line.get("readout") or {})]


def save_plot(path: Path, status: dict[str, Any]) -> Path:
    """Write the chart to `path`: PNG when it ends in .png (needs matplotlib), a text chart otherwise."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        atomic_write_bytes(path, text_chart(status).encode())
    elif importlib.util.find_spec("matplotlib") is None:
        raise ConfigError(f"--plot {path} needs matplotlib: pip install 'gaincurate[plot]', or name a .txt file")
    else:
        buffer = io.BytesIO()
        figure(status).savefig(buffer, format="png", bbox_inches="tight")
        atomic_write_bytes(path, buffer.getvalue())
    return path


def write_plot(run_dir: Path, status: dict[str, Any], *, png: bool | None = None) -> Path:
    """Write `RUN/status.png`, or `RUN/status.txt`; `png=None` picks PNG exactly when matplotlib can be imported."""
    if png is None:
        png = importlib.util.find_spec("matplotlib") is not None
    return save_plot(Path(run_dir) / ("status.png" if png else "status.txt"), status)


def figure(status: dict[str, Any]) -> Any:
    """The PNG's matplotlib figure: the strategy's numbers and accuracy, then the savings readout."""
    # The object API, not pyplot: no global backend or figure state is touched.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    epochs, accuracies = series(status)
    drawn = Figure(figsize=(11, 3.8) if epochs else (8, 1), dpi=100)
    FigureCanvasAgg(drawn)
    if not epochs:  # two empty panels would say nothing
        drawn.text(0.5, 0.5, not_started(status), ha="center", va="center")
        return drawn
    axes, readout = drawn.subplots(1, 2)
    lowest = 0.0
    for n, epoch in enumerate(paused_epochs(status)):
        label = None if n else "drawn uniformly: aiming paused"
        readout.axvspan(epoch - 0.5, epoch + 0.5, color="0.85", zorder=0, label=label)
    for key, label, style in READOUT_SERIES:
        points = [(e, v) for e, v in zip(epochs, readout_series(status, key), strict=True) if v is not None]
        if points:
            readout.plot(*zip(*points, strict=True), style, label=label)
            lowest = min(lowest, *(v for _, v in points))
    readout.set_xlabel("epoch")
    # The shares lie in [0, 1] and r in [-1, 1]: the panel reaches below 0 as far as r does, since a negative r is
    # what its warning is about.
    readout.set_ylim(lowest - 0.02, 1.02)
    readout.set_title("savings readout")
    if readout.get_legend_handles_labels()[0]:
        readout.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize="small")
    readout.grid(alpha=0.3)
    for column, values in strategy_series(status):
        points = [(e, v) for e, v in zip(epochs, values, strict=True) if v is not None]
        if points:
            axes.plot(*zip(*points, strict=True), marker="o", label=plot_label(column))
    done = [(e, a) for e, a in zip(epochs, accuracies, strict=True) if a is not None]
    if done:
        axes.plot(*zip(*done, strict=True), marker="s", label="accuracy")
    axes.set_xlabel("epoch")
    axes.set_ylim(-0.02, 1.02)
    axes.set_title(f"{Path(status['run']).name}: {status['params']['strategy']}, N = {status['n_prompts']}")
    if axes.get_legend_handles_labels()[0]:
        axes.legend(loc="best")
    axes.grid(alpha=0.3)
    return drawn


def not_started(status: dict[str, Any]) -> str:
    return f"no epoch written yet: run `gaincurate schedule step --run {status['run']}`"


def text_chart(status: dict[str, Any]) -> str:
    """Columns per epoch; the strategy's declared marks first (gain: `m`, mu / (N - 1)), `a` accuracy, `z` the
    share of zero-variance groups, `u` the strategy's model of uniform's, `*` several in one cell; a `p` below the
    axis under each epoch drawn while aiming was paused."""
    epochs, accuracies = series(status)
    declared = strategy_series(status)
    if not epochs:
        return not_started(status) + "\n"
    grid = [[" "] * len(epochs) for _ in range(CHART_ROWS + 1)]
    marks = [(column.mark, values) for column, values in declared] + [("a", accuracies)]
    marks += [("z", readout_series(status, "zero_variance"))]
    marks += [("u", readout_series(status, "uniform_zero_variance_estimate"))]
    for mark, values in marks:
        for column, value in enumerate(values):
            if value is not None:
                row = round(value * CHART_ROWS)
                grid[row][column] = mark if grid[row][column] == " " else "*"
    lines = [
        f"{row / CHART_ROWS:4.1f} |{''.join(f' {cell} ' for cell in grid[row])}" for row in range(CHART_ROWS, -1, -1)
    ]
    lines.append("     +" + "---" * len(epochs))
    paused = paused_epochs(status)
    if paused:
        lines.append("paused" + "".join(" p " if epoch in paused else "   " for epoch in epochs))
    labels = [" "] * (3 * len(epochs))
    every = 1 if max(epochs) < 100 else 5  # labels of 3 digits would fill their 3-character columns and touch
    for column, epoch in enumerate(epochs):
        if epoch % every == 0:
            end = 3 * column + 3
            start = max(0, end - len(str(epoch)))
            labels[start:end] = str(epoch)[len(str(epoch)) - (end - start) :]
    lines.append("epoch " + "".join(labels))
    legend = "".join(f"{column.mark} = {plot_label(column)}, " for column, _ in declared)
    legend += "a = accuracy, z = zero-variance groups"
    legend += ", u = uniform's (est.), * = several" + (", p = drawn uniformly: aiming paused" if paused else "")
    lines.append(f"{legend} ({status['params']['strategy']})")
    return "\n".join(lines) + "\n"
