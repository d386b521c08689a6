"""A run started from a prompt file (`schedule init --prompts`, no model pass) trains through TRL in process.

The curriculum resumes the run directory `init` wrote; each epoch trains exactly the prompts mopps drew from the
rewards, which an independent scheduler fed the same rewards draws again.
"""

from __future__ import annotations

import pytest
from test_trl import tiny_trainer
from trl_helpers import NUM_GENERATIONS, SUBSET, EpochRewards, write_prompts

from gaincurate.integrations.trl import GainCurriculum
from gaincurate.schedule.config import ScheduleConfig
from gaincurate.schedule.core import Scheduler
from gaincurate.schedule.run.inputs import load_scores
from gaincurate.schedule.run.rundir import read_history
from gaincurate.schedule.run.unscored import PROMPTS, init_unscored


@pytest.mark.slow
def test_a_run_from_a_prompt_file_trains_in_process(tiny_llama, tmp_path):
    config = ScheduleConfig(strategy="mopps", subset_size=SUBSET, seed=3)
    run_dir = tmp_path / "run"
    init_unscored(run_dir, str(write_prompts(tmp_path / "prompts.jsonl")), config)
    curriculum = GainCurriculum(run_dir=run_dir)
    rewards = EpochRewards()
    rewards.__name__ = "parity"
    trainer = tiny_trainer(curriculum, tiny_llama, tmp_path / "out", reward_funcs=curriculum.wrap_rewards([rewards]))
    curriculum.attach(trainer)
    trainer.train()
    history = read_history(run_dir)
    assert [line["epoch"] for line in history] == [0, 1, 2]
    prompts = load_scores(run_dir / PROMPTS)
    scheduler = Scheduler(config, prompts.prompts, scores=prompts)
    plan = scheduler.step().plan
    for line in history:
        assert line["subset_ids"] == plan.gc_ids.tolist()
        assert rewards.ids(line["epoch"]) == {g: NUM_GENERATIONS for g in line["subset_ids"]}
        plan = scheduler.step(feedback=rewards.feedback(line["epoch"])).plan
