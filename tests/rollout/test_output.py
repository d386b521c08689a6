"""The resumable output file and the choice of prompts: whole groups only, seeded reference samples."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from gaincurate.errors import ConfigError, InputError
from gaincurate.feedback_lines import format_line
from gaincurate.rollout.config import RolloutConfig
from gaincurate.rollout.inputs import answered_choice, choose_ids
from gaincurate.rollout.output import complete_prefix


def test_complete_prefix_keeps_whole_groups_only(tmp_path):
    lines = [format_line(gc_id, 1.0) for gc_id in (4, 4, 9, 9, 2)]
    path = tmp_path / "out.jsonl"
    whole = "".join(lines[:4])
    path.write_text("".join(lines) + '{"gc_id": 2, "rew')
    assert complete_prefix(path, 2) == ([4, 9], len(whole.encode()), [1.0] * 4)
    path.write_text(lines[0] + "oops\n" + lines[1])
    with pytest.raises(InputError, match="malformed line"):
        complete_prefix(path, 2)
    path.write_text(lines[0] + lines[2])
    with pytest.raises(InputError, match="other settings"):
        complete_prefix(path, 2)


def test_reference_ids_are_a_seeded_sorted_sample(tmp_path):
    ids = np.arange(50)
    chosen = choose_ids(ids, reference_size=10, ids_file=None, seed=3)
    assert len(set(chosen.tolist())) == 10 and np.all(np.diff(chosen) > 0)
    np.testing.assert_array_equal(chosen, choose_ids(ids, reference_size=10, ids_file=None, seed=3))
    assert not np.array_equal(chosen, choose_ids(ids, reference_size=10, ids_file=None, seed=4))
    (tmp_path / "ids.txt").write_text("7\n3\n3\n")
    np.testing.assert_array_equal(
        choose_ids(ids, reference_size=None, ids_file=str(tmp_path / "ids.txt"), seed=0), [3, 7]
    )
    (tmp_path / "bad.txt").write_text("70\n")
    with pytest.raises(InputError, match="gc_id 70"):
        choose_ids(ids, reference_size=None, ids_file=str(tmp_path / "bad.txt"), seed=0)


def test_prompts_without_an_answer_are_never_chosen():
    ids, unanswered = np.arange(10), np.array([2, 5])
    config = RolloutConfig(scores="scores", out="out.jsonl")
    chosen, note = answered_choice(ids, unanswered, config, "answer")
    np.testing.assert_array_equal(chosen, [0, 1, 3, 4, 6, 7, 8, 9])
    assert note == (
        "note: 2 of the 10 prompts of scores have no 'answer' answer; they are left out, as no completion can "
        "match them"
    )
    # Without unanswered prompts the seeded sample is choose_ids' own, so a reference set keeps its ids; with them, it
    # is drawn among the rest.
    sample = dataclasses.replace(config, reference_size=4, seed=3)
    assert answered_choice(ids, np.array([], np.int64), sample, "answer")[1] is None
    np.testing.assert_array_equal(
        answered_choice(ids, np.array([], np.int64), sample, "answer")[0],
        choose_ids(ids, reference_size=4, ids_file=None, seed=3),
    )
    assert not set(answered_choice(ids, unanswered, sample, "answer")[0].tolist()) & {2, 5}
    with pytest.raises(ConfigError, match=r"--reference-size 9 is more than the 8 prompts of scores with an answer"):
        answered_choice(ids, unanswered, dataclasses.replace(config, reference_size=9), "answer")
    with pytest.raises(InputError, match="^every prompt of scores has no 'answer' answer, so no rollout"):
        answered_choice(ids, ids, config, "answer")
