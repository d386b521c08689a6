"""Feedback lines: the one reader, validator and writer of what a trainer reports per rollout.

Each line is `{"gc_id": int, "reward": float}` (a reward in [reward_min, reward_max], mapped linearly onto
[0, 1]; reward_min is 0 unless `schedule init --reward-range LO,HI` set it) or `{"gc_id": int, "correct": bool}`.
Other keys are allowed and ignored. `parse_record` is the only place that format is read; every reader (the
scheduler's epoch reduction, the difficulty reference set, a resumed `gaincurate rollout`) goes through it,
and every writer through `format_line`.

    append_rollouts("feedback.jsonl", [3, 5], [1.0, None])       # writes one line; None: not applicable
    for gc_id, correctness in read_rollouts(path, known_ids=ids, reward_max=1.0): ...

Bad data never counts silently: `validated` yields the good rollouts and then raises one `InputError`
naming the first bad line (malformed, or a gc_id outside the prompt set) and counting the rest.
"""

from __future__ import annotations

import errno
import io
import json
import math
import numbers
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gaincurate.errors import InputError
from gaincurate.fileio import naming

FORMAT_HINT = 'write one {"gc_id": int, "reward": float} or {"gc_id": int, "correct": bool} per rollout'

Rollout = tuple[int, float]  # (gc_id, correctness in [0, 1])


def not_applicable(reward: Any) -> bool:
    """A reward of None or NaN of any type a trainer hands over (Python's float, numpy's, a one-element tensor): the
    rollout has no reward, and every recorder and writer skips it."""
    if reward is None:
        return True
    try:
        return math.isnan(reward)
    except (TypeError, ValueError, OverflowError):  # no single number: `check_reward` refuses it
        return False


def check_reward(reward: Any, reward_max: float, reward_min: float = 0.0) -> float:
    """`reward` as a float, or ValueError saying what is wrong and how to fix it: the one check of a reward, whether
    a feedback file holds it (`parse_record`) or a trainer hands it in process (`Run.record`)."""
    try:  # an integer beyond a float's range overflows
        finite = not isinstance(reward, bool) and isinstance(reward, numbers.Real) and math.isfinite(reward)
    except OverflowError:
        finite = False
    if not finite:
        shown = repr(reward)
        raise ValueError(f"reward {shown if len(shown) <= 40 else shown[:37] + '...'} is not a finite number")
    if not reward_min <= reward <= reward_max:
        below = reward < reward_min
        fix = f"reward_min={reward:g}" if below else f"reward_max={reward:g}"
        raise ValueError(
            f"reward {reward:g} is outside [{reward_min:g}, reward_max={reward_max:g}]; if it is the reward of a "
            f"{'wrong' if below else 'right'} answer, start a run with {fix} (a run keeps the range it began with: "
            "`gaincurate schedule init --reward-range LO,HI` or --reward-max into a new --run, or "
            f"ScheduleConfig({fix}) in process)"
        )
    return float(reward)


def parse_record(record: Any, reward_max: float, reward_min: float = 0.0) -> Rollout:
    """(gc_id, correctness in [0, 1]) of one decoded record, or ValueError saying what is wrong with it."""
    if not isinstance(record, Mapping):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    gc_id = record.get("gc_id")
    if "gc_id" not in record:
        raise ValueError("has no gc_id (pass the epoch file's gc_id through to each rollout)")
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
    reward = check_reward(record["reward"], reward_max, reward_min)
    return int(gc_id), (reward - reward_min) / (reward_max - reward_min)


def checked_rollout(rollout: tuple[int, float], reward_max: float, reward_min: float = 0.0) -> Rollout:
    """(gc_id, correctness) of a `(gc_id, reward)` pair whose reward `check_reward` passed in `Run.record`."""
    gc_id, reward = rollout
    return gc_id, (reward - reward_min) / (reward_max - reward_min)


def parse_line(raw: bytes | str, reward_max: float, reward_min: float = 0.0) -> Rollout:
    """`parse_record` of one JSON line; ValueError when it is not JSON either."""
    try:
        record = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ValueError(f"not valid JSON ({raw[:60]!r})") from None
    return parse_record(record, reward_max, reward_min)


def file_lines(path: Path, data: bytes | None = None) -> Iterator[tuple[str, bytes]]:
    """(location, raw line) of each non-blank line of a feedback file, or of `data`, its bytes already read (split
    as the file would be)."""
    with Path(path).open("rb") if data is None else io.BytesIO(data) as file:
        for number, raw in enumerate(file, start=1):
            if raw.strip():
                yield f"{path} line {number}", raw


def validated(
    located: Iterable[tuple[str, Any]],
    *,
    known_ids: Iterable[int],
    reward_max: float,
    reward_min: float = 0.0,
    parse: Callable[[Any, float, float], Rollout] = parse_record,
) -> Iterator[Rollout]:
    """The good rollouts of `(location, record-or-line)` pairs; after the last, one error for all bad ones.

    A malformed item or a gc_id outside `known_ids` means the trainer writes the wrong thing, so once the
    items are exhausted this raises an `InputError` naming the first problem and counting the others.
    """
    known = {int(i) for i in known_ids}
    problems: list[str] = []
    for location, item in located:
        try:
            gc_id, value = parse(item, reward_max, reward_min)
        except ValueError as problem:
            problems.append(f"{location}: {problem}")
            continue
        if gc_id not in known:
            problems.append(f"{location}: gc_id {gc_id} is not in the prompt set")
            continue
        yield gc_id, value
    if problems:
        more = f" ({len(problems) - 1} more bad line(s))" if len(problems) > 1 else ""
        raise InputError(f"{problems[0]}{more}; {FORMAT_HINT}, with gc_id passed through from the epoch file unchanged")


def read_rollouts(
    path: Path, *, known_ids: Iterable[int], reward_max: float, reward_min: float = 0.0, data: bytes | None = None
) -> Iterator[Rollout]:
    """The rollouts of a feedback JSON-lines file (blank lines skipped), validated as `validated` does; `data`: the
    file's bytes, when the caller has read them already."""
    path = Path(path)
    if data is None and path.is_dir():
        raise InputError(f"feedback path {path} is a folder; pass the file the trainer wrote its rollouts to")
    if data is None and not path.is_file():
        raise InputError(f"feedback file {path} does not exist; {FORMAT_HINT}")
    with Path(path).open("rb") if data is None else io.BytesIO(data) as file:
        head = file.read(4096)
    if b"\0" in head or head.startswith(b"PAR1"):  # an epoch's Parquet file, say: its bytes are no lines to quote
        kind = "a Parquet file" if head.startswith(b"PAR1") else "binary"
        raise InputError(f"feedback file {path} is {kind}, not JSON lines; {FORMAT_HINT}")
    return validated(
        file_lines(path, data), known_ids=known_ids, reward_max=reward_max, reward_min=reward_min, parse=parse_line
    )


def tally(rollouts: Iterable[Rollout]) -> dict[int, tuple[float, int]]:
    """Per prompt, in order of first appearance: gc_id -> (sum of correctness, rollouts)."""
    per_prompt: dict[int, tuple[float, int]] = {}
    for gc_id, value in rollouts:
        total, count = per_prompt.get(gc_id, (0.0, 0))
        per_prompt[gc_id] = (total + value, count + 1)
    return per_prompt


class NoRolloutError(InputError):
    """Feedback without a usable rollout for the prompts it was read for; `outside_ids`: the other prompts it holds,
    by which a run tells an earlier epoch's rollouts."""

    def __init__(self, message: str, *, outside_ids: frozenset[int] = frozenset()) -> None:
        super().__init__(message)
        self.outside_ids = outside_ids


def no_rollout_error(
    source: str, prompts: int, outside: int = 0, outside_ids: frozenset[int] = frozenset()
) -> NoRolloutError:
    """The error for feedback without a usable rollout for the `prompts` it was read for."""
    return NoRolloutError(
        f"{source} has no rollout for the {prompts} prompts of this epoch"
        f"{f' ({outside} line(s) were for other prompts)' if outside else ''}; "
        "pass the feedback the trainer wrote while training on this epoch's file",
        outside_ids=outside_ids,
    )


def format_line(gc_id: int, reward: float) -> str:
    """One feedback line, newline included."""
    return json.dumps({"gc_id": int(gc_id), "reward": float(reward)}) + "\n"


def append_rollouts(path: str | Path, gc_ids: Sequence[Any], rewards: Sequence[Any], *, sync: bool = False) -> int:
    """Append one line per rollout to `path`; a None or NaN reward is "not applicable" and skipped.

    The lines go out in one O_APPEND write, so lines from several processes never interleave mid-line.
    `sync`: fsync before returning (a resumable job that must not lose a finished batch). Returns the
    number of lines written. A disk that fills mid-write takes a part only: the rest is written after it, or its
    error (ENOSPC, naming `path`) is raised, so a torn line is never followed by another one.
    """
    lines = [
        format_line(gc_id, reward) for gc_id, reward in zip(gc_ids, rewards, strict=True) if not not_applicable(reward)
    ]
    data = memoryview("".join(lines).encode())
    with naming(path):
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            while data:
                written = os.write(descriptor, data)
                if not written:  # no progress and no error: a full disk by another name
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                data = data[written:]
            if sync:
                os.fsync(descriptor)
        finally:
            os.close(descriptor)
    return len(lines)
