"""`gaincurate bench scale` and `bench replay` refuse what they cannot run before they run, naming the flag, through
the real console script; a scale bench whose strategies fail says so in its exit code, with each failed step's own
error; and the demo's time in docs/benchmarks.md is the one its help gives."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from gaincurate.lab.benchmarks.replay import format_table

ROOT = Path(__file__).resolve().parents[2]
CONSOLE = str(Path(sys.executable).with_name("gaincurate"))


def gaincurate(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if key != "GAINCURATE_DEBUG"}
    return subprocess.run([CONSOLE, *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          env={**environment, "OMP_NUM_THREADS": "1"}, timeout=300)  # fmt: skip


def test_a_subset_larger_than_a_pool_is_refused_before_the_scale_bench_runs():
    done = gaincurate("bench", "scale", "--sizes", "1000,5000", "--epochs", "1")
    said = (
        "gaincurate: error: --subset 4096 is larger than the pool size 1,000 (--sizes); pass --subset 1000 or less, "
        "or larger sizes"
    )
    assert (done.returncode, done.stderr.strip(), done.stdout) == (1, said, "")


def test_a_failed_strategy_shows_its_own_error_and_fails_the_scale_bench(tmp_path):
    # No embeddings (--width 0): dots cannot start, uniform can.
    done = gaincurate("bench", "scale", "--sizes", "300", "--subset", "256", "--epochs", "1", "--width", "0",
                      "--strategies", "dots,uniform", "--agreement", "0", "--workdir", tmp_path)  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "gaincurate: error: 1 strategy run failed (300 dots (init)); each one's error is in its table row"
    )
    dots = next(line for line in done.stdout.splitlines() if line.startswith("| dots |"))
    error = done.stdout.splitlines()[done.stdout.splitlines().index(dots) + 1]
    assert "has no gc_embedding column" in error and "--run" not in error, done.stdout  # init's, not status's
    assert "(failed) | - | - | - |" in dots  # after a failed init nothing runs, status included


def test_an_out_folder_is_refused_before_a_bench_runs(tmp_path):
    folder = tmp_path / "outdir"
    folder.mkdir()
    for bench in (["scale", "--sizes", "300", "--subset", "256", "--epochs", "1"], ["replay", "--steps", "2"]):
        done = gaincurate("bench", *bench, "--out", folder)
        said = f"gaincurate: error: --out {folder} is a folder; pass a file path, such as {folder / 'result.json'}"
        assert (done.returncode, done.stderr.strip()) == (1, said), done.stderr  # no progress line: nothing ran
    done = gaincurate("bench", "replay", "--out", tmp_path / "missing" / "r.json")
    assert done.returncode == 1 and "does not exist; create it" in done.stderr, done.stderr


def test_replay_values_that_cannot_train_are_refused_naming_the_flag():
    steps = gaincurate("bench", "replay", "--steps", "1")
    said = "gaincurate: error: --steps 1 is not valid: input should be greater than or equal to 2"
    assert steps.returncode == 2 and steps.stderr.startswith(said), steps.stderr
    for flag, value, said in [
        ("--hidden-size", "6", "--hidden-size 6 must be a multiple of 4: the model has 2 attention heads, each of an "
                               "even width"),
        ("--fresh-fraction", "1.5", "--fresh-fraction 1.5 is outside (0, 1]; 0.5 generates half of each step's "
                                    "prompts fresh, 1 replays nothing"),
        ("--fresh-fraction", "nan", "--fresh-fraction nan is outside (0, 1]; 0.5 generates half of each step's "
                                    "prompts fresh, 1 replays nothing"),
    ]:  # fmt: skip
        done = gaincurate("bench", "replay", flag, value)
        assert (done.returncode, done.stderr.strip()) == (2, f"gaincurate: error: {said}"), done.stderr


def test_a_replay_run_without_steps_past_its_warm_up_prints_its_table():
    steady = {"steps": 1, "fresh_prompts": 8, "generated_tokens": 100, "seconds_mean": 1.0, "seconds_median": 1.0,
              "generation_seconds_mean": 0.5, "replay_logps_seconds_mean": 0.0}  # fmt: skip
    table = format_table({"baseline": {"steady": steady}, "replay": {"steady": {"steps": 0}}})
    assert table.splitlines()[2] == "replay        0  (no steps to summarise)"
    assert table.splitlines()[3].startswith("replay / baseline: no comparison")


def test_the_demo_time_in_the_benchmarks_page_is_the_one_its_help_gives():
    cli = (ROOT / "docs" / "cli.md").read_text()
    help_time = re.search(r"`--demo` \| See the saving in about four minutes \((\d+ min \d+ s)", cli)
    page_time = re.search(r"`--demo` runs in about (\d+ min \d+ s)", (ROOT / "docs" / "benchmarks.md").read_text())
    assert help_time and page_time and page_time[1] == help_time[1]


def test_a_reference_set_within_its_bound_claims_no_agreement(tmp_path):
    """Bounded to 2048 of 8 measured prompts, the bounded and the full reference set are one set: their Spearman of 1
    would be no evidence, so the line says there is nothing to compare and keeps the aim on never-measured prompts."""
    done = gaincurate("bench", "scale", "--sizes", "50", "--subset", "8", "--epochs", "1", "--width", "16",
                      "--strategies", "dots", "--workdir", tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    line = next(line for line in done.stdout.splitlines() if line.startswith("dots: "))
    said = "dots: 8 measured prompts, within the reference bound of 2048: the bounded set is every one, nothing to "
    assert line.startswith(said + "compare; Pearson with the hidden rates, never-measured prompts: "), line
    assert "Spearman" not in line and "largest difference" not in line
