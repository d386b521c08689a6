"""Rollout replay together with the gaincurate curriculum: a real ReplayGRPOTrainer on CPU with GainCurriculum attached.

The curriculum's sampler decides each generation batch (B prompts of the epoch's subset, in rank order); replay
generates for the first ceil(delta * B) of them once its buffer can fill the rest, and replays buffered groups
(possibly of earlier epochs) in the other slots. Only fresh rollouts pass through the reward functions, so the
curriculum's accuracy is over fresh rollouts only. A resume from a mid-epoch checkpoint continues both: the
buffer from the checkpoint's replay_buffer.safetensors, the curriculum from its trainer_state.json.
"""

from __future__ import annotations

import json
import math
import shutil
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

pytest.importorskip("trl")

from replay_helpers import GenerationCounter, buffer_sizes_before_rounds
from transformers import TrainerCallback
from trl_helpers import SCHEDULE, EpochRewards, expected_mu_next, grpo_settings, score_prompts

from gaincurate.integrations.trl import GainCurriculum
from gaincurate.integrations.trl.replay import REPLAY_BUFFER_FILE, ReplayBuffer, ReplayConfig, ReplayGRPOTrainer
from gaincurate.schedule import ScheduleConfig
from gaincurate.schedule.run.rundir import read_history

GROUP = 4  # num_generations: a parity-rewarded group of 4 usually has signal, so the buffer fills
BATCH = 3  # prompts per generation batch: ceil(0.5 * 3) = 2 fresh and 1 replayed once warm (the ceiling matters)
SUBSET_SIZE = 6  # two optimizer steps per curriculum epoch
EPOCHS = 3
STEPS_PER_EPOCH = SUBSET_SIZE // BATCH
STEPS = EPOCHS * STEPS_PER_EPOCH
DELTA = 0.5
FRESH = math.ceil(DELTA * BATCH)
RESUME_STEP = 3  # mid epoch 1: the checkpoint holds epoch 1's first fresh rollouts, not yet stepped
REPLAY = ReplayConfig(replay_fresh_fraction=DELTA, replay_capacity=4, replay_seed=1)


@pytest.fixture(scope="module")
def scores(tiny_llama, tmp_path_factory) -> Path:
    return score_prompts(tiny_llama, tmp_path_factory.mktemp("replay-curriculum-scores") / "scores")


class CountingReplayTrainer(GenerationCounter, ReplayGRPOTrainer):
    """ReplayGRPOTrainer that records every call to TRL's `_generate` (step, prompt rows)."""


class SnapshotRunDir(TrainerCallback):
    """Copies the curriculum's run directory when the checkpoint of `step` is written: what a crash leaves."""

    def __init__(self, run_dir: Path, step: int, into: Path) -> None:
        self.run_dir, self.step, self.into = run_dir, step, into

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            shutil.copytree(self.run_dir, self.into)


def train_replay_curriculum(scores, model_dir, root: Path, *, resume=None, run_dir=None, snapshot=None):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig

    run_dir = run_dir or root / "run"
    if resume is None:
        curriculum = GainCurriculum(
            scores, ScheduleConfig(**{"strategy": "gain", **{**SCHEDULE, "subset_size": SUBSET_SIZE}}), run_dir=run_dir
        )
    else:  # a new process: the curriculum comes back from the run directory and the checkpoint
        curriculum = GainCurriculum(run_dir=run_dir)
    assert curriculum.config.strategy == "gain"
    rewards = EpochRewards()
    rewards.__name__ = "parity"
    settings = grpo_settings(
        root / "out",
        num_generations=GROUP,
        per_device_train_batch_size=BATCH * GROUP,
        num_train_epochs=EPOCHS,
        save_strategy="steps",
        save_steps=RESUME_STEP,
    )
    trainer = CountingReplayTrainer(
        model=AutoModelForCausalLM.from_pretrained(model_dir),
        args=GRPOConfig(**settings),
        train_dataset=curriculum.train_dataset(),
        reward_funcs=curriculum.wrap_rewards([rewards]),
        processing_class=AutoTokenizer.from_pretrained(model_dir),
        callbacks=[curriculum.callback],
        replay_config=REPLAY,
    )
    if snapshot is not None:
        trainer.add_callback(SnapshotRunDir(run_dir, RESUME_STEP, snapshot))
    curriculum.attach(trainer)
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    # The gc_ids TRL generated for, call by call: the dataset's prompts (chat messages) are all distinct.
    gc_id_of = {json.dumps(row["prompt"], sort_keys=True): int(row["gc_id"]) for row in trainer.train_dataset}
    calls = trainer.generation_calls
    fresh_ids = [[gc_id_of[json.dumps(prompt, sort_keys=True)] for prompt in call["prompts"]] for call in calls]
    return SimpleNamespace(
        curriculum=curriculum, rewards=rewards, trainer=trainer, run_dir=run_dir, out=root / "out", fresh_ids=fresh_ids
    )


@pytest.fixture(scope="module")
def straight(scores, tiny_llama, tmp_path_factory):
    """The uninterrupted run; the run directory as checkpoint-3 was written is kept for the resume test."""
    root = tmp_path_factory.mktemp("replay-curriculum")
    return train_replay_curriculum(scores, tiny_llama, root, snapshot=root / "run-at-checkpoint")


def strip(history):
    return [{k: v for k, v in line.items() if k not in ("timings", "checkpoint")} for line in history]


@pytest.mark.slow
def test_fresh_prompts_are_delta_of_each_curriculum_batch_once_warm(straight):
    trainer, history = straight.trainer, read_history(straight.run_dir)
    rounds, calls = trainer.replay_history, trainer.generation_calls
    assert [line["epoch"] for line in history] == list(range(EPOCHS))
    assert [round_.step for round_ in rounds] == [call["step"] for call in calls] == list(range(STEPS))
    warm_rounds = 0
    for round_, call, ids, buffered in zip(
        rounds, calls, straight.fresh_ids, buffer_sizes_before_rounds(rounds, REPLAY.replay_capacity), strict=True
    ):
        # (a) Counted at TRL's generate call: ceil(delta * B) prompts once the buffer can fill the rest, more
        # fresh prompts before that; the batch never shrinks.
        assert round_.fresh_prompts == REPLAY.fresh_prompts(BATCH, buffered)
        assert call["rows"] == round_.fresh_prompts * GROUP
        assert round_.fresh_prompts + len(round_.replayed_uids) == BATCH
        if buffered >= BATCH - FRESH:
            warm_rounds += 1
            assert round_.fresh_prompts == FRESH and len(round_.replayed_uids) == BATCH - FRESH
        # (b) The fresh prompts are the first ones of the curriculum sampler's batch for this step: the epoch's
        # subset in rank order, B prompts per step, each prompt GROUP times in a row.
        epoch, batch = divmod(round_.step, STEPS_PER_EPOCH)
        sampler_batch = history[epoch]["subset_ids"][batch * BATCH : (batch + 1) * BATCH]
        assert ids == [gc_id for gc_id in sampler_batch[: round_.fresh_prompts] for _ in range(GROUP)]
    assert rounds[0].fresh_prompts == BATCH  # the empty buffer's round generates the whole batch
    assert warm_rounds >= STEPS - 2
    # Replay crosses curriculum epochs: each epoch's first round replays groups of an earlier epoch's prompts.
    stored_at = {uid: round_.step for round_ in rounds for uid in round_.stored_uids}
    for epoch in range(1, EPOCHS):
        first = rounds[epoch * STEPS_PER_EPOCH]
        assert first.replayed_uids and all(stored_at[uid] < first.step for uid in first.replayed_uids)
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == STEPS and all(math.isfinite(loss) for loss in losses)


@pytest.mark.slow
def test_curriculum_advances_on_fresh_rollouts_only(straight):
    driver = straight.curriculum.run
    history = read_history(straight.run_dir)
    assert strip(straight.curriculum.history) == strip(history)
    mu = 0.0
    for line in history:
        epoch = line["epoch"]
        steps = range(epoch * STEPS_PER_EPOCH, (epoch + 1) * STEPS_PER_EPOCH)
        fresh = Counter(gc_id for step in steps for gc_id in straight.fresh_ids[step])
        # The reward function saw exactly the fresh rollouts; replayed groups were scored when generated and are
        # never scored (nor recorded) again, so an epoch's feedback holds only the rollouts generated in it.
        assert straight.rewards.ids(epoch) == fresh
        assert set(fresh) <= set(line["subset_ids"]) and len(line["subset_ids"]) == SUBSET_SIZE
        feedback = [json.loads(text) for text in (straight.run_dir / f"feedback-{epoch:04d}.jsonl").open()]
        assert feedback == straight.rewards.feedback(epoch)
        assert line["rollouts"] == sum(fresh.values()) == len(feedback)
        assert (line["prompts"], line["missing_prompts"]) == (len(fresh), SUBSET_SIZE - len(fresh))
        if epoch > 0:  # warm all epoch: replay skipped B - ceil(delta * B) prompts of each batch
            assert line["rollouts"] == STEPS_PER_EPOCH * FRESH * GROUP
        accuracy = sum(r["reward"] for r in feedback) / len(feedback) / driver.config.reward_max
        assert line["accuracy"] == pytest.approx(accuracy, abs=1e-12)
        # mu still moves by the GAIN-RL update, with the whole subset re-scored by the live model.
        assert line["ang_source"] == "rescored"
        delta, mu_next = expected_mu_next(mu, accuracy, line["ang"], driver)
        assert (line["mu"], line["delta"], line["mu_next"]) == pytest.approx((mu, delta, mu_next), abs=1e-9)
        mu = mu_next
    assert len({tuple(line["subset_ids"]) for line in history}) > 1  # the curriculum moved between epochs
    logged = [entry for entry in straight.trainer.state.log_history if "curriculum/mu" in entry]
    assert [entry["curriculum/mu"] for entry in logged] == pytest.approx([line["mu_next"] for line in history])


@pytest.mark.slow
def test_resume_mid_epoch_continues_buffer_and_curriculum(straight, scores, tiny_llama, tmp_path):
    checkpoint = straight.out / f"checkpoint-{RESUME_STEP}"
    saved = ReplayBuffer.load(checkpoint / REPLAY_BUFFER_FILE)
    stored = [uid for round_ in straight.trainer.replay_history[:RESUME_STEP] for uid in round_.stored_uids]
    assert len(saved) > 0 and [group.uid for group in saved] == stored[-REPLAY.replay_capacity :]
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    curriculum_state = state["stateful_callbacks"]["GainCurriculumCallback"]["attributes"]["gaincurate_state"]
    epoch_1_so_far = [[r["gc_id"], r["reward"]] for r in straight.rewards.feedback(1)[: FRESH * GROUP]]
    assert curriculum_state["schedule"]["epoch"] == 1 and curriculum_state["records"] == epoch_1_so_far

    # A new process: the run directory as it was when checkpoint-3 was written, the trainer resumed from it.
    run_dir = tmp_path / "run"
    shutil.copytree(straight.out.parent / "run-at-checkpoint", run_dir)
    resumed = train_replay_curriculum(scores, tiny_llama, tmp_path, resume=checkpoint, run_dir=run_dir)

    # Replay: the first draw comes from the checkpoint's buffer, and every round after matches, buffer and all.
    rounds = resumed.trainer.replay_history
    assert [round_.step for round_ in rounds] == list(range(RESUME_STEP, STEPS))
    assert rounds[0].replayed_uids and set(rounds[0].replayed_uids) <= {group.uid for group in saved}
    assert rounds == straight.trainer.replay_history[RESUME_STEP:]
    assert all(a.same_as(b) for a, b in zip(resumed.trainer.replay_buffer, straight.trainer.replay_buffer, strict=True))
    assert len(resumed.trainer.replay_buffer) == len(straight.trainer.replay_buffer)
    # Curriculum: the same fresh prompts in the same order, the same feedback, the same epochs and mu.
    assert resumed.fresh_ids == straight.fresh_ids[RESUME_STEP:]
    assert resumed.rewards.feedback(1) == straight.rewards.feedback(1)[FRESH * GROUP :]
    assert resumed.rewards.feedback(2) == straight.rewards.feedback(2)
    assert strip(read_history(run_dir)) == strip(read_history(straight.run_dir))
    for name in ("feedback-0001.jsonl", "feedback-0002.jsonl", "epoch-0003.parquet"):
        assert (run_dir / name).read_bytes() == (straight.run_dir / name).read_bytes()
    from safetensors.torch import load_file

    ours = load_file(resumed.out / f"checkpoint-{STEPS}" / "model.safetensors")
    theirs = load_file(straight.out / f"checkpoint-{STEPS}" / "model.safetensors")
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
