"""Attention prediction is the DOTS formula exactly: checked against float64 loops, leave-one-out included."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gaincurate.difficulty.predict import (
    attention_predict,
    grid_bits,
    predict_pass_rates,
    prepare_embeddings,
    recency_log_weights,
    self_index,
)
from gaincurate.difficulty.reference import PassRates


def brute_force(queries, keys, values, tau, exclude=None, log_weights=None, scale_dim=None):
    """p_q = sum_i softmax_i(<z_q, z_i> / (sqrt(h) tau) + log w_i) y_i, one float at a time."""
    h = scale_dim or len(keys[0])
    result = []
    for q, query in enumerate(queries):
        logits = {}
        for i, key in enumerate(keys):
            if exclude is not None and exclude[q] == i:
                continue
            dot = sum(float(a) * float(b) for a, b in zip(query, key, strict=True))
            logits[i] = dot / (math.sqrt(h) * tau) + (0.0 if log_weights is None else float(log_weights[i]))
        if not logits:
            result.append(float("nan"))
            continue
        top = max(logits.values())
        weights = {i: math.exp(v - top) for i, v in logits.items()}
        total = sum(weights.values())
        result.append(sum(w * float(values[i]) for i, w in weights.items()) / total)
    return np.array(result)


@pytest.mark.parametrize("tau", [0.05, 1.0, 7.0], ids=["tau-0.05", "tau-1", "tau-7"])
@pytest.mark.parametrize("shape", [(1, 1, 3), (9, 14, 5), (30, 7, 11)], ids=["Q1-R1-h3", "Q9-R14-h5", "Q30-R7-h11"])
def test_attention_matches_brute_force(shape, tau):
    n_queries, n_keys, width = shape
    rng = np.random.default_rng(sum(shape))
    queries, keys = rng.normal(size=(n_queries, width)), rng.normal(size=(n_keys, width))
    values = rng.uniform(size=n_keys)
    expected = brute_force(queries, keys, values, tau)
    np.testing.assert_allclose(attention_predict(queries, keys, values, tau=tau), expected, rtol=1e-12, atol=1e-14)


def test_leave_one_out_and_recency_match_brute_force():
    rng = np.random.default_rng(3)
    keys = rng.normal(size=(13, 6))
    queries = np.concatenate([keys[:5], rng.normal(size=(4, 6))])  # the first five are reference prompts
    values, log_weights = rng.uniform(size=13), rng.normal(size=13)
    exclude = np.array([0, 1, 2, 3, 4, -1, -1, -1, -1])
    expected = brute_force(queries, keys, values, 0.3, exclude=exclude, log_weights=log_weights)
    got = attention_predict(queries, keys, values, tau=0.3, exclude=exclude, key_log_weights=log_weights)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_a_reference_prompt_never_sees_its_own_label():
    rng = np.random.default_rng(4)
    embeddings = prepare_embeddings(rng.normal(size=(20, 8)))
    gc_ids = np.arange(100, 120)
    reference, rates = gc_ids[::2], rng.uniform(size=10)
    before = predict_pass_rates(embeddings, gc_ids, reference, rates, tau=0.05)
    changed = rates.copy()
    changed[3] = 1.0 - changed[3]
    after = predict_pass_rates(embeddings, gc_ids, reference, changed, tau=0.05)
    own_row = 6  # gc_id 106 is reference[3]
    assert before[own_row] == after[own_row]
    assert not np.array_equal(np.delete(before, own_row), np.delete(after, own_row))  # the label matters elsewhere


def test_lone_reference_and_unembedded_prompts_fall_back_to_the_others_mean_never_their_own_rate():
    embeddings = prepare_embeddings(np.array([[1.0, 0.0], [0.0, 1.0], [np.nan, np.nan]]))
    predicted = predict_pass_rates(embeddings, np.arange(3), np.array([0]), np.array([0.8]), tau=0.1)
    # gc_id 0 has nobody else to attend to, and no other measured prompt: 0.5, not its own 0.8 (leave-one-out holds
    # for the fallback too); gc_id 2 has no embedding: the others' mean; gc_id 1 attends to gc_id 0 alone.
    np.testing.assert_allclose(predicted, [0.5, 0.8, 0.8])
    both = predict_pass_rates(embeddings, np.arange(3), np.array([0, 2]), np.array([0.8, 0.2]), tau=0.1)
    assert both[2] == 0.8  # measured itself but unembedded: gc_id 0's rate, not a mean with its own
    assert np.isnan(attention_predict(np.ones((1, 2)), np.ones((1, 2)), np.ones(1), tau=1, exclude=np.array([0])))[0]


def test_prepared_embeddings_turn_the_formula_into_cosines():
    rng = np.random.default_rng(5)
    raw = 50.0 + rng.normal(size=(7, 9))
    prepared = prepare_embeddings(raw)
    centred = raw - raw.mean(axis=0)
    cosines = (centred @ centred.T) / np.outer(np.linalg.norm(centred, axis=1), np.linalg.norm(centred, axis=1))
    # Up to the grid the prepared rows are snapped to: half a step per coordinate, 9 coordinates of norm <= sqrt(3).
    step = 2.0 ** -grid_bits(9)
    np.testing.assert_allclose(prepared @ prepared.T / math.sqrt(9), cosines, rtol=0, atol=9 * step)
    np.testing.assert_array_equal(prepare_embeddings(raw, normalize="none"), raw)


@pytest.mark.determinism
@pytest.mark.parametrize("width", [4, 9, 576, 4096])
def test_prepared_dot_products_are_exact_in_any_order(width):
    """On the grid, every partial sum of <z_q, z_i> is exact: BLAS, any order and the exact sum agree bit for bit."""
    rng = np.random.default_rng(width)
    raw = rng.normal(size=(12, width)) * rng.uniform(0.01, 100, size=width)  # uneven scales: big and small terms
    raw[3] = raw[4] * 1e-6  # a short vector scaled up by the normalisation
    prepared = prepare_embeddings(raw)
    step = 2.0 ** -grid_bits(width)
    np.testing.assert_array_equal(np.rint(prepared / step) * step, prepared)
    exact = np.array([[math.fsum(a * b for a, b in zip(q, k, strict=True)) for k in prepared] for q in prepared])
    np.testing.assert_array_equal(prepared @ prepared.T, exact)
    backwards = np.zeros((12, 12))
    for column in reversed(range(width)):  # the opposite order, one rounding-free add at a time
        backwards += np.outer(prepared[:, column], prepared[:, column])
    np.testing.assert_array_equal(backwards, exact)


def test_permuting_the_reference_permutes_nothing_out():
    rng = np.random.default_rng(6)
    queries, keys, values = rng.normal(size=(5, 4)), rng.normal(size=(8, 4)), rng.uniform(size=8)
    order = rng.permutation(8)
    np.testing.assert_allclose(
        attention_predict(queries, keys, values, tau=0.5),
        attention_predict(queries, keys[order], values[order], tau=0.5),
        rtol=1e-12,
    )


def test_self_index_finds_ids():
    np.testing.assert_array_equal(self_index(np.array([5, 1, 9]), np.array([9, 5, 7])), [1, -1, 0])
    np.testing.assert_array_equal(self_index(np.array([5]), np.zeros(0, np.int64)), [-1])


def test_recency_weights_and_aged_means():
    assert recency_log_weights(np.array([0, 2]), 2, 1.0) is None
    np.testing.assert_allclose(recency_log_weights(np.array([0, 2, -1]), 2, 0.5), np.log(0.5) * np.array([2, 0, 3]))
    rates = PassRates.empty().add({3: (2.0, 4), 1: (0.0, 2)}, time=0, forget=0.5)
    rates = rates.add({3: (4.0, 4)}, time=2, forget=0.5)
    # gc_id 3: (2 * 0.25 + 4) / (4 * 0.25 + 4) = 4.5 / 5; gc_id 1 keeps its epoch-0 mean.
    np.testing.assert_array_equal(rates.gc_ids, [1, 3])
    np.testing.assert_allclose(rates.rates, [0.0, 0.9])
    np.testing.assert_array_equal(rates.last, [0, 2])
    assert PassRates.from_json(rates.to_json()).to_json() == rates.to_json()
