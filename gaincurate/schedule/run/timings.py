"""An epoch's seconds where people decide, from a history line's `timings`: the trainer's, the refresh's (re-scoring
or the answer's likelihood from the newest model) and a fresh reference set's, as `schedule run`/`step` print them
after each epoch and `schedule status` shows them in a table of their own (`seconds_table`).

The refresh is the curriculum's own cost between epochs; beside the trainer's it says what the curriculum adds.
"""

from __future__ import annotations

from typing import Any

SECONDS_COLUMNS = ("epoch", "trainer s", "refresh s", "refresh / trainer", "reference set s")

TRAINER, REFRESH, REFERENCE = "train_s", "rescore_s", "reference_s"  # history's `timings` keys


def seconds_words(timings: dict[str, Any] | None) -> str:
    """`trainer T s, refresh R s (R/T x the trainer's)`; the trainer's only where gaincurate ran it."""
    timings = timings or {}
    trainer, refresh, reference = (timings.get(key) for key in (TRAINER, REFRESH, REFERENCE))
    parts = [] if trainer is None else [f"trainer {trainer:.1f} s"]
    if refresh is None:
        parts.append("no refresh")
    else:
        share = f" ({refresh / trainer:.2f}x the trainer's)" if trainer else ""
        parts.append(f"refresh {refresh:.1f} s{share}")
    if reference is not None:
        parts.append(f"reference set {reference:.1f} s")
    return ", ".join(parts)


def seconds_cell(timings: dict[str, Any] | None, key: str) -> str:
    """One of an epoch's seconds for a table cell; `-` where it was not timed (a step without a trainer, no refresh)."""
    value = (timings or {}).get(key)
    return "-" if value is None else f"{value:.1f}"


def seconds_table(history: list[dict[str, Any]]) -> Any:
    """Each epoch's seconds as columns (`-` where not timed): a refresh that costs more than the trainer shows here."""
    from rich.table import Table

    table = Table(title="seconds per epoch (refresh: measuring with the newest model)")
    for column in SECONDS_COLUMNS:
        table.add_column(column, justify="right")
    for line in history:
        timings = line.get("timings") or {}
        trainer, refresh = timings.get(TRAINER), timings.get(REFRESH)
        share = f"{refresh / trainer:.2f}x" if trainer and refresh is not None else "-"
        cells = [
            seconds_cell(timings, TRAINER),
            seconds_cell(timings, REFRESH),
            share,
            seconds_cell(timings, REFERENCE),
        ]
        table.add_row(str(line["epoch"]), *cells)
    return table
