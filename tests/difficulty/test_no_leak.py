"""No leave-one-out leak on any path: change one reference prompt's label, and its own prediction stays the same.

The paths are `difficulty predict`, `difficulty predict --calibrator` (after `difficulty fit`, cross-fitted or
`--folds 0`), and the dots selection (plain, or with `--calibrator`). Each check changes one label everywhere
it is read, fits again where a fit is involved, and compares that prompt's own prediction to the bit. It also
checks that the other prompts' predictions do move, so the comparison has power.

Before the fix, `predict --calibrator` and `fit --folds 0` predicted a fitted prompt with a model trained on
its own label, so its prediction moved with it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from difficulty_helpers import write_embedded_scores

from gaincurate.feedback_lines import format_line
from gaincurate.lab.difficulty.fit import FitConfig
from gaincurate.lab.difficulty.jobs import PredictConfig, fit_scores, predict_scores
from gaincurate.schedule.config import ScheduleConfig
from gaincurate.schedule.run.run import Run
from gaincurate.schedule.run.rundir import load_run
from gaincurate.schedule.run.steps import init_run, open_scheduler

REFERENCE = list(range(0, 60, 2))  # 30 measured prompts
CHANGED = 10  # the prompt whose label changes
FIT = FitConfig(dim=4, steps=20, folds=3, seed=1, tau=0.2)


def write_labels(path: Path, flip: bool) -> Path:
    """4 rollouts per reference prompt, fixed labels; `flip` turns CHANGED's 1/4 into 4/4."""
    lines = []
    for gc_id in REFERENCE:
        solved = 4 if (flip and gc_id == CHANGED) else (gc_id // 2) % 3 if gc_id != CHANGED else 1
        lines += [format_line(gc_id, float(sample < solved)) for sample in range(4)]
    path.write_text("".join(lines))
    return path


@pytest.fixture()
def world(tmp_path):
    scores = write_embedded_scores(tmp_path / "scores")
    return scores, write_labels(tmp_path / "before.jsonl", False), write_labels(tmp_path / "after.jsonl", True)


def predictions(rows: list[dict]) -> np.ndarray:
    return np.array([row["predicted"] for row in rows])


def assert_own_unchanged(before: np.ndarray, after: np.ndarray, index: int = CHANGED) -> None:
    assert before[index] == after[index]
    assert not np.array_equal(np.delete(before, index), np.delete(after, index))  # the label is used elsewhere


def test_predict(world):
    scores, before, after = world
    assert_own_unchanged(
        predictions(predict_scores(scores, [before], config=PredictConfig(tau_attn=0.2))),
        predictions(predict_scores(scores, [after], config=PredictConfig(tau_attn=0.2))),
    )


@pytest.mark.parametrize("folds", [3, 0])
def test_predict_with_a_calibrator_fitted_on_the_label(world, tmp_path, folds):
    scores, before, after = world
    config = FitConfig(dim=4, steps=20, folds=folds, seed=1, tau=0.2)
    got = []
    for name, labels in (("before", before), ("after", after)):
        report = fit_scores(scores, [labels], tmp_path / f"{name}.npz", config=config)
        assert (report["loo_fit"] is None) == (folds == 0)  # folds 0: no honest in-sample number is reported
        calibrated = PredictConfig(tau_attn=0.2, calibrator=tmp_path / f"{name}.npz")
        got.append(predictions(predict_scores(scores, [labels], config=calibrated)))
    assert_own_unchanged(*got)


@pytest.mark.parametrize("calibrated", [False, True])
def test_dots_selection(world, tmp_path, calibrated):
    scores, before, after = world
    got = []
    for name, labels in (("before", before), ("after", after)):
        calibrator = None
        if calibrated:
            calibrator = str(tmp_path / f"{name}.npz")
            fit_scores(scores, [labels], Path(calibrator), config=FIT)
        config = ScheduleConfig(
            strategy="dots", subset_size=6, seed=2, reference=str(labels), calibrator=calibrator, tau_attn=FIT.tau
        )  # a calibrator's predictions attend at the temperature it was fitted at
        run = tmp_path / f"run-{name}"
        init_run(run, scores, config)
        Run.open(run).step()
        scheduler, _ = open_scheduler(load_run(run))
        estimates = scheduler.strategy.estimates(scheduler.state)
        got.append(estimates.neighbour)
        # The estimate selection aims with does use the prompt's own fresh rollouts: that is not a prediction.
        assert estimates.estimate[CHANGED] != estimates.neighbour[CHANGED]
    assert_own_unchanged(*got)
