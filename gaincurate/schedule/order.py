"""The order a trainer walks one epoch's prompts in: the scheduler's rank order, or a seeded shuffle.

The TRL and verl adapters both hand out an epoch's rows through `EpochOrder`, so the same schedule seed
gives the same training order in either trainer, and a resumed process reproduces it exactly:

    rows = EpochOrder(params.seed, shuffle=True).arrange(plan.epoch, rows)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

T = TypeVar("T")

# A stream of its own in the seed sequence, apart from the scheduler's draws seeded by (seed, epoch).
SHUFFLE_STREAM = 1


@dataclass(frozen=True)
class EpochOrder:
    """Rank order (`shuffle=False`), or a permutation seeded by the schedule's seed and the epoch."""

    seed: int
    shuffle: bool = False

    def arrange(self, epoch: int, rows: Sequence[T]) -> list[T]:
        """`rows` (one epoch's, in rank order) in training order."""
        if not self.shuffle:
            return list(rows)
        order = np.random.default_rng([self.seed, epoch, SHUFFLE_STREAM]).permutation(len(rows))
        return [rows[i] for i in order]
