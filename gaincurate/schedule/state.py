"""The scheduler's state: everything needed to draw the next epoch, and its JSON form.

The state is small and explicit: the latest emitted epoch, the ranking (gc_id at each position), the
current score at each position (refreshed by re-scoring), the positions of the latest epoch, and the
strategy's memory (gain: mu; dots: measured pass rates). With the config and the seed, it fixes every later
epoch, which is what makes a killed run resume exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True, kw_only=True)
class ScheduleState:
    """Where a schedule stands. `epoch` is the latest emitted epoch, -1 before the first."""

    epoch: int = -1
    ranking: np.ndarray  # int64 gc_id at each rank position
    scores: np.ndarray  # float64 current gc_score at each rank position; NaN where unscorable
    positions: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # epoch `epoch`
    memory: dict[str, Any] | None = None  # JSON-ready data the strategy keeps (gain: mu; dots: measured pass rates)

    def __post_init__(self) -> None:
        if len(self.ranking) != len(self.scores):
            raise ValueError(f"ranking has {len(self.ranking)} entries but scores has {len(self.scores)}")

    @property
    def subset_ids(self) -> np.ndarray:
        """gc_ids of the latest emitted epoch, in rank order."""
        return self.ranking[self.positions]

    def to_json(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "positions": [int(p) for p in self.positions],
            "ranking": [int(i) for i in self.ranking],
            # NaN is not JSON; unscorable rows are stored as null.
            "scores": [float(s) if math.isfinite(s) else None for s in self.scores],
            **({"memory": self.memory} if self.memory is not None else {}),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ScheduleState:
        return cls(
            epoch=int(data["epoch"]),
            positions=np.asarray(data["positions"], dtype=np.int64),
            ranking=np.asarray(data["ranking"], dtype=np.int64),
            scores=np.asarray([np.nan if s is None else s for s in data["scores"]], dtype=np.float64),
            memory=data.get("memory"),
        )
