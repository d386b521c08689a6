"""The worked example of docs/strategies.md ("Adding a strategy"), taken from the page and run as a user would.

The page's Python block is written out as a package of its own, registered by its entry point as a third party's
would be (installed metadata on the path), and driven through the real console script: `schedule init --prompts`
(it reads no score), `schedule step` for epoch 0, `schedule step --feedback` with the trainer's rollouts of it, and
`schedule status`. Its memory keeps the measured pass rates, and the next epoch leaves out the prompts its rollouts
found all right or all wrong."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
from doc_blocks import block
from helpers import PROBLEMS, write_jsonl

from gaincurate.feedback_lines import format_line

# The package the worked example would be: its module, and the entry point its pyproject.toml would declare,
# `[project.entry-points."gaincurate.strategies"] lastrate = "lastrate:LastRateStrategy"`, as installed metadata.
ENTRY_POINTS = "[gaincurate.strategies]\nlastrate = lastrate:LastRateStrategy\n"


def test_the_worked_example_is_one_module_and_runs_through_init_step_and_status(tmp_path):
    package = tmp_path / "package"
    (package / "lastrate-0.1.dist-info").mkdir(parents=True)
    (package / "lastrate-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: lastrate\nVersion: 0.1\n"
    )
    (package / "lastrate-0.1.dist-info" / "entry_points.txt").write_text(ENTRY_POINTS)
    (package / "lastrate.py").write_text(block("docs/strategies.md", "class LastRateStrategy").text)
    prompts = write_jsonl(tmp_path / "problems.jsonl", PROBLEMS)
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200", "PYTHONPATH": str(package)}

    def gaincurate(*args: object) -> subprocess.CompletedProcess:
        command = [str(Path(sys.executable).parent / "gaincurate"), *map(str, args)]
        done = subprocess.run(command, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-600:]
        return done

    run = tmp_path / "run"
    gaincurate("schedule", "init", "--prompts", prompts, "--run", run, "--strategy", "lastrate", "--sharpness", "0.05",
               "--subset-size", "3", "--seed", "1")  # fmt: skip
    gaincurate("schedule", "step", "--run", run)
    first = pq.read_table(run / "epoch-0000.parquet").column("gc_id").to_pylist()
    solved, failed, mixed = first
    rewards = {solved: [1, 1, 1, 1], failed: [0, 0, 0, 0], mixed: [1, 0, 1, 0]}
    feedback = tmp_path / "rewards.jsonl"
    feedback.write_text("".join(format_line(gc_id, r) for gc_id, values in rewards.items() for r in values))
    gaincurate("schedule", "step", "--run", run, "--feedback", feedback)

    state = json.loads((run / "state.json").read_text())
    assert state["memory"]["last_rate"] == {str(solved): 1.0, str(failed): 0.0, str(mixed): 0.5}
    second = pq.read_table(run / "epoch-0001.parquet").column("gc_id").to_pylist()
    assert len(second) == 3 and solved not in second and failed not in second  # weight e**-10 beside 1
    status = json.loads(gaincurate("schedule", "status", "--run", run, "--json").stdout)
    assert status["params"]["strategy"] == "lastrate" and status["params"]["sharpness"] == 0.05
    assert status["draws"] == "each prompt drawn with weight exp(-|p - 0.5| / sharpness), p its last measured pass rate"
    readout = status["history"][0]["readout"]  # the savings readout read its estimates: 0.5 for every prompt at epoch 0
    assert len(status["history"]) == 1 and readout["estimate"] == "pass-rate estimate"
    assert readout["estimated_pass_rate"] == 0.5 and readout["zero_variance"] > 0.6
    assert Path(run / "prompts").is_dir()  # `--prompts`: the unscored prompt set the run keeps
