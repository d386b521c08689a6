"""The fitted adapter + calibration head: leave-one-out without self-leak, seeded, and the formula it claims."""

from __future__ import annotations

import math

import numpy as np
import pytest
from difficulty_helpers import true_pass_rates

from gaincurate.difficulty.calibrate import Calibrator, FittedCalibrator
from gaincurate.difficulty.predict import attention_predict, prepare_embeddings
from gaincurate.lab.difficulty.fit import FitConfig, fit_calibrator, fold_assignment, initial_projection

FAST = FitConfig(dim=6, steps=30, folds=4, seed=3, tau=0.2)


def reference(count: int = 40) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    embeddings, rates = true_pass_rates(count, seed=1)
    rng = np.random.default_rng(2)
    measured = rng.binomial(8, rates) / 8
    return prepare_embeddings(embeddings), measured, np.full(count, 8.0)


def test_changing_a_label_leaves_its_own_prediction_unchanged():
    embeddings, rates, counts = reference()
    before = fit_calibrator(embeddings, rates, counts, FAST).loo_predictions
    for index in (0, 17, 39):
        changed = rates.copy()
        changed[index] = 1.0 - changed[index]
        after = fit_calibrator(embeddings, changed, counts, FAST).loo_predictions
        assert after[index] == before[index]
        # The label is used: other prompts' predictions do move, so the check above has power.
        assert not np.array_equal(np.delete(after, index), np.delete(before, index))


def test_folds_zero_reports_no_in_sample_prediction_as_leave_one_out():
    """With folds=0 every model saw every label. In-sample predictions would leak a prompt's own label, so
    none is reported (before, they were, as "leave-one-out", and changing a label moved its own prediction)."""
    embeddings, rates, counts = reference()
    config = FitConfig(dim=6, steps=30, folds=0, seed=3, tau=0.2)
    result = fit_calibrator(embeddings, rates, counts, config)
    assert np.isnan(result.loo_predictions).all() and result.fold_calibrators == []
    changed = rates.copy()
    changed[5] = 1.0 - changed[5]
    leaky = fit_calibrator(embeddings, changed, counts, config).calibrator
    everyone = np.arange(len(rates))
    in_sample = result.calibrator.predict(embeddings, embeddings, rates, exclude=everyone)[5]
    assert leaky.predict(embeddings, embeddings, changed, exclude=everyone)[5] != in_sample  # what it would leak


def test_a_saved_fit_predicts_fitted_prompts_with_the_model_that_never_saw_them(tmp_path):
    embeddings, rates, counts = reference()
    ids = np.arange(100, 140)
    everyone = np.arange(len(rates))
    for config in (FAST, FitConfig(dim=6, steps=30, folds=0, seed=3, tau=0.2)):
        result = fit_calibrator(embeddings, rates, counts, config)
        result.fitted(ids).save(tmp_path / "fit.npz", {"center": [0.0]})
        fitted, header = FittedCalibrator.load(tmp_path / "fit.npz")
        assert header == {"center": [0.0]}
        predicted = fitted.predict(ids, embeddings, embeddings, rates, exclude=everyone)
        if config.folds:  # the cross-fitted predictions, exactly
            np.testing.assert_array_equal(predicted, result.loo_predictions)
        else:  # no model left them out: plain leave-one-out attention, uncalibrated
            expected = attention_predict(embeddings, embeddings, rates, tau=0.2, exclude=everyone)
            np.testing.assert_array_equal(predicted, expected)
        # A prompt the fit never saw gets the model fitted on everyone.
        outsider = fitted.predict(np.array([7]), embeddings[:1], embeddings, rates)
        np.testing.assert_array_equal(outsider, result.calibrator.predict(embeddings[:1], embeddings, rates))


@pytest.mark.determinism
def test_fits_are_seeded_and_byte_identical(tmp_path):
    embeddings, rates, counts = reference()
    first, second = (fit_calibrator(embeddings, rates, counts, FAST) for _ in range(2))
    np.testing.assert_array_equal(first.loo_predictions, second.loo_predictions)
    first.calibrator.save(tmp_path / "a.npz", {"center": [0.0]})
    second.calibrator.save(tmp_path / "b.npz", {"center": [0.0]})
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    loaded, header = Calibrator.load(tmp_path / "a.npz")
    np.testing.assert_array_equal(loaded.projection, first.calibrator.projection)
    assert (loaded.weight, loaded.bias, loaded.tau, header) == (
        first.calibrator.weight,
        first.calibrator.bias,
        first.calibrator.tau,
        {"center": [0.0]},
    )


def test_training_reaches_the_known_optimum():
    """Four far-apart pairs of identical prompts, pass rates 0.2 and 0.8 in each pair.

    Leave-one-out attention at a small tau gives each prompt its partner's rate, so the raw prediction is
    the label swapped, whatever the adapter: the adapter gets no gradient and stays at its start, and the
    head's unique optimum is w = -1, b = 0, where every prediction equals its label and the loss is the
    labels' entropy. Before training (w = 1, b = 0) the loss is the cross-entropy of the swapped labels.
    """
    pairs = 4
    embeddings = prepare_embeddings(np.repeat(np.eye(pairs), 2, axis=0))
    rates = np.tile([0.2, 0.8], pairs)
    config = FitConfig(dim=pairs, steps=400, folds=0, tau=0.01, learning_rate=0.05)
    result = fit_calibrator(embeddings, rates, np.full(2 * pairs, 8.0), config)
    swapped_loss = -(0.2 * math.log(0.8) + 0.8 * math.log(0.2))
    entropy = -(0.2 * math.log(0.2) + 0.8 * math.log(0.8))
    assert result.losses[0] == pytest.approx(swapped_loss, abs=1e-12)
    assert result.losses[-1] == pytest.approx(entropy, abs=1e-9)
    assert (result.calibrator.weight, result.calibrator.bias) == pytest.approx((-1.0, 0.0), abs=1e-6)
    np.testing.assert_allclose(result.calibrator.projection, initial_projection(embeddings, pairs), atol=1e-6)
    everyone = np.arange(2 * pairs)
    in_sample = result.calibrator.predict(embeddings, embeddings, rates, exclude=everyone)
    np.testing.assert_allclose(in_sample, rates, atol=1e-6)


def test_calibrator_predicts_by_the_stated_formula():
    rng = np.random.default_rng(7)
    calibrator = Calibrator(rng.normal(size=(3, 5)), weight=1.7, bias=-0.4, tau=0.6)
    queries, keys, values = rng.normal(size=(4, 5)), rng.normal(size=(6, 5)), rng.uniform(0.1, 0.9, size=6)
    expected = []
    for query in queries:
        logits = [
            float((calibrator.projection @ query) @ (calibrator.projection @ key)) / (math.sqrt(5) * 0.6)
            for key in keys
        ]
        weights = np.exp(np.array(logits) - max(logits))
        raw = float(weights @ values / weights.sum())
        expected.append(1 / (1 + math.exp(-(1.7 * math.log(raw / (1 - raw)) - 0.4))))
    np.testing.assert_allclose(calibrator.predict(queries, keys, values), expected, rtol=1e-10)


def test_folds_cover_everyone_evenly_and_ignore_labels():
    folds = fold_assignment(23, 5, seed=0)
    assert sorted(np.bincount(folds).tolist()) == [4, 4, 5, 5, 5]
    np.testing.assert_array_equal(folds, fold_assignment(23, 5, seed=0))
