"""`probe --likelihood`'s refresh (schedule/strategies/probe/refresh.py): which prompts it measures after an epoch.

The choice against its definition computed by hand; then the simulated improving policy of tests/simulation.py,
its answer likelihood the log of the true pass rate (as test_probe.py feeds it): before any group carries a
likelihood the refresh measures exactly the next draw's prompts (that draw made apart, through any filter); then its
budget, the prompts the fit puts nearest the target among them, and every prompt within a bounded age; and it aims
as well as measuring the whole pool after every epoch.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from simulation import bundled_policy, write_scores

from gaincurate.schedule.config import ScheduleConfig
from gaincurate.schedule.core import Rescored, Scheduler
from gaincurate.schedule.run.inputs import load_scores
from gaincurate.schedule.strategies.probe import ProbeOptions
from gaincurate.schedule.strategies.probe.refresh import NEVER, budget, rotation, rows_to_measure

SUBSET, POOL = 32, 320  # an epoch of 32 of the simulation's 320 prompts: the default budget, 96, is 30% of it


def by_hand(last, rates, target, count, near, order) -> list[int]:
    """The definition, one row at a time: the `near` rows nearest the target (ties by `order`), then the oldest."""
    rows = list(range(len(last)))
    first = [] if rates is None else sorted(rows, key=lambda i: (abs(rates[i] - target), order[i]))[: min(near, count)]
    rest = sorted((i for i in rows if i not in first), key=lambda i: (last[i], order[i]))
    return sorted(first + rest[: max(min(count, len(rows)) - len(first), 0)])


@pytest.mark.parametrize("case", range(40))
def test_the_choice_is_its_definition(case):
    rng = np.random.default_rng(case)
    n = int(rng.integers(1, 30))
    last = rng.choice([NEVER, 0, 1, 2, 3], size=n).astype(np.int64)  # ages repeat: ties go by the rotation
    rates = None if case % 4 == 0 else rng.choice([0.1, 0.4, 0.5, 0.6, 0.9], size=n)  # distances repeat too
    order = rotation(n, case)
    count, near = int(rng.integers(0, n + 5)), int(rng.integers(0, 10))
    got = rows_to_measure(last, rates, target=0.5, count=count, near=near, order=order)
    assert got.tolist() == by_hand(last, rates, 0.5, count, near, order)


def test_the_budget_is_a_multiple_of_the_epoch_and_the_rotation_a_seeded_permutation():
    assert budget(ProbeOptions().refresh, 64) == 192 and budget(0.3, 10) == 3 and budget(16, 64) == 1024
    assert sorted(rotation(50, 1).tolist()) == list(range(50))
    assert rotation(50, 1).tolist() == rotation(50, 1).tolist() != rotation(50, 2).tolist()


def drive(scores, policy, *, seed: int, refresh: float, epochs: int = 20):
    """The scheduler fed the log of every asked prompt's true pass rate after each epoch; per epoch, what was drawn,
    what the refresh asked for, and the estimate that drew the epoch (None before any fit)."""
    config = ScheduleConfig(strategy="probe", subset_size=SUBSET, seed=seed, likelihood=True, refresh=refresh)
    table = load_scores(scores)
    scheduler = Scheduler(config, table.prompts, scores=table)
    plan = scheduler.step().plan
    drawn, asked, estimates = [plan.gc_ids], [], []
    for epoch in range(epochs - 1):
        rewards = policy.rollouts(plan.gc_ids, epoch)
        feedback = [{"gc_id": int(g), "reward": float(r)} for g, row in zip(plan.gc_ids, rewards, strict=True)
                    for r in row]  # fmt: skip
        estimate = scheduler.strategy.estimate(scheduler.state)
        estimates.append(None if estimate is None else estimate.rates)
        ids = scheduler.rescore_ids(feedback)
        asked.append(ids)
        logps = np.log(policy.pass_rates(epoch + 1)[ids])
        plan = scheduler.step(feedback=feedback, rescored=Rescored(ids, None, logps)).plan
        drawn.append(plan.gc_ids)
    return drawn, asked, estimates


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    policy = bundled_policy()
    return policy, write_scores(tmp_path_factory.mktemp("refresh") / "scores", policy)


def test_as_the_policy_improves_it_measures_the_next_draws_candidates_and_keeps_every_prompt_fresh(world):
    policy, scores = world
    drawn, asked, estimates = drive(scores, policy, seed=0, refresh=3)
    assert all(np.all(np.diff(ids) > 0) for ids in asked) and all(len(ids) == 3 * SUBSET for ids in asked[1:])
    # After epoch 0 no group carries a likelihood, so the next draw cannot use one: its prompts are measured.
    assert estimates[0] is None and asked[0].tolist() == sorted(drawn[1].tolist())
    last = np.full(POOL, NEVER)
    last[asked[0]] = 0
    for epoch in range(1, len(asked)):
        # The epoch's worth the fit that drew the epoch puts nearest the target (0.5) is measured, every epoch.
        nearest = np.lexsort((np.arange(POOL), np.abs(estimates[epoch] - 0.5)))[:SUBSET]
        assert set(nearest.tolist()) <= set(asked[epoch].tolist()), epoch
        last[asked[epoch]] = epoch
        # The other 64 rotate over the rest of the pool: from epoch 5 on, no prompt's value is older than 5 epochs.
        period = math.ceil((POOL - SUBSET) / (2 * SUBSET))
        if epoch >= period:
            assert (last >= epoch - period).all(), epoch
    # The next draw (by the fit with the epoch's own groups, made after the refresh) lands on the prompts just
    # measured more often than a random 30% of the pool would be: the likelihood is fresh where it is used.
    fresh = [np.isin(drawn[epoch + 1], asked[epoch]).mean() for epoch in range(5, len(asked))]
    assert np.mean(fresh) > 1.5 * (3 * SUBSET / POOL), fresh


def test_it_aims_as_well_as_measuring_the_whole_pool_every_epoch(world):
    """Over epochs 5-19 and three seeds, the drawn prompts' mean distance from 0.5 (true pass rates) with 30% of the
    pool measured an epoch is within 0.015 of measuring all of it (0.107 against 0.096; measuring a fifth, by
    `refresh` 2, was 0.128)."""
    policy, scores = world
    distance = {}
    for refresh in (3, POOL / SUBSET):
        runs = [drive(scores, policy, seed=seed, refresh=refresh)[0] for seed in (0, 1, 2)]
        distance[refresh] = np.mean([np.abs(policy.pass_rates(e)[run[e]] - 0.5).mean() for run in runs
                                     for e in range(5, 20)])  # fmt: skip
    assert distance[3] < distance[POOL / SUBSET] + 0.015, distance


@pytest.mark.parametrize("band", [None, (0.3, 0.7)])
def test_the_next_draw_it_measures_before_any_group_carries_a_likelihood_is_the_draw_made(world, band):
    """After epoch 0 the next draw cannot use a likelihood, so the scheduler makes it apart first (through any
    filter, here the band) and the refresh measures exactly its prompts: the draw then made is that one."""
    policy, scores = world
    table = load_scores(scores)
    config = ScheduleConfig(strategy="probe", subset_size=SUBSET, seed=3, likelihood=True, band=band)
    scheduler = Scheduler(config, table.prompts, scores=table)
    plan = scheduler.step().plan
    rewards = policy.rollouts(plan.gc_ids, 0)
    feedback = [{"gc_id": int(g), "reward": float(r)} for g, row in zip(plan.gc_ids, rewards, strict=True) for r in row]
    state = scheduler.state
    ids = scheduler.rescore_ids(feedback)
    assert scheduler.state is state  # made apart: the scheduler's state is untouched
    plan = scheduler.step(feedback=feedback, rescored=Rescored(ids, None, np.log(policy.pass_rates(1)[ids]))).plan
    assert ids.tolist() == sorted(plan.gc_ids.tolist())
