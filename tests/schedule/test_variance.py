"""The `variance` strategy (gaincurate/lab/strategies/variance.py): its formula against brute force, its draw, a
simulated learning policy (tests/simulation.py), and its options through the console script."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from simulation import band, bundled_policy, simulate, write_scores

from gaincurate.errors import ConfigError
from gaincurate.lab.strategies.variance import VarianceOptions, VarianceStrategy, expected_variance, values
from gaincurate.schedule.config import ScheduleConfig
from gaincurate.schedule.state import ScheduleState
from gaincurate.schedule.strategies.contract import RankingContext
from gaincurate.schedule.strategies.filters import chosen_through
from gaincurate.schedule.strategies.mopps import posterior_sd


def drawn(strategy, state, context, rng):
    """The positions a strategy draws, through no filter, as the scheduler takes them."""
    return chosen_through(strategy, (), state, context, rng)


def brute_force_expected_variance(a: float, b: float, points: int = 200_000) -> float:
    """E[p(1 - p)] under Beta(a, b) by the midpoint rule on the density, in float64."""
    p = (np.arange(points, dtype=np.float64) + 0.5) / points
    log_density = (a - 1) * np.log(p) + (b - 1) * np.log1p(-p) - (math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b))
    return float(np.sum(p * (1 - p) * np.exp(log_density)) / points)


@pytest.mark.parametrize(("a", "b"), [(1.0, 1.0), (5.0, 5.0), (1.0, 9.0), (2.5, 0.7 + 3), (30.0, 2.0)])
def test_expected_variance_equals_the_integral(a, b):
    assert expected_variance(np.array([a]), np.array([b]))[0] == pytest.approx(brute_force_expected_variance(a, b))


def test_the_value_adds_the_bonus_times_the_posterior_sd():
    alpha, beta = np.array([1.0, 5.0, 1.0]), np.array([1.0, 5.0, 9.0])
    np.testing.assert_allclose(values(alpha, beta, bonus=0.0), [1 / 6, 25 / 110, 9 / 110])
    np.testing.assert_allclose(
        values(alpha, beta, bonus=0.5), expected_variance(alpha, beta) + 0.5 * posterior_sd(alpha, beta)
    )


def test_single_draws_follow_the_softmax_of_the_values():
    """With subset 1, position q is drawn with probability exp(value_q / tau) / sum: a chi-square over 6 prompts."""
    gc_ids = np.arange(6)
    strategy = VarianceStrategy(gc_ids, VarianceOptions(tau=0.05))
    memory = {"posterior": {"gc_ids": [0, 1, 2], "alpha": [5.0, 1.0, 9.0], "beta": [5.0, 9.0, 1.0]}}
    state = ScheduleState(ranking=gc_ids, scores=np.zeros(6), memory=memory, epoch=3)
    context = RankingContext(gc_ids=gc_ids, scores=np.zeros(6), subset_size=1)
    alpha, beta = strategy.posterior(state)
    weights = np.exp(values(alpha, beta, bonus=0.5) / 0.05)
    expected = weights / weights.sum()
    rng, draws = np.random.default_rng(3), 6000
    counts = np.bincount([int(drawn(strategy, state, context, rng).positions[0]) for _ in range(draws)], minlength=6)
    statistic = float(np.sum((counts - draws * expected) ** 2 / (draws * expected)))
    assert statistic < 20.5  # the chi-square 0.1% point with 5 degrees of freedom


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("variance")
    policy = bundled_policy()
    return root, policy, write_scores(root / "scores", policy)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_it_follows_an_improving_policy_to_the_prompts_in_play(world, seed):
    """Over epochs 5-19 of the simulated policy (pass rates rising every epoch), it selects prompts nearer p = 1/2
    and far fewer all-right or all-wrong ones than a uniform draw (the margins of docs/strategies.md's table)."""
    root, policy, scores = world
    measured = band(simulate(scores, root / f"run-{seed}", policy, strategy="variance", seed=seed))
    assert measured["distance_ratio"] < 0.85
    assert measured["fewer_extremes"] > 0.5


def test_its_options_are_its_own(tmp_path):
    config = ScheduleConfig(strategy="variance", bonus=0.2, forget=0.9)
    assert config.options == VarianceOptions(bonus=0.2, forget=0.9)
    assert ScheduleConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="bonus is a variance option; pass strategy='variance'"):
        ScheduleConfig(strategy="mopps", bonus=0.2)
    with pytest.raises(ConfigError, match="bonus must be a number 0 or more"):
        ScheduleConfig(strategy="variance", bonus=-1)


def console(*args: object) -> subprocess.CompletedProcess:
    script = Path(sys.executable).with_name("gaincurate")
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([str(script), *map(str, args)], env=env, capture_output=True, text=True, timeout=120)


def test_the_console_script_runs_it_and_help_shows_its_panel(tmp_path, scores_dir):
    run = tmp_path / "run"
    result = console("schedule", "init", "--scores", scores_dir, "--run", run, "--strategy", "variance",
                     "--bonus", "0.25", "--band", "0.1,0.9", "--subset-size", "4", "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert console("schedule", "step", "--run", run, "--quiet").returncode == 0
    assert (run / "epoch-0000.parquet").is_file()
    shown = console("schedule", "init", "--help").stdout
    assert "strategies kept for comparison (the lab's)" in shown and "variance: Weight" in shown
