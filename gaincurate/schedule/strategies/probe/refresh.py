"""Which prompts' answer likelihood `probe --likelihood` measures after an epoch whose groups the fit can weigh it by.

`ProbeStrategy.wants` decides first from the epoch's rewards: nothing, or the next draw's prompts, while the next fit
cannot weigh the likelihood. Otherwise this budget. Measuring every pool prompt after every epoch (a teacher-forced
forward each) cost 15-25% of a bench run's compute (docs/benchmarks.md, "A cheap likelihood refresh"). The next draw
aims near the target, so the prompts that matter most are the ones the fit puts there; the others only need their
value kept from going stale. So a budget of `refresh` x the epoch's size goes, in this order:

1. to the epoch's worth of prompts that the fit which drew the epoch puts nearest the target (the next draw's
   candidates; the fit with the epoch's own groups is made only after the refresh);
2. to the rest by the age of their last measurement, never measured first: a rotation over the pool, in a seeded
   order among equals, so no prompt is measured again before every other has had its turn and no part of the pool
   (the bench's pool lists its families one after another) is measured first every time.

Before any fit (asked ahead of epoch 0's feedback) all of the budget rotates. A budget of at least the pool measures
every prompt.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from gaincurate.schedule.state import ScheduleState

NEVER = -2  # the "epoch" of a prompt never measured: older than any measurement
ROTATION_SALT = 57  # the rotation's order is seeded by (the run's seed, this)


def rotation(prompts: int, seed: int) -> np.ndarray:
    """Each prompt's place in the rotation (a seeded permutation of 0..prompts-1): the order among equals."""
    return np.random.default_rng([seed, ROTATION_SALT]).permutation(prompts).astype(np.int64)


def budget(refresh: float, subset_size: int) -> int:
    """Prompts measured after each epoch: `refresh` times the epoch's size, rounded up."""
    return math.ceil(refresh * subset_size)


def chosen(probe: Any, state: ScheduleState, latest: dict[str, np.ndarray]) -> np.ndarray:
    """The gc_ids (ascending) whose likelihood `probe` (a `ProbeStrategy`) measures after epoch `state.epoch`, given
    its memory's newest measurements (`latest`: gc_ids, epochs): its budget, the epoch's worth nearest the target by
    the fit that drew the epoch, then the rest by age."""
    last = np.full(len(probe.gc_ids), NEVER, dtype=np.int64)
    last[np.searchsorted(probe.gc_ids, latest["gc_ids"])] = latest["epochs"]  # every measured gc_id is the pool's
    estimate = probe.estimate(state)
    rows = rows_to_measure(last, None if estimate is None else estimate.rates, target=probe.options.target,
                           count=budget(probe.options.refresh, probe.subset_size), near=probe.subset_size,
                           order=rotation(len(probe.gc_ids), probe.seed))  # fmt: skip
    return probe.gc_ids[rows]


def rows_to_measure(
    last: np.ndarray, rates: np.ndarray | None, *, target: float, count: int, near: int, order: np.ndarray
) -> np.ndarray:
    """The rows (ascending) to measure: up to `near` of `count` nearest `target` by `rates` (None: no fit yet), the
    rest oldest first by `last` (the epoch each row was last measured, `NEVER` if not), ties by `order`."""
    picked = np.zeros(len(last), dtype=bool)
    count = min(count, len(last))
    if rates is not None:
        picked[np.lexsort((order, np.abs(rates - target)))[: min(near, count)]] = True
    rest = np.flatnonzero(~picked)
    picked[rest[np.lexsort((order[rest], last[rest]))][: count - int(picked.sum())]] = True
    return np.flatnonzero(picked)


def unshaped(epoch: int, figures: dict[str, Any], equal_rewards: bool, measured: int) -> str:
    """What the run says of a draw the answer likelihood did not shape (its fit's two likelihood coefficients 0), and
    what is measured meanwhile: every fitted group has the same mean reward (`equal_rewards`: nothing is measured
    until they differ), none of them had its prompt's likelihood measured before the epoch that trained it (the
    prompts of this draw are measured, for the next fit), or the fit gave it no weight (`measured`: prompts measured
    so far)."""
    groups, carrying = figures["measured_groups"], figures["likelihood_groups"]
    if equal_rewards:
        why = (f"all {groups} rollout groups it fits have the same mean reward, so nothing relates the likelihood to "
               "the reward; none is measured until the rewards differ")  # fmt: skip
    elif carrying == 0:
        why = (f"none of the {groups} rollout groups it fits had its prompt's likelihood measured before that epoch "
               f"({measured} prompts measured so far); this draw's prompts are measured with the model that trains "
               "them, for the next fit")  # fmt: skip
    else:
        why = f"the fit gave it no weight (it fits {groups} rollout groups, {carrying} with a likelihood)"
    return f"the answer likelihood did not shape epoch {epoch}'s draw: {why}"
