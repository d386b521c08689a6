"""`gaincurate difficulty`'s refusals name the flag the user gave and the fix that fits, through the console script."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from difficulty_helpers import write_feedback

CONSOLE_SCRIPT = Path(sys.executable).with_name("gaincurate")


def gaincurate(*args: str | Path) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if key != "GAINCURATE_DEBUG"}
    command = [str(CONSOLE_SCRIPT), *map(str, args)]
    return subprocess.run(command, env={**environment, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)


def test_too_many_folds_for_the_measured_prompts_asks_for_fewer_folds(embedded_scores, tmp_path):
    feedback = write_feedback(tmp_path / "a.jsonl", range(0, 60, 2), samples=4, seed=0)  # 30 measured prompts
    done = gaincurate("difficulty", "fit", embedded_scores, "-f", feedback, "-o", tmp_path / "c.npz", "--folds", "1000")
    said = (
        "gaincurate: error: --folds 1000 needs 2000 reference prompts with pass rates (two a fold); got 30: pass "
        "--folds 15 or fewer (0: no cross-fitting)"
    )
    assert (done.returncode, done.stderr.strip()) == (1, said)
    assert not (tmp_path / "c.npz").exists()


def test_an_online_folder_that_holds_no_run_is_named_by_its_flag(tmp_path):
    missing = tmp_path / "nonexistent"
    done = gaincurate("difficulty", "evaluate", "--online", missing)
    said = f"--online {missing} does not exist; pass the run directory given to `gaincurate schedule init --run`"
    assert (done.returncode, done.stderr.strip()) == (1, f"gaincurate: error: {said}")
    done = gaincurate("difficulty", "evaluate", "--online", tmp_path)
    said = f"--online {tmp_path} holds no run (no state.json); pass the run directory given to `gaincurate schedule "
    assert done.returncode == 1 and done.stderr.startswith(f"gaincurate: error: {said}"), done.stderr


def test_a_run_without_two_fed_back_epochs_is_told_how_many_more_it_needs(embedded_scores, tmp_path):
    from gaincurate.schedule.config import ScheduleConfig
    from gaincurate.schedule.run.run import Run
    from gaincurate.schedule.run.rundir import load_run
    from gaincurate.schedule.run.steps import init_run

    run_dir = tmp_path / "run"
    init_run(run_dir, embedded_scores, ScheduleConfig(strategy="dots", subset_size=12, seed=4))
    Run.open(run_dir).step()
    said = "gaincurate: error: the run has no two consecutive epochs with feedback yet; evaluate it after "
    done = gaincurate("difficulty", "evaluate", "--online", run_dir)
    assert (done.returncode, done.stderr.strip()) == (1, said + "two epochs with feedback"), done.stderr
    ids = load_run(run_dir).schedule.subset_ids
    Run.open(run_dir).step(feedback=write_feedback(tmp_path / "fb.jsonl", ids, samples=4))
    done = gaincurate("difficulty", "evaluate", "--online", run_dir)
    assert (done.returncode, done.stderr.strip()) == (1, said + "one more epoch with feedback"), done.stderr


def test_a_holdout_that_leaves_too_few_on_a_side_names_the_holdouts_that_work(embedded_scores, tmp_path):
    feedback = write_feedback(tmp_path / "a.jsonl", range(0, 60, 2), samples=4, seed=0)  # 30 measured prompts
    for holdout in ("0.01", "0.99"):
        done = gaincurate("difficulty", "evaluate", embedded_scores, "-f", feedback, "--holdout", holdout,
                          "--repeats", "1", "--no-fit")  # fmt: skip
        said = (
            f"gaincurate: error: 30 measured prompts are too few to hold out {holdout} of them (a split needs 3 held "
            "out and 2 left); pass --holdout from 0.1 to 0.933, or measure more prompts with `gaincurate rollout`"
        )
        assert (done.returncode, done.stderr.strip()) == (1, said), done.stderr
