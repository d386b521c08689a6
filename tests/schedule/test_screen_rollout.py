"""`--strategy screen` on disk, end to end: `schedule step` screens each epoch's candidates with a real model.

A tiny random Llama scores the helper problems; `advance` (what `schedule step` and `schedule run` call) then
screens with `gaincurate rollout`'s job on that model's folder, writing RUN/screen-NNNN.ids and .jsonl.
Generation is real; the answer check is replaced by the completion's length parity (as in the rollout job's
tests), so a random model gets some rollouts right and the band has members.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from helpers import score_helper_problems, write_jsonl
from schedule_helpers import snapshot

from gaincurate.errors import InputError
from gaincurate.lab.strategies import screening
from gaincurate.rollout.answers import AnswerChecker
from gaincurate.schedule.config import ScheduleConfig
from gaincurate.schedule.run import rundir
from gaincurate.schedule.run.run import Run
from gaincurate.schedule.run.steps import init_run

SUBSET, FACTOR, ROLLOUTS = 2, 2, 2  # m, k, r
SCREENED = FACTOR * SUBSET
CONFIG = ScheduleConfig(strategy="screen", subset_size=SUBSET, screen_factor=FACTOR, screen_rollouts=ROLLOUTS, seed=5)
CONSOLE_SCRIPT = Path(sys.executable).with_name("gaincurate")


@pytest.fixture(scope="module")
def tiny_scores(tiny_llama, tmp_path_factory) -> Path:
    """A scores directory of the helper problems (3 rewordings each, with answers), scored with the tiny Llama."""
    return score_helper_problems(tiny_llama, tmp_path_factory.mktemp("screen"))


@pytest.fixture()
def parity_checker(monkeypatch):
    """Reward = parity of the completion's length: sampled text decides it, so rates vary across candidates."""
    monkeypatch.setattr(AnswerChecker, "__call__", lambda self, completion, answer: len(completion) % 2 == 0)


def epoch_ids(run_dir: Path, epoch: int) -> list[int]:
    return pq.read_table(rundir.epoch_path(run_dir, epoch), columns=["gc_id"]).column("gc_id").to_pylist()


def screened(run_dir: Path, epoch: int) -> tuple[list[int], dict[int, list[float]]]:
    """RUN/screen-NNNN.ids (the candidates, in draw order) and each candidate's rewards in screen-NNNN.jsonl."""
    path = screening.screen_path(run_dir, epoch)
    ids = [int(line) for line in path.with_suffix(".ids").read_text().split()]
    rewards: dict[int, list[float]] = {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        rewards.setdefault(row["gc_id"], []).append(row["reward"])
    return ids, rewards


def check_screened_epoch(run_dir: Path, epoch: int, chosen: list[int], selection: dict) -> None:
    """The files hold k*m candidates rolled r times; the epoch is the m in band nearest 0.5, as `selection` says."""
    ids, rewards = screened(run_dir, epoch)
    assert len(ids) == len(set(ids)) == SCREENED
    assert sorted(rewards) == sorted(ids) and all(len(r) == ROLLOUTS for r in rewards.values())
    assert sum(len(r) for r in rewards.values()) == SCREENED * ROLLOUTS
    assert len(chosen) == SUBSET and set(chosen) <= set(ids)
    rates = {g: float(np.mean(r)) for g, r in rewards.items()}

    def key(gc_id: int) -> tuple[bool, float]:  # in band first, then nearest 0.5 (ties: the draw's order)
        return (not 0 < rates[gc_id] < 1, abs(rates[gc_id] - 0.5))

    others = set(ids) - set(chosen)
    assert max(key(g) for g in chosen) <= min(key(g) for g in others)
    assert selection["screened"] == SCREENED and selection["screen_rollouts"] == SCREENED * ROLLOUTS
    assert selection["in_band"] == sum(0 < rates[g] < 1 for g in ids)
    assert selection["screened_pass_rate"] == pytest.approx(np.mean([rates[g] for g in ids]))
    assert selection["chosen_pass_rate"] == pytest.approx(np.mean([rates[g] for g in chosen]))
    assert selection["screen_tokens"] > 0 and selection["screen_seconds"] > 0


def write_feedback(path: Path, ids: list[int]) -> Path:
    return write_jsonl(path, [{"gc_id": g, "reward": float((g + k) % 2)} for g in ids for k in range(2)])


def test_schedule_step_screens_each_epoch_with_the_newest_policy(tiny_scores, tiny_llama, tmp_path, parity_checker):
    run_dir = tmp_path / "run"
    init_run(run_dir, tiny_scores, CONFIG)
    first = Run.open(run_dir).step()  # epoch 0: the model the prompts were scored with
    assert (first.epoch, first.subset_size, first.strategy) == (0, SUBSET, "screen")
    run = rundir.load_run(run_dir)
    chosen = epoch_ids(run_dir, 0)
    assert sorted(chosen) == sorted(run.schedule.subset_ids.tolist())
    check_screened_epoch(run_dir, 0, chosen, run.schedule.selection.figures)
    assert not screening.screen_path(run_dir, 1).exists()

    # Epoch 0 trained: without a checkpoint there is no policy to screen epoch 1 with. One line, nothing written.
    feedback = write_feedback(tmp_path / "feedback-0.jsonl", chosen)
    before = snapshot(run_dir)
    with pytest.raises(InputError, match="--checkpoint") as refused:
        Run.open(run_dir).step(feedback=feedback)
    assert "\n" not in str(refused.value) and "epoch 1" in str(refused.value)
    assert snapshot(run_dir) == before
    # A checkpoint that holds no model (adapter weights without their adapter_config.json) is refused the same way.
    adapter = tmp_path / "trainer" / "checkpoint-2"
    adapter.mkdir(parents=True)
    (adapter / "trainer_state.json").write_text("{}")
    (adapter / "adapter_model.safetensors").write_bytes((tiny_llama / "model.safetensors").read_bytes())
    with pytest.raises(InputError, match="--checkpoint"):
        Run.open(run_dir).step(feedback=feedback, checkpoint=adapter.parent)
    assert snapshot(run_dir) == before

    second = Run.open(run_dir).step(feedback=feedback, checkpoint=tiny_llama)
    assert (second.epoch, second.subset_size) == (1, SUBSET)
    assert second.notices == []  # the checkpoint is used (it screened epoch 1), so no "not used" notice
    [line] = rundir.read_history(run_dir)
    assert line["epoch"] == 0 and sorted(line["subset_ids"]) == sorted(chosen)
    assert line["checkpoint"] == str(tiny_llama.resolve())  # the policy that screened the next epoch
    check_screened_epoch(run_dir, 0, line["subset_ids"], line["selection"])  # epoch 0's draw, now in history
    run = rundir.load_run(run_dir)
    check_screened_epoch(run_dir, 1, epoch_ids(run_dir, 1), run.schedule.selection.figures)
    # Screening seeds differ by epoch: epoch 1 drew (and rolled) its own candidates.
    assert screening.screen_path(run_dir, 1).with_suffix(".ids").read_text() != (
        screening.screen_path(run_dir, 0).with_suffix(".ids").read_text()
    )


def test_a_given_initial_checkpoint_screens_epoch_0(tiny_scores, tiny_llama, tmp_path, parity_checker):
    # The same weights as the scores' model, and the same seed: the same candidates, rewards and epoch.
    init_run(tmp_path / "scores-model", tiny_scores, CONFIG)
    init_run(tmp_path / "given", tiny_scores, CONFIG)
    Run.open(tmp_path / "scores-model").step()
    Run.open(tmp_path / "given").step(checkpoint=tiny_llama)
    for name in ("screen-0000.ids", "screen-0000.jsonl", "epoch-0000.parquet"):
        assert (tmp_path / "given" / name).read_bytes() == (tmp_path / "scores-model" / name).read_bytes(), name


def console(*args: object) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    env.pop("GAINCURATE_DEBUG", None)
    return subprocess.run(
        [str(CONSOLE_SCRIPT), *map(str, args)], env=env, capture_output=True, text=True, timeout=300, check=False
    )


def test_the_console_script_screens_with_schedule_step(tiny_scores, tiny_llama, tmp_path):
    run_dir = tmp_path / "run"
    result = console(
        "schedule", "init", "--scores", tiny_scores, "--run", run_dir, "--subset-size", SUBSET,
        "--strategy", "screen", "--screen-factor", FACTOR, "--screen-rollouts", ROLLOUTS, "--band", "0,1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    config = rundir.load_run(run_dir).config
    assert (config.strategy, config.options.screen_factor, config.options.screen_rollouts, config.band) == (
        "screen", FACTOR, ROLLOUTS, (0.0, 1.0),
    )  # fmt: skip

    # Epoch 0 in this process, through the driver `schedule step` calls (a console step costs a fresh torch import):
    # the console script's own step is epoch 1's, below.
    step = Run.open(run_dir).step()
    assert (step.epoch, step.subset_size, step.strategy) == (0, SUBSET, "screen")
    ids, rewards = screened(run_dir, 0)
    assert len(ids) == SCREENED and sum(len(r) for r in rewards.values()) == SCREENED * ROLLOUTS
    assert set(epoch_ids(run_dir, 0)) <= set(ids)

    feedback = write_feedback(tmp_path / "feedback-0.jsonl", epoch_ids(run_dir, 0))
    before = snapshot(run_dir)
    result = console("schedule", "step", "--run", run_dir, "--feedback", feedback)
    assert result.returncode == 1  # a user error, not a usage error
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "--checkpoint" in errors[0], result.stderr
    assert snapshot(run_dir) == before

    result = console("schedule", "step", "--run", run_dir, "--feedback", feedback, "--checkpoint", tiny_llama)
    assert result.returncode == 0, result.stderr
    assert "epoch 1: 2 prompts by screen" in result.stdout
    ids, rewards = screened(run_dir, 1)
    assert len(ids) == SCREENED and set(epoch_ids(run_dir, 1)) <= set(ids)
    [line] = rundir.read_history(run_dir)
    assert line["selection"]["screen_rollouts"] == SCREENED * ROLLOUTS
