"""A run's paths through the console script: the `next:` hint pastes as printed (spaces, a leading dash), a run whose
recorded scores folder is gone says so with a fix that works, and `--feedback-file`'s folder is made before the
trainer starts, as --output-dir's is."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

from schedule_helpers import error_line, tree, write_scores

CONSOLE_SCRIPT = Path(sys.executable).with_name("gaincurate")
# A trainer that writes one reward for each of the 40 prompts to its feedback file, as a reward function does.
ROLLOUT = 'echo "{\\"gc_id\\": $i, \\"reward\\": $((i % 2))}"'
TRAINER = f"for i in $(seq 0 39); do {ROLLOUT}; done > {{feedback_file}} # {{epoch_data}}"


def gaincurate(*args: object, cwd: Path) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != "GAINCURATE_DEBUG"}
    env |= {"OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    return subprocess.run([str(CONSOLE_SCRIPT), *map(str, args)], env=env, capture_output=True, text=True,
                          timeout=300, cwd=cwd)  # fmt: skip


def init(scores: str, run: str, cwd: Path) -> subprocess.CompletedProcess:
    result = gaincurate("schedule", "init", "--scores", scores, f"--run={run}", "--strategy", "uniform",
                        "--subset-size", "8", cwd=cwd)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result


def test_the_next_hint_of_init_runs_as_pasted(tmp_path):
    write_scores(tmp_path / "my scores")
    run = "run ü 1"
    hint = init("my scores", run, tmp_path).stdout.splitlines()[-1]
    assert hint.startswith("next: gaincurate "), hint
    pasted = gaincurate(*shlex.split(hint.removeprefix("next: gaincurate ")), cwd=tmp_path)
    assert pasted.returncode == 0, pasted.stderr
    assert (tmp_path / run / "epoch-0000.parquet").is_file()


def test_a_run_whose_scores_folder_is_gone_says_so_and_putting_it_back_works(tmp_path):
    write_scores(tmp_path / "scores")
    init("scores", "run", tmp_path)
    (tmp_path / "scores").rename(tmp_path / "moved")
    before = tree(tmp_path / "run")
    line = error_line(gaincurate("schedule", "step", "--run", "run", cwd=tmp_path))
    assert f"{tmp_path / 'scores'}, this run's scores folder (recorded in its state.json" in line, line
    assert "is not there; put the scores back at that path" in line, line
    assert tree(tmp_path / "run") == before
    (tmp_path / "moved").rename(tmp_path / "scores")
    step = gaincurate("schedule", "step", "--run", "run", cwd=tmp_path)
    assert step.returncode == 0, step.stderr


def test_the_feedback_file_s_folder_is_made_before_the_trainer_starts(tmp_path):
    write_scores(tmp_path / "scores")
    init("scores", "run", tmp_path)
    result = gaincurate("schedule", "run", "--run", "run", "--epochs", "1", "--trainer-cmd", TRAINER,
                        "--feedback-file", "new/folder/fb-{epoch}.jsonl", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "new" / "folder" / "fb-0000.jsonl").is_file()
    assert (tmp_path / "run" / "feedback-0000.jsonl").is_file()
