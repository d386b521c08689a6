"""The pure Scheduler: in-process use, state round trips, re-scoring choices."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from gaincurate.schedule import PromptSet, Rescored, ScheduleConfig, Scheduler, ScheduleState
from gaincurate.schedule.order import EpochOrder

CONFIG = ScheduleConfig(strategy="gain", seed=11, subset_size=12, sigma=15, step_size=10, adj_max=20)


def prompts(n_prompts: int = 120) -> PromptSet:
    rng = np.random.default_rng(2)
    scores = rng.normal(1.4, 0.1, n_prompts)
    return PromptSet(
        gc_ids=np.arange(n_prompts) + 1000,
        scores=scores,
        ranking_scores=scores,
        question_tokens=rng.integers(5, 50, n_prompts),
    )


def rollouts(gc_ids) -> list[dict]:
    return [{"gc_id": int(i), "reward": float(i % 2)} for i in gc_ids for _ in range(3)]


@pytest.mark.determinism
def test_json_round_trip_resumes_identically():
    straight = Scheduler(CONFIG, prompts())
    plans = [straight.step().plan]
    saved = None
    for epoch in range(4):
        if epoch == 2:
            saved = json.dumps(straight.state.to_json())
        plans.append(straight.step(feedback=rollouts(plans[-1].gc_ids)).plan)

    resumed = Scheduler(CONFIG, prompts(), ScheduleState.from_json(json.loads(saved)))
    for expected in plans[3:]:
        plan = resumed.step(feedback=rollouts(resumed.current.gc_ids)).plan
        assert plan.epoch == expected.epoch and plan.draw == expected.draw
        np.testing.assert_array_equal(plan.gc_ids, expected.gc_ids)


def test_calls_in_the_wrong_order_are_refused():
    scheduler = Scheduler(CONFIG, prompts())
    assert scheduler.current is None
    with pytest.raises(ValueError, match="epoch 0 is drawn without feedback"):
        scheduler.step(ang=1.0)
    scheduler.step()
    with pytest.raises(ValueError, match="epoch 0 needs its feedback"):
        scheduler.step()


def test_rescore_ids_per_mode():
    def ids_for(mode, every=1, epochs=1):
        scheduler = Scheduler(
            ScheduleConfig(**{**CONFIG.to_dict(), "rescore": mode, "rescore_every": every}), prompts()
        )
        plan = scheduler.step().plan
        for _ in range(epochs - 1):
            plan = scheduler.step(feedback=rollouts(plan.gc_ids)).plan
        return scheduler, scheduler.rescore_ids()

    assert ids_for("none")[1] is None
    scheduler, ids = ids_for("subset")
    np.testing.assert_array_equal(ids, np.sort(scheduler.current.gc_ids))
    scheduler, ids = ids_for("window")  # mu = 0, sigma = 15: positions 0..45, plus the subset
    expected = np.union1d(scheduler.state.ranking[:46], scheduler.current.gc_ids)
    np.testing.assert_array_equal(ids, expected)
    np.testing.assert_array_equal(ids_for("full")[1], np.arange(120) + 1000)
    assert ids_for("subset", every=2, epochs=1)[1] is None  # after epoch 0: not due
    assert ids_for("subset", every=2, epochs=2)[1] is not None  # after epoch 1: due


def test_full_rescore_reranks_and_keeps_fresh_scores():
    scheduler = Scheduler(ScheduleConfig(**{**CONFIG.to_dict(), "rescore": "full"}), prompts())
    plan = scheduler.step().plan
    ids = scheduler.rescore_ids()
    fresh = (ids - 1000) / 100.0  # the highest gc_id now has the highest score
    step = scheduler.step(feedback=rollouts(plan.gc_ids), rescored=Rescored(ids, fresh))
    assert step.record.update["reranked"] and step.record.update["ang_source"] == "rescored"
    np.testing.assert_array_equal(scheduler.state.ranking, np.arange(120)[::-1] + 1000)
    np.testing.assert_allclose(scheduler.state.scores, np.arange(120)[::-1] / 100.0)
    assert step.record.update["ang"] == pytest.approx(np.mean((plan.gc_ids - 1000) / 100.0))


def test_subset_rescore_does_not_touch_the_stored_scores():
    scheduler = Scheduler(ScheduleConfig(**{**CONFIG.to_dict(), "rescore": "subset"}), prompts())
    plan = scheduler.step().plan
    before = scheduler.state.scores.copy()
    ids = scheduler.rescore_ids()
    step = scheduler.step(feedback=rollouts(plan.gc_ids), rescored=Rescored(ids, np.full(len(ids), 9.0)))
    assert step.record.update["ang"] == 9.0 and not step.record.update["reranked"]
    np.testing.assert_array_equal(scheduler.state.scores, before)


def test_length_debias_is_reapplied_when_reranking():
    base = prompts()
    tokens = base.question_tokens
    debias = {"intercept": 0.0, "slope": 1.0}
    debiased = PromptSet(base.gc_ids, base.scores, base.scores - np.log(tokens), tokens, debias)
    scheduler = Scheduler(ScheduleConfig(**{**CONFIG.to_dict(), "rescore": "full"}), debiased)
    plan = scheduler.step().plan
    fresh = np.full(120, 1.0)  # equal fresh scores: residual 1 - log(tokens) ranks the shortest first
    scheduler.step(feedback=rollouts(plan.gc_ids), rescored=Rescored(base.gc_ids, fresh))
    ranked_tokens = tokens[scheduler.state.ranking - 1000]
    assert np.all(np.diff(ranked_tokens) >= 0)  # without the debias, ties would keep gc_id order


def test_the_core_imports_neither_pyarrow_nor_torch():
    code = (
        "import sys, gaincurate.schedule; print(sorted({m.split('.')[0] for m in sys.modules} & {'pyarrow', 'torch'}))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_epoch_order_is_rank_order_or_a_shuffle_seeded_by_seed_and_epoch():
    rows = list(range(100, 120))
    assert EpochOrder(7).arrange(3, rows) == rows
    shuffled = EpochOrder(7, shuffle=True).arrange(3, rows)
    assert sorted(shuffled) == rows and shuffled != rows
    # The stream the TRL and verl adapters have always used, so resumed runs keep their order.
    assert shuffled == [rows[i] for i in np.random.default_rng([7, 3, 1]).permutation(len(rows))]
    assert EpochOrder(7, shuffle=True).arrange(4, rows) != shuffled
