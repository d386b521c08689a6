"""One command writes a run at a time: `schedule step` and `schedule init` take the lock `schedule run` holds while its
trainer trains, and a second command is refused in one line, the run left as it was. Through the console script."""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from gaincurate.errors import InputError
from gaincurate.schedule.config import ScheduleConfig
from gaincurate.schedule.run.run import Run
from gaincurate.schedule.run.rundir import load_run, read_history
from gaincurate.schedule.run.steps import init_run

GAINCURATE = Path(sys.executable).parent / "gaincurate"
IN_USE = "is in use by another gaincurate command"

# Says it started, waits for the test's go file, then writes two rollouts per prompt of the epoch.
TRAINER = """
import json, pathlib, sys, time
import pyarrow.parquet as pq
data, feedback, notes = sys.argv[1:4]
pathlib.Path(notes, "started").write_text("")
while not pathlib.Path(notes, "go").exists():
    time.sleep(0.02)
ids = pq.read_table(data, columns=["gc_id"]).column("gc_id").to_pylist()
with open(feedback, "a") as file:
    for i in ids:
        for r in range(2):
            file.write(json.dumps({"gc_id": i, "correct": (i + r) % 3 == 0}) + "\\n")
"""


def gaincurate(*args: object, wait: bool = True) -> subprocess.CompletedProcess | subprocess.Popen:
    command = [str(GAINCURATE), *map(str, args)]
    environment = {key: value for key, value in os.environ.items() if key != "GAINCURATE_DEBUG"}
    if not wait:
        return subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=120)


def wait_for(path: Path, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while not path.exists():
        assert process.poll() is None and time.monotonic() < deadline, process.communicate(timeout=5)
        time.sleep(0.02)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def epoch_feedback(run_dir: Path, epoch: int, path: Path) -> Path:
    """Two rollouts per prompt of the run's epoch file, as a trainer writes them."""
    ids = pq.read_table(run_dir / f"epoch-{epoch:04d}.parquet", columns=["gc_id"]).column("gc_id").to_pylist()
    path.write_text("".join(json.dumps({"gc_id": i, "correct": r == 0}) + "\n" for i in ids for r in range(2)))
    return path


@pytest.fixture()
def run_dir(tmp_path, scores_dir) -> Path:
    init_run(tmp_path / "run", scores_dir, ScheduleConfig(strategy="uniform", seed=5, subset_size=6))
    return tmp_path / "run"


def test_a_step_while_schedule_run_trains_is_refused_and_the_run_goes_on(run_dir, tmp_path):
    """A step handed the epoch's feedback while the trainer still trains it would move the run on, and the trainer's
    epoch would then be marked trained in the next epoch's place: refused, nothing changed, and the loop ends well."""
    notes = tmp_path / "notes"
    notes.mkdir()
    (tmp_path / "trainer.py").write_text(TRAINER)
    trainer = f"{shlex.quote(sys.executable)} {tmp_path / 'trainer.py'} {{epoch_data}} {{feedback_file}} {notes}"
    loop = gaincurate("schedule", "run", "--run", run_dir, "--epochs", "1", "--trainer-cmd", trainer, wait=False)
    wait_for(notes / "started", loop)
    before = snapshot(run_dir)
    step = gaincurate("schedule", "step", "--run", run_dir, "--feedback", epoch_feedback(run_dir, 0, tmp_path / "f"))
    assert step.returncode == 1 and step.stdout == "", step.stdout
    assert step.stderr.startswith(f"gaincurate: error: {run_dir} {IN_USE}") and step.stderr.count("\n") == 1
    assert snapshot(run_dir) == before
    (notes / "go").write_text("")
    _, stderr = loop.communicate(timeout=120)
    assert loop.returncode == 0, stderr
    assert load_run(run_dir).schedule.epoch == 1 and [line["epoch"] for line in read_history(run_dir)] == [0]


def test_a_step_or_an_init_on_a_locked_run_is_refused_in_one_line(run_dir, tmp_path, scores_dir):
    """The lock held (as by a `schedule run`): a step, and an init into the new run folder, change nothing."""
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    handles = [os.open(folder, os.O_RDONLY | os.O_DIRECTORY) for folder in (run_dir, fresh)]
    try:
        for handle in handles:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        before = snapshot(run_dir)
        step = gaincurate("schedule", "step", "--run", run_dir)
        init = gaincurate("schedule", "init", "--scores", scores_dir, "--run", fresh, "--strategy", "uniform")
    finally:
        for handle in handles:
            os.close(handle)
    for result, folder in ((step, run_dir), (init, fresh)):
        assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
        assert result.stderr.startswith(f"gaincurate: error: {folder} {IN_USE}"), result.stderr
    assert snapshot(run_dir) == before and not any(fresh.iterdir())


def test_marking_an_epoch_trained_refuses_a_run_another_command_moved_on(run_dir, tmp_path):
    """The loop's run object holds epoch 0; a step taken from outside moved the run to epoch 1: not marked."""
    Run.open(run_dir).step()
    loop = Run.open(run_dir)
    Run.open(run_dir).step(feedback=epoch_feedback(run_dir, 0, tmp_path / "f"))
    with pytest.raises(InputError, match="moved on to epoch 1 while epoch 0 was training"):
        loop.mark_trained(checkpoint=None, train_seconds=1.0)
    assert not load_run(run_dir).trained
