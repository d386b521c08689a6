"""The probe's memory (`ScheduleState.memory`, lists, so a resumed run reads back what it wrote) as arrays."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gaincurate.numerics import recorded


class Measured:
    """The memory as arrays: every trained group (gc_id, epoch, reward sum, rollouts, the answer's log-probability
    when drawn) and the newest log-probability of each measured prompt (gc_id, value, epoch)."""

    GROUPS = ("gc_ids", "epochs", "sums", "counts", "logps")
    LATEST = ("gc_ids", "values", "epochs")

    def __init__(self, memory: dict[str, Any] | None) -> None:
        memory = memory or {}
        groups, latest = memory.get("groups", {}), memory.get("likelihood", {})
        self.groups = {key: _array(groups.get(key, []), key) for key in self.GROUPS}
        self.latest = {key: _array(latest.get(key, []), key) for key in self.LATEST}

    def to_memory(self) -> dict[str, Any]:
        return {"groups": {key: _listed(v) for key, v in self.groups.items()},
                "likelihood": {key: _listed(v) for key, v in self.latest.items()}}  # fmt: skip

    def logps_of(self, gc_ids: np.ndarray) -> np.ndarray:
        """The newest log-probability of each of `gc_ids` (NaN: never measured)."""
        out = np.full(len(gc_ids), np.nan)
        known, rows = _lookup(self.latest["gc_ids"], gc_ids)
        out[known] = self.latest["values"][rows]
        return out

    def add_groups(self, per_prompt: dict[int, tuple[float, int]], epoch: int) -> None:
        ids = np.asarray(sorted(per_prompt), dtype=np.int64)
        new = {"gc_ids": ids, "epochs": np.full(len(ids), epoch, dtype=np.int64),
               "sums": np.asarray([per_prompt[int(i)][0] for i in ids], dtype=np.float64),
               "counts": np.asarray([per_prompt[int(i)][1] for i in ids], dtype=np.float64),
               "logps": self.logps_of(ids)}  # fmt: skip
        self.groups = {key: np.concatenate([self.groups[key], new[key]]) for key in self.GROUPS}

    def add_likelihood(self, gc_ids: np.ndarray, values: np.ndarray, epoch: int) -> None:
        kept = ~np.isin(self.latest["gc_ids"], gc_ids)
        ids = np.concatenate([self.latest["gc_ids"][kept], gc_ids])
        order = np.argsort(ids, kind="stable")
        values = np.asarray([recorded(float(v)) for v in values], dtype=np.float64)  # model floats: rounded once
        epochs = np.full(len(values), epoch, dtype=np.int64)
        self.latest = {"gc_ids": ids[order],
                       "values": np.concatenate([self.latest["values"][kept], values])[order],
                       "epochs": np.concatenate([self.latest["epochs"][kept], epochs])[order]}  # fmt: skip


def _array(values: list[Any], key: str) -> np.ndarray:
    if key in ("gc_ids", "epochs"):
        return np.asarray(values, dtype=np.int64)
    return np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)


def _listed(values: np.ndarray) -> list[Any]:
    if values.dtype.kind == "i":
        return [int(v) for v in values]
    return [None if math.isnan(v) else float(v) for v in values]


def _lookup(sorted_ids: np.ndarray, gc_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(which of `gc_ids` are in `sorted_ids`, their rows there)."""
    rows = np.minimum(np.searchsorted(sorted_ids, gc_ids), max(len(sorted_ids) - 1, 0))
    known = (sorted_ids[rows] == gc_ids) if len(sorted_ids) else np.zeros(len(gc_ids), dtype=bool)
    return known, rows[known]
