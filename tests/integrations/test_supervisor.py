"""Fault injection on `schedule run`: the real console script is stopped or killed while its trainer runs.

No trainer may outlive it, and the rerun trains the interrupted epoch once, with one epoch's rollouts.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from schedule_helpers import write_scores

from gaincurate.schedule.config import ScheduleConfig
from gaincurate.schedule.run.rundir import load_run, read_history
from gaincurate.schedule.run.steps import init_run
from gaincurate.supervisor import FORWARDED, stop_group, supervise

GAINCURATE = Path(sys.executable).parent / "gaincurate"  # the console script, as a user runs it
SUBSET = 6

# Notes its pid (one file per call), sleeps TRAIN_SECONDS, then appends two rollouts per prompt of the epoch; with
# SLOW_TO_STOP set it ignores SIGTERM, as a trainer that saves a checkpoint first does for a while.
TRAINER = """
import json, os, pathlib, signal, sys, time
if os.environ.get("SLOW_TO_STOP"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
data, feedback, epoch, notes = sys.argv[1:5]
calls = pathlib.Path(notes, "calls.txt")
with calls.open("a") as file:
    file.write(epoch + "\\n")
pathlib.Path(notes, f"pid-{len(calls.read_text().split())}").write_text(str(os.getpid()))
time.sleep(float(os.environ.get("TRAIN_SECONDS", "0")))
import pyarrow.parquet as pq
ids = pq.read_table(data, columns=["gc_id"]).column("gc_id").to_pylist()
with open(feedback, "a") as file:
    for i in ids:
        for r in range(2):
            file.write(json.dumps({"gc_id": i, "correct": (i + r) % 3 == 0}) + "\\n")
"""


def alive(pid: int) -> bool:
    """Running (a zombie, dead but not yet reaped, does not count)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def wait_for(predicate, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture()
def run(tmp_path) -> tuple[Path, str, Path]:
    """A run directory, the trainer command (a compound one: the trainer is the shell's child), its notes folder."""
    run_dir, notes = tmp_path / "run", tmp_path / "notes"
    notes.mkdir()
    init_run(
        run_dir,
        write_scores(tmp_path / "scores"),
        ScheduleConfig(strategy="gain", seed=5, subset_size=SUBSET, sigma=6, rescore="none"),
    )
    script = tmp_path / "trainer.py"
    script.write_text(TRAINER)
    python = shlex.quote(sys.executable)
    command = f"{python} {shlex.quote(str(script))} {{epoch_data}} {{feedback_file}} {{epoch}} {notes}; echo done"
    return run_dir, command, notes


def schedule_run(
    run_dir: Path,
    command: str,
    *,
    train_seconds: float,
    env: dict[str, str] | None = None,
    ignoring: signal.Signals | None = None,
) -> subprocess.Popen:
    """`schedule run` of one epoch; `ignoring`: a signal it starts with ignored, as `nohup` or a background job.
    The others start at their default, as in a terminal's foreground job, whatever started pytest (a background
    shell script's tests inherit SIGINT ignored, and an ignored signal stays ignored)."""
    environment = {**os.environ, **(env or {}), "TRAIN_SECONDS": str(train_seconds)}

    def ignore() -> None:
        for signum in FORWARDED:
            signal.signal(signum, signal.SIG_IGN if signum == ignoring else signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)  # nor held back by whatever started pytest

    return subprocess.Popen(
        [str(GAINCURATE), "schedule", "run", "--run", str(run_dir), "--epochs", "1", "--trainer-cmd", command],
        env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=ignore,
    )  # fmt: skip


# Ctrl-C is the user's own stop, said as every command says it; SIGTERM (a scheduler's) is said as a stop.
STOP_LINES = {
    signal.SIGTERM: "gaincurate: error: stopped by SIGTERM while training epoch 0; the trainer was stopped too",
    signal.SIGINT: "gaincurate: interrupted; epoch 0 was training: the trainer was stopped too",
}


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_stopped_schedule_run_leaves_no_trainer_and_the_rerun_trains_once(run, signum, code):
    """The stop is one line: exit 128 + the signal, no trainer left, nothing recorded."""
    run_dir, command, notes = run
    first = schedule_run(run_dir, command, train_seconds=600)
    assert wait_for(lambda: (notes / "pid-1").is_file()), first.communicate(timeout=5)
    trainer = int((notes / "pid-1").read_text())
    first.send_signal(signum)
    _, stderr = first.communicate(timeout=60)
    assert first.returncode == code, stderr
    assert not alive(trainer)  # gone by the time `schedule run` has exited
    (line,) = [line for line in stderr.splitlines() if line.startswith("gaincurate:")]
    assert "Traceback" not in stderr and line.startswith(STOP_LINES[signum]), stderr
    assert not load_run(run_dir).trained and not (run_dir / "feedback-0000.jsonl").exists()

    second = schedule_run(run_dir, command, train_seconds=0)
    _, stderr = second.communicate(timeout=120)
    assert second.returncode == 0, stderr
    assert (notes / "calls.txt").read_text().split() == ["0", "0"]  # the stopped attempt, then one training
    (record,) = read_history(run_dir)
    rollouts = (run_dir / "feedback-0000.jsonl").read_text().splitlines()
    assert record["rollouts"] == len(rollouts) == 2 * SUBSET
    assert {json.loads(line)["gc_id"] for line in rollouts} == set(record["subset_ids"])


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGINT], ids=["SIGHUP-nohup", "SIGINT-background-job"])
def test_a_signal_ignored_when_schedule_run_started_does_not_stop_it(run, signum):
    """`nohup` starts a command with SIGHUP ignored, a shell's background job with SIGINT ignored: the hangup, or the
    Ctrl-C meant for the foreground, must not stop the run."""
    run_dir, command, notes = run
    first = schedule_run(run_dir, command, train_seconds=3, ignoring=signum)
    assert wait_for(lambda: (notes / "pid-1").is_file()), first.communicate(timeout=5)
    first.send_signal(signum)  # while the trainer has its 3 s still to go
    _, stderr = first.communicate(timeout=120)
    assert first.returncode == 0, stderr
    assert (notes / "calls.txt").read_text().split() == ["0"]
    (record,) = read_history(run_dir)
    assert record["rollouts"] == 2 * SUBSET


# Sends SIGTERM to the console script itself once its trainer has exited, as `supervise` dismisses its watchdog: the
# last moment of the supervision, after the command and its group are gone.
SIGNAL_WHILE_DISMISSING = """
import os, signal
if os.environ.get("GAINCURATE_TEST_SIGNAL_WHILE_DISMISSING"):
    from gaincurate import supervisor
    _dismiss = supervisor._dismiss
    def _signalled_then_dismissed(watchdog):
        os.kill(os.getpid(), signal.SIGTERM)
        _dismiss(watchdog)
    supervisor._dismiss = _signalled_then_dismissed
"""


def test_a_signal_while_the_supervision_ends_is_the_same_one_line_stop(run, tmp_path):
    """The handler acts on a signal however late it comes: exit 143, one line, the epoch not marked trained."""
    run_dir, command, notes = run
    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(SIGNAL_WHILE_DISMISSING)
    late = {"PYTHONPATH": str(inject), "GAINCURATE_TEST_SIGNAL_WHILE_DISMISSING": "1"}
    first = schedule_run(run_dir, command, train_seconds=0, env=late)
    _, stderr = first.communicate(timeout=120)
    assert first.returncode == 143 and "Traceback" not in stderr, stderr
    (line,) = [line for line in stderr.splitlines() if line.startswith("gaincurate: error:")]
    assert line.startswith("gaincurate: error: stopped by SIGTERM while training epoch 0; the trainer was stopped")
    assert (notes / "calls.txt").read_text().split() == ["0"]  # it had run to its end
    assert not load_run(run_dir).trained and read_history(run_dir) == []


def test_killed_schedule_run_leaves_no_trainer(run):
    """SIGKILL gives `schedule run` no chance to act: its watchdog stops the trainer's group."""
    run_dir, command, notes = run
    first = schedule_run(run_dir, command, train_seconds=600)
    assert wait_for(lambda: (notes / "pid-1").is_file()), first.communicate(timeout=5)
    trainer = int((notes / "pid-1").read_text())
    first.kill()
    first.communicate(timeout=60)
    assert wait_for(lambda: not alive(trainer), timeout=30)
    assert not load_run(run_dir).trained


def test_a_rerun_waits_for_the_trainer_of_a_killed_run_and_trains_the_epoch_once(run):
    """`schedule run` killed: its watchdog stops the trainer, which may take its grace to go. The rerun waits for it
    (the trainer holds the run's lock) instead of training the epoch beside it and counting its rollouts twice."""
    run_dir, command, notes = run
    first = schedule_run(run_dir, command, train_seconds=600, env={"SLOW_TO_STOP": "1"})
    assert wait_for(lambda: (notes / "pid-1").is_file()), first.communicate(timeout=5)
    trainer = int((notes / "pid-1").read_text())
    first.kill()
    first.communicate(timeout=60)
    second = schedule_run(run_dir, command, train_seconds=0)
    time.sleep(3)
    assert alive(trainer) and (notes / "calls.txt").read_text().split() == ["0"]  # waiting, no second trainer
    os.kill(trainer, signal.SIGKILL)  # as the watchdog does once the grace is over
    _, stderr = second.communicate(timeout=120)
    assert second.returncode == 0 and "waiting for the trainer of an earlier `schedule run`" in stderr, stderr
    (record,) = read_history(run_dir)
    assert record["rollouts"] == len((run_dir / "feedback-0000.jsonl").read_text().splitlines()) == 2 * SUBSET


def test_a_trainer_that_ignores_sigterm_is_killed_after_the_grace(tmp_path):
    ready = tmp_path / "ready"
    ignore = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN)"
    stubborn = f"{ignore}; open({str(ready)!r}, 'w'); time.sleep(600)"
    process = subprocess.Popen([sys.executable, "-c", stubborn], start_new_session=True)
    assert wait_for(ready.is_file)
    started = time.monotonic()
    stop_group(process.pid, signal.SIGTERM, 1.0, process=process)
    assert process.returncode == -signal.SIGKILL and time.monotonic() - started >= 1.0


def test_processes_a_command_leaves_behind_are_stopped(tmp_path):
    """A background child of a finished command would hold its memory (a GPU's) into the next epoch."""
    pid_file = tmp_path / "pid"
    code = supervise(f"sleep 600 & echo $! > {pid_file}; exit 0", env=os.environ, log=tmp_path / "log")
    assert code == 0 and not alive(int(pid_file.read_text()))
