"""The TRL integration: sampler structure, reward recording, resume logic, and real GRPOTrainer runs on CPU."""

from __future__ import annotations

import asyncio
import json
import math
import shutil
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

pytest.importorskip("trl")


from trl.trainer.utils import RepeatSampler
from trl_helpers import (
    NUM_GENERATIONS,
    SCHEDULE,
    STRATEGIES,
    SUBSET,
    EpochRewards,
    expected_mu_next,
    grpo_settings,
    parity_reward,
    schedule,
    score_prompts,
)

from gaincurate.difficulty.reference import PassRates
from gaincurate.errors import ConfigError
from gaincurate.integrations.trl import (
    CurriculumSampler,
    GainCurriculum,
    record_rewards,
    resume_checkpoint,
)
from gaincurate.schedule import ScheduleConfig, Scheduler
from gaincurate.schedule.run.inputs import load_scores
from gaincurate.schedule.run.rundir import read_history


@pytest.fixture(scope="module")
def scores(tiny_llama, tmp_path_factory) -> Path:
    return score_prompts(tiny_llama, tmp_path_factory.mktemp("trl-scores") / "scores")


# -- the sampler --------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(2, 2, 1), (2, 1, 3), (3, 2, 2)], ids=lambda s: "G{}-B{}-R{}".format(*s))
def test_sampler_has_repeat_sampler_structure_over_the_subset(scores, shape):
    generations, batch, repeat = shape
    config = ScheduleConfig(**{"strategy": "gain", **{**SCHEDULE, "subset_size": 6, "rescore": "none"}})
    curriculum = GainCurriculum(scores, config)
    dataset = curriculum.train_dataset()
    # Rows in a shuffled order: the sampler must map gc_ids to rows, not assume row == gc_id.
    dataset = dataset.select(np.random.default_rng(0).permutation(len(dataset)).tolist())
    row_of = {int(g): r for r, g in enumerate(dataset["gc_id"])}
    structure = {"mini_repeat_count": generations, "batch_size": batch, "repeat_count": repeat}
    sampler = CurriculumSampler(curriculum, row_of, **structure)
    indices = list(sampler)
    plan_rows = [row_of[int(g)] for g in curriculum.run.plan.gc_ids]
    reference = RepeatSampler(plan_rows, **structure, shuffle=False)
    assert indices == [plan_rows[i] for i in reference]
    assert len(indices) == len(sampler) == len(reference)
    assert {int(dataset[i]["gc_id"]) for i in indices} == set(curriculum.run.plan.gc_ids.tolist())


def test_shuffled_epochs_are_seeded_permutations(scores):
    config = ScheduleConfig(**{"strategy": "gain", **{**SCHEDULE, "rescore": "none"}})
    first, second = (GainCurriculum(scores, config, shuffle=True) for _ in range(2))
    row_of = {i: i for i in range(16)}
    structure = {"mini_repeat_count": 1, "batch_size": 1, "repeat_count": 1}
    rows = [CurriculumSampler(c, row_of, **structure).current_rows() for c in (first, second)]
    assert rows[0] == rows[1]
    assert sorted(rows[0]) == sorted(int(g) for g in first.run.plan.gc_ids)


def test_a_dots_curriculum_without_a_run_directory_draws_like_the_scheduler(scores):
    # No run_dir: the curriculum holds the scheduler in memory and must build the dots strategy itself.
    config = ScheduleConfig(**schedule("dots"))
    driver = GainCurriculum(scores, config).run
    table = load_scores(scores)
    scheduler = Scheduler(config, table.prompts, scores=table)
    assert driver.plan.gc_ids.tolist() == scheduler.step().plan.gc_ids.tolist()
    rewards = [float(g % 2) for g in driver.plan.gc_ids]
    driver.record(driver.plan.gc_ids, rewards)
    driver.step()
    feedback = [{"gc_id": int(g), "reward": r} for g, r in zip(scheduler.current.gc_ids, rewards, strict=True)]
    assert driver.plan.gc_ids.tolist() == scheduler.step(feedback=feedback).plan.gc_ids.tolist()


def test_sampler_refuses_an_epoch_the_curriculum_is_not_at(scores):
    curriculum = GainCurriculum(scores, ScheduleConfig(**{"strategy": "gain", **SCHEDULE}))
    row_of = {i: i for i in range(16)}
    sampler = CurriculumSampler(curriculum, row_of, mini_repeat_count=2, batch_size=2, repeat_count=1)
    sampler.set_epoch(1)
    with pytest.raises(ConfigError, match="trainer is at epoch 1 but the curriculum at epoch 0"):
        list(sampler)


# -- reward recording ---------------------------------------------------------------------------------


def test_recorded_rewards_reach_memory_and_file(tmp_path):
    seen = []
    wrapped = record_rewards(parity_reward, sink=lambda ids, rewards: seen.append((ids, rewards)))
    assert wrapped.__name__ == "parity_reward"
    rewards = wrapped(prompts=["a", "b"], completions=["x", "y"], completion_ids=[[1, 2], [2, 2]], gc_id=[7, 9])
    assert rewards == [1.0, 0.0] and seen == [([7, 9], [1.0, 0.0])]

    path = tmp_path / "feedback.jsonl"

    def sometimes(completions, gc_id, **kwargs):
        return [None, 0.5]

    wrapped = record_rewards(sometimes, path=path)
    wrapped(completions=["x", "y"], gc_id=[3, 4])
    wrapped(completions=["x", "y"], gc_id=[5, 6])
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines == [{"gc_id": 4, "reward": 0.5}, {"gc_id": 6, "reward": 0.5}]  # None: not applicable, skipped


def test_async_reward_stays_async_and_records():
    seen = []

    async def slow(completions, **kwargs):
        return [1.0] * len(completions)

    wrapped = record_rewards(slow, sink=lambda ids, rewards: seen.append(ids), when=lambda: True)
    assert asyncio.iscoroutinefunction(type(wrapped).__call__)
    assert asyncio.run(wrapped(completions=["a"], gc_id=[2])) == [1.0] and seen == [[2]]


def test_evaluation_rewards_are_not_feedback(scores):
    curriculum = GainCurriculum(scores, ScheduleConfig(**{"strategy": "gain", **SCHEDULE}))
    [wrapped] = curriculum.wrap_rewards([parity_reward])
    curriculum.trainer = SimpleNamespace(model=torch.nn.Linear(1, 1).eval())
    wrapped(completion_ids=[[1]], gc_id=[0])
    assert curriculum.run.records == []
    curriculum.trainer.model.train()
    wrapped(completion_ids=[[1]], gc_id=[0])
    assert curriculum.run.records == [{"gc_id": 0, "reward": 1.0}]


@pytest.mark.parametrize("eval_gc_ids", [False, True], ids=["eval-rows-without-gc_id", "eval-rows-with-gc_id"])
def test_a_scripts_own_trainer_records_no_evaluation_rollout(tiny_llama, tmp_path, eval_gc_ids):
    """`record_rewards(path=...)` in a trainer script of one's own with an `eval_dataset`: the reward function
    scores the evaluation's rollouts, and the feedback file holds the training rollouts only, without an error."""
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    train = datasets.Dataset.from_list([{"prompt": f"What is {i}?", "gc_id": i} for i in range(4)])
    held_out = [{"prompt": f"Held out {i}?", **({"gc_id": 100 + i} if eval_gc_ids else {})} for i in range(2)]
    seen = []

    def parity(completion_ids, **columns):
        seen.append(columns.get("gc_id"))
        return parity_reward(completion_ids)

    feedback = tmp_path / "feedback.jsonl"
    settings = grpo_settings(tmp_path / "out", num_train_epochs=1, save_strategy="no", eval_strategy="steps",
                             eval_steps=1, per_device_eval_batch_size=4, shuffle_dataset=False)  # fmt: skip
    trainer = GRPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(tiny_llama), args=GRPOConfig(**settings), train_dataset=train,
        eval_dataset=datasets.Dataset.from_list(held_out), reward_funcs=[record_rewards(parity, path=feedback)],
        processing_class=AutoTokenizer.from_pretrained(tiny_llama),
    )  # fmt: skip
    trainer.train()

    evaluated = [ids for ids in seen if ids is None or min(ids) >= 100]
    assert len(evaluated) == 2 == sum("eval_loss" in line for line in trainer.state.log_history)  # one per step
    recorded = Counter(json.loads(line)["gc_id"] for line in feedback.read_text().splitlines())
    assert recorded == {gc_id: NUM_GENERATIONS for gc_id in range(4)}


def test_reward_outside_range_is_a_one_line_error(scores):
    curriculum = GainCurriculum(scores, ScheduleConfig(**{"strategy": "gain", **SCHEDULE}))
    [wrapped] = curriculum.wrap_rewards([lambda completions, **kw: [2.0] * len(completions)])
    with pytest.raises(
        ConfigError, match=r"gc_id 5: reward 2 is outside \[0, reward_max=1\]; .*ScheduleConfig\(reward_max=2\)"
    ):
        wrapped(completions=["a"], gc_id=[5])


def test_missing_gc_id_column_says_how_to_fix():
    wrapped = record_rewards(parity_reward, sink=lambda ids, rewards: None)
    with pytest.raises(ConfigError, match="remove_unused_columns=False"):
        wrapped(completion_ids=[[1]])


# -- out of process: which checkpoint an epoch resumes from -------------------------------------------


def write_checkpoint(output_dir: Path, step: int, epoch: float) -> Path:
    """A complete TRL checkpoint folder (whole one-tensor safetensors) that ends at `epoch`."""
    folder = output_dir / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    (folder / "model.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + bytes(4))
    (folder / "config.json").write_text("{}")
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step, "epoch": epoch}))
    return folder


def test_resume_checkpoint_picks_the_end_of_the_previous_epoch(tmp_path):
    out = tmp_path / "trainer"
    first, second = write_checkpoint(out, 2, 1.0), write_checkpoint(out, 4, 2.0)
    write_checkpoint(out, 3, 1.5)  # a mid-epoch save is never an epoch's start
    assert resume_checkpoint("", 0) is None
    assert resume_checkpoint(str(first), 1) == first
    assert resume_checkpoint(str(second), 2) == second
    # The newest is already past the epoch (a retried epoch): the previous epoch's end, or the base model.
    assert resume_checkpoint(str(second), 1) == first
    assert resume_checkpoint(str(second), 0) is None
    with pytest.raises(ConfigError, match="needs the one that ended epoch 2"):
        resume_checkpoint(str(second), 3)
    with pytest.raises(ConfigError, match="epoch 1 needs the checkpoint that ended epoch 0"):
        resume_checkpoint("", 1)
    # A retried epoch with the second newest deleted (save_total_limit=1): the fix is to keep two.
    shutil.rmtree(first)
    with pytest.raises(ConfigError, match=r"no complete checkpoint .* ends epoch 0 .*save_total_limit=2"):
        resume_checkpoint(str(second), 1)


# -- attach checks ------------------------------------------------------------------------------------


def tiny_trainer(curriculum, model_dir, output_dir, reward_funcs=None, **overrides):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    return GRPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(model_dir),
        args=GRPOConfig(**grpo_settings(output_dir, **overrides)),
        train_dataset=curriculum.train_dataset(),
        reward_funcs=reward_funcs if reward_funcs is not None else curriculum.wrap_rewards([parity_reward]),
        processing_class=AutoTokenizer.from_pretrained(model_dir),
        callbacks=[curriculum.callback],
    )


def test_attach_refuses_what_would_train_the_wrong_prompts(scores, tiny_llama, tmp_path):
    curriculum = GainCurriculum(scores, ScheduleConfig(**{"strategy": "gain", **{**SCHEDULE, "subset_size": 5}}))
    trainer = tiny_trainer(curriculum, tiny_llama, tmp_path)
    with pytest.raises(ConfigError, match="subset_size 5 is not a multiple of the 2 prompts.*subset_size=4 or 6"):
        curriculum.attach(trainer)
    curriculum = GainCurriculum(scores, ScheduleConfig(**{"strategy": "gain", **SCHEDULE}))
    with pytest.raises(ConfigError, match="curriculum.wrap_rewards"):
        curriculum.attach(tiny_trainer(curriculum, tiny_llama, tmp_path, reward_funcs=[parity_reward]))


# Each GRPOConfig saves inside a generation batch at save_steps=1; the last is subset 6, one generation batch of
# 3 micro-steps in 2 optimizer steps, where save_steps=3 lands inside epoch 1's batch though 3 * 2 % 3 == 0.
INSIDE_A_GENERATION = {
    "iterations-2": ({"num_iterations": 2}, 4, 1, 2),
    "steps_per_generation-2": ({"steps_per_generation": 2}, 4, 1, 2),
    "accumulation-2-steps_per_generation-3": ({"gradient_accumulation_steps": 2, "steps_per_generation": 3}, 6, 3, 2),
}


@pytest.mark.parametrize(("settings", "subset", "refused", "works"), INSIDE_A_GENERATION.values(),
                         ids=INSIDE_A_GENERATION.keys())  # fmt: skip
def test_step_saves_inside_a_generation_batch_are_refused_before_anything_is_written(
    scores, tiny_llama, tmp_path, settings, subset, refused, works
):
    """A resume from a checkpoint saved inside a generation batch would record the batch's rewards twice (TRL
    generates it again) and train other prompts; such a save_steps is refused, naming one that works."""
    config = ScheduleConfig(**schedule("gain", subset_size=subset))
    curriculum = GainCurriculum(scores, config, run_dir=tmp_path / "run")
    steps = {**settings, "save_strategy": "steps"}
    with pytest.raises(ConfigError, match=rf"^save_steps={refused} saves inside .* Use save_steps={works} "):
        curriculum.attach(tiny_trainer(curriculum, tiny_llama, tmp_path / "out", **steps, save_steps=refused))
    assert not (tmp_path / "run").exists()
    curriculum.attach(tiny_trainer(curriculum, tiny_llama, tmp_path / "out", **steps, save_steps=works))


@pytest.mark.slow
def test_a_checkpoint_inside_a_generation_batch_is_refused_on_resume_before_anything_is_written(
    scores, tiny_llama, tmp_path
):
    """A checkpoint another configuration saved (here at step 1 of one generation per step) lies inside a
    generation batch of num_iterations=2: its resume is refused before a step, and the run directory is untouched."""
    first = train_inprocess(scores, tiny_llama, tmp_path, "gain", stop_at_step=1, save_strategy="steps", save_steps=1)
    before = {path: path.read_bytes() for path in first.run_dir.rglob("*") if path.is_file()}
    with pytest.raises(ConfigError, match=r"^the checkpoint at step 1 was saved 1 micro-steps into a generation bat"):
        train_inprocess(scores, tiny_llama, tmp_path, "gain", resume=first.out / "checkpoint-1", run_dir=first.run_dir,
                        num_iterations=2)  # fmt: skip
    assert {path: path.read_bytes() for path in first.run_dir.rglob("*") if path.is_file()} == before


def test_a_run_directory_started_late_is_the_one_a_driver_built_on_it_writes(scores, tmp_path):
    """`start_later`: a new run directory is written at `start_run_dir()` only, by the same driver, byte for byte as
    a driver built on it at once writes it; an untrained one given another config starts again the same way."""
    import dataclasses

    from gaincurate.schedule.run.run import Run
    from gaincurate.schedule.run.rundir import load_run

    config = ScheduleConfig(**{"strategy": "gain", **SCHEDULE})
    at_once = Run(scores, config, run_dir=tmp_path / "at-once")
    later = Run(scores, config, run_dir=tmp_path / "later", start_later=True)
    assert not (tmp_path / "later").exists() and not later.write
    assert later.plan.gc_ids.tolist() == at_once.plan.gc_ids.tolist()  # drawn in memory meanwhile
    later.start_run_dir()
    later.start_run_dir()  # once only
    assert later.write and later.run_dir == tmp_path / "later"
    files = sorted(path.relative_to(tmp_path / "at-once") for path in (tmp_path / "at-once").rglob("*"))
    assert files == sorted(path.relative_to(tmp_path / "later") for path in (tmp_path / "later").rglob("*"))
    for name in (name for name in files if (tmp_path / "at-once" / name).is_file()):
        assert (tmp_path / "later" / name).read_bytes() == (tmp_path / "at-once" / name).read_bytes(), name

    other = dataclasses.replace(config, seed=config.seed + 1)
    again = Run(config=other, run_dir=tmp_path / "later", start_later=True)  # its scores: the run's
    assert load_run(tmp_path / "later").config == config  # untouched until started
    again.start_run_dir()
    assert load_run(tmp_path / "later").config == other and again.scores_dir == later.scores_dir
    assert Run(run_dir=tmp_path / "at-once", start_later=True).write  # continued: opened at once


def test_the_trainer_args_round_the_default_subset_to_whole_generation_batches(scores, tiny_llama, tmp_path):
    from trl import GRPOConfig

    # 16 prompts: the default 256/7500 of N rounds to 1 prompt, but each generation batch here takes 2.
    schedule = ScheduleConfig(
        **{"strategy": "gain", **{key: value for key, value in SCHEDULE.items() if key != "subset_size"}}
    )
    curriculum = GainCurriculum(scores, schedule)
    with pytest.raises(ConfigError, match="subset_size 1 is not a multiple of the 2 prompts.*args=training_args"):
        curriculum.attach(tiny_trainer(curriculum, tiny_llama, tmp_path))
    curriculum = GainCurriculum(scores, schedule, args=GRPOConfig(**grpo_settings(tmp_path / "out")))
    assert (curriculum.run.subset_size, curriculum.config.subset_multiple) == (2, 2)
    curriculum.attach(tiny_trainer(curriculum, tiny_llama, tmp_path))


# -- real GRPOTrainer runs ----------------------------------------------------------------------------


class StopAfter:
    """A callback that ends training after `epochs` epochs (the checkpoint of the last one is still written)."""

    def __new__(cls, epochs: int):
        from transformers import TrainerCallback

        class _Stop(TrainerCallback):
            def on_epoch_end(self, args, state, control, **kwargs):
                if math.floor(state.epoch + 1e-6) >= epochs:
                    control.should_training_stop = True

        return _Stop()


class StopAtStep:
    """A callback that ends training at optimizer step `step`, inside an epoch when it is not an epoch's last."""

    def __new__(cls, step: int):
        from transformers import TrainerCallback

        class _Stop(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if state.global_step >= step:
                    control.should_training_stop = True

        return _Stop()


def train_inprocess(
    scores, model_dir, root: Path, strategy: str, *, stop_after=None, stop_at_step=None, resume=None, run_dir=None,
    **overrides,
):  # fmt: skip
    config = ScheduleConfig(**schedule(strategy))
    run_dir = run_dir or root / "run"
    curriculum = GainCurriculum(scores, config, run_dir=run_dir) if not resume else GainCurriculum(run_dir=run_dir)
    rewards = EpochRewards()
    rewards.__name__ = "parity"
    reward_funcs = curriculum.wrap_rewards([rewards])
    trainer = tiny_trainer(curriculum, model_dir, root / "out", reward_funcs=reward_funcs, **overrides)
    if stop_after is not None:
        trainer.add_callback(StopAfter(stop_after))
    if stop_at_step is not None:
        trainer.add_callback(StopAtStep(stop_at_step))
    curriculum.attach(trainer)
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    return SimpleNamespace(curriculum=curriculum, rewards=rewards, trainer=trainer, run_dir=run_dir, out=root / "out")


@pytest.fixture(scope="module")
def inprocess(scores, tiny_llama, tmp_path_factory):
    runs = {}

    def run(strategy: str):
        if strategy not in runs:
            runs[strategy] = train_inprocess(scores, tiny_llama, tmp_path_factory.mktemp(strategy), strategy)
        return runs[strategy]

    return run


def epoch_end_checkpoints(out: Path) -> dict[int, Path]:
    found = {}
    for folder in out.glob("checkpoint-*"):
        state = json.loads((folder / "trainer_state.json").read_text())
        found[round(state["epoch"])] = folder
    return found


@pytest.mark.slow
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_each_epoch_trains_exactly_the_schedulers_subset(inprocess, scores, strategy):
    result = inprocess(strategy)
    history = read_history(result.run_dir)
    assert [line["epoch"] for line in history] == [0, 1, 2]
    assert result.curriculum.history == [{**line} for line in history]

    # What the reward function saw is exactly each epoch's subset, each prompt num_generations times.
    for line in history:
        assert result.rewards.ids(line["epoch"]) == {g: NUM_GENERATIONS for g in line["subset_ids"]}
        assert len(line["subset_ids"]) == SUBSET

    # An independent scheduler fed the test's own rewards and the logged angles draws the same epochs.
    config = ScheduleConfig(**schedule(strategy))
    table = load_scores(scores)
    scheduler = Scheduler(config, table.prompts, scores=table)
    plans = [scheduler.step().plan]
    for line in history:
        step = scheduler.step(feedback=result.rewards.feedback(line["epoch"]), ang=line.get("ang"))
        if "mu_next" in line:  # gain and length
            assert step.record.update["mu_next"] == pytest.approx(line["mu_next"], abs=1e-12)
        else:
            assert "mu_next" not in step.record.update
        plans.append(step.plan)
    for line, plan in zip(history, plans, strict=False):
        assert line["subset_ids"] == plan.gc_ids.tolist()
    assert result.curriculum.run.plan.gc_ids.tolist() == plans[3].gc_ids.tolist()  # epoch 3, drawn and waiting


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["gain"])  # the strategies that keep mu (the others' lines have none)
def test_mu_follows_the_formula_with_the_live_models_angle(inprocess, scores, strategy):
    from gaincurate import scoring

    result = inprocess(strategy)
    driver = result.curriculum.run
    checkpoints = epoch_end_checkpoints(result.out)
    mu = 0.0
    for line in read_history(result.run_dir):
        epoch = line["epoch"]
        rollouts = result.rewards.feedback(epoch)
        accuracy = sum(r["reward"] for r in rollouts) / len(rollouts) / driver.config.reward_max
        assert line["accuracy"] == pytest.approx(accuracy, abs=1e-12)
        assert line["rollouts"] == SUBSET * NUM_GENERATIONS
        # ang is the mean score of the subset under the model as it ended the epoch: the weights the
        # epoch's checkpoint holds.
        fresh = scoring.rescore(scores, line["subset_ids"], checkpoint=checkpoints[epoch + 1])
        assert line["ang_source"] == "rescored"
        assert line["ang"] == pytest.approx(float(np.mean(fresh)), rel=1e-5)
        delta, mu_next = expected_mu_next(mu, accuracy, line["ang"], driver)
        assert line["mu"] == pytest.approx(mu, abs=1e-9)
        assert line["delta"] == pytest.approx(delta, abs=1e-9)
        assert line["mu_next"] == pytest.approx(mu_next, abs=1e-9)
        mu = mu_next
        # The checkpoint carries the curriculum already stepped to the next epoch.
        state = json.loads((checkpoints[epoch + 1] / "trainer_state.json").read_text())
        saved = state["stateful_callbacks"]["GainCurriculumCallback"]["attributes"]["gaincurate_state"]
        assert saved["schedule"]["epoch"] == epoch + 1 and saved["records"] == []


@pytest.mark.slow
def test_dots_reference_set_grows_by_every_trained_prompt(inprocess):
    # Each epoch's rollouts join the reference set before the next draw: after three epochs the measured
    # pass rates are exactly the trained prompts' mean rewards, a rollout from k epochs before the prompt's
    # last measurement weighing forget ** k, and the rest are predicted.
    result = inprocess("dots")
    history = read_history(result.run_dir)
    rewards: dict[int, list[tuple[int, float]]] = {}
    for line in history:
        for record in result.rewards.feedback(line["epoch"]):
            rewards.setdefault(record["gc_id"], []).append((line["epoch"], record["reward"]))
    driver = result.curriculum.run
    rates = PassRates.from_json(driver.scheduler.state.memory["pass_rates"])
    measured = dict(zip(rates.gc_ids.tolist(), rates.rates.tolist(), strict=True))
    assert sorted(measured) == sorted(rewards)
    forget = driver.config.options.forget
    for gc_id, values in rewards.items():
        last = max(epoch for epoch, _ in values)
        weights = [forget ** (last - epoch) for epoch, _ in values]
        mean = sum(w * reward for w, (_, reward) in zip(weights, values, strict=True)) / sum(weights)
        assert measured[gc_id] == pytest.approx(mean, abs=1e-12)
    assert len(measured) < len(driver.scores.prompts.gc_ids)


# "steps": the checkpoint is written at the epoch's last step, before on_epoch_end, so it holds the finished
# epoch's rollouts unstepped and the resumed trainer steps it first; the Trainer also rebuilds the callback.
RESUME_CASES = {
    "epoch-save": {},
    "step-save": {"save_strategy": "steps", "save_steps": 2, "restore_callback_states_from_checkpoint": True},
}


@pytest.mark.slow
@pytest.mark.parametrize(("strategy", "case"), [("gain", "epoch-save"), ("gain", "step-save"), ("dots", "step-save")])
def test_resumed_training_equals_uninterrupted(inprocess, scores, tiny_llama, tmp_path, strategy, case):
    straight = inprocess(strategy)
    settings = RESUME_CASES[case]
    first = train_inprocess(scores, tiny_llama, tmp_path, strategy, stop_after=1, **settings)
    checkpoint = epoch_end_checkpoints(first.out)[1]
    saved = json.loads((checkpoint / "trainer_state.json").read_text())["stateful_callbacks"]
    saved = saved["GainCurriculumCallback"]["attributes"]["gaincurate_state"]
    assert (saved["schedule"]["epoch"], len(saved["records"])) == ((1, 0) if case == "epoch-save" else (0, 8))
    # A new process: a new curriculum object over the same run directory, the trainer resumed from epoch 0's end.
    second = train_inprocess(
        scores, tiny_llama, tmp_path, strategy, resume=checkpoint, run_dir=first.run_dir, **settings
    )

    def strip(history):
        return [{k: v for k, v in line.items() if k not in ("timings", "checkpoint")} for line in history]

    assert strip(read_history(second.run_dir)) == strip(read_history(straight.run_dir))
    for epoch in (1, 2):
        assert second.rewards.ids(epoch) == straight.rewards.ids(epoch)
    for name in ("epoch-0003.parquet", "feedback-0002.jsonl"):
        assert (second.run_dir / name).read_bytes() == (straight.run_dir / name).read_bytes()
    from safetensors.torch import load_file

    ours = load_file(epoch_end_checkpoints(second.out)[3] / "model.safetensors")
    theirs = load_file(epoch_end_checkpoints(straight.out)[3] / "model.safetensors")
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


@pytest.mark.slow
def test_an_epoch_cut_short_stays_open_and_resuming_it_equals_uninterrupted(scores, tiny_llama, tmp_path, caplog):
    """Training stopped at step 3 (epochs of 2 steps; max_steps or a fractional num_train_epochs cut the same way)
    leaves epoch 1 half trained: the curriculum does not step on half its feedback, says so once, and the cut's
    checkpoint carries the epoch open, so that resuming from it ends byte for byte as the unbroken run does."""
    from safetensors.torch import load_file

    from gaincurate.schedule.run.rundir import load_run

    straight = train_inprocess(scores, tiny_llama, tmp_path / "straight", "gain", num_train_epochs=2)
    with caplog.at_level("WARNING", logger="gaincurate"):
        cut = train_inprocess(scores, tiny_llama, tmp_path / "cut", "gain", stop_at_step=3, num_train_epochs=2)
    warned = [record.getMessage() for record in caplog.records if "inside epoch" in record.getMessage()]
    assert warned == ["training stopped inside epoch 1; it stays open: resuming from the last checkpoint finishes it"]
    assert [line["epoch"] for line in read_history(cut.run_dir)] == [0]
    assert load_run(cut.run_dir).finished == 1  # `schedule status`: finished after 1 epoch, not 2
    saved = json.loads((cut.out / "checkpoint-3" / "trainer_state.json").read_text())["stateful_callbacks"]
    saved = saved["GainCurriculumCallback"]["attributes"]["gaincurate_state"]
    assert (saved["schedule"]["epoch"], len(saved["records"])) == (1, 2 * NUM_GENERATIONS)

    resumed = train_inprocess(scores, tiny_llama, tmp_path / "cut", "gain", resume=cut.out / "checkpoint-3",
                              run_dir=cut.run_dir, num_train_epochs=2)  # fmt: skip

    def strip(history):
        return [{k: v for k, v in line.items() if k not in ("timings", "checkpoint")} for line in history]

    assert strip(read_history(resumed.run_dir)) == strip(read_history(straight.run_dir))
    for name in ("feedback-0000.jsonl", "feedback-0001.jsonl", "epoch-0002.parquet"):
        assert (resumed.run_dir / name).read_bytes() == (straight.run_dir / name).read_bytes(), name
    ours, theirs = (load_file(run.out / "checkpoint-4" / "model.safetensors") for run in (resumed, straight))
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    assert load_run(resumed.run_dir).finished == 2


def test_the_savings_readout_is_logged_with_trls_metrics_and_agrees_with_frac_reward_zero_std(inprocess):
    """With one reward function and each prompt's group in one generation batch, our zero-variance share of an
    epoch is the mean of TRL's `frac_reward_zero_std` over that epoch's steps (each step holds as many groups)."""
    run = inprocess("dots")
    history = run.curriculum.history
    steps: list[float] = []
    epochs = []
    for entry in run.trainer.state.log_history:
        if "frac_reward_zero_std" in entry:
            steps.append(entry["frac_reward_zero_std"])
        if "curriculum/zero_variance" in entry:
            epochs.append((float(np.mean(steps)), entry))
            steps = []
    assert len(epochs) == len(history) >= 2
    for (trl_share, entry), line in zip(epochs, history, strict=True):
        readout = line["readout"]
        assert entry["curriculum/zero_variance"] == pytest.approx(trl_share, abs=1e-9)
        assert entry["curriculum/zero_variance"] == pytest.approx(readout["zero_variance"])
        assert entry["curriculum/measured_pass_rate"] == pytest.approx(readout["measured_pass_rate"])
        assert entry["curriculum/groups"] == readout["groups"] == SUBSET
    later = epochs[-1][1]  # dots estimates from epoch 1 on: its aim, uniform's estimate and the spend are logged
    for key in ("estimated_pass_rate", "uniform_zero_variance_estimate", "nonzero_rollouts"):
        assert f"curriculum/{key}" in later, key


def test_a_run_whose_rewards_are_all_zero_is_warned_in_the_trainers_log(scores, tiny_llama, tmp_path, caplog):
    """Today's quickstart failure (2 generations, 8-token completions, nothing ever right): the log says so."""

    def never_right(completions, **kwargs):
        return [0.0] * len(completions)

    curriculum = GainCurriculum(scores, ScheduleConfig(**schedule("dots")))
    trainer = tiny_trainer(
        curriculum, tiny_llama, tmp_path / "out", reward_funcs=curriculum.wrap_rewards([never_right])
    )
    curriculum.attach(trainer)
    with caplog.at_level("WARNING", logger="gaincurate"):
        trainer.train()
    readouts = [line["readout"] for line in curriculum.history]
    assert [readout["zero_variance"] for readout in readouts] == [1.0] * len(readouts) and len(readouts) >= 2
    assert readouts[0]["warnings"] == [] and all(readout["warnings"] for readout in readouts[1:])
    warned = [record.getMessage() for record in caplog.records if "zero reward variance" in record.getMessage()]
    assert warned and "100% all wrong" in warned[0] and "max_completion_length" in warned[0]


def test_a_strategys_declared_numbers_are_logged_with_trls_metrics(scores, tiny_llama, tmp_path):
    """A new strategy's own numbers reach the trainer's log under the names it declares, as gain's mu does, with
    nothing outside its module (tests/made_up_strategy.py) naming them."""
    from made_up_strategy import TemperedStrategy

    curriculum = GainCurriculum(scores, ScheduleConfig(**schedule("uniform")))
    curriculum.use_strategy(TemperedStrategy())
    trainer = tiny_trainer(curriculum, tiny_llama, tmp_path / "out", num_train_epochs=2, save_strategy="no")
    curriculum.attach(trainer)
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "curriculum/temperature" in entry]
    assert [(e["curriculum/temperature"], e["curriculum/temperature_next"]) for e in logged] == [
        (1.0, 0.5),
        (0.5, 0.25),
    ]
    assert all("curriculum/accuracy" in e and "curriculum/zero_variance" in e for e in logged)
    assert not any("curriculum/mu" in entry for entry in trainer.state.log_history)
