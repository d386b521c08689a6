"""Feedback reduces to the epoch's accuracy: rollouts outside the epoch are counted and left out."""

from __future__ import annotations

import json

import pytest

from gaincurate.errors import InputError
from gaincurate.schedule.feedback import read_feedback, summarize_feedback

EPOCH = [3, 5, 8]
KNOWN = range(10)


def write_lines(path, lines):
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def test_rewards_are_divided_by_reward_max(tmp_path):
    path = write_lines(
        tmp_path / "f.jsonl", [{"gc_id": 3, "reward": 2.0}, {"gc_id": 5, "reward": 0.5}, {"gc_id": 5, "reward": 0}]
    )
    feedback = read_feedback(path, epoch_ids=EPOCH, known_ids=KNOWN, reward_max=2.0)
    assert feedback.accuracy == pytest.approx((1.0 + 0.25 + 0.0) / 3)
    assert (feedback.rollouts, feedback.prompts, feedback.missing_prompts) == (3, 2, 1)


def test_booleans_and_blank_lines(tmp_path):
    lines = [
        {"gc_id": 3, "correct": True},
        "",
        {"gc_id": 8, "correct": False, "step": 4},
        {"gc_id": 8, "correct": True},
    ]
    feedback = read_feedback(write_lines(tmp_path / "f.jsonl", lines), epoch_ids=EPOCH, known_ids=KNOWN, reward_max=1)
    assert feedback.accuracy == pytest.approx(2 / 3)


def test_outside_epoch_rollouts_are_counted_and_left_out(tmp_path):
    lines = [{"gc_id": 3, "correct": True}, {"gc_id": 4, "correct": False}, {"gc_id": 4, "correct": False}]
    feedback = read_feedback(write_lines(tmp_path / "f.jsonl", lines), epoch_ids=EPOCH, known_ids=KNOWN, reward_max=1)
    assert feedback.accuracy == 1.0
    assert feedback.outside_epoch == 2


def test_a_bad_line_stops_the_reduction(tmp_path):
    """Validation is `gaincurate.feedback_lines`'s (tests/test_feedback_lines.py); its error reaches the scheduler
    unchanged."""
    path = write_lines(tmp_path / "f.jsonl", [{"gc_id": 3, "correct": True}, {"gc_id": 99, "correct": True}])
    with pytest.raises(InputError, match="line 2: gc_id 99 is not in the prompt set"):
        read_feedback(path, epoch_ids=EPOCH, known_ids=KNOWN, reward_max=1.0)


def test_no_rollout_for_the_epoch_is_an_error(tmp_path):
    path = write_lines(tmp_path / "f.jsonl", [{"gc_id": 1, "correct": True}])
    with pytest.raises(InputError, match=r"no rollout for the 3 prompts of this epoch \(1 line\(s\) were for other"):
        read_feedback(path, epoch_ids=EPOCH, known_ids=KNOWN, reward_max=1.0)


def test_in_process_records():
    records = [{"gc_id": 3, "reward": 1.0}, {"gc_id": 5, "correct": False}]
    feedback = summarize_feedback(records, epoch_ids=EPOCH, known_ids=KNOWN, reward_max=1.0)
    assert feedback.accuracy == 0.5
    with pytest.raises(InputError, match="feedback record 1: gc_id 42 is not in the prompt set"):
        summarize_feedback(
            [{"gc_id": 3, "reward": 1.0}, {"gc_id": 42, "reward": 1.0}], epoch_ids=EPOCH, known_ids=KNOWN, reward_max=1
        )
