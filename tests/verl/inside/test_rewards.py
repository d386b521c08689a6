"""Rewards for exported rows: verl's default_compute_score, the bundled reward, and verl's custom-reward loader."""

import json

import pyarrow.parquet as pq
import pytest
from verl.utils.reward_score import default_compute_score

from gaincurate.feedback_lines import read_rollouts
from gaincurate.integrations.verl import reward as verl_reward


def rows(path):
    table = pq.read_table(path)
    return list(
        zip(
            table.column("data_source").to_pylist(),
            [r["ground_truth"] for r in table.column("reward_model").to_pylist()],
            table.column("extra_info").to_pylist(),
            strict=True,
        )
    )


def answers(ground_truth: str) -> tuple[str, str]:
    """A correct and a wrong completion for `ground_truth`, each ending in a boxed answer."""
    wrong = "-12345" if ground_truth.strip() != "-12345" else "7"
    return f"Working... so the answer is \\boxed{{{ground_truth}}}.", f"I think it is \\boxed{{{wrong}}}."


def test_verls_default_compute_score_gives_1_and_0_on_every_exported_row(exported):
    for data_source, truth, extra_info in rows(exported):
        correct, wrong = answers(truth)
        assert default_compute_score(data_source, correct, truth, extra_info) == 1.0, truth
        assert default_compute_score(data_source, wrong, truth, extra_info) == 0.0, truth


def test_the_bundled_reward_gives_1_and_0_and_writes_valid_feedback(exported, tmp_path, monkeypatch):
    feedback = tmp_path / "feedback.jsonl"
    monkeypatch.setenv("GAINCURATE_FEEDBACK_FILE", str(feedback))
    table = rows(exported)
    for data_source, truth, extra_info in table:
        correct, wrong = answers(truth)
        # verl's reward managers call by keyword and add their own keys to extra_info.
        info = dict(extra_info, num_turns=None, rollout_reward_scores={})
        assert verl_reward.compute_score(data_source=data_source, solution_str=correct, ground_truth=truth,
                                         extra_info=info) == 1.0, truth  # fmt: skip
        assert verl_reward.compute_score(data_source, wrong, truth, info) == 0.0, truth
    ids = [extra_info["index"] for _, _, extra_info in table]
    rollouts = list(read_rollouts(feedback, known_ids=ids, reward_max=1.0))
    assert rollouts == [pair for gc_id in ids for pair in ((gc_id, 1.0), (gc_id, 0.0))]


def test_validation_rows_and_rows_without_gc_id_write_nothing(tmp_path):
    feedback = tmp_path / "feedback.jsonl"
    assert verl_reward.compute_score("x", "\\boxed{2}", "2", {"index": 1, "split": "test"}, str(feedback)) == 1.0
    assert verl_reward.compute_score("x", "\\boxed{2}", "2", {}, feedback_file=str(feedback)) == 1.0
    assert not feedback.exists()


def test_recording_score_around_verls_default_scorer(exported, tmp_path):
    feedback = tmp_path / "feedback.jsonl"
    scored = verl_reward.recording_score(default_compute_score)
    data_source, truth, extra_info = rows(exported)[0]
    assert scored(data_source, answers(truth)[0], truth, extra_info, feedback_file=str(feedback)) == 1.0
    assert json.loads(feedback.read_text()) == {"gc_id": extra_info["index"], "reward": 1.0}


@pytest.mark.parametrize("route", ["pkg", "file"])
def test_verls_loader_resolves_the_documented_reward_config(route, verl_config, exported, tmp_path):
    """`reward.custom_reward_function` as docs/verl.md writes it, composed by verl's hydra config."""
    from verl.trainer.ppo.reward import get_custom_reward_fn

    feedback = tmp_path / "rollouts.jsonl"
    path = "pkg://gaincurate.integrations.verl.reward" if route == "pkg" else verl_reward.__file__
    config = verl_config(
        [
            f"reward.custom_reward_function.path={path}",
            "reward.custom_reward_function.name=compute_score",
            f"+reward.custom_reward_function.reward_kwargs.feedback_file={feedback}",
        ]
    )
    reward_fn = get_custom_reward_fn(config)
    data_source, truth, extra_info = rows(exported)[3]
    assert reward_fn(data_source=data_source, solution_str=answers(truth)[0], ground_truth=truth,
                     extra_info=dict(extra_info)) == 1.0  # fmt: skip
    gc_id = extra_info["index"]
    assert list(read_rollouts(feedback, known_ids=[gc_id], reward_max=1.0)) == [(gc_id, 1.0)]
