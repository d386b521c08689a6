"""A picture of a run: accuracy per epoch and, for the strategies that draw around it, mu.

`save_plot(path, status)` writes the chart that `gaincurate schedule status --plot PATH` asks for: a PNG
with matplotlib (the `plot` extra) when PATH ends in .png, a plain text chart otherwise. `write_plot(run_dir,
status)` writes `RUN/status.png` or `RUN/status.txt`, whichever this machine can draw.

The series are on [0, 1]: each epoch's accuracy and, for the strategies that keep it (gain, length: the
status has "mu"), the centre mu that drew the epoch, over N - 1.
"""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path
from typing import Any

from gaincurate.errors import ConfigError
from gaincurate.fileio import atomic_write_bytes

CHART_ROWS = 10


def uses_mu(status: dict[str, Any]) -> bool:
    """Whether the run's strategy draws its epochs around mu (only those keep it)."""
    return "mu" in status


def series(status: dict[str, Any]) -> tuple[list[int], list[float] | None, list[float | None]]:
    """Epochs, mu / (N - 1) (None when the strategy does not use mu), and accuracy (None while waiting)."""
    scale = max(1, status["n_prompts"] - 1)
    epochs = [line["epoch"] for line in status["history"]]
    mus = [line.get("mu", 0.0) / scale for line in status["history"]]
    accuracies: list[float | None] = [line["accuracy"] for line in status["history"]]
    if status["epoch"] >= 0 and status["epoch"] not in epochs:
        epochs.append(status["epoch"])
        mus.append(status.get("mu", 0.0) / scale)
        accuracies.append(None)
    return epochs, (mus if uses_mu(status) else None), accuracies


def save_plot(path: Path, status: dict[str, Any]) -> Path:
    """Write the chart to `path`: PNG when it ends in .png (needs matplotlib), a text chart otherwise."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        atomic_write_bytes(path, text_chart(status).encode())
    elif importlib.util.find_spec("matplotlib") is None:
        raise ConfigError(f"--plot {path} needs matplotlib: pip install 'gaincurate[plot]', or name a .txt file")
    else:
        atomic_write_bytes(path, _png(status))
    return path


def write_plot(run_dir: Path, status: dict[str, Any], *, png: bool | None = None) -> Path:
    """Write `RUN/status.png`, or `RUN/status.txt`; `png=None` picks PNG exactly when matplotlib can be imported."""
    if png is None:
        png = importlib.util.find_spec("matplotlib") is not None
    return save_plot(Path(run_dir) / ("status.png" if png else "status.txt"), status)


def _png(status: dict[str, Any]) -> bytes:
    # The object API, not pyplot: no global backend or figure state is touched.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    epochs, mus, accuracies = series(status)
    figure = Figure(figsize=(6, 3.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    if mus is not None:
        axes.plot(epochs, mus, marker="o", label="mu / (N - 1)")
    done = [(e, a) for e, a in zip(epochs, accuracies, strict=True) if a is not None]
    if done:
        axes.plot(*zip(*done, strict=True), marker="s", label="accuracy")
    axes.set_xlabel("epoch")
    axes.set_ylim(-0.02, 1.02)
    axes.set_title(f"{Path(status['run']).name}: {status['params']['strategy']}, N = {status['n_prompts']}")
    if axes.get_legend_handles_labels()[0]:
        axes.legend(loc="best")
    axes.grid(alpha=0.3)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


def text_chart(status: dict[str, Any]) -> str:
    """Columns per epoch; `m` marks mu / (N - 1) (Gaussian strategies only), `a` accuracy, `*` both in one cell."""
    epochs, mus, accuracies = series(status)
    if not epochs:
        return "no epoch written yet\n"
    grid = [[" "] * len(epochs) for _ in range(CHART_ROWS + 1)]
    for column, accuracy in enumerate(accuracies):
        if mus is not None:
            grid[round(mus[column] * CHART_ROWS)][column] = "m"
        if accuracy is not None:
            row = round(accuracy * CHART_ROWS)
            grid[row][column] = "*" if grid[row][column] == "m" else "a"
    lines = [
        f"{row / CHART_ROWS:4.1f} |{''.join(f' {cell} ' for cell in grid[row])}" for row in range(CHART_ROWS, -1, -1)
    ]
    lines.append("     +" + "---" * len(epochs))
    lines.append("epoch " + "".join(f"{e:>3d}"[-3:] for e in epochs))
    legend = "m = mu / (N - 1), a = accuracy, * = both" if mus is not None else "a = accuracy"
    lines.append(f"{legend} ({status['params']['strategy']})")
    return "\n".join(lines) + "\n"
