"""Re-scoring with torchrun (`rescore_nproc` > 1) from the real console script: a failure is one line, and a stop
leaves no worker behind.

`schedule step` re-scores the epoch's prompts with `torchrun --nproc-per-node 2 -m gaincurate score`. The workers of
the stop test are held by a `sitecustomize` on PYTHONPATH: a process torchrun started (LOCAL_RANK is set) notes its
pid and its parent's (torchrun's) and sleeps, so the signal always lands while they run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path
from types import SimpleNamespace

import pyarrow.parquet as pq
import pytest
from schedule_helpers import write_hf_model, write_scores

from gaincurate.schedule.config import ScheduleConfig
from gaincurate.schedule.run.run import Run
from gaincurate.schedule.run.steps import init_run

GAINCURATE = Path(sys.executable).parent / "gaincurate"  # the console script, as a user runs it
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}

HELD_WORKERS = """
import os, pathlib, time
notes = os.environ.get("GAINCURATE_TEST_WORKER_NOTES")
if notes and "LOCAL_RANK" in os.environ:
    pathlib.Path(notes, f"worker-{os.environ['LOCAL_RANK']}").write_text(f"{os.getpid()} {os.getppid()}")
    time.sleep(600)
"""


@pytest.fixture()
def step_with_two_processes(tmp_path) -> SimpleNamespace:
    """A run that re-scores with 2 processes, epoch 0 drawn, its feedback and a checkpoint to re-score with."""
    run_dir = tmp_path / "run"
    config = ScheduleConfig(strategy="gain", seed=5, subset_size=6, sigma=6, rescore="subset", rescore_nproc=2)
    init_run(run_dir, write_scores(tmp_path / "scores"), config)
    Run.open(run_dir).step()
    ids = pq.read_table(run_dir / "epoch-0000.parquet", columns=["gc_id"]).column("gc_id").to_pylist()
    feedback = tmp_path / "feedback.jsonl"
    feedback.write_text("".join(json.dumps({"gc_id": i, "reward": i % 2}) + "\n" for i in ids))
    checkpoint = write_hf_model(tmp_path / "checkpoint")
    (checkpoint / "config.json").write_text('{"model_type": "no-such-model"}')  # the workers cannot load it
    command = [str(GAINCURATE), "schedule", "step", "--run", str(run_dir), "--feedback", str(feedback),
               "--checkpoint", str(checkpoint)]  # fmt: skip
    temporary = tmp_path / "tmp"  # the re-scoring's own folder and log go here
    temporary.mkdir()
    return SimpleNamespace(run_dir=run_dir, command=command, state=(run_dir / "state.json").read_bytes(),
                           env={**ENV, "TMPDIR": str(temporary)}, temporary=temporary)  # fmt: skip


def left_behind(temporary: Path) -> list[str]:
    return sorted(path.name for path in temporary.glob("gaincurate-rescore-*"))


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("gaincurate: error:")]


def test_a_failing_torchrun_is_one_line_with_the_workers_own_error_and_its_log(step_with_two_processes):
    step = step_with_two_processes
    done = subprocess.run(step.command, env=step.env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    (line,) = error_lines(done.stderr)
    assert line.startswith(
        "gaincurate: error: re-scoring with 2 processes (torchrun) failed with exit code 1: a worker says cannot load "
    ), line
    log = Path(line.split("; the full log is ")[1].split(": fix what it names")[0])
    assert "gaincurate: error: cannot load" in log.read_text()
    assert left_behind(step.temporary) == [log.name]  # the log alone is kept
    assert (step.run_dir / "state.json").read_bytes() == step.state  # nothing recorded


def alive(pid: int) -> bool:
    """Running (a zombie, dead but not yet reaped, does not count)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="the workers are checked through /proc")
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_stopped_rescore_leaves_no_torchrun_worker_and_is_one_line(step_with_two_processes, tmp_path, signum, code):
    step = step_with_two_processes
    inject, notes = tmp_path / "inject", tmp_path / "notes"
    inject.mkdir()
    notes.mkdir()
    (inject / "sitecustomize.py").write_text(HELD_WORKERS)
    held = {**step.env, "PYTHONPATH": str(inject), "GAINCURATE_TEST_WORKER_NOTES": str(notes)}

    # The signal at its default and not blocked, as in a terminal's foreground job: tests started in the background
    # inherit SIGINT ignored, and an ignored signal stays ignored.
    def foreground() -> None:
        signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signum])

    first = subprocess.Popen(step.command, env=held, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             preexec_fn=foreground)  # fmt: skip
    pids: set[int] = set()
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and len(list(notes.glob("worker-*"))) < 2 and first.poll() is None:
            time.sleep(0.1)
        for note in notes.glob("worker-*"):
            pids.update(int(pid) for pid in note.read_text().split())  # the worker and torchrun
        assert len(pids) == 3, first.communicate(timeout=60)
        first.send_signal(signum)
        _, stderr = first.communicate(timeout=120)
        assert first.returncode == code and "Traceback" not in stderr, stderr
        (line,) = error_lines(stderr)
        assert line.startswith(f"gaincurate: error: stopped by {signum.name} while re-scoring with 2 processes"), line
        assert [pid for pid in pids if alive(pid)] == []  # gone by the time the console script has exited
        assert left_behind(step.temporary) == []
        assert (step.run_dir / "state.json").read_bytes() == step.state
    finally:
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if first.poll() is None:
            first.kill()
            first.communicate()
