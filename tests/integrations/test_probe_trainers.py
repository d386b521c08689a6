"""`probe --likelihood` through the trainer paths: its answer likelihoods come from the model that ended each epoch.

TRL in process: the live model, measured at the epoch's end (the weights the epoch's checkpoint holds).
`schedule run --trainer-cmd`: the newest checkpoint the command left. (verl's one launch goes through the same
`Run.rescore` as TRL; tests/verl runs it in verl's own environment.)
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest
from test_trl import epoch_end_checkpoints, tiny_trainer
from trl_helpers import SUBSET, EpochRewards, score_prompts

from gaincurate.integrations.trl import GainCurriculum
from gaincurate.schedule.config import ScheduleConfig
from gaincurate.schedule.run.rundir import load_run, read_history
from gaincurate.scoring.likelihood import likelihoods

# A refresh budget of the whole pool (16 prompts, 4 an epoch): every prompt measured after every epoch, so each
# value can be checked against the model that ended the last one (which prompts a smaller budget picks:
# tests/schedule/test_probe_refresh.py).
CONFIG = ScheduleConfig(strategy="probe", likelihood=True, subset_size=SUBSET, seed=3, refresh=16 / SUBSET)


@pytest.fixture(scope="module")
def scores(tiny_llama, tmp_path_factory) -> Path:
    return score_prompts(tiny_llama, tmp_path_factory.mktemp("probe-scores") / "scores")


def newest_likelihoods(run_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    kept = load_run(run_dir).schedule.memory["likelihood"]
    return tuple(np.asarray(kept[key]) for key in ("gc_ids", "values", "epochs"))


@pytest.mark.slow
def test_trl_in_process_measures_the_likelihood_with_the_live_model_at_each_epochs_end(scores, tiny_llama, tmp_path):
    curriculum = GainCurriculum(scores, CONFIG, run_dir=tmp_path / "run")
    rewards = EpochRewards()
    rewards.__name__ = "parity"
    trainer = tiny_trainer(curriculum, tiny_llama, tmp_path / "out", reward_funcs=curriculum.wrap_rewards([rewards]))
    curriculum.attach(trainer)
    trainer.train()
    history = read_history(tmp_path / "run")
    assert [line["epoch"] for line in history] == [0, 1, 2]
    assert all(line["timings"]["rescore_s"] > 0 for line in history)  # charged to the run, like re-scoring
    gc_ids, values, epochs = newest_likelihoods(tmp_path / "run")
    assert gc_ids.tolist() == list(range(16)) and set(epochs.tolist()) == {2}  # every prompt, after the last epoch
    last = epoch_end_checkpoints(tmp_path / "out")[3]  # the weights that ended epoch 2
    assert np.allclose(values, likelihoods(scores, gc_ids.tolist(), checkpoint=last), atol=1e-5)
    estimates = [line["readout"]["estimate"] for line in history]
    assert estimates[0] == "no estimate yet" and "likelihood" in estimates[-1]
    assert history[-1]["selection"]["measured_groups"] == 2 * SUBSET  # epochs 0 and 1 fitted the draw of epoch 2


TRAINER = """
import json, pathlib, shutil, sys
data, output_dir, feedback, epoch, model = sys.argv[1:6]
with open(feedback, "w") as f:
    for i in range(16):
        for r in range(2):
            f.write(json.dumps({"gc_id": i, "correct": (i + r + int(epoch)) % 3 == 0}) + "\\n")
folder = pathlib.Path(output_dir, f"checkpoint-{(int(epoch) + 1) * 10}")
shutil.copytree(model, folder)
(folder / "trainer_state.json").write_text("{}")
"""


def test_schedule_run_measures_it_with_the_newest_checkpoint_the_command_left(scores, tiny_llama, tmp_path):
    from gaincurate.integrations.command import run_loop
    from gaincurate.schedule.run.steps import init_run

    script = tmp_path / "trainer.py"
    script.write_text(TRAINER)
    command = (f"{shlex.quote(sys.executable)} -S {shlex.quote(str(script))} {{epoch_data}} {{output_dir}} "
               f"{{feedback_file}} {{epoch}} {shlex.quote(str(tiny_llama))}")  # fmt: skip
    run = tmp_path / "run"
    init_run(run, scores, CONFIG)
    run_loop(run, epochs=2, trainer_cmd=command)
    history = read_history(run)
    assert [line["epoch"] for line in history] == [0, 1]
    assert history[1]["checkpoint"].endswith("checkpoint-20")
    gc_ids, values, epochs = newest_likelihoods(run)
    assert gc_ids.tolist() == list(range(16)) and set(epochs.tolist()) == {1}
    assert np.allclose(values, likelihoods(scores, list(range(16)), checkpoint=tiny_llama), atol=1e-9)
    assert json.loads((run / "state.json").read_text())["config"]["likelihood"] is True
