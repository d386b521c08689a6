"""The bench's own arm `probe-pool-first` (lab/benchmarks/curriculum/bench_probes.py) on the simulated improving
policy of tests/simulation.py, its answer likelihood the log of the true pass rate (as tests/schedule/test_probe.py
feeds it): after epoch 0 it measures every prompt, epoch 0's groups take their prompts' values, and its first aimed
draw weighs the likelihood where `probe` aims by the embedding alone; from then on it measures `probe`'s budget."""

from __future__ import annotations

import numpy as np
import pytest
from simulation import bundled_policy, write_scores

from gaincurate.lab.benchmarks.curriculum import bench_probes
from gaincurate.schedule.config import ScheduleConfig
from gaincurate.schedule.core import Rescored, Scheduler
from gaincurate.schedule.run.inputs import load_scores
from gaincurate.schedule.strategies.probe.memory import Measured

SUBSET, POOL = 32, 320


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    policy = bundled_policy()
    return policy, load_scores(write_scores(tmp_path_factory.mktemp("pool-first") / "scores", policy))


def drive(table, policy, strategy: str, *, seed: int, epochs: int):
    """Each epoch's drawn gc_ids, the scheduler after them, and how many prompts each refresh asked for."""
    config = ScheduleConfig(strategy=strategy, subset_size=SUBSET, seed=seed, likelihood=True)
    scheduler = Scheduler(config, table.prompts, scores=table)
    drawn, asked = [scheduler.step().plan.gc_ids], []
    for epoch in range(epochs - 1):
        rewards = policy.rollouts(drawn[-1], epoch)
        feedback = [{"gc_id": int(g), "reward": float(r)} for g, row in zip(drawn[-1], rewards, strict=True)
                    for r in row]  # fmt: skip
        ids = scheduler.rescore_ids(feedback)
        asked.append(len(ids))
        rescored = Rescored(ids, None, np.log(policy.pass_rates(epoch + 1)[ids]))
        drawn.append(scheduler.step(feedback=feedback, rescored=rescored).plan.gc_ids)
    return drawn, scheduler, asked


def test_its_first_aimed_draw_weighs_every_prompts_likelihood_where_probe_aims_by_the_embedding(world):
    """Over four seeds, epoch 1's prompts' true pass rates lie nearer the target (0.5) than the default's (0.140
    against 0.171); its epoch 0 groups carry a likelihood, and its refreshes after epoch 0 are `probe`'s budget."""
    policy, table = world
    distance = {bench_probes.POOL_FIRST: [], "probe": []}
    with bench_probes.registered():
        for seed in range(4):
            for strategy in distance:
                drawn, scheduler, asked = drive(table, policy, strategy, seed=seed, epochs=4)
                distance[strategy].append(np.abs(policy.pass_rates(1)[drawn[1]] - 0.5).mean())
                if strategy == bench_probes.POOL_FIRST:
                    assert asked == [POOL, 3 * SUBSET, 3 * SUBSET]
                    assert np.isfinite(Measured(scheduler.state.memory).groups["logps"]).all()
                else:
                    assert asked == [SUBSET, 3 * SUBSET, 3 * SUBSET]  # the next draw's prompts, then the budget
    assert np.mean(distance[bench_probes.POOL_FIRST]) < np.mean(distance["probe"]) - 0.02, distance
