"""A trainer's dataset rows for a run's epochs: the one home of the map gc_id -> row and of an epoch's rows.

TRL in process (`integrations.trl`), verl's sampler and verl's one launch (`integrations.verl`) each read the
gc_id of every row of their own dataset their own way, then ask the run object (`Run.row_map`, `Run.rows`), which
uses these two: `rows_by_gc_id` checks every row and scored prompt, `epoch_rows` orders an epoch's rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from gaincurate.errors import ConfigError
from gaincurate.schedule.order import EpochOrder


def rows_by_gc_id(
    ids: Sequence[Any], *, fix: str, expected: Iterable[int] | None = None, where: str = ""
) -> dict[int, int]:
    """gc_id -> row, from the gc_id of each row (None: the row has none). Refused in one line, ending with `fix`:
    a row without a gc_id (`where` says where it was looked for), and a gc_id in `expected` that no row holds."""
    if any(gc_id is None for gc_id in ids):
        raise ConfigError(f"some training rows carry no gc_id{where}; {fix}")
    row_of = {int(gc_id): row for row, gc_id in enumerate(ids)}
    missing = [int(gc_id) for gc_id in (expected if expected is not None else ()) if int(gc_id) not in row_of]
    if missing:
        raise ConfigError(
            f"the training dataset lacks {len(missing)} scored prompt(s) (gc_id {missing[0]}, ...); {fix}"
        )
    return row_of


def epoch_rows(plan: Any, row_of: Mapping[int, int], *, seed: int, shuffle: bool = False) -> list[int]:
    """The rows of `plan`'s prompts (an `EpochPlan`: its epoch and gc_ids in rank order) in training order: rank
    order, or with `shuffle` a permutation seeded by the schedule's seed and the epoch."""
    rows = [row_of[int(gc_id)] for gc_id in plan.gc_ids]
    return EpochOrder(seed, shuffle=shuffle).arrange(plan.epoch, rows)
