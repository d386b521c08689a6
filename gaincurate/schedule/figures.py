"""What a strategy declares about its numbers per epoch, so that status, the plot and the logs name none of them.

A strategy lists `Column`s (`About.columns`): each a number its history line keeps, with the heading and format
`schedule status` shows it under, the mark the plot draws it with, and the name a trainer's log gives it
(`curriculum/<logged>`). A column declared `drawn` is also a number of the draw: the strategy's memory keeps the
current one under the same key, so the waiting epoch's row, the status title and `draw_info` show it. The code that
reads these declarations (`gaincurate.cli.status`, `gaincurate.schedule.run.plot`, the TRL callback, the verl and
command loops) loops over them and names no strategy's key.

The default columns are the epoch's accuracy, its rollouts and its state (trained, or waiting); `STATE` is the
table's, not a history number: a trained epoch shows "trained", and the waiting epoch's row puts what it waits for
in the last column, whichever that is.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Column:
    """One number a strategy keeps per epoch: where its history line holds it, and how each reader shows it.

    `heading`, `format`: its status column and cell (`format(value, format)`; None shows as "-"). `logged`: its
    name under `curriculum/` in a trainer's log (None: not logged; None values log as NaN). `mark`: the letter
    the text plot draws it with (None: not plotted); a plotted number lies on [0, 1], or is a rank position
    (`rank`: shown "of N - 1" and plotted over N - 1). `drawn`: the number that draws an epoch, which the
    strategy's memory keeps under `key` for the waiting one. `top_level`: also at the top of
    `schedule status/next/run --json` (null for the strategies without it).
    """

    heading: str
    key: str
    format: str = ""
    logged: str | None = None
    mark: str | None = None
    rank: bool = False
    drawn: bool = False
    top_level: bool = False


ACCURACY = Column("acc", "accuracy", ".3f")
ROLLOUTS = Column("rollouts", "rollouts", "d")
STATE = Column("state", "state")  # the table's own: "trained", or what the waiting epoch waits for
DEFAULT_COLUMNS = (ACCURACY, ROLLOUTS, STATE)


def drawn_figures(columns: Iterable[Column], memory: dict[str, Any] | None) -> dict[str, Any]:
    """The numbers that draw the current epoch, as the strategy's memory keeps them (declared `drawn`)."""
    memory = memory or {}
    return {column.key: memory[column.key] for column in columns if column.drawn and column.key in memory}


def cell(column: Column, value: Any) -> str:
    """A status cell: the value in its declared format, "-" for none."""
    return "-" if value is None else format(value, column.format)


def figure_words(columns: Iterable[Column], values: dict[str, Any], n_prompts: int | None = None) -> str:
    """ "mu 0.0" (or "mu 0.0 of 7" given N for a rank position): every declared number in `values`, by heading."""
    words = []
    for column in columns:
        if column.key in values and values[column.key] is not None:
            of = f" of {n_prompts - 1}" if column.rank and n_prompts is not None else ""
            words.append(f"{column.heading} {cell(column, values[column.key])}{of}")
    return ", ".join(words)


def logged_figures(columns: Iterable[Column], record: dict[str, Any], prefix: str = "curriculum/") -> dict[str, float]:
    """The declared numbers of a history line for a trainer's logger, under `prefix` + their `logged` name."""
    return {
        f"{prefix}{column.logged}": math.nan if record.get(column.key) is None else float(record[column.key])
        for column in columns
        if column.logged is not None and column.key in record
    }


def plotted(column: Column, value: Any, n_prompts: int) -> float | None:
    """A declared number on the plot's [0, 1] scale (a rank position over N - 1); None where there is none."""
    if value is None:
        return None
    return float(value) / max(1, n_prompts - 1) if column.rank else float(value)


def plot_label(column: Column) -> str:
    return f"{column.heading} / (N - 1)" if column.rank else column.heading
