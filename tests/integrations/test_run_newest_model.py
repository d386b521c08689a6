"""`schedule run --trainer-cmd` with a strategy that reads the newest model after every epoch (probe --likelihood).

Issue 58: a trainer script that saves plain `model.save_pretrained` folders (`checkpoint-N/` with config, weights and
tokenizer, no trainer_state.json) must have the answer's likelihood refreshed from them every epoch, and the readout's r
then has a value; a trainer that leaves nothing `from_pretrained` can load stops the run with one line naming what is
missing, unless `--allow-stale` carries on and marks the epoch. Through the console script in a subprocess (but the run
that re-measures, in process), with the tests' tiny random Llama (a copy of its folder is each epoch's "trained" model),
so each test takes seconds.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import score_sample_prompts

from gaincurate.schedule.config import ScheduleConfig
from gaincurate.schedule.run.steps import init_run

BIN = Path(sys.executable).parent
PROMPTS = 64
SUBSET = 32  # r is shown from 30 measured prompts on: epoch 1 alone has 32 with an estimate

# Each epoch: 4 rollouts per prompt of the epoch file, pass rate (gc_id % 5) / 4, so the pool spreads from 0 to 1
# (WRONG=1: every rollout wrong); then the model saved as `save_pretrained` leaves it, into
# {output_dir}/checkpoint-{epoch + 1} (SAVE=bare: config only, no weights).
TRAINER = """
import json, os, pathlib, shutil, sys
import pyarrow.parquet as pq
data, output_dir, feedback, epoch, model = sys.argv[1:6]
ids = pq.read_table(data, columns=["gc_id"]).column("gc_id").to_pylist()
with open(feedback, "w") as f:
    for gc_id in ids:
        for r in range(4):
            reward = 0.0 if os.environ.get("WRONG") else float(r < gc_id % 5)
            f.write(json.dumps({"gc_id": gc_id, "reward": reward}) + "\\n")
target = pathlib.Path(output_dir, f"checkpoint-{int(epoch) + 1}")
if os.environ.get("SAVE") == "bare":
    target.mkdir(parents=True)
    shutil.copy(pathlib.Path(model, "config.json"), target)
else:
    shutil.copytree(model, target)
"""


@pytest.fixture(scope="module")
def scores(tiny_llama, tmp_path_factory) -> Path:
    """The bundled sample's first prompts with their answers, scored with the tiny Llama (embeddings included)."""
    return score_sample_prompts(tiny_llama, tmp_path_factory.mktemp("newest-model"), PROMPTS)


def gaincurate(*args: object, save: str = "", wrong: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "COLUMNS": "200", "SAVE": save}
    env |= {"WRONG": wrong}
    env |= {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [str(BIN / "gaincurate"), *map(str, args)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def start(tmp_path: Path, scores: Path, model: Path) -> tuple[Path, str]:
    """A probe --likelihood run and the trainer command that drives it."""
    run = tmp_path / "run"
    init_run(run, scores, ScheduleConfig(strategy="probe", likelihood=True, subset_size=SUBSET))
    script = tmp_path / "train.py"
    script.write_text(TRAINER)
    places = "{epoch_data} {output_dir} {feedback_file} {epoch}"
    return run, f"{shlex.quote(sys.executable)} {script} {places} {model}"


def table_rows(shown: str) -> list[list[str]]:
    """The cells of each row of the tables `schedule status` drew."""
    return [[cell.strip() for cell in line.split("│")[1:-1]] for line in shown.splitlines() if line.startswith("│")]


def history(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]


def test_plain_save_pretrained_folders_refresh_the_likelihood_every_epoch_and_r_has_a_value(
    scores, tiny_llama, tmp_path, capfd, monkeypatch
):
    """`schedule run` in this process (what it measures is under test, not its start-up: the refusal below is the
    console script's), `schedule status` through the console script."""
    import torch

    from gaincurate.cli import main

    run, command = start(tmp_path, scores, tiny_llama)
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    threads = torch.get_num_threads()
    try:
        main(["schedule", "run", "--run", str(run), "--epochs", "2", "--trainer-cmd", command])
    finally:
        torch.set_num_threads(threads)
    done = capfd.readouterr()
    shown = done.out + done.err
    assert "not re-scored" not in shown and "no new complete checkpoint" not in shown, shown
    lines = history(run)
    assert [line["epoch"] for line in lines] == [0, 1]
    for line in lines:  # each epoch re-measured from the checkpoint the trainer saved after it
        assert line["checkpoint"] == str(run / "trainer" / f"checkpoint-{line['epoch'] + 1}")
        assert line["timings"]["rescore_s"] > 0 and "stale" not in line
    memory = json.loads((run / "state.json").read_text())["memory"]["likelihood"]
    assert len(memory["gc_ids"]) == PROMPTS and set(memory["epochs"]) == {1}  # every prompt, after the last epoch
    assert lines[1]["readout"]["correlation"] is not None
    status = gaincurate("schedule", "status", "--run", run)
    assert status.returncode == 0, status.stderr
    readout = [cells for cells in table_rows(status.stdout) if len(cells) == 8]  # epoch and the seven readout columns
    assert readout[-1][0] == "1" and readout[-1][-1] == f"{lines[1]['readout']['correlation']:+.2f}"


def test_a_trainer_that_leaves_nothing_loadable_stops_the_run_in_one_line_unless_told_to_carry_on(
    scores, tiny_llama, tmp_path
):
    run, command = start(tmp_path, scores, tiny_llama)
    stopped = gaincurate("schedule", "run", "--run", run, "--epochs", 2, "--trainer-cmd", command, save="bare")
    assert stopped.returncode != 0
    [error] = [line for line in stopped.stderr.splitlines() if line.startswith("gaincurate: error:")]
    assert error == stopped.stderr.strip().splitlines()[-1]
    folder = run / "trainer" / "checkpoint-1"
    assert f"epoch 0: --strategy probe reads the newest model after every epoch, but {folder} has no weights" in error
    assert "--allow-stale" in error
    assert history(run) == []  # epoch 0 is not marked trained: the same command trains it again
    assert "waiting for training" in gaincurate("schedule", "status", "--run", run).stdout

    (folder / "config.json").unlink()
    folder.rmdir()
    carried = gaincurate("schedule", "run", "--run", run, "--epochs", 2, "--trainer-cmd", command, "--allow-stale",
                         save="bare")  # fmt: skip
    assert carried.returncode == 0, carried.stderr
    assert carried.stderr.count("carrying on (--allow-stale)") == 2
    assert [line["stale"] for line in history(run)] == [
        f"{run / 'trainer' / f'checkpoint-{epoch + 1}'} has no weights (model.safetensors or pytorch_model.bin)"
        for epoch in (0, 1)
    ]
    status = gaincurate("schedule", "status", "--run", run).stdout
    assert [cells[0] for cells in table_rows(status) if len(cells) == 8] == ["0 (stale)", "1 (stale)"]
    assert "stale: after epoch(s) 0, 1 nothing was re-measured with the newest model" in status


def test_while_every_rollout_is_wrong_a_trainer_that_leaves_no_model_is_not_stopped(scores, tiny_llama, tmp_path):
    """The step after an epoch of equal rewards measures nothing (the fit cannot weigh a likelihood then), so the run
    asks for no model: the answer comes from the epoch's feedback, taken before the trainer's checkpoint is judged."""
    run, command = start(tmp_path, scores, tiny_llama)
    done = gaincurate("schedule", "run", "--run", run, "--epochs", 2, "--trainer-cmd", command, save="bare", wrong="1")
    assert done.returncode == 0, done.stderr
    assert "reads the newest model" not in done.stderr and "stale" not in done.stderr
    lines = history(run)
    assert [line["epoch"] for line in lines] == [0, 1]
    assert all("stale" not in line and not line["timings"].get("rescore_s") for line in lines)
