"""The scheduler's state: everything needed to draw the next epoch, and its JSON form.

The state is small and explicit: the latest emitted epoch, the ranking (gc_id at each position), the
current score at each position (refreshed by re-scoring), the positions of the latest epoch, and the
strategy's memory (gain: mu; dots: measured pass rates). With the config and the seed, it fixes every later
epoch, which is what makes a killed run resume exactly.

Two typed records beside the memory serve the savings readout (`gaincurate.schedule.readout`) and never change a
draw: `selection`, how the latest epoch was drawn (the strategy's figures and its estimates of the picked prompts,
kept until that epoch's history line is written), and `tally`, what the readout sums over the epochs so far.
State files written before them kept the figures in the memory under "selection"; they load into the record.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Drawn:
    """How an epoch was drawn, recorded at the draw (`gaincurate.schedule.readout.drawn` builds it).

    `figures` are the strategy's own numbers (skips, posteriors: the history line's `selection`); the rest is
    its pass-rate estimate as it stood at the draw: what it is (`source`, or why there is none), the band it
    aims at, the estimate of each drawn prompt in rank order (None: no estimate), and what a uniform draw over the
    pool would be expected to give, from the same estimates: the share of zero-variance groups for groups of
    1, 2, ... rollouts, the pool's mean and its spread (max - min).
    """

    figures: dict[str, Any] = field(default_factory=dict)
    source: str | None = None
    band: tuple[float, float] | None = None
    picked: tuple[float | None, ...] | None = None
    uniform_zero_variance: tuple[float | None, ...] | None = None
    pool_mean: float | None = None
    pool_spread: float | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"figures": self.figures, "source": self.source}
        if self.band is not None:
            data["band"] = list(self.band)
        if self.picked is not None:
            data |= {
                "picked": list(self.picked),
                "uniform_zero_variance": list(self.uniform_zero_variance or ()),
                "pool_mean": self.pool_mean,
                "pool_spread": self.pool_spread,
            }
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Drawn:
        band = data.get("band")
        picked, uniform = data.get("picked"), data.get("uniform_zero_variance")
        return cls(
            figures=dict(data.get("figures") or {}),
            source=data.get("source"),
            band=None if band is None else (float(band[0]), float(band[1])),
            picked=None if picked is None else tuple(picked),
            uniform_zero_variance=None if uniform is None else tuple(uniform),
            pool_mean=data.get("pool_mean"),
            pool_spread=data.get("pool_spread"),
        )


@dataclass(frozen=True)
class Tally:
    """What the readout sums over every epoch with feedback so far: the (estimate at the draw, measured pass rate)
    pairs' count and sums (x, y, xx, yy, xy: the correlation's), the rollouts spent in groups with nonzero reward
    variance, the same over the epochs that had uniform's estimate beside uniform's estimate of them, and the latest
    epoch's zero-variance share (the warnings')."""

    pairs: int = 0
    sums: tuple[float, float, float, float, float] = (0.0, 0.0, 0.0, 0.0, 0.0)
    nonzero_rollouts: int = 0
    compared_nonzero_rollouts: int = 0
    uniform_nonzero_rollouts: float = 0.0
    last_zero_variance: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "pairs": self.pairs,
            "sums": list(self.sums),
            "nonzero_rollouts": self.nonzero_rollouts,
            "compared_nonzero_rollouts": self.compared_nonzero_rollouts,
            "uniform_nonzero_rollouts": self.uniform_nonzero_rollouts,
            "last_zero_variance": self.last_zero_variance,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Tally:
        sums = tuple(float(value) for value in data.get("sums", (0.0,) * 5))
        return cls(
            pairs=int(data.get("pairs", 0)),
            sums=sums,  # type: ignore[arg-type]
            nonzero_rollouts=int(data.get("nonzero_rollouts", 0)),
            compared_nonzero_rollouts=int(data.get("compared_nonzero_rollouts", 0)),
            uniform_nonzero_rollouts=float(data.get("uniform_nonzero_rollouts", 0.0)),
            last_zero_variance=data.get("last_zero_variance"),
        )


@dataclass(frozen=True, kw_only=True)
class ScheduleState:
    """Where a schedule stands. `epoch` is the latest emitted epoch, -1 before the first."""

    epoch: int = -1
    ranking: np.ndarray  # int64 gc_id at each rank position
    scores: np.ndarray  # float64 current gc_score at each rank position; NaN where unscorable
    positions: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # epoch `epoch`
    memory: dict[str, Any] | None = None  # JSON-ready data the strategy keeps (gain: mu; dots: measured pass rates)
    selection: Drawn | None = None  # how epoch `epoch` was drawn (the readout's, never the strategy's)
    tally: Tally | None = None  # the readout's sums over the epochs with feedback so far

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
            **({"selection": self.selection.to_json()} if self.selection is not None else {}),
            **({"tally": self.tally.to_json()} if self.tally is not None else {}),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ScheduleState:
        memory, selection = data.get("memory"), data.get("selection")
        if memory is not None and "selection" in memory:  # written before the record had its own field
            memory = {key: value for key, value in memory.items() if key != "selection"} or None  # it held only that
            selection = {"figures": data["memory"]["selection"]}
        return cls(
            epoch=int(data["epoch"]),
            positions=np.asarray(data["positions"], dtype=np.int64),
            ranking=np.asarray(data["ranking"], dtype=np.int64),
            scores=np.asarray([np.nan if s is None else s for s in data["scores"]], dtype=np.float64),
            memory=memory,
            selection=None if selection is None else Drawn.from_json(selection),
            tally=None if data.get("tally") is None else Tally.from_json(data["tally"]),
        )
