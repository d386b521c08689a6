"""`--strategy screen` with the verl curriculum sampler, without verl: which policy screens each epoch.

Epoch 0 screens with the model the prompts were scored with; each later epoch with the newest checkpoint in
`+data.gaincurate.checkpoint_dir`. `checkpoint_screener` (which would run `gaincurate rollout` on it) is
replaced by a fake that records which model it was built for; scores are made up (no model is loaded).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest
from schedule_helpers import snapshot, write_hf_model, write_scores

from gaincurate.errors import ConfigError
from gaincurate.integrations.verl.sampler import GainCurriculumSampler, export_prompts
from gaincurate.lab.strategies.screening import Screening
from gaincurate.schedule import ScheduleConfig
from gaincurate.schedule.run.rundir import load_run, read_history
from gaincurate.schedule.run.steps import init_run

SUBSET, FACTOR, ROLLOUTS = 6, 2, 2  # m, k, r
SCREENED = FACTOR * SUBSET
CONFIG = ScheduleConfig(
    strategy="screen", subset_size=SUBSET, screen_factor=FACTOR, screen_rollouts=ROLLOUTS, seed=2, format="verl"
)
BATCH = 2  # data.train_batch_size


@pytest.fixture()
def setup(tmp_path):
    scores = write_scores(tmp_path / "scores")
    init_run(tmp_path / "run", scores, CONFIG)
    exported = export_prompts(scores, tmp_path / "all.parquet")
    frame = datasets.Dataset(pq.read_table(exported).replace_schema_metadata(None))
    frame = frame.select(np.random.default_rng(1).permutation(len(frame)).tolist())
    settings = {"run_dir": str(tmp_path / "run"), "checkpoint_dir": str(tmp_path / "ckpt")}
    return SimpleNamespace(
        scores=scores,
        run=tmp_path / "run",
        checkpoints=tmp_path / "ckpt",
        source=SimpleNamespace(dataframe=frame),
        config={"train_batch_size": BATCH, "gaincurate": settings},
    )


@pytest.fixture()
def fake_screener(monkeypatch):
    """Replace `checkpoint_screener`: record each screener's model and each call; rates are gc_id % 3 of 2."""
    from gaincurate.lab.strategies import screening as screeners

    built: list[dict] = []
    calls: list[tuple[list[int], int, int]] = []

    def factory(run_dir, scores_dir, *, seed, model_path, progress=None):
        built.append({"run_dir": Path(run_dir), "scores_dir": Path(scores_dir), "seed": seed, "model": model_path})

        def screen(gc_ids, epoch, rollouts):
            calls.append(([int(g) for g in gc_ids], int(epoch), int(rollouts)))
            gc_ids = np.asarray(gc_ids, dtype=np.int64)
            return Screening((gc_ids % 3).astype(np.float64), np.full(len(gc_ids), rollouts), tokens=5)

        return screen

    monkeypatch.setattr(screeners, "checkpoint_screener", factory)
    return SimpleNamespace(built=built, calls=calls)


def write_verl_step(checkpoints: Path, step: int) -> Path:
    """verl's layout: global_step_N/actor/huggingface (hf_model saved), then the tracker naming N."""
    model = write_hf_model(checkpoints / f"global_step_{step}" / "actor" / "huggingface")
    (checkpoints / "latest_checkpointed_iteration.txt").write_text(str(step))
    return model


def train_epoch(sampler, frame, rows: list[int]) -> None:
    """verl's updates for one epoch's rows: every prompt rolled twice, half right."""
    for start in range(0, len(rows), BATCH):
        gc_ids = np.repeat([frame[row]["gc_id"] for row in rows[start : start + BATCH]], 2)
        rewards = np.tile([1.0, 0.0], len(gc_ids) // 2)
        sampler.update({"gc_id": np.array(gc_ids, dtype=object), "token_level_scores": rewards[:, None]})


def gc_ids_of(frame, rows: list[int]) -> list[int]:
    return [frame[row]["gc_id"] for row in rows]


def check_choice(candidates: list[int], chosen: list[int]) -> None:
    """In band first: the candidates with rate 1/2 (gc_id % 3 == 1); all-wrong or all-right ones fill the rest."""
    assert len(chosen) == SUBSET and set(chosen) <= set(candidates)
    halves = {g for g in candidates if g % 3 == 1}
    assert set(chosen) <= halves if len(halves) >= SUBSET else set(chosen) >= halves


def test_a_screen_run_without_checkpoint_dir_is_refused(setup):
    before = snapshot(setup.run)
    config = {**setup.config, "gaincurate": {"run_dir": str(setup.run)}}
    with pytest.raises(ConfigError, match=r"\+data.gaincurate.checkpoint_dir") as refused:
        GainCurriculumSampler(setup.source, config)
    assert "\n" not in str(refused.value)
    assert snapshot(setup.run) == before and load_run(setup.run).schedule.epoch == -1


def test_epoch_0_screens_with_the_scores_model_and_later_epochs_with_the_newest_checkpoint(setup, fake_screener):
    frame = setup.source.dataframe
    sampler = GainCurriculumSampler(setup.source, setup.config)
    assert fake_screener.calls == [] and load_run(setup.run).schedule.epoch == -1  # drawn on the first row asked
    rows = list(sampler)
    # model None: the model the prompts were scored with.
    assert fake_screener.built == [
        {"run_dir": setup.run, "scores_dir": setup.scores.resolve(), "seed": CONFIG.seed, "model": None}
    ]
    [(candidates, epoch, rollouts)] = fake_screener.calls
    assert (len(candidates), epoch, rollouts) == (SCREENED, 0, ROLLOUTS)
    epoch_0 = gc_ids_of(frame, rows)
    check_choice(candidates, epoch_0)
    selection = load_run(setup.run).schedule.selection.figures
    assert selection["screen_rollouts"] == SCREENED * ROLLOUTS and selection["screen_tokens"] == 5
    train_epoch(sampler, frame, rows)

    # verl saved global_step_2 and then global_step_4 (hf_model in both): epoch 1 screens with the newest.
    write_verl_step(setup.checkpoints, 2)
    newest = write_verl_step(setup.checkpoints, 4)
    rows = list(sampler)
    assert [b["model"] for b in fake_screener.built] == [None, newest]
    assert [(epoch, rollouts) for _, epoch, rollouts in fake_screener.calls] == [(0, ROLLOUTS), (1, ROLLOUTS)]
    check_choice(fake_screener.calls[1][0], gc_ids_of(frame, rows))
    [line] = read_history(setup.run)
    assert line["epoch"] == 0 and line["selection"]["screen_rollouts"] == SCREENED * ROLLOUTS
    assert sorted(line["subset_ids"]) == sorted(epoch_0) and line["rollouts"] == SUBSET * 2


def test_a_later_epoch_without_checkpoint_weights_is_refused_until_one_is_saved(setup, fake_screener):
    frame = setup.source.dataframe
    sampler = GainCurriculumSampler(setup.source, setup.config)
    first = list(sampler)
    train_epoch(sampler, frame, first)
    before = snapshot(setup.run)
    with pytest.raises(ConfigError, match="hf_model"):
        list(sampler)  # checkpoint_dir holds nothing yet
    # A verl step saved without hf_model holds no full weights: refused the same way.
    (setup.checkpoints / "global_step_2" / "actor").mkdir(parents=True)
    (setup.checkpoints / "latest_checkpointed_iteration.txt").write_text("2")
    with pytest.raises(ConfigError, match="no full model"):
        list(sampler)
    assert snapshot(setup.run) == before and len(fake_screener.calls) == 1
    # Once the weights are there, the same epoch's rollouts step the schedule: nothing was lost.
    model = write_verl_step(setup.checkpoints, 3)
    second = list(sampler)
    assert fake_screener.built[-1]["model"] == model
    [line] = read_history(setup.run)
    assert sorted(line["subset_ids"]) == sorted(gc_ids_of(frame, first)) and line["rollouts"] == SUBSET * 2
    check_choice(fake_screener.calls[-1][0], gc_ids_of(frame, second))
