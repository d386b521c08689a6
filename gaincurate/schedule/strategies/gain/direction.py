"""`gain --direction auto`: keep or reverse the angle ranking by the pass rates of the first epoch.

GAIN-RL ranks the highest angle score first and moves mu on from position 0, so it assumes that a high score
marks a prompt the model solves early. On some models the score runs the other way. After epoch 0's feedback,
each measured prompt gives (its rank position, its pass rate = correctness sum / rollouts), and the sign of
the Spearman correlation between the ranking score (highest first, so minus the position) and the pass rate
decides, once:

* below 0: the ranking is reversed, lowest score first (unscorable prompts stay last);
* 0 or undefined (fewer than two prompts measured, or all pass rates equal): the ranking is kept.

No randomness enters the decision: the same seed and feedback give the same decision. It is kept in the
state's memory under "direction" and in the epoch's history line, and a reversal rewrites the state's
ranking, so a resumed run reads both from state.json. mu keeps its value: it counts ranks from where the
curriculum starts, and after a reversal that start is the other end of the scores.

    following, decision = orient(state, following, feedback)   # decision None once decided
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from gaincurate.errors import InputError

if TYPE_CHECKING:
    from gaincurate.schedule.feedback import Feedback
    from gaincurate.schedule.state import ScheduleState

MEMORY_KEY = "direction"


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n of `values`, ties sharing the mean of their ranks (Spearman's convention)."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.arange(1, len(values) + 1, dtype=np.float64)
    _, groups, counts = np.unique(values, return_inverse=True, return_counts=True)
    sums = np.bincount(groups, weights=ranks)
    return sums[groups] / counts[groups]


def spearman(first: np.ndarray, second: np.ndarray) -> float:
    """Spearman's rank correlation; NaN when either side has fewer than two distinct values."""
    if len(first) < 2 or len(np.unique(first)) < 2 or len(np.unique(second)) < 2:
        return math.nan
    x, y = average_ranks(first), average_ranks(second)
    x, y = x - x.mean(), y - y.mean()
    # numpy's fixed-order sums, not np.dot: BLAS's sum order, and so its last bit, varies by CPU (numerics).
    return float(np.sum(x * y) / math.sqrt(float(np.sum(x * x)) * float(np.sum(y * y))))


def decided(state: ScheduleState) -> dict[str, Any] | None:
    """The decision in the state's memory, or None before it is taken."""
    return (state.memory or {}).get(MEMORY_KEY)


def orient(
    state: ScheduleState, following: ScheduleState, feedback: Feedback
) -> tuple[ScheduleState, dict[str, Any] | None]:
    """`following` (the state that draws the next epoch) with its ranking kept or reversed by `state`'s feedback.

    Returns the decision too, the first time only (None once it is in the memory).
    """
    if decided(state) is not None:
        return following, None
    if feedback.per_prompt is None:
        raise InputError(
            "gain --direction auto reads each prompt's pass rate in the first epoch: pass per-rollout feedback "
            '({"gc_id": int, "reward": float} lines, or the records themselves), not a bare accuracy'
        )
    position_of = dict(zip(state.subset_ids.tolist(), state.positions.tolist(), strict=True))
    measured = [(position_of[gc_id], total / count) for gc_id, (total, count) in feedback.per_prompt.items() if count]
    positions = np.array([position for position, _ in measured], dtype=np.float64)
    rates = np.array([rate for _, rate in measured], dtype=np.float64)
    rho = spearman(-positions, rates)
    reverse = math.isfinite(rho) and rho < 0
    decision = {
        "epoch": state.epoch,
        "ranking": "reversed" if reverse else "kept",
        "spearman": rho if math.isfinite(rho) else None,
        "prompts": len(measured),
    }
    memory = {**(following.memory or {}), MEMORY_KEY: decision}
    if not reverse:
        return replace(following, memory=memory), decision
    finite = np.isfinite(following.scores)
    # Unscorable prompts stay last: a reversal puts the lowest score first, not the prompts without one.
    order = np.concatenate([np.flatnonzero(finite)[::-1], np.flatnonzero(~finite)])
    return replace(following, ranking=following.ranking[order], scores=following.scores[order], memory=memory), decision
