"""curves.png: held-out accuracy against rollouts and against seconds, a mean line and a seed band per strategy.

Rows: greedy accuracy, then the sampled pass rate. Columns: cumulative training rollouts, then wall-clock
seconds (everything the strategy costs; evaluation excluded). The line is the mean over seeds at each
evaluation point (x the seeds' mean too, for seconds), the band spans the seeds' lowest to highest value.
Needs matplotlib (the `plot` extra); without it no picture is written and `plot_curves` returns None.
"""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path
from typing import Any

import numpy as np

from gaincurate.fileio import atomic_write_bytes
from gaincurate.lab.benchmarks.curriculum.summary import METRICS, curves


def plot_curves(points: list[dict[str, Any]], path: Path, *, title: str = "") -> Path | None:
    if importlib.util.find_spec("matplotlib") is None:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_strategy: dict[str, list[dict[str, np.ndarray]]] = {}
    for (strategy, _seed), curve in curves(points).items():
        by_strategy.setdefault(strategy, []).append(curve)
    figure, axes = plt.subplots(2, 2, figsize=(11, 7.5), sharey="row")
    for row, (name, metric) in enumerate(METRICS.items()):
        for column, x_field in enumerate(("rollouts", "seconds")):
            axis = axes[row][column]
            for strategy, seeds in by_strategy.items():
                length = min(len(c[metric]) for c in seeds)
                x = np.mean([c[x_field][:length] for c in seeds], axis=0)
                y = np.array([c[metric][:length] for c in seeds])
                (line,) = axis.plot(x, y.mean(axis=0), label=f"{strategy} ({len(seeds)} seed{'s' * (len(seeds) > 1)})")
                axis.fill_between(x, y.min(axis=0), y.max(axis=0), color=line.get_color(), alpha=0.15, linewidth=0)
            axis.set_xlabel("rollouts (+ screening)" if x_field == "rollouts" else "seconds (all strategy costs)")
            axis.set_ylabel(f"held-out {name} accuracy")
            axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    figure.suptitle(f"{title}: mean over seeds, band = seed range".strip(": "))
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())
    return path
