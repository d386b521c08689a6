"""A picture of a run: mu (as a fraction of the ranking) and accuracy per epoch.

`write_plot(run_dir, status)` writes `RUN/status.png` with matplotlib when it is installed (the
`plot` extra), and `RUN/status.txt`, a plain text chart, otherwise. Both show the same series: the
centre mu that drew each epoch, over N - 1, and that epoch's accuracy, both on [0, 1].
"""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path
from typing import Any

from gaincurate.fileio import atomic_write_bytes

CHART_ROWS = 10


def series(status: dict[str, Any]) -> tuple[list[int], list[float], list[float | None]]:
    """Epochs, mu / (N - 1), and accuracy (None for the epoch still waiting for feedback)."""
    scale = max(1, status["n_prompts"] - 1)
    epochs = [line["epoch"] for line in status["history"]]
    mus = [line["mu"] / scale for line in status["history"]]
    accuracies: list[float | None] = [line["accuracy"] for line in status["history"]]
    if status["epoch"] >= 0 and status["epoch"] not in epochs:
        epochs.append(status["epoch"])
        mus.append(status["mu"] / scale)
        accuracies.append(None)
    return epochs, mus, accuracies


def write_plot(run_dir: Path, status: dict[str, Any], *, png: bool | None = None) -> Path:
    """Write the chart; `png=None` picks PNG exactly when matplotlib can be imported."""
    if png is None:
        png = importlib.util.find_spec("matplotlib") is not None
    if png:
        path = Path(run_dir) / "status.png"
        atomic_write_bytes(path, _png(status))
    else:
        path = Path(run_dir) / "status.txt"
        atomic_write_bytes(path, text_chart(status).encode())
    return path


def _png(status: dict[str, Any]) -> bytes:
    # The object API, not pyplot: no global backend or figure state is touched.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    epochs, mus, accuracies = series(status)
    figure = Figure(figsize=(6, 3.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot(epochs, mus, marker="o", label="mu / (N - 1)")
    done = [(e, a) for e, a in zip(epochs, accuracies, strict=True) if a is not None]
    if done:
        axes.plot(*zip(*done, strict=True), marker="s", label="accuracy")
    axes.set_xlabel("epoch")
    axes.set_ylim(-0.02, 1.02)
    axes.set_title(f"{Path(status['run']).name}: {status['params']['strategy']}, N = {status['n_prompts']}")
    axes.legend(loc="best")
    axes.grid(alpha=0.3)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


def text_chart(status: dict[str, Any]) -> str:
    """Columns per epoch; `m` marks mu / (N - 1), `a` accuracy, `*` both in the same cell."""
    epochs, mus, accuracies = series(status)
    if not epochs:
        return "no epoch written yet\n"
    grid = [[" "] * len(epochs) for _ in range(CHART_ROWS + 1)]
    for column, (mu, accuracy) in enumerate(zip(mus, accuracies, strict=True)):
        grid[round(mu * CHART_ROWS)][column] = "m"
        if accuracy is not None:
            row = round(accuracy * CHART_ROWS)
            grid[row][column] = "*" if grid[row][column] == "m" else "a"
    lines = [
        f"{row / CHART_ROWS:4.1f} |{''.join(f' {cell} ' for cell in grid[row])}" for row in range(CHART_ROWS, -1, -1)
    ]
    lines.append("     +" + "---" * len(epochs))
    lines.append("epoch " + "".join(f"{e:>3d}"[-3:] for e in epochs))
    lines.append("m = mu / (N - 1), a = accuracy, * = both")
    return "\n".join(lines) + "\n"
