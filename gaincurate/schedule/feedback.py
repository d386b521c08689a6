"""Trainer feedback: one JSON line per rollout, reduced to the epoch's accuracy.

Each line is `{"gc_id": int, "reward": float}` (a reward in [0, reward_max], divided by reward_max)
or `{"gc_id": int, "correct": bool}`. Other keys are allowed and ignored.

What is wrong with the feedback decides what happens, so bad data never moves mu silently:

* malformed lines and gc_ids that are not in the prompt set are errors: they mean the trainer writes
  the wrong thing, and every such line is counted in a one-line message naming the first;
* rollouts of known prompts that were not in this epoch are left out and counted (a trainer that
  resumed mid-epoch, or a stale line); epoch prompts without any rollout are counted too;
* feedback with no usable rollout for the epoch is an error.

Read a file with `read_feedback(path, ...)`; in-process callers pass records to `summarize_feedback`.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gaincurate.errors import InputError

FORMAT_HINT = 'write one {"gc_id": int, "reward": float} or {"gc_id": int, "correct": bool} per rollout'


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
    source: str = "feedback",
) -> Feedback:
    """Reduce rollout records (mappings, or `(location, mapping-or-error)` pairs) to a `Feedback`."""
    epoch_set = {int(i) for i in epoch_ids}
    known_set = {int(i) for i in known_ids}
    values: list[float] = []
    seen: set[int] = set()
    per_prompt: dict[int, tuple[float, int]] = {}
    outside = 0
    problems: list[str] = []
    for location, record in _located(records, source):
        try:
            gc_id, value = _rollout(record, reward_max)
        except ValueError as problem:
            problems.append(f"{location}: {problem}")
            continue
        if gc_id not in known_set:
            problems.append(f"{location}: gc_id {gc_id} is not in the prompt set")
            continue
        if gc_id not in epoch_set:
            outside += 1
            continue
        values.append(value)
        seen.add(gc_id)
        total, count = per_prompt.get(gc_id, (0.0, 0))
        per_prompt[gc_id] = (total + value, count + 1)
    if problems:
        more = f" ({len(problems) - 1} more bad line(s))" if len(problems) > 1 else ""
        raise InputError(f"{problems[0]}{more}; {FORMAT_HINT}, with gc_id passed through from the epoch file unchanged")
    if not values:
        raise InputError(
            f"{source} has no rollout for the {len(epoch_set)} prompts of this epoch"
            f"{f' ({outside} line(s) were for other prompts)' if outside else ''}; "
            "pass the feedback the trainer wrote while training on this epoch's file"
        )
    return Feedback(
        accuracy=float(np.mean(values)),
        rollouts=len(values),
        prompts=len(seen),
        missing_prompts=len(epoch_set - seen),
        outside_epoch=outside,
        per_prompt=per_prompt,
    )


def read_feedback(path: Path, *, epoch_ids: Iterable[int], known_ids: Iterable[int], reward_max: float) -> Feedback:
    """Read a feedback JSON-lines file and summarize it; blank lines are skipped."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"feedback file {path} does not exist; {FORMAT_HINT}")
    return summarize_feedback(
        _file_records(path), epoch_ids=epoch_ids, known_ids=known_ids, reward_max=reward_max, source=str(path)
    )


class _Malformed:
    def __init__(self, reason: str) -> None:
        self.reason = reason


def _file_records(path: Path) -> Iterator[tuple[str, Any]]:
    with path.open("rb") as file:
        for number, raw in enumerate(file, start=1):
            if not raw.strip():
                continue
            try:
                yield f"{path} line {number}", json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                yield f"{path} line {number}", _Malformed(f"not valid JSON ({raw[:60]!r})")


def _located(records: Iterable[Any], source: str) -> Iterator[tuple[str, Any]]:
    for index, record in enumerate(records):
        if isinstance(record, tuple) and len(record) == 2 and isinstance(record[0], str):
            yield record
        else:
            yield f"{source} record {index}", record


def _rollout(record: Any, reward_max: float) -> tuple[int, float]:
    """(gc_id, correctness in [0, 1]) of one record, or ValueError saying what is wrong with it."""
    if isinstance(record, _Malformed):
        raise ValueError(record.reason)
    if not isinstance(record, Mapping):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    gc_id = record.get("gc_id")
    if isinstance(gc_id, bool) or not isinstance(gc_id, numbers.Integral):
        raise ValueError(f"gc_id {gc_id!r} is not an integer")
    has_reward, has_correct = "reward" in record, "correct" in record
    if has_reward == has_correct:
        raise ValueError("needs exactly one of 'reward' and 'correct'")
    if has_correct:
        correct = record["correct"]
        if not isinstance(correct, bool | np.bool_):
            raise ValueError(f"correct {correct!r} is not true/false")
        return int(gc_id), float(bool(correct))
    reward = record["reward"]
    if isinstance(reward, bool) or not isinstance(reward, numbers.Real) or not math.isfinite(reward):
        raise ValueError(f"reward {reward!r} is not a finite number")
    if not 0.0 <= reward <= reward_max:
        raise ValueError(f"reward {reward} is outside [0, reward_max={reward_max:g}] (set --reward-max at init)")
    return int(gc_id), float(reward) / reward_max
