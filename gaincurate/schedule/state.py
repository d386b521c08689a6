"""The scheduler's state: everything needed to draw the next epoch, and its JSON form.

The state is small and explicit: the latest emitted epoch, the ranking (gc_id at each position), the
current score at each position (refreshed by re-scoring), the positions of the latest epoch, and the
strategy's memory (gain: mu; dots: measured pass rates). With the config and the seed, it fixes every later
epoch, which is what makes a killed run resume exactly.

Two typed records beside the memory serve the savings readout (`gaincurate.schedule.readout`) and never change a
draw: `selection`, how the latest epoch was drawn (the strategy's figures and its estimates of the picked prompts,
kept until that epoch's history line is written), and `tally`, what the readout sums over the epochs so far.
State files written before them kept the figures in the memory under "selection"; they load into the record.

A pool of more than LISTED_PROMPTS prompts is not listed in state.json: the ranking, when it is dataset order, is
kept as its first gc_id and count, and the scores as those that differ from the scores directory's (re-scored ones),
so the file grows with what the run measured, not with the pool (36 MB at a million prompts, rewritten every step,
before). The `Scheduler`, which holds the prompt set, fills the scores back in (`resolved`). Files of either form load.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from gaincurate.schedule.control import Arm
from gaincurate.schedule.gate import Gate


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
    control: tuple[int, ...] | None = None  # gc_ids of the uniform slice drawn from the whole pool (None: no control)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"figures": self.figures, "source": self.source}
        if self.band is not None:
            data["band"] = list(self.band)
        if self.control is not None:
            data["control"] = list(self.control)
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
        picked, uniform, control = data.get("picked"), data.get("uniform_zero_variance"), data.get("control")
        return cls(
            figures=dict(data.get("figures") or {}),
            source=data.get("source"),
            band=None if band is None else (float(band[0]), float(band[1])),
            picked=None if picked is None else tuple(picked),
            uniform_zero_variance=None if uniform is None else tuple(uniform),
            pool_mean=data.get("pool_mean"),
            pool_spread=data.get("pool_spread"),
            control=None if control is None else tuple(int(i) for i in control),
        )


@dataclass(frozen=True)
class Tally:
    """What the readout sums over every epoch with feedback so far: the (estimate at the draw, measured pass rate)
    pairs' count and sums (x, y, xx, yy, xy: the correlation's), the rollouts spent in groups with nonzero reward
    variance, the aimed arm and the control over the epochs that had both (`gaincurate.schedule.control`), and the
    latest epoch's zero-variance share (the warnings')."""

    pairs: int = 0
    sums: tuple[float, float, float, float, float] = (0.0, 0.0, 0.0, 0.0, 0.0)
    nonzero_rollouts: int = 0
    aimed: Arm = Arm()
    control: Arm = Arm()
    looks: int = 0  # epochs that compared both arms so far: its interval widens with them (`control.look_z`)
    last_zero_variance: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "pairs": self.pairs,
            "sums": list(self.sums),
            "nonzero_rollouts": self.nonzero_rollouts,
            "aimed": self.aimed.to_json(),
            "control": self.control.to_json(),
            "looks": self.looks,
            "last_zero_variance": self.last_zero_variance,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Tally:
        sums = tuple(float(value) for value in data.get("sums", (0.0,) * 5))
        return cls(
            pairs=int(data.get("pairs", 0)),
            sums=sums,  # type: ignore[arg-type]
            nonzero_rollouts=int(data.get("nonzero_rollouts", 0)),
            aimed=Arm.from_json(data.get("aimed")),
            control=Arm.from_json(data.get("control")),
            looks=int(data.get("looks", 0)),
            last_zero_variance=data.get("last_zero_variance"),
        )


LISTED_PROMPTS = 4096  # state.json lists the ranking and scores of a pool this size or smaller (readable, as always)


@dataclass(frozen=True, kw_only=True)
class ScheduleState:
    """Where a schedule stands. `epoch` is the latest emitted epoch, -1 before the first."""

    epoch: int = -1
    ranking: np.ndarray  # int64 gc_id at each rank position
    # float64 current gc_score at each rank position; NaN where unscorable. None: loaded from a file that keeps only
    # the re-scored ones (`changed`), until `resolved` with the scores directory's.
    scores: np.ndarray | None
    positions: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # epoch `epoch`
    memory: dict[str, Any] | None = None  # JSON-ready data the strategy keeps (gain: mu; dots: measured pass rates)
    selection: Drawn | None = None  # how epoch `epoch` was drawn (the readout's, never the strategy's)
    tally: Tally | None = None  # the readout's sums over the epochs with feedback so far
    gate: Gate | None = None  # whether aiming is paused, and the evidence since it last changed (`schedule.gate`)
    # The scores directory's (gc_ids ascending, gc_score), against which state.json keeps only what changed.
    pool_scores: tuple[np.ndarray, np.ndarray] | None = field(default=None, compare=False, repr=False)
    changed: dict[str, Any] | None = field(default=None, compare=False, repr=False)  # as loaded, scores None

    def __post_init__(self) -> None:
        if self.scores is not None and len(self.ranking) != len(self.scores):
            raise ValueError(f"ranking has {len(self.ranking)} entries but scores has {len(self.scores)}")

    def resolved(self, gc_ids: np.ndarray, scores: np.ndarray) -> ScheduleState:
        """This state over the scores directory's gc_ids (ascending) and scores: its scores filled back in where
        the file kept only the changed ones, and kept only as changes when it is written again."""
        current = self.scores
        if current is None:
            current = scores[np.searchsorted(gc_ids, self.ranking)]
            changes = self.changed or {"positions": [], "values": []}
            positions = np.asarray(changes["positions"], dtype=np.int64)
            current[positions] = [np.nan if value is None else value for value in changes["values"]]
        return replace(self, scores=current, pool_scores=(gc_ids, scores), changed=None)

    @property
    def subset_ids(self) -> np.ndarray:
        """gc_ids of the latest emitted epoch, in rank order."""
        return self.ranking[self.positions]

    def to_json(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "positions": [int(p) for p in self.positions],
            "ranking": _ranking_json(self.ranking),
            "scores": self._scores_json(),
            **({"memory": self.memory} if self.memory is not None else {}),
            **({"selection": self.selection.to_json()} if self.selection is not None else {}),
            **({"tally": self.tally.to_json()} if self.tally is not None else {}),
            **({"gate": self.gate.to_json()} if self.gate is not None else {}),
        }

    def _scores_json(self) -> list[float | None] | dict[str, Any]:
        """Every score (NaN as null: not JSON), or, for a pool over LISTED_PROMPTS, those that differ from the
        scores directory's, bit for bit."""
        if self.scores is None:
            return self.changed or {"positions": [], "values": []}
        if len(self.scores) <= LISTED_PROMPTS or self.pool_scores is None:
            return _floats(self.scores)
        gc_ids, pool = self.pool_scores
        stored = pool[np.searchsorted(gc_ids, self.ranking)]
        same = (stored.view(np.int64) == self.scores.view(np.int64)) | (np.isnan(stored) & np.isnan(self.scores))
        positions = np.flatnonzero(~same)
        return {"positions": [int(p) for p in positions], "values": _floats(self.scores[positions])}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ScheduleState:
        memory, selection, scores = data.get("memory"), data.get("selection"), data["scores"]
        if memory is not None and "selection" in memory:  # written before the record had its own field
            memory = {key: value for key, value in memory.items() if key != "selection"} or None  # it held only that
            selection = {"figures": data["memory"]["selection"]}
        return cls(
            epoch=int(data["epoch"]),
            positions=np.asarray(data["positions"], dtype=np.int64),
            ranking=_ranking_from_json(data["ranking"]),
            scores=None if isinstance(scores, dict) else np.asarray(_nans(scores), dtype=np.float64),
            changed=scores if isinstance(scores, dict) else None,
            memory=memory,
            selection=None if selection is None else Drawn.from_json(selection),
            tally=None if data.get("tally") is None else Tally.from_json(data["tally"]),
            gate=None if data.get("gate") is None else Gate.from_json(data["gate"]),
        )


def _floats(values: np.ndarray) -> list[float | None]:
    return [float(s) if math.isfinite(s) else None for s in values.tolist()]


def _nans(values: list[float | None]) -> list[float]:
    return [np.nan if s is None else s for s in values]


def _ranking_json(ranking: np.ndarray) -> list[int] | dict[str, int]:
    """The gc_id at each rank position; a large pool in dataset order (gc_ids first, first + 1, ...) as two numbers."""
    if len(ranking) > LISTED_PROMPTS and np.array_equal(ranking, np.arange(ranking[0], ranking[0] + len(ranking))):
        return {"first": int(ranking[0]), "count": len(ranking)}
    return [int(i) for i in ranking.tolist()]


def _ranking_from_json(data: list[int] | dict[str, int]) -> np.ndarray:
    if isinstance(data, dict):
        return np.arange(int(data["first"]), int(data["first"]) + int(data["count"]), dtype=np.int64)
    return np.asarray(data, dtype=np.int64)
