"""Trainer feedback reduced to an epoch's accuracy: what the scheduler steps on.

The line format, its validation and its errors live in `gaincurate.feedback_lines`; this module splits the
validated rollouts by epoch, so bad data never moves mu silently:

* malformed lines and gc_ids that are not in the prompt set are errors (see `gaincurate.feedback_lines.validated`);
* rollouts of known prompts that were not in this epoch are left out and counted (a trainer that
  resumed mid-epoch, or a stale line); epoch prompts without any rollout are counted too;
* feedback with no usable rollout for the epoch is an error.

Read a file with `read_feedback(path, ...)`; in-process callers pass records to `summarize_feedback`.
`fingerprint(data)` is the content hash a run's history records for each consumed feedback file, so the
same file is not consumed for two epochs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gaincurate.errors import InputError
from gaincurate.feedback_lines import Rollout, no_rollout_error, parse_record, read_rollouts, tally, validated

EXACT = 1e-9  # correctness is reward rescaled to [0, 1]: all-correct sums to the rollout count up to rounding


@dataclass(frozen=True)
class Feedback:
    """An epoch's feedback, reduced: the accuracy and what went into it."""

    accuracy: float  # mean correctness over the counted rollouts, in [0, 1]
    rollouts: int  # rollouts counted
    prompts: int  # epoch prompts with at least one rollout
    missing_prompts: int = 0  # epoch prompts without any rollout
    outside_epoch: int = 0  # rollouts of known prompts outside this epoch, left out
    # Per prompt: gc_id -> (sum of correctness, rollouts). The dots strategy grows its reference set from it.
    per_prompt: dict[int, tuple[float, int]] | None = field(default=None, compare=False, repr=False)
    # Per prompt: gc_id -> (lowest, highest correctness): a group whose two agree had zero reward variance.
    extremes: dict[int, tuple[float, float]] | None = field(default=None, compare=False, repr=False)
    # The gc_ids of the rollouts left out (outside the epoch): which epoch the feedback was really for.
    outside_ids: frozenset[int] = field(default=frozenset(), compare=False, repr=False)

    @classmethod
    def from_accuracy(cls, accuracy: float, *, rollouts: int = 1, prompts: int = 1) -> Feedback:
        """Feedback already reduced by the caller (an in-process trainer that tracks accuracy itself)."""
        if not 0.0 <= accuracy <= 1.0:
            raise InputError(f"accuracy {accuracy} is outside [0, 1]; divide rewards by the reward of a correct answer")
        return cls(accuracy=float(accuracy), rollouts=rollouts, prompts=prompts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "accuracy": self.accuracy,
            "rollouts": self.rollouts,
            "prompts": self.prompts,
            "missing_prompts": self.missing_prompts,
            "outside_epoch": self.outside_epoch,
        }


def summarize_feedback(
    records: Iterable[Any],
    *,
    epoch_ids: Iterable[int],
    known_ids: Iterable[int],
    reward_max: float,
    reward_min: float = 0.0,
    source: str = "feedback",
    parse: Callable[[Any, float, float], Rollout] = parse_record,
) -> Feedback:
    """Reduce rollout records (mappings, or `(location, mapping)` pairs) to a `Feedback`; `parse` reads each one
    (`checked_rollout`: a `(gc_id, reward)` pair whose reward was checked when handed in)."""
    located = _located(records, source)
    rollouts = validated(located, known_ids=known_ids, reward_max=reward_max, reward_min=reward_min, parse=parse)
    return _reduce(rollouts, epoch_ids=epoch_ids, source=source)


def read_feedback(
    path: Path,
    *,
    epoch_ids: Iterable[int],
    known_ids: Iterable[int],
    reward_max: float,
    reward_min: float = 0.0,
    data: bytes | None = None,
) -> Feedback:
    """Read a feedback JSON-lines file (or `data`, its bytes already read) and summarize it; blank lines skipped."""
    path = Path(path)
    rollouts = read_rollouts(path, known_ids=known_ids, reward_max=reward_max, reward_min=reward_min, data=data)
    return _reduce(rollouts, epoch_ids=epoch_ids, source=str(path))


def _reduce(rollouts: Iterator[Rollout], *, epoch_ids: Iterable[int], source: str) -> Feedback:
    epoch_set = {int(i) for i in epoch_ids}
    in_epoch: list[Rollout] = []
    outside = 0
    outside_ids: set[int] = set()
    for rollout in rollouts:  # raises, once exhausted, if any line was bad
        if rollout[0] in epoch_set:
            in_epoch.append(rollout)
        else:
            outside += 1
            outside_ids.add(rollout[0])
    if not in_epoch:
        raise no_rollout_error(source, len(epoch_set), outside, frozenset(outside_ids))
    per_prompt = tally(in_epoch)
    extremes: dict[int, tuple[float, float]] = {}
    for gc_id, value in in_epoch:
        low, high = extremes.get(gc_id, (value, value))
        extremes[gc_id] = (min(low, value), max(high, value))
    return Feedback(
        accuracy=float(np.mean([value for _, value in in_epoch])),
        rollouts=len(in_epoch),
        prompts=len(per_prompt),
        missing_prompts=len(epoch_set - per_prompt.keys()),
        outside_epoch=outside,
        per_prompt=per_prompt,
        extremes=extremes,
        outside_ids=frozenset(outside_ids),
    )


def fingerprint(data: bytes) -> str:
    """The content hash of a feedback file, as recorded in history.jsonl (`feedback_sha256`)."""
    return hashlib.sha256(data).hexdigest()


def _located(records: Iterable[Any], source: str) -> Iterator[tuple[str, Any]]:
    for index, record in enumerate(records):
        if isinstance(record, tuple) and len(record) == 2 and isinstance(record[0], str):
            yield record
        else:
            yield f"{source} record {index}", record
