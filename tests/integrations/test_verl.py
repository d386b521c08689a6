"""The verl integration without verl: the curriculum sampler driven by a simulated verl loop, its checkpoint
state, reward-side feedback, and the full-set export. Scores are made up (no model is loaded).
"""

from __future__ import annotations

import json
import math
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from schedule_helpers import without_timings, write_hf_model, write_scores

from gaincurate.errors import ConfigError
from gaincurate.integrations.verl import sampler as verl_integration
from gaincurate.integrations.verl.checkpoint import DEFAULT_TRACKER_TIMEOUT, StepScheduleOnSave
from gaincurate.integrations.verl.sampler import (
    GainCurriculumSampler,
    SamplerSettings,
    batch_rollouts,
    export_prompts,
    recording_score,
)
from gaincurate.schedule import ScheduleConfig, Scheduler
from gaincurate.schedule.run.inputs import load_scores
from gaincurate.schedule.run.rundir import read_history
from gaincurate.schedule.run.steps import init_run

CONFIG = ScheduleConfig(strategy="gain", subset_size=6, sigma=6, step_size=5, adj_max=12, seed=2, format="verl")
BATCH = 2  # data.train_batch_size: prompts per step
ROLLOUTS = 3  # actor_rollout_ref.rollout.n


@pytest.fixture()
def setup(tmp_path):
    scores = write_scores(tmp_path / "scores")
    init_run(tmp_path / "run", scores, CONFIG)
    exported = export_prompts(scores, tmp_path / "all.parquet")
    # verl's RLHFDataset keeps the parquet as a `datasets.Dataset` in `.dataframe`; rows shuffled on purpose.
    frame = datasets.Dataset(pq.read_table(exported).replace_schema_metadata(None))
    frame = frame.select(np.random.default_rng(1).permutation(len(frame)).tolist())
    data_config = {"train_batch_size": BATCH, "gaincurate": {"run_dir": str(tmp_path / "run")}}
    source = SimpleNamespace(dataframe=frame)
    return SimpleNamespace(scores=scores, run=tmp_path / "run", source=source, config=data_config)


def fake_batch(frame, rows: list[int], epoch: int) -> dict:
    """What verl hands `update`: ROLLOUTS rows per prompt, the export's `gc_id` column, token-level scores."""
    gc_ids = np.repeat([frame[row]["gc_id"] for row in rows], ROLLOUTS)
    rewards = np.array([float((gc_id * 7 + epoch + k) % 3 == 0) for k, gc_id in enumerate(gc_ids)])
    tokens = torch.zeros(len(gc_ids), 5)
    tokens[:, 3] = torch.tensor(rewards)  # the score sits on the last response token
    return {"gc_id": np.array(gc_ids, dtype=object), "token_level_scores": tokens, "rewards": rewards}


def run_epochs(sampler, frame, epochs: int, *, trace=None):
    """verl's fit loop in small: batches of BATCH rows from the sampler, update after each step."""
    trained = []
    for epoch in range(epochs):
        rows = list(sampler)
        trained.append(rows)
        for start in range(0, len(rows) - len(rows) % BATCH, BATCH):
            batch = fake_batch(frame, rows[start : start + BATCH], epoch)
            sampler.update(batch)
            if trace is not None:
                trace.append(batch)
    return trained


def test_epochs_are_the_schedule_and_mu_learns_from_updates(setup):
    sampler = GainCurriculumSampler(setup.source, setup.config)
    assert len(sampler) == CONFIG.subset_size
    frame = setup.source.dataframe
    batches = []
    trained = run_epochs(sampler, frame, 3, trace=batches)
    # An independent scheduler fed the same rollouts draws the same epochs and moves mu the same way.
    scheduler = Scheduler(CONFIG, load_scores(setup.scores).prompts)
    plan = scheduler.step().plan
    history = read_history(setup.run)
    assert [line["epoch"] for line in history] == [0, 1]  # epoch 2 is trained; it steps at the next __iter__
    steps_per_epoch = CONFIG.subset_size // BATCH
    for epoch, rows in enumerate(trained):
        assert [frame[r]["extra_info"]["gc_id"] for r in rows] == plan.gc_ids.tolist()
        epoch_batches = batches[epoch * steps_per_epoch : (epoch + 1) * steps_per_epoch]
        pairs = [pair for b in epoch_batches for pair in zip(b["gc_id"], b["rewards"], strict=True)]
        feedback = [{"gc_id": int(g), "reward": float(r)} for g, r in pairs]
        step = scheduler.step(feedback=feedback)
        if epoch < 2:
            assert history[epoch]["mu_next"] == pytest.approx(step.record.update["mu_next"], abs=1e-12)
            assert history[epoch]["rollouts"] == CONFIG.subset_size * ROLLOUTS
        plan = step.plan
    assert (setup.run / "epoch-0002.parquet").is_file() and (setup.run / "feedback-0001.jsonl").is_file()


def updates(sampler, frame, rows: list[int], epoch: int) -> None:
    for start in range(0, len(rows), BATCH):
        sampler.update(fake_batch(frame, rows[start : start + BATCH], epoch))


@pytest.mark.parametrize("stop_after_rows", [2, 6], ids=["mid-epoch", "epoch-end"])
def test_checkpoint_state_resumes_at_the_same_row(setup, stop_after_rows):
    frame = setup.source.dataframe
    straight = GainCurriculumSampler(setup.source, setup.config)
    expected = run_epochs(straight, frame, 2)
    expected.append(list(straight))  # epoch 2; asking for it steps epoch 1
    reference = read_history(setup.run)

    # The same run in a fresh run directory, stopped in epoch 1 after `stop_after_rows` rows.
    other = setup.run.parent / "run2"
    init_run(other, setup.scores, CONFIG)
    config = {**setup.config, "gaincurate": {"run_dir": str(other)}}
    first = GainCurriculumSampler(setup.source, config)
    run_epochs(first, frame, 1)
    iterator = iter(first)
    done = [next(iterator) for _ in range(stop_after_rows)]
    updates(first, frame, done, 1)
    saved = json.loads(json.dumps(first.state_dict()))  # what verl's data.pt keeps

    # A new process: the sampler is rebuilt, torchdata makes a throwaway iterator, then restores the state.
    second = GainCurriculumSampler(setup.source, config)
    iter(second)
    second.load_state_dict(saved)
    if stop_after_rows < CONFIG.subset_size:
        rest = list(second)
        assert done + rest == expected[1]
        updates(second, frame, rest, 1)
    else:
        assert done == expected[1]
    # The next iteration (for the epoch-end save, the restored one) steps the schedule and starts epoch 2 at row 0.
    assert list(second) == expected[2]
    assert without_timings(read_history(other)) == without_timings(reference)


def test_rescore_from_the_newest_verl_checkpoint(setup, tmp_path, monkeypatch):
    from gaincurate import scoring

    calls = []

    def fake_rescore(scores_dir, ids, *, checkpoint=None, **options):
        calls.append((Path(checkpoint), list(ids)))
        return np.full(len(ids), 2.5)

    monkeypatch.setattr(scoring, "rescore", fake_rescore)
    checkpoints = tmp_path / "ckpt"
    write_hf_model(checkpoints / "global_step_3" / "actor" / "huggingface")
    (checkpoints / "latest_checkpointed_iteration.txt").write_text("3")
    init_run(tmp_path / "rescored", setup.scores, ScheduleConfig(**{**CONFIG.to_dict(), "rescore": "subset"}))
    settings = {"run_dir": str(tmp_path / "rescored"), "checkpoint_dir": str(checkpoints)}
    config = {"train_batch_size": BATCH, "gaincurate": settings}
    sampler = GainCurriculumSampler(setup.source, config)
    run_epochs(sampler, setup.source.dataframe, 1)
    list(sampler)
    [line] = read_history(tmp_path / "rescored")
    assert calls == [(checkpoints / "global_step_3" / "actor" / "huggingface", sorted(line["subset_ids"]))]
    assert line["ang"] == 2.5 and line["ang_source"] == "rescored"
    assert line["checkpoint"] == str(checkpoints / "global_step_3")


def test_settings_and_sizes_are_checked(setup):
    with pytest.raises(ConfigError, match=r"\+data.gaincurate.run_dir=RUN"):
        SamplerSettings.from_data_config({"train_batch_size": 2})
    with pytest.raises(ConfigError, match=r"data.gaincurate has unknown key\(s\) run; known: checkpoint_dir"):
        SamplerSettings.from_data_config({"gaincurate": {"run_dir": "r", "run": "typo"}})
    with pytest.raises(ConfigError, match="subset_size 6 is not a multiple of data.train_batch_size 4"):
        GainCurriculumSampler(setup.source, {**setup.config, "train_batch_size": 4})
    partial = SimpleNamespace(dataframe=setup.source.dataframe.select(range(10)))
    with pytest.raises(ConfigError, match="lacks 30 scored prompt"):
        GainCurriculumSampler(partial, setup.config)


def test_sampler_derives_from_verls_base_where_verl_exists(monkeypatch):
    base = type("AbstractCurriculumSampler", (torch.utils.data.Sampler,), {})
    module = types.ModuleType("verl.experimental.dataset.sampler")
    module.AbstractCurriculumSampler = base
    monkeypatch.setitem(sys.modules, "verl.experimental.dataset.sampler", module)
    assert verl_integration._curriculum_base() is base
    monkeypatch.delitem(sys.modules, "verl.experimental.dataset.sampler")
    if "verl" not in sys.modules:
        assert verl_integration._curriculum_base() is torch.utils.data.Sampler


def test_batch_rollouts_reads_a_dataproto_shape():
    # verl's own `index` (extra_info.index: the row within its split) repeats; the export's gc_id column does not.
    proto = SimpleNamespace(
        batch={"token_level_scores": torch.tensor([[0.0, 1.0], [0.0, 0.0]])},
        non_tensor_batch={"index": np.array([0, 0], dtype=object), "gc_id": np.array([4, 9], dtype=object)},
    )
    assert batch_rollouts(proto) == ([4, 9], [1.0, 0.0])
    assert batch_rollouts(proto, index_key="index") == ([0, 0], [1.0, 0.0])  # a dataset keeping only verl's keys
    with pytest.raises(ConfigError, match="reward_key"):
        batch_rollouts({"gc_id": [1]})


def test_recording_score_writes_training_rollouts_only(tmp_path, monkeypatch):
    path = tmp_path / "feedback.jsonl"
    monkeypatch.setenv("GAINCURATE_FEEDBACK_FILE", str(path))

    def compute_score(data_source, solution_str, ground_truth, extra_info=None):
        return {"score": float(solution_str == ground_truth), "acc": True}

    scored = recording_score(compute_score)
    assert scored.__name__ == "compute_score"
    assert scored("math", "5", "5", {"index": 3})["score"] == 1.0
    scored("math", "4", "5", extra_info={"index": 8, "split": "train"})
    scored("math", "5", "5", extra_info={"index": 1, "split": "test"})  # validation: not feedback
    scored("math", "5", "5", extra_info={})  # no gc_id: not feedback
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines == [{"gc_id": 3, "reward": 1.0}, {"gc_id": 8, "reward": 0.0}]


def test_export_holds_every_prompt_with_its_gc_id(setup, tmp_path):
    table = pq.read_table(tmp_path / "all.parquet")
    assert table.num_rows == 40
    assert [row["index"] for row in table.column("extra_info").to_pylist()] == list(range(40))
    assert table.column("gc_id").to_pylist() == list(range(40))
    assert {"data_source", "prompt", "ability", "reward_model"} <= set(table.column_names)
    again = tmp_path / "again.parquet"
    verl_integration.export_prompts(setup.scores, again)  # `gaincurate verl export`: tests/verl/test_verl_rows.py
    assert again.read_bytes() == (tmp_path / "all.parquet").read_bytes()


def test_the_one_launch_replay_buffer_hands_each_epochs_readout_to_verls_logger_once():
    """verl's trainer logs the metrics its replay buffer's `sample` returns; an epoch's readout rides along once."""
    from gaincurate.integrations.verl.one_launch import unreported_readout

    history = [{"epoch": 0, "accuracy": 0.5, "readout": {"zero_variance": 0.25, "estimate": "x", "correlation": None}}]
    metrics, reported = unreported_readout(history, 0)
    assert metrics == {"curriculum/accuracy": 0.5, "curriculum/zero_variance": 0.25} and reported == 1
    assert unreported_readout(history, reported) == ({}, 1)
    from gaincurate.schedule.strategies.gain.update import (
        MU_COLUMNS,  # gain's declared numbers go with it, as TRL logs them
    )

    gain = [{**history[0], "mu": 0.0, "ang": None, "delta": 3.0, "mu_next": 3.0}]
    metrics, _ = unreported_readout(gain, 0, MU_COLUMNS)
    assert (metrics["curriculum/delta"], metrics["curriculum/mu"]) == (3.0, 3.0)
    assert math.isnan(metrics["curriculum/ang"])


@pytest.mark.parametrize(("given", "kept"), [(0, 0.0), (0.5, 0.5), (None, DEFAULT_TRACKER_TIMEOUT)])
def test_the_on_save_hooks_tracker_timeout_of_0_is_a_setting_not_unset(tmp_path, given, kept):
    """`+gaincurate.tracker_timeout=0`: step without waiting for an asynchronous save; an absent key waits 300 s."""
    settings = {"run_dir": str(tmp_path / "run"), "feedback_file": str(tmp_path / "rollouts.jsonl")}
    hook = StepScheduleOnSave({"gaincurate": settings | ({"tracker_timeout": given} if given is not None else {})})
    assert hook.tracker_timeout == kept
