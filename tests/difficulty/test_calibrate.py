"""The fitted adapter + calibration head: leave-one-out without self-leak, seeded, and the formula it claims."""

from __future__ import annotations

import math

import numpy as np
from difficulty_helpers import true_pass_rates

from gaincurate.difficulty.calibrate import Calibrator, FitConfig, fit_calibrator, fold_assignment
from gaincurate.difficulty.predict import prepare_embeddings

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


def test_in_sample_fitting_would_leak_and_folds_zero_is_not_claimed_leak_free():
    """With folds=0 the parameters see every label, so a prompt's own label moves its prediction."""
    embeddings, rates, counts = reference()
    config = FitConfig(dim=6, steps=30, folds=0, seed=3, tau=0.2)
    before = fit_calibrator(embeddings, rates, counts, config).loo_predictions
    changed = rates.copy()
    changed[5] = 1.0 - changed[5]
    assert fit_calibrator(embeddings, changed, counts, config).loo_predictions[5] != before[5]


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


def test_training_lowers_the_loss():
    embeddings, rates, counts = reference()
    losses = fit_calibrator(embeddings, rates, counts, FitConfig(dim=6, steps=60, folds=0, tau=0.2)).losses
    assert losses[-1] < losses[0]


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
