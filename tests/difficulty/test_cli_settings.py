"""`gaincurate difficulty`'s settings through the real console script: options generated from the config fields
keep `--config FILE` (defaults, then the file, then flags), the old `no_fit` key, and FitConfig's one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from difficulty_helpers import write_feedback

CONSOLE_SCRIPT = Path(sys.executable).with_name("gaincurate")


def gaincurate(*args: str | Path) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if key != "GAINCURATE_DEBUG"}
    command = [str(CONSOLE_SCRIPT), *map(str, args)]
    return subprocess.run(command, env={**environment, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)


@pytest.fixture()
def world(embedded_scores, tmp_path) -> tuple[Path, Path]:
    return embedded_scores, write_feedback(tmp_path / "a.jsonl", range(0, 60, 2), samples=4, seed=0)


def predicted(result: subprocess.CompletedProcess) -> list[float]:
    assert result.returncode == 0, result.stderr
    return [json.loads(line)["predicted"] for line in result.stdout.splitlines()]


def test_predict_takes_defaults_then_the_file_then_flags(world, tmp_path):
    scores, feedback = world
    config = tmp_path / "predict.toml"
    config.write_text("tau_attn = 0.3\nforget = 0.5\n")
    base = ("difficulty", "predict", scores, "-f", feedback)
    by_default = predicted(gaincurate(*base))
    assert by_default == predicted(gaincurate(*base, "--tau-attn", "0.1", "--forget", "1", "--reward-max", "1"))
    from_file = predicted(gaincurate(*base, "--config", config))
    assert from_file == predicted(gaincurate(*base, "--tau-attn", "0.3", "--forget", "0.5")) != by_default
    overridden = predicted(gaincurate(*base, "--config", config, "--tau-attn", "0.1", "--forget", "1"))
    assert overridden == by_default
    for bad, line in (("--forget", "--forget must be a number in (0, 1]; got 0.0"),
                      ("--tau-attn", "--tau-attn must be a positive number; got 0.0")):  # fmt: skip
        refused = gaincurate(*base, bad, "0")  # one line, before any work
        assert refused.returncode != 0 and refused.stdout == "", refused
        assert refused.stderr.strip().splitlines() == [f"gaincurate: error: {line}"]


def test_fit_reads_tau_attn_from_a_file_and_keeps_its_errors(world, tmp_path):
    scores, feedback = world
    config = tmp_path / "fit.json"
    config.write_text(json.dumps({"tau_attn": 0.3, "dim": 4, "steps": 5, "folds": 2}))
    out = tmp_path / "calibrator.npz"
    result = gaincurate("difficulty", "fit", scores, "-f", feedback, "-o", out, "--config", config, "--json")
    assert result.returncode == 0, result.stderr
    from gaincurate.difficulty.calibrate import FittedCalibrator

    calibrator, header = FittedCalibrator.load(out)
    assert calibrator.full.tau == 0.3 and header["fit"] == {
        "dim": 4, "steps": 5, "learning_rate": 0.01, "anchor": 1e-3, "folds": 2, "seed": 0, "tau": 0.3
    }  # fmt: skip

    refused = gaincurate("difficulty", "fit", scores, "-f", feedback, "-o", out, "--folds", "1")
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.strip() == "gaincurate: error: folds must be 0 (no cross-fitting) or at least 2"


def test_evaluate_keeps_the_no_fit_key(world, tmp_path):
    scores, feedback = world
    config = tmp_path / "evaluate.toml"
    config.write_text("no_fit = true\nrepeats = 2\n")
    result = gaincurate("difficulty", "evaluate", scores, "-f", feedback, "--config", config, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["repeats"] == 2 and "attention_fit" not in report["methods"]
