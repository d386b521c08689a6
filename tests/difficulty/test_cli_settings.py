"""`gaincurate difficulty`'s settings through the real console script: options generated from the config fields
keep `--config FILE` (defaults, then the file, then flags), the old `no_fit` key, and FitConfig's one-line errors; a
file that is no calibrator and a reward range that reads no rollout are one line too."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from difficulty_helpers import write_feedback

from gaincurate.difficulty.calibrate import Calibrator, FittedCalibrator
from gaincurate.difficulty.reference import read_measurements, read_pass_rates
from gaincurate.errors import ConfigError, InputError

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
                      ("--tau-attn", "--tau-attn must be a positive number (1e-100 or more); got 0.0")):  # fmt: skip
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


def test_a_npy_file_passed_as_calibrator_is_refused_in_one_line(world, tmp_path):
    scores, feedback = world
    array = tmp_path / "projection.npy"
    np.save(array, np.arange(3.0))
    refused = gaincurate("difficulty", "predict", scores, "-f", feedback, "--calibrator", array)
    assert refused.returncode == 1 and refused.stdout == "", refused.stderr
    assert refused.stderr.strip().splitlines() == [
        f"gaincurate: error: {array} is not a calibrator written by this `gaincurate difficulty fit` (it holds one "
        "float64 array of shape (3,), not a .npz archive); fit it again"
    ]
    for loader in (FittedCalibrator, Calibrator):
        with pytest.raises(InputError, match="is not a calibrator written by"):
            loader.load(array)


@pytest.mark.parametrize("reward_max", ["0", "-1"])
def test_a_reward_max_at_or_below_a_wrong_answers_reward_is_refused_in_one_line(world, reward_max):
    scores, feedback = world
    refused = gaincurate("difficulty", "predict", scores, "-f", feedback, "--reward-max", reward_max)
    assert refused.returncode == 1 and refused.stdout == "", refused.stderr
    assert refused.stderr.strip().splitlines() == [
        f"gaincurate: error: --reward-max must be positive (the reward of a correct answer); got {float(reward_max)}"
    ]


@pytest.mark.parametrize(
    ("reward_min", "reward_max", "message"),
    [
        (0.0, 0.0, "reward_max must be positive (the reward of a correct answer); got 0.0"),
        (1.0, 1.0, "reward_min (a wrong answer) must be below reward_max (a right one); got 1,1"),
        (-1.0, -2.0, "reward_min (a wrong answer) must be below reward_max (a right one); got -1,-2"),
        (0.0, float("inf"), "reward_max must be a finite number; got inf"),
    ],
    ids=["zero", "equal", "reversed", "infinite"],
)
def test_every_reader_of_pass_rates_refuses_a_reward_range_that_reads_nothing(
    world, tmp_path, reward_min, reward_max, message
):
    _, feedback = world
    with pytest.raises(ConfigError) as refused:
        read_pass_rates([feedback], known_ids=range(60), reward_max=reward_max, reward_min=reward_min)
    assert str(refused.value) == message
    with pytest.raises(ConfigError, match=re.escape(message)):
        read_measurements(feedback, range(60), reward_max=reward_max, reward_min=reward_min)
