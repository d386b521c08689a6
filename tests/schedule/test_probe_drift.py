"""`probe --drift`: an old likelihood read as moved by the pool's drift (schedule/strategies/probe/memory.py).

The drift against its definition (the re-measured prompts' change over their ages, floored values), the aged reading
(measured plus drift times age, at most 0), the memory's round trip; then the simulated improving policy of
tests/simulation.py, whose answer likelihood rises every epoch: the drift the run measures is positive.
"""

from __future__ import annotations

import math

import numpy as np
from simulation import bundled_policy, write_scores
from test_probe import improving_feedback

from gaincurate.schedule.config import ScheduleConfig
from gaincurate.schedule.core import Rescored, Scheduler
from gaincurate.schedule.run.inputs import load_scores
from gaincurate.schedule.strategies.probe.memory import LOGP_FLOOR, Measured


def test_the_drift_is_the_re_measured_prompts_change_over_their_ages_and_ages_the_rest():
    rng = np.random.default_rng(3)
    measured = Measured(None)
    first = np.arange(0, 40)
    measured.add_likelihood(first, np.log(rng.uniform(0.01, 1, 40)), 0, drift=True)
    assert measured.drift is None  # nothing measured twice yet
    second = np.arange(20, 60)
    measured.add_likelihood(second, np.log(rng.uniform(0.01, 1, 40)), 1, drift=True)
    third = np.concatenate([np.arange(0, 10), np.arange(30, 35)])
    before = {int(g): (v, e) for g, v, e in zip(*measured.latest.values(), strict=True)}
    values = np.concatenate([np.full(5, -50.0), np.log(rng.uniform(0.01, 1, 10))])  # five under the floor
    measured.add_likelihood(third, values, 3, drift=True)
    changes = [max(v, LOGP_FLOOR) - max(before[int(g)][0], LOGP_FLOOR) for g, v in zip(third, values, strict=True)]
    ages = [3 - before[int(g)][1] for g in third]
    assert math.isclose(measured.drift, sum(changes) / sum(ages), rel_tol=1e-12)
    ids = np.array([0, 25, 45, 99])
    latest = {int(g): (v, e) for g, v, e in zip(*measured.latest.values(), strict=True)}
    aged = measured.logps_of(ids, now=4)
    for got, g in zip(aged, ids, strict=True):
        if int(g) not in latest:
            assert math.isnan(got)
            continue
        value, epoch = latest[int(g)]
        assert math.isclose(got, min(max(value, LOGP_FLOOR) + measured.drift * (4 - epoch), 0.0), rel_tol=1e-12)
    assert np.array_equal(measured.logps_of(ids)[:3], [latest[int(g)][0] for g in ids[:3]], equal_nan=True)
    assert Measured(measured.to_memory()).drift == measured.drift
    assert "drift" not in Measured(None).to_memory()["likelihood"]  # off: the memory it always had


def test_under_an_improving_policy_the_run_measures_a_rising_likelihood():
    import tempfile
    from pathlib import Path

    policy = bundled_policy()
    scores = write_scores(Path(tempfile.mkdtemp()) / "scores", policy)
    config = ScheduleConfig(strategy="probe", subset_size=64, seed=0, likelihood=True, drift=True, refresh=1.0)
    table = load_scores(scores)
    scheduler = Scheduler(config, table.prompts, scores=table)
    plan, drifts = scheduler.step().plan, []
    for epoch in range(8):
        feedback = improving_feedback(policy, plan.gc_ids, epoch)
        ids = scheduler.rescore_ids(feedback)
        rescored = None if ids is None else Rescored(ids, None, np.log(policy.pass_rates(epoch + 1)[ids]))
        plan = scheduler.step(feedback=feedback, rescored=rescored).plan
        drifts.append(scheduler.reported.figures.get("likelihood_drift"))
    measured = [d for d in drifts if d is not None]
    assert len(measured) >= 5 and all(d > 0 for d in measured), drifts
