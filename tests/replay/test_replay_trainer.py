"""Rollout replay inside TRL's GRPOTrainer: TRL's own loss on folded inputs, and real CPU training runs."""

from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("trl")

from replay_helpers import GenerationCounter, buffer_sizes_before_rounds
from torch.utils.data import Sampler
from trl import GRPOConfig, GRPOTrainer

from gaincurate.errors import ConfigError
from gaincurate.integrations.trl.replay import REPLAY_BUFFER_FILE, ReplayBuffer, ReplayConfig
from gaincurate.integrations.trl.replay.loss import (
    fold_replay_weights,
    group_advantages,
    group_has_signal,
    replay_token_loss,
)
from gaincurate.integrations.trl.replay.trainer import (
    ADVANTAGES_KEY,
    BEHAVIOUR_KEY,
    CAPTURE_KEY,
    REPLAYED_KEY,
    ROW_KEY,
    ReplayGRPOTrainer,
    ReplayMixin,
)
from gaincurate.lab.benchmarks.replay import WORDS, build_model, build_prompts, build_tokenizer, parity_reward

GROUP = 4  # num_generations
BATCH_PROMPTS = 4  # prompts per generation batch


def grpo_args(output_dir, **overrides) -> GRPOConfig:
    settings = {
        "output_dir": str(output_dir),
        "use_cpu": True,
        "per_device_train_batch_size": BATCH_PROMPTS * GROUP,
        "num_generations": GROUP,
        "max_completion_length": 8,
        "max_steps": 6,
        "learning_rate": 1e-2,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
        "seed": 0,
        # TRL turns bf16 autocast on by default; fp32 keeps gradient comparisons exact to float rounding.
        "bf16": False,
    }
    settings.update(overrides)
    return GRPOConfig(**settings)


# -- TRL's _compute_loss on folded inputs -----------------------------------------------------------


def loss_trainer(trainer_class, output_dir, **kwargs):
    tokenizer = build_tokenizer()
    trainer = trainer_class(
        model=build_model(tokenizer),
        reward_funcs=parity_reward,
        args=grpo_args(output_dir, epsilon_high=0.28),
        train_dataset=build_prompts(8),
        processing_class=tokenizer,
        **kwargs,
    )
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1
    return trainer


@pytest.fixture(scope="module")
def plain_trainer(tmp_path_factory):
    return loss_trainer(GRPOTrainer, tmp_path_factory.mktemp("loss"))


@pytest.fixture(scope="module")
def replay_trainer(tmp_path_factory):
    config = ReplayConfig(replay_is_cap=1.2)
    return loss_trainer(ReplayGRPOTrainer, tmp_path_factory.mktemp("replay-loss"), replay_config=config)


def loss_batch(trainer, seed: int):
    """Hand-built completions with log-probs for pi_theta, pi_old and mu around the model's own."""
    generator = torch.Generator().manual_seed(seed)
    rows, prompt_len, width = 6, 3, 8
    completion_mask = torch.ones(rows, width, dtype=torch.long)
    completion_mask[1, 5:] = 0
    completion_mask[4, 2:] = 0
    inputs = {
        "prompt_ids": torch.randint(3, len(WORDS) + 3, (rows, prompt_len), generator=generator),
        "prompt_mask": torch.ones(rows, prompt_len, dtype=torch.long),
        "completion_ids": torch.randint(3, len(WORDS) + 3, (rows, width), generator=generator),
        "completion_mask": completion_mask,
        "num_items_in_batch": completion_mask.sum(),
    }
    with torch.no_grad():
        current = policy_logps(trainer, inputs)
    old = current + torch.randn(rows, width, generator=generator) * 0.3
    behaviour = old + torch.randn(rows, width, generator=generator) * 0.5
    behaviour[:2] = old[:2]  # two fresh rows
    advantages = torch.randn(rows, generator=generator)
    return inputs, old, behaviour, advantages


def policy_logps(trainer, inputs):
    logps, _, _ = trainer._get_per_token_logps_and_entropies(
        trainer.model,
        torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1),
        torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1),
        inputs["completion_ids"].size(1),
    )
    return logps


def aggregate(trainer, per_token, mask, num_items):
    """TRL's aggregation per loss_type with one process and no accumulation."""
    if trainer.loss_type == "grpo":
        return ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
    if trainer.loss_type == "bnpo":
        return (per_token * mask).sum() / mask.sum()
    if trainer.loss_type == "dr_grpo":
        return (per_token * mask).sum() / (per_token.size(0) * trainer.max_completion_length)
    return (per_token * mask).sum() / num_items  # dapo


def gradients(model, loss):
    model.zero_grad()
    loss.backward()
    return [p.grad.detach().clone() for p in model.parameters() if p.grad is not None]


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo", "dapo"])
@pytest.mark.parametrize("cap", [None, 1.2], ids=["cap-None", "cap-1.2"])
def test_trl_compute_loss_on_folded_inputs_is_the_replay_loss(plain_trainer, loss_type, cap):
    trainer = plain_trainer
    trainer.loss_type = loss_type
    inputs, old, behaviour, advantages = loss_batch(trainer, seed=1)
    mask = inputs["completion_mask"]
    folded = fold_replay_weights(old, behaviour, advantages, mask, cap)
    if cap is not None:
        assert folded.truncated.any()

    trl_loss = trainer._compute_loss(
        trainer.model, {**inputs, "old_per_token_logps": folded.old_logps, "advantages": folded.advantages}
    )
    trl_grads = gradients(trainer.model, trl_loss)

    logps = policy_logps(trainer, inputs)
    per_token = replay_token_loss(logps, old, behaviour, advantages, trainer.epsilon_low, trainer.epsilon_high, cap)
    reference = aggregate(trainer, per_token, mask, inputs["num_items_in_batch"])
    reference_grads = gradients(trainer.model, reference)

    torch.testing.assert_close(trl_loss, reference, rtol=1e-5, atol=1e-7)
    for trl_grad, reference_grad in zip(trl_grads, reference_grads, strict=True):
        torch.testing.assert_close(trl_grad, reference_grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("loss_type", ["grpo", "dapo"])
def test_nothing_replayed_gives_trl_loss_bit_for_bit(plain_trainer, loss_type):
    trainer = plain_trainer
    trainer.loss_type = loss_type
    inputs, old, _, advantages = loss_batch(trainer, seed=2)
    plain = {**inputs, "old_per_token_logps": old, "advantages": advantages}
    folded = fold_replay_weights(old, old.clone(), advantages, inputs["completion_mask"], cap=2.0)
    replay = {**inputs, "old_per_token_logps": folded.old_logps, "advantages": folded.advantages}

    plain_loss = trainer._compute_loss(trainer.model, plain)
    plain_grads = gradients(trainer.model, plain_loss)
    replay_loss = trainer._compute_loss(trainer.model, replay)
    replay_grads = gradients(trainer.model, replay_loss)
    assert torch.equal(plain_loss, replay_loss)
    assert all(torch.equal(a, b) for a, b in zip(plain_grads, replay_grads, strict=True))


def lazy_inputs(inputs, behaviour, advantages, replayed_rows):
    """The batch `_merge_replayed` builds when pi_old comes from the loss forward: NaN in TRL's keys."""
    rows = advantages.size(0)
    replayed = torch.zeros(rows, dtype=torch.bool)
    replayed[replayed_rows] = True
    return {
        **inputs,
        "advantages": torch.full_like(advantages, float("nan")),
        "old_per_token_logps": torch.full(behaviour.shape, float("nan")),
        ROW_KEY: torch.arange(rows),
        CAPTURE_KEY: ~replayed,
        REPLAYED_KEY: replayed,
        BEHAVIOUR_KEY: torch.where(replayed.unsqueeze(1), behaviour, torch.zeros_like(behaviour)),
        ADVANTAGES_KEY: advantages,
    }


@pytest.mark.parametrize("loss_type", ["grpo", "dapo"])
def test_loss_forward_folds_the_weight_and_records_fresh_log_probs(replay_trainer, loss_type):
    trainer = replay_trainer
    trainer.loss_type = loss_type
    trainer._captured_logps.clear()
    inputs, _, behaviour, advantages = loss_batch(trainer, seed=4)
    mask = inputs["completion_mask"]
    loss = trainer._compute_loss(trainer.model, lazy_inputs(inputs, behaviour, advantages, [2, 3, 4, 5]))
    grads = gradients(trainer.model, loss)

    # pi_old is the policy itself (no optimizer step since generation); fresh rows have mu = pi_old.
    logps = policy_logps(trainer, inputs)
    old = logps.detach()
    mu = old.clone()
    mu[2:] = behaviour[2:]
    per_token = replay_token_loss(logps, old, mu, advantages, trainer.epsilon_low, trainer.epsilon_high, 1.2)
    reference = aggregate(trainer, per_token, mask, inputs["num_items_in_batch"])
    torch.testing.assert_close(loss, reference, rtol=1e-5, atol=1e-7)
    for grad, reference_grad in zip(grads, gradients(trainer.model, reference), strict=True):
        torch.testing.assert_close(grad, reference_grad, rtol=1e-4, atol=1e-6)

    assert sorted(trainer._captured_logps) == [0, 1]
    for row in (0, 1):
        torch.testing.assert_close(trainer._captured_logps[row], old[row], rtol=0, atol=1e-6)
    assert trainer._metrics["train"]["replay/is_truncation_rate"][-1] > 0


def test_a_trl_that_reads_inputs_before_the_forward_fails_loudly(replay_trainer, monkeypatch):
    inputs, _, behaviour, advantages = loss_batch(replay_trainer, seed=5)

    def early_reader(self, model, batch):
        return (batch["advantages"].unsqueeze(1) * batch["old_per_token_logps"]).sum()

    monkeypatch.setattr(GRPOTrainer, "_compute_loss", early_reader)
    with pytest.raises(RuntimeError, match="Pin trl"):
        replay_trainer._compute_loss(replay_trainer.model, lazy_inputs(inputs, behaviour, advantages, [3]))


def test_buffer_capacity_follows_the_config(replay_trainer, tmp_path):
    assert replay_trainer.replay_buffer.capacity == 4 * BATCH_PROMPTS  # the default: 4 generation batches
    two_batches = loss_trainer(ReplayGRPOTrainer, tmp_path, replay_config=ReplayConfig(replay_capacity_batches=2))
    assert two_batches.replay_buffer.capacity == 2 * BATCH_PROMPTS


@pytest.mark.parametrize(
    "overrides",
    [{"loss_type": "cispo"}, {"loss_type": "dapo", "importance_sampling_level": "sequence"}],
    ids=["cispo", "sequence-level"],
)
def test_unsupported_trainer_settings_are_config_errors(tmp_path, overrides):
    tokenizer = build_tokenizer()
    with pytest.raises(ConfigError, match="rollout replay does not support"):
        ReplayGRPOTrainer(
            model=build_model(tokenizer),
            reward_funcs=parity_reward,
            args=grpo_args(tmp_path, **overrides),
            train_dataset=build_prompts(8),
            processing_class=tokenizer,
        )


# -- real training runs ---------------------------------------------------------------------------


class ReversedSampler(Sampler):
    """A stand-in curriculum: prompts from last to first, each repeated `repeat` times in a row."""

    def __init__(self, size: int, repeat: int) -> None:
        self.size, self.repeat = size, repeat

    def __iter__(self):
        for index in reversed(range(self.size)):
            yield from [index] * self.repeat

    def __len__(self) -> int:
        return self.size * self.repeat


class TrlOutputSpy:
    """Sits between ReplayMixin and GRPOTrainer: records what stock TRL returned for each fresh batch."""

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        if self.model.training:
            self.trl_outputs.append({"advantages": output["advantages"].clone(), "rewards": self._replay_rewards})
        return output

    def _compute_loss(self, model, inputs):
        self.loss_rows.append(inputs["completion_ids"].size(0))
        return super()._compute_loss(model, inputs)


class CurriculumReplayTrainer(GenerationCounter, ReplayMixin, TrlOutputSpy, GRPOTrainer):
    def __init__(self, *args, **kwargs):
        self.trl_outputs, self.loss_rows = [], []
        super().__init__(*args, **kwargs)

    def _get_train_sampler(self, dataset=None):
        dataset = self.train_dataset if dataset is None else dataset
        return ReversedSampler(len(dataset), self.num_generations)


def even_prompts_solved_reward(prompts, completion_ids, **_):
    """Prompts whose first word has an even index always score 1 (zero variance); the rest score parity."""
    return [
        1.0 if WORDS.index(prompt.split()[0]) % 2 == 0 else float(sum(ids) % 2)
        for prompt, ids in zip(prompts, completion_ids, strict=True)
    ]


@pytest.mark.slow
def test_replay_generates_for_delta_of_the_sampler_batch_once_warm(tmp_path):
    tokenizer = build_tokenizer()
    dataset = build_prompts(32)
    config = ReplayConfig(replay_fresh_fraction=0.5, replay_capacity=6, replay_seed=1)
    trainer = CurriculumReplayTrainer(
        model=build_model(tokenizer),
        reward_funcs=even_prompts_solved_reward,
        args=grpo_args(tmp_path, max_steps=8),
        train_dataset=dataset,
        processing_class=tokenizer,
        replay_config=config,
    )
    trainer.train()

    history, calls = trainer.replay_history, trainer.generation_calls
    assert [round_.step for round_ in history] == list(range(8))
    assert [call["step"] for call in calls] == list(range(8))
    fresh_target = math.ceil(0.5 * BATCH_PROMPTS)
    warm_rounds = 0
    for round_, call, buffered in zip(history, calls, buffer_sizes_before_rounds(history, 6), strict=True):
        # Counted at the generate call: fresh rows are delta * B prompts once the buffer can fill the rest,
        # all B before that; the batch never shrinks.
        assert round_.fresh_prompts == config.fresh_prompts(BATCH_PROMPTS, buffered)
        assert call["rows"] == round_.fresh_prompts * GROUP
        assert round_.fresh_prompts + len(round_.replayed_uids) == BATCH_PROMPTS
        warm = buffered >= BATCH_PROMPTS - fresh_target
        warm_rounds += warm
        if warm:
            assert call["rows"] == fresh_target * GROUP
        # The custom sampler decides the fresh prompts: the first ones of its batch for this step.
        sampler_batch = [
            dataset[len(dataset) - 1 - (round_.step * BATCH_PROMPTS + i)]["prompt"] for i in range(BATCH_PROMPTS)
        ]
        expected = [prompt for prompt in sampler_batch[: round_.fresh_prompts] for _ in range(GROUP)]
        assert call["prompts"] == expected
    assert warm_rounds >= 5
    assert trainer.loss_rows == [BATCH_PROMPTS * GROUP] * 8  # the trained batch never shrinks

    # Zero-variance groups (even first word) were generated but never stored; everything stored has signal.
    generated_first_words = {WORDS.index(p.split()[0]) % 2 for call in calls for p in call["prompts"]}
    assert generated_first_words == {0, 1}
    assert len(trainer.replay_buffer) > 0
    for group in trainer.replay_buffer:
        assert group_has_signal(group.rewards_per_func, trainer.reward_weights, "sum_then_normalize")
        first_word = tokenizer.convert_ids_to_tokens(int(group.prompt_ids[0]))
        assert WORDS.index(first_word) % 2 == 1

    # Recomputing advantages from stored rewards reproduces TRL's own for every fresh batch.
    assert len(trainer.trl_outputs) == 8
    for record in trainer.trl_outputs:
        recomputed = group_advantages(record["rewards"], trainer.reward_weights, GROUP, trainer.scale_rewards)
        torch.testing.assert_close(recomputed, record["advantages"], rtol=1e-6, atol=1e-6)

    # Replay metrics reach the trainer's logs.
    logged = [entry for entry in trainer.state.log_history if "replay/replayed_fraction" in entry]
    assert len(logged) == 8
    replayed = [entry for entry in logged if entry["replay/replayed_fraction"] > 0]
    assert replayed and all(entry["replay/staleness_mean"] >= 1 for entry in replayed)
    assert all(entry["replay/is_weight_max"] >= entry["replay/is_weight_mean"] > 0 for entry in replayed)
    assert all(0 <= entry["replay/is_truncation_rate"] <= 1 for entry in replayed)


def replay_run(model_dir, output_dir, tokenizer, **train_kwargs) -> ReplayGRPOTrainer:
    trainer = ReplayGRPOTrainer(
        model=str(model_dir),
        reward_funcs=parity_reward,
        args=grpo_args(output_dir, save_strategy="steps", save_steps=3, beta=0.04),
        train_dataset=build_prompts(32),
        processing_class=tokenizer,
        replay_config=ReplayConfig(replay_fresh_fraction=0.5, replay_capacity=5, replay_seed=3),
    )
    trainer.train(**train_kwargs)
    return trainer


@pytest.mark.slow
def test_resume_continues_with_the_saved_buffer(tmp_path):
    tokenizer = build_tokenizer()
    model_dir = tmp_path / "model"
    build_model(tokenizer).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)

    full = replay_run(model_dir, tmp_path / "full", tokenizer)
    checkpoint = tmp_path / "full" / "checkpoint-3"
    saved = ReplayBuffer.load(checkpoint / REPLAY_BUFFER_FILE)
    assert len(saved) > 0
    assert all(group.ref_logps is not None for group in saved)  # beta != 0: reference log-probs travel too
    stored_by_step3 = [uid for round_ in full.replay_history[:3] for uid in round_.stored_uids]
    assert [group.uid for group in saved] == stored_by_step3[-5:]
    final_file = ReplayBuffer.load(tmp_path / "full" / "checkpoint-6" / REPLAY_BUFFER_FILE)
    assert all(a.same_as(b) for a, b in zip(full.replay_buffer, final_file, strict=True))

    resumed = replay_run(model_dir, tmp_path / "resumed", tokenizer, resume_from_checkpoint=str(checkpoint))
    # The resumed run's first draw comes from the checkpoint's buffer and RNG state: the same groups the
    # uninterrupted run drew at that step.
    assert [round_.step for round_ in resumed.replay_history] == [3, 4, 5]
    assert full.replay_history[3].replayed_uids  # the compared draw is not trivially empty
    assert resumed.replay_history[0].replayed_uids == full.replay_history[3].replayed_uids
    assert set(resumed.replay_history[0].replayed_uids) <= {group.uid for group in saved}
    # And the rest of the run matches the uninterrupted one, buffer and all.
    assert resumed.replay_history == full.replay_history[3:]
    assert all(a.same_as(b) for a, b in zip(resumed.replay_buffer, full.replay_buffer, strict=True))


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides",
    [
        {"steps_per_generation": 2},
        {"gradient_accumulation_steps": 2, "per_device_train_batch_size": 8},
        {"num_iterations": 2, "loss_type": "grpo", "scale_rewards": "batch"},
    ],
    ids=["steps_per_generation-2", "accumulation-2", "iterations-2"],
)
def test_replay_follows_trl_batching_settings(tmp_path, overrides):
    tokenizer = build_tokenizer()
    trainer = type("Counting", (GenerationCounter, ReplayGRPOTrainer), {})(
        model=build_model(tokenizer),
        reward_funcs=parity_reward,
        args=grpo_args(tmp_path, max_steps=4, **overrides),
        train_dataset=build_prompts(64),
        processing_class=tokenizer,
        replay_config=ReplayConfig(replay_fresh_fraction=0.5),
    )
    trainer.train()
    batch_prompts = trainer.args.generation_batch_size // GROUP
    generate_every = trainer.args.steps_per_generation * trainer.num_iterations
    rounds = trainer.replay_history
    assert (
        len(rounds)
        == len(trainer.generation_calls)
        == math.ceil(4 * trainer.args.gradient_accumulation_steps / generate_every)
    )
    sizes = buffer_sizes_before_rounds(rounds, trainer.replay_buffer.capacity)
    for round_, call, buffered in zip(rounds, trainer.generation_calls, sizes, strict=True):
        assert call["rows"] == round_.fresh_prompts * GROUP
        assert round_.fresh_prompts == trainer.replay_config.fresh_prompts(batch_prompts, buffered)
    assert any(round_.replayed_uids for round_ in rounds)
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 4 and all(math.isfinite(loss) for loss in losses)
