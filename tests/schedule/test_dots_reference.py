"""dots `--reference-every K --reference-size M`: a fresh reference set rolled with the newest checkpoint.

The rollout job is replaced by a fake that writes what `gaincurate rollout` would (one line per rollout, a
seeded sample of M prompts); `tests/rollout` checks the real job. Checked here: when the set is rolled and
with which checkpoint and settings, that its rollouts join the pass rates at the epoch's time, that their
cost is in the history line, and that without a checkpoint the step goes on with a notice.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from schedule_helpers import write_trl_checkpoint
from simulation import bundled_policy, write_scores

from gaincurate.difficulty.reference import PassRates
from gaincurate.errors import ConfigError
from gaincurate.feedback_lines import append_rollouts
from gaincurate.rollout.config import RolloutResult
from gaincurate.rollout.inputs import choose_ids
from gaincurate.schedule.config import ScheduleConfig
from gaincurate.schedule.run.run import Run
from gaincurate.schedule.run.rundir import load_run, read_history, reference_path
from gaincurate.schedule.run.steps import init_run

CONFIG = ScheduleConfig(strategy="dots", subset_size=16, seed=3, reference_every=2, reference_size=24)


@pytest.fixture()
def fake_rollout(monkeypatch):
    """Record each RolloutConfig; write 4 rollouts per chosen prompt, solved when gc_id % 3 == 0."""
    calls = []

    def run_rollouts(config, progress=None):
        calls.append(config)
        ids = choose_ids(np.arange(320), reference_size=config.reference_size, ids_file=None, seed=config.seed)
        append_rollouts(config.out, np.repeat(ids, 4).tolist(), [float(i % 3 == 0) for i in np.repeat(ids, 4)])
        return RolloutResult(config.out, len(ids), 0, 4 * len(ids), None, 0, 0, 1.5, 0.5)

    monkeypatch.setattr("gaincurate.rollout.job.run_rollouts", run_rollouts)
    return calls


def feedback_for(run_dir, tmp_path, epoch):
    ids = load_run(run_dir).schedule.subset_ids
    path = tmp_path / f"fb{epoch}.jsonl"
    append_rollouts(path, np.repeat(ids, 4).tolist(), [float(i % 2) for i in np.repeat(ids, 4)])
    return path


def test_a_fresh_reference_set_is_rolled_every_k_epochs_and_counted(tmp_path, fake_rollout):
    scores = write_scores(tmp_path / "scores", bundled_policy())
    run_dir = tmp_path / "run"
    init_run(run_dir, scores, CONFIG)
    Run.open(run_dir).step()
    trainer = tmp_path / "trainer"
    records = []
    for epoch in range(4):
        checkpoint = write_trl_checkpoint(trainer, 10 * (epoch + 1))
        before = PassRates.from_json(load_run(run_dir).schedule.memory["pass_rates"])
        step = Run.open(run_dir).step(feedback=feedback_for(run_dir, tmp_path, epoch), checkpoint=trainer)
        records.append(step.record)
        after = PassRates.from_json(load_run(run_dir).schedule.memory["pass_rates"])
        if (epoch + 1) % 2:  # not due: only the epoch's own prompts joined
            assert "reference" not in step.record and not reference_path(run_dir, epoch).exists()
            continue
        config = fake_rollout[-1]
        assert (config.model, config.reference_size, config.samples) == (str(checkpoint), 24, 4)
        assert config.out == str(reference_path(run_dir, epoch)) and config.seed == 3 * 1_000_003 + epoch
        reference = step.record["reference"]
        assert (reference["prompts"], reference["rollouts"], reference["checkpoint"]) == (24, 96, str(checkpoint))
        assert step.record["timings"]["reference_s"] == reference["seconds"]
        assert any("fresh reference set after epoch" in notice for notice in step.notices)
        assert not any("the checkpoint is not used" in notice for notice in step.notices)  # it rolled the set
        lines = [json.loads(line) for line in reference_path(run_dir, epoch).read_text().splitlines()]
        fresh = {line["gc_id"] for line in lines}
        trained = set(load_run(run_dir).schedule.subset_ids.tolist()) | fresh
        assert fresh <= set(after.gc_ids.tolist()) and len(after) > len(before)
        assert all(after.last[np.searchsorted(after.gc_ids, gc_id)] == epoch for gc_id in fresh)
        assert trained  # the set was drawn anew: epochs 1 and 3 sample different prompts
    assert len(fake_rollout) == 2 and fake_rollout[0].seed != fake_rollout[1].seed
    assert [("reference" in line) for line in read_history(run_dir)] == [False, True, False, True]


def test_without_a_checkpoint_the_step_goes_on_with_a_notice(tmp_path, fake_rollout):
    scores = write_scores(tmp_path / "scores", bundled_policy())
    run_dir = tmp_path / "run"
    init_run(run_dir, scores, ScheduleConfig(**{**CONFIG.to_dict(), "reference_every": 1}))
    Run.open(run_dir).step()
    step = Run.open(run_dir).step(feedback=feedback_for(run_dir, tmp_path, 0))
    assert "reference" not in step.record and not fake_rollout
    assert any("no fresh reference set after epoch 0: no checkpoint was given" in notice for notice in step.notices)


def test_a_fresh_reference_set_reads_rollouts_1_and_0_whatever_the_trainers_reward_range(tmp_path, fake_rollout):
    """`gaincurate rollout` writes 1/0; a run whose trainer rewards -1/+1 must not read its 0s as half right."""
    scores = write_scores(tmp_path / "scores", bundled_policy())
    run_dir = tmp_path / "run"
    init_run(run_dir, scores, ScheduleConfig(**{**CONFIG.to_dict(), "reference_every": 1, "reward_min": -1.0}))
    Run.open(run_dir).step()
    ids = load_run(run_dir).schedule.subset_ids
    feedback = tmp_path / "fb.jsonl"
    append_rollouts(feedback, np.repeat(ids, 4).tolist(), [1.0 if i % 2 else -1.0 for i in np.repeat(ids, 4)])
    Run.open(run_dir).step(feedback=feedback, checkpoint=write_trl_checkpoint(tmp_path / "trainer", 10))
    rates = PassRates.from_json(load_run(run_dir).schedule.memory["pass_rates"])
    fresh = {json.loads(line)["gc_id"] for line in reference_path(run_dir, 0).read_text().splitlines()}
    for gc_id in fresh - set(ids.tolist()):  # measured by the reference set alone: solved iff gc_id % 3 == 0
        row = np.searchsorted(rates.gc_ids, gc_id)
        assert rates.sums[row] / rates.counts[row] == (1.0 if gc_id % 3 == 0 else 0.0)


def test_a_reference_file_reads_rollouts_1_and_0_whatever_the_trainers_reward_range(tmp_path):
    """`--reference` takes `gaincurate rollout`'s file, 1 right and 0 wrong, as the fresh sets do: under a -1/+1
    trainer its 0s would read as half right, dots' very target."""
    scores = write_scores(tmp_path / "scores", bundled_policy())
    reference = tmp_path / "reference.jsonl"
    append_rollouts(reference, [0, 0, 1, 1, 3, 3], [0.0, 0.0, 1.0, 1.0, 1.0, 0.0])
    config = {**CONFIG.to_dict(), "reference_every": 0, "reference_size": 0, "reference": str(reference)}
    init_run(tmp_path / "run", scores, ScheduleConfig(**{**config, "reward_min": -1.0}))
    rates = PassRates.from_json(load_run(tmp_path / "run").schedule.memory["pass_rates"])
    assert {int(g): s / c for g, s, c in zip(rates.gc_ids, rates.sums, rates.counts, strict=True)} == {
        0: 0.0,
        1: 1.0,
        3: 0.5,
    }


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"strategy": "gain", "reference_every": 2}, "reference_every is a dots option"),
        ({"strategy": "dots", "reference_size": 8}, "reference_size sizes the fresh reference set"),
        ({"strategy": "dots", "reference_every": -1}, "reference_every must be a whole number"),
        ({"strategy": "gain", "calibrator": "cal.npz"}, "calibrator is a dots option"),
    ],
)
def test_reference_options_are_checked(options, message):
    with pytest.raises(ConfigError, match=message):
        ScheduleConfig(**{"strategy": "gain", **options})
