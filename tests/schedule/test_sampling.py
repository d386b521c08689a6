"""Sampling follows DESIGN section 4: Gaussian over rank positions, without replacement, seeded, in rank order."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import chi_square

from gaincurate.schedule.state import ScheduleState
from gaincurate.schedule.strategies.contract import (
    PromptSet,
    RankingContext,
    draw_without_replacement,
    gaussian_log_weights,
    gaussian_probabilities,
)
from gaincurate.schedule.strategies.filters import chosen_through
from gaincurate.schedule.strategies.gain import GainOptions, GainStrategy, LengthStrategy
from gaincurate.schedule.strategies.uniform import UniformStrategy


def drawn(strategy, state, context, rng):
    """The positions a strategy draws, through no filter, as the scheduler takes them."""
    return chosen_through(strategy, (), state, context, rng).positions


def chi_square_critical(degrees: int, z: float = 3.09) -> float:
    """Upper 0.1% point of chi-square (Wilson-Hilferty); z = 3.09 is the normal's 0.999 quantile."""
    return degrees * (1 - 2 / (9 * degrees) + z * math.sqrt(2 / (9 * degrees))) ** 3


def context_for(n_prompts: int, subset_size: int) -> RankingContext:
    return RankingContext(gc_ids=np.arange(n_prompts), scores=np.zeros(n_prompts), subset_size=subset_size)


def gain(n_prompts: int, **options) -> GainStrategy:
    return GainStrategy(GainOptions(**options), n_prompts)


def state_at(mu: float, n_prompts: int) -> ScheduleState:
    return ScheduleState(memory={"mu": mu}, ranking=np.arange(n_prompts), scores=np.zeros(n_prompts))


def single_draw_counts(strategy, mu: float, n_prompts: int, draws: int) -> np.ndarray:
    context = context_for(n_prompts, subset_size=1)
    rng = np.random.default_rng(1234)
    counts = np.zeros(n_prompts, dtype=np.int64)
    for _ in range(draws):
        (position,) = drawn(strategy, state_at(mu, n_prompts), context, rng)
        counts[position] += 1
    return counts


@pytest.mark.parametrize("mu", [0.0, 23.4, 59.0], ids=["mu-start", "mu-middle", "mu-end"])
def test_single_draws_follow_the_gaussian(mu):
    n_prompts, sigma = 60, 7.5
    counts = single_draw_counts(gain(n_prompts, sigma=sigma), mu, n_prompts, 10_000)
    statistic, degrees = chi_square(counts, gaussian_probabilities(n_prompts, mu, sigma))
    assert degrees >= 10
    assert statistic < chi_square_critical(degrees)


def test_chi_square_detects_a_shifted_centre():
    """The same test rejects draws around mu + 2 when the Gaussian is at mu: it has power."""
    n_prompts, sigma, mu = 60, 7.5, 23.4
    counts = single_draw_counts(gain(n_prompts, sigma=sigma), mu + 2, n_prompts, 10_000)
    statistic, degrees = chi_square(counts, gaussian_probabilities(n_prompts, mu, sigma))
    assert statistic > chi_square_critical(degrees)


def test_gaussian_probabilities_match_the_formula():
    n_prompts, mu, sigma = 9, 3.3, 2.0
    weights = np.array([math.exp(-((i - mu) ** 2) / (2 * sigma**2)) for i in range(n_prompts)])
    np.testing.assert_allclose(gaussian_probabilities(n_prompts, mu, sigma), weights / weights.sum(), rtol=1e-12)


def test_two_draws_match_successive_sampling_without_replacement():
    """Inclusion probabilities of a 2-subset equal the brute-force successive-sampling values."""
    n_prompts, mu, sigma = 6, 1.5, 1.8
    p = gaussian_probabilities(n_prompts, mu, sigma)
    exact = np.array([p[i] + sum(p[j] * p[i] / (1 - p[j]) for j in range(n_prompts) if j != i) for i in range(6)])
    rng = np.random.default_rng(99)
    draws = 20_000
    counts = np.zeros(n_prompts)
    for _ in range(draws):
        counts[draw_without_replacement(gaussian_log_weights(n_prompts, mu, sigma), 2, rng)] += 1
    standard_error = np.sqrt(exact * (1 - exact) / draws)
    assert np.all(np.abs(counts / draws - exact) < 4.5 * standard_error)


def test_subsets_are_unique_sorted_and_in_range():
    context = context_for(200, subset_size=50)
    rng = np.random.default_rng(0)
    for mu in (0.0, 77.7, 199.0):
        positions = drawn(gain(200, sigma=30), state_at(mu, 200), context, rng)
        assert len(positions) == 50
        assert np.all(np.diff(positions) > 0)
        assert positions.min() >= 0 and positions.max() < 200


def test_a_narrow_gaussian_takes_the_positions_nearest_mu():
    """Far positions never underflow to an error: the draw degrades to the nearest positions."""
    context = context_for(100, subset_size=30)
    positions = drawn(gain(100, sigma=1.0), state_at(40.2, 100), context, np.random.default_rng(5))
    np.testing.assert_array_equal(positions, np.arange(26, 56))


def test_uniform_single_draws_are_uniform():
    counts = single_draw_counts(UniformStrategy(), 10.0, 40, 8_000)
    statistic, degrees = chi_square(counts, np.full(40, 1 / 40))
    assert statistic < chi_square_critical(degrees)


def test_same_seed_same_draw_and_other_seed_differs():
    context = context_for(500, subset_size=64)
    state = state_at(120.0, 500)
    first = drawn(gain(500, sigma=80), state, context, np.random.default_rng([7, 3]))
    again = drawn(gain(500, sigma=80), state, context, np.random.default_rng([7, 3]))
    other = drawn(gain(500, sigma=80), state, context, np.random.default_rng([8, 3]))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def prompt_set(scores, tokens) -> PromptSet:
    scores = np.asarray(scores, dtype=np.float64)
    return PromptSet(
        gc_ids=np.arange(len(scores)) * 10,
        scores=scores,
        ranking_scores=scores,
        question_tokens=np.asarray(tokens),
    )


def test_gain_ranks_by_score_descending_ties_by_id_nan_last():
    prompts = prompt_set([0.5, np.nan, 2.0, 0.5, np.nan, 1.0], [1] * 6)
    order = GainStrategy().rank(prompts)
    np.testing.assert_array_equal(prompts.gc_ids[order], [20, 50, 0, 30, 10, 40])


def test_length_ranks_shortest_question_first_ties_by_id():
    prompts = prompt_set([1.0] * 5, [30, 7, 30, 2, 7])
    np.testing.assert_array_equal(prompts.gc_ids[LengthStrategy().rank(prompts)], [30, 10, 40, 0, 20])
