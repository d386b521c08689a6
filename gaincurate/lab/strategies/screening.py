"""Screening with the current policy: what a screener is, what it returns, and what it has cost.

A strategy that needs `POLICY` (the lab's screen and pilot, plug-ins) measures candidates with a
`Screener`: the live model in process (`gaincurate.schedule.run.screeners.live_screener`), the newest checkpoint
out of process. The scheduler holds it `Metered`, so what screening costs is counted in one place, and a trainer
that trains on the measuring rollouts (TRL in process) keeps each candidate's `PilotCompletions`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PilotCompletions:
    """One candidate's measuring rollouts, kept so that a trainer can train on them (TRL in process only).

    `prompt_ids`: the prompt as the trainer tokenizes it; `completion_ids`: each completion, its stop token
    included when it stopped; `rewards`: each one's correctness; `logps`: mu, each token's log-prob under the
    policy that sampled it, at its sampling temperature. Memory only: never written to the run directory.
    """

    prompt_ids: list[int]
    completion_ids: list[list[int]]
    rewards: list[float]
    logps: list[list[float]]


@dataclass(frozen=True)
class Screening:
    """The measured candidates: each one's correctness sum and rollout count (in the order asked), and tokens.

    `completions`, when the screener kept them: each candidate's `PilotCompletions` (None: not kept)."""

    sums: np.ndarray
    counts: np.ndarray
    tokens: int = 0
    completions: list[PilotCompletions] | None = None

    @property
    def rates(self) -> np.ndarray:
        return np.asarray(self.sums, dtype=np.float64) / np.maximum(np.asarray(self.counts), 1)


# screener(gc_ids, epoch, rollouts): each candidate rolled `rollouts` times with the current policy.
Screener = Callable[[np.ndarray, int, int], Screening]


@dataclass
class Spent:
    """What screening has cost this process so far (the bench charges it to the arm)."""

    rollouts: int = 0
    tokens: int = 0
    seconds: float = 0.0


class Metered:
    """A screener (the policy that rolls candidates) that counts what it has cost (`spent`): every rollout and
    token it made, and the seconds it took, charged whether or not its candidates were kept."""

    def __init__(self, screener: Screener) -> None:
        self.screener = screener
        self.spent = Spent()

    def __call__(self, gc_ids: np.ndarray, epoch: int, rollouts: int) -> Screening:
        started = time.perf_counter()
        screening = self.screener(gc_ids, epoch, rollouts)
        self.spent.seconds += time.perf_counter() - started
        self.spent.rollouts += int(np.sum(screening.counts))
        self.spent.tokens += int(screening.tokens)
        return screening
