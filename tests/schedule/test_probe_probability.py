"""`probe --use-probability`: the answer's probability as the estimate (schedule/strategies/probe/likelihood.py).

Against the definition: which prompts take it (those measured after the last epoch, at exactly their probability),
and `when-better`'s test (the probability's weighted squared error on the newest epoch's groups against that of the
fit on the older ones, recomputed by brute force in float64). Then the simulated improving policy of
tests/simulation.py: fed the true pass rates as the likelihood (a direct-answer task), `when-better` takes them and aims
closer than the fit alone; fed a likelihood unrelated to the rewards (a proxy that fails), it keeps the fit.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from simulation import bundled_policy, write_scores
from test_probe import brute_ridge, drive_with_likelihood, improving_feedback

from gaincurate.difficulty import ridge
from gaincurate.schedule.config import ScheduleConfig
from gaincurate.schedule.core import Rescored, Scheduler
from gaincurate.schedule.run.inputs import load_scores
from gaincurate.schedule.strategies.probe import Measured
from gaincurate.schedule.strategies.probe.likelihood import estimates, probability_predicts


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("probability")
    policy = bundled_policy()
    return root, policy, write_scores(root / "scores", policy)


def memory(rng: np.random.Generator, pool: int) -> Measured:
    """Three epochs of groups over a pool of `pool` gc_ids (some carrying a likelihood), and a newest likelihood for
    half the pool, a third of it measured after the last epoch (2)."""
    measured = Measured(None)
    for epoch in range(3):
        ids = rng.choice(pool, 40, replace=False)
        measured.add_groups({int(g): (float(rng.integers(0, 5)), 4) for g in ids}, epoch)
        known = rng.choice(pool, pool // 2, replace=False)
        measured.add_likelihood(known, np.log(rng.uniform(0.01, 1.0, len(known))), epoch)
    return measured


def test_fresh_takes_the_probability_of_exactly_the_prompts_measured_after_the_last_epoch():
    rng = np.random.default_rng(0)
    gc_ids, measured = np.arange(100), memory(rng, 100)
    rates = rng.uniform(0, 1, 100)
    held_out = measured.groups["epochs"] == 2
    out, count = estimates(rates, gc_ids, measured, "fresh", held_out, None, 2)
    fresh = measured.latest["gc_ids"][measured.latest["epochs"] == 2]
    assert count == len(fresh) > 0
    expected = np.exp(measured.latest["values"][measured.latest["epochs"] == 2])
    assert np.allclose(out[fresh], expected, rtol=1e-15, atol=0)  # numerics.exp: the same bits on every CPU
    others = np.setdiff1d(gc_ids, fresh)
    assert np.array_equal(out[others], rates[others])
    kept, none = estimates(rates, gc_ids, measured, "never", held_out, None, 2)
    assert kept is rates and none == 0


@pytest.mark.parametrize("seed", (0, 1, 2, 3))
def test_when_better_compares_the_two_errors_on_the_newest_groups_that_carried_a_likelihood(seed):
    rng = np.random.default_rng(seed)
    measured = memory(rng, 60)
    groups = measured.groups
    rows = len(groups["gc_ids"])
    features = np.concatenate([np.ones((rows, 1)), rng.normal(size=(rows, 4))], axis=1)
    labels, weights = groups["sums"] / groups["counts"], groups["counts"]
    held_out = groups["epochs"] == 2
    choice, _ = ridge.choose_strength(features, weights, labels, held_out, free=1)
    beta = brute_ridge(features[~held_out], weights[~held_out], labels[~held_out],
                       ridge.penalty_vector(5, free=1, strength=choice.strength))  # fmt: skip
    fit = np.clip(features[held_out] @ beta, 0, 1)
    assert np.allclose(choice.held_out, fit, atol=1e-10)  # the chosen fit's held-out predictions
    carried = np.isfinite(groups["logps"][held_out])
    miss = {"fit": fit[carried], "probability": np.exp(groups["logps"][held_out][carried])}
    error = {k: math.fsum(weights[held_out][carried] * (v - labels[held_out][carried]) ** 2) for k, v in miss.items()}
    assert probability_predicts(groups, held_out, choice) == (error["probability"] < error["fit"])
    assert probability_predicts(groups, held_out, None) is False


def drive(scores, policy, logps_of, *, epochs: int, use: str):
    """`drive_with_likelihood`'s loop with the likelihood given by `logps_of(ids, epoch)`; each draw's figures."""
    config = ScheduleConfig(strategy="probe", subset_size=128, seed=0, likelihood=True, use_probability=use)
    table = load_scores(scores)
    scheduler = Scheduler(config, table.prompts, scores=table)
    plan, figures = scheduler.step().plan, []
    for epoch in range(epochs - 1):
        feedback = improving_feedback(policy, plan.gc_ids, epoch)
        ids = scheduler.rescore_ids(feedback)
        rescored = None if ids is None else Rescored(ids, None, logps_of(ids, epoch))
        plan = scheduler.step(feedback=feedback, rescored=rescored).plan
        figures.append(scheduler.reported.figures)
    return figures


def test_given_the_true_pass_rates_when_better_mostly_takes_them_and_aims_as_well_as_the_fit(world):
    """The true rate is the best prediction of a reward in expectation, not on every epoch's 128 groups; here the fit
    with the true rate as a column is nearly exact too (the refresh measures the whole pool), so the two aim alike."""
    _, policy, scores = world
    figures = drive(scores, policy, lambda ids, epoch: np.log(policy.pass_rates(epoch + 1)[ids]), epochs=12,
                    use="when-better")  # fmt: skip
    took = [f["from_probability"] == 320 for f in figures[1:]]
    assert sum(took) >= 0.5 * len(took), [f.get("from_probability") for f in figures]
    distance = {}
    for use in ("never", "when-better"):
        selected, _ = drive_with_likelihood(scores, policy, seed=0, epochs=12, use_probability=use)
        distance[use] = np.mean([np.abs(policy.pass_rates(e)[selected[e]] - 0.5).mean() for e in range(4, 12)])
    assert distance["when-better"] < distance["never"] + 0.005, distance


def test_given_a_likelihood_unrelated_to_the_rewards_when_better_keeps_the_fit(world):
    _, policy, scores = world
    noise = np.log(np.random.default_rng(5).uniform(0.01, 1.0, 10_000))
    figures = drive(scores, policy, lambda ids, epoch: noise[ids + 320 * epoch], epochs=12, use="when-better")
    assert all(f["from_probability"] == 0 for f in figures[1:]), [f.get("from_probability") for f in figures]
    forced = drive(scores, policy, lambda ids, epoch: noise[ids + 320 * epoch], epochs=12, use="fresh")
    assert sum(f.get("from_probability") == 320 for f in forced[1:]) >= 5  # the data allowed it: the test kept it out
