"""The probe's memory as arrays: every trained group and the newest answer likelihood of each measured prompt.

With `--drift`, a likelihood measured epochs ago is read as it has probably moved since: the refresh after each
epoch measures some prompts again, and their mean change per epoch of age (the sum of the changes over the sum of
the ages, log-probabilities floored at `LOGP_FLOOR`) is the pool's drift. A prompt's value then reads as measured plus
the drift times its age, at most 0 (a probability of 1). A group keeps the value its draw read, aged the same way.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gaincurate.numerics import recorded

LOGP_FLOOR = -30.0  # a log-probability below this says "never": clipped, so one hopeless prompt does not set the scale


class Measured:
    """The memory as arrays: every trained group (gc_id, epoch, reward sum, rollouts, the answer's log-probability
    when drawn), the newest log-probability of each measured prompt (gc_id, value, epoch) and, with `--drift`, the
    newest refresh's drift per epoch (None: not measured)."""

    GROUPS = ("gc_ids", "epochs", "sums", "counts", "logps")
    LATEST = ("gc_ids", "values", "epochs")

    def __init__(self, memory: dict[str, Any] | None) -> None:
        memory = memory or {}
        groups, latest = memory.get("groups", {}), memory.get("likelihood", {})
        self.groups = {key: _array(groups.get(key, []), key) for key in self.GROUPS}
        self.latest = {key: _array(latest.get(key, []), key) for key in self.LATEST}
        self.drift: float | None = latest.get("drift")

    def to_memory(self) -> dict[str, Any]:
        likelihood = {key: _listed(v) for key, v in self.latest.items()}
        if self.drift is not None:  # only with --drift: a run without it keeps the memory it always had
            likelihood["drift"] = self.drift
        return {"groups": {key: _listed(v) for key, v in self.groups.items()}, "likelihood": likelihood}

    def logps_of(self, gc_ids: np.ndarray, now: int | None = None) -> np.ndarray:
        """The newest log-probability of each of `gc_ids` (NaN: never measured); given `now` (the newest epoch whose
        refresh is in), aged by the drift."""
        out = np.full(len(gc_ids), np.nan)
        known, rows = _lookup(self.latest["gc_ids"], gc_ids)
        out[known] = self.latest["values"][rows]
        if now is not None and self.drift is not None:
            ages = (now - self.latest["epochs"][rows]).astype(np.float64)
            out[known] = np.minimum(np.maximum(out[known], LOGP_FLOOR) + self.drift * ages, 0.0)
        return out

    def add_groups(self, per_prompt: dict[int, tuple[float, int]], epoch: int, *, aged: bool = False) -> None:
        """The groups of `epoch`, each with its prompt's likelihood as that epoch's draw read it (`aged`: by the
        drift, as `--drift` reads it)."""
        ids = np.asarray(sorted(per_prompt), dtype=np.int64)
        new = {"gc_ids": ids, "epochs": np.full(len(ids), epoch, dtype=np.int64),
               "sums": np.asarray([per_prompt[int(i)][0] for i in ids], dtype=np.float64),
               "counts": np.asarray([per_prompt[int(i)][1] for i in ids], dtype=np.float64),
               "logps": self.logps_of(ids, epoch - 1 if aged else None)}  # fmt: skip
        self.groups = {key: np.concatenate([self.groups[key], new[key]]) for key in self.GROUPS}

    def add_likelihood(self, gc_ids: np.ndarray, values: np.ndarray, epoch: int, *, drift: bool = False) -> None:
        """The likelihoods measured after `epoch`; with `drift`, the drift from those measured before."""
        values = np.asarray([recorded(float(v)) for v in values], dtype=np.float64)  # model floats: rounded once
        if drift:
            known, rows = _lookup(self.latest["gc_ids"], gc_ids)
            ages = epoch - self.latest["epochs"][rows]
            change = np.maximum(values[known], LOGP_FLOOR) - np.maximum(self.latest["values"][rows], LOGP_FLOOR)
            if ages.sum() > 0:
                self.drift = recorded(math.fsum(change.tolist()) / int(ages.sum()))
        kept = ~np.isin(self.latest["gc_ids"], gc_ids)
        ids = np.concatenate([self.latest["gc_ids"][kept], gc_ids])
        order = np.argsort(ids, kind="stable")
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
