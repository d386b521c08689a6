"""`difficulty evaluate --online RUN`: each epoch t+1 predicted from the feedback up to t only, as the run did."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from difficulty_helpers import write_feedback

from gaincurate.errors import InputError
from gaincurate.lab.difficulty.online import online_evaluation
from gaincurate.schedule.config import ScheduleConfig
from gaincurate.schedule.run.reference_sets import measurements
from gaincurate.schedule.run.run import Run
from gaincurate.schedule.run.rundir import load_run, reference_path
from gaincurate.schedule.run.steps import init_run, open_scheduler

EPOCHS = 4
CONFIG = ScheduleConfig(strategy="dots", subset_size=12, seed=4, tau_attn=0.2)


@pytest.fixture()
def run(embedded_scores, tmp_path):
    """A dots run of EPOCHS trained epochs, and the estimates its scheduler drew each next epoch with."""
    run_dir = tmp_path / "run"
    init_run(run_dir, embedded_scores, CONFIG)
    Run.open(run_dir).step()
    drawn_with = {}
    for epoch in range(EPOCHS):
        ids = load_run(run_dir).schedule.subset_ids
        feedback = write_feedback(tmp_path / f"fb{epoch}.jsonl", ids, samples=4, seed=epoch)
        Run.open(run_dir).step(feedback=feedback)
        scheduler, _ = open_scheduler(load_run(run_dir))
        drawn_with[epoch] = scheduler.strategy.pass_rates(scheduler.state)  # memory up to `epoch`
    return run_dir, drawn_with


def rates_of(path) -> dict[int, float]:
    sums: dict[int, list[float]] = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        sums.setdefault(record["gc_id"], []).append(record["reward"])
    return {gc_id: float(np.mean(values)) for gc_id, values in sums.items()}


def test_each_epoch_is_predicted_as_the_scheduler_predicted_it(run):
    run_dir, drawn_with = run
    state = load_run(run_dir)
    found = measurements(run_dir, state)
    assert sorted(found.feedback) == list(range(EPOCHS)) and found.references == []
    report = online_evaluation(
        state.scores_dir, found.feedback, tau_attn=CONFIG.options.tau_attn, forget=CONFIG.options.forget
    )
    assert [line["epoch"] for line in report["per_epoch"]] == list(range(EPOCHS - 1))
    for line in report["per_epoch"]:
        observed = rates_of(found.feedback[line["predicted_epoch"]])
        ids = np.array(sorted(observed))
        predicted = drawn_with[line["epoch"]][ids]  # what the run aimed epoch t+1 with, from feedback up to t
        actual = np.array([observed[i] for i in ids])
        assert line["prompts"] == len(ids) == CONFIG.subset_size
        assert line["methods"]["dots"]["mae"] == pytest.approx(np.abs(predicted - actual).mean(), abs=1e-12)
        earlier = set().union(*(rates_of(found.feedback[e]) for e in range(line["epoch"] + 1)))
        assert line["remeasured"] == len(earlier & set(ids.tolist()))
    assert report["pooled"]["prompts"] == CONFIG.subset_size * (EPOCHS - 1)


def test_the_measured_epoch_never_reaches_its_own_prediction(run, tmp_path):
    run_dir, _ = run
    state = load_run(run_dir)
    found = measurements(run_dir, state)
    before = online_evaluation(state.scores_dir, found.feedback, tau_attn=0.2, forget=CONFIG.options.forget)
    last = found.feedback[EPOCHS - 1]  # what the last line predicts; flip every reward in it
    flipped = tmp_path / "flipped.jsonl"
    flipped.write_text(
        "".join(
            json.dumps({"gc_id": r["gc_id"], "reward": 1.0 - r["reward"]}) + "\n"
            for r in map(json.loads, last.read_text().splitlines())
        )
    )
    after = online_evaluation(
        state.scores_dir, found.feedback | {EPOCHS - 1: flipped}, tau_attn=0.2, forget=CONFIG.options.forget
    )
    assert before["per_epoch"][:-1] == after["per_epoch"][:-1]  # earlier epochs never see it
    mae_before = before["per_epoch"][-1]["methods"]["dots"]["mae"]
    assert after["per_epoch"][-1]["methods"]["dots"]["mae"] != mae_before  # only what it is compared with


def test_fresh_reference_sets_count_from_their_epoch(run, embedded_scores):
    run_dir, _ = run
    reference = write_feedback(reference_path(run_dir, 1), list(range(0, 60, 3)), samples=2, seed=9)
    found = measurements(run_dir, load_run(run_dir))
    assert found.references == [(1, reference)]
    report = online_evaluation(
        embedded_scores, found.feedback, references=found.references, tau_attn=0.2, forget=CONFIG.options.forget
    )
    plain = online_evaluation(embedded_scores, found.feedback, tau_attn=0.2, forget=CONFIG.options.forget)
    assert report["per_epoch"][0] == plain["per_epoch"][0]  # epoch 0 -> 1 is predicted before the set existed
    assert report["per_epoch"][1] != plain["per_epoch"][1]


def test_a_run_needs_two_epochs_of_feedback(embedded_scores, tmp_path):
    run_dir = tmp_path / "short"
    init_run(run_dir, embedded_scores, CONFIG)
    Run.open(run_dir).step()
    ids = load_run(run_dir).schedule.subset_ids
    Run.open(run_dir).step(feedback=write_feedback(tmp_path / "fb.jsonl", ids, samples=4))
    found = measurements(run_dir, load_run(run_dir))
    with pytest.raises(InputError, match="no two consecutive epochs"):
        online_evaluation(embedded_scores, found.feedback, tau_attn=0.2, forget=0.4)


def test_cli_evaluate_online(run, monkeypatch, capsys):
    from gaincurate.cli import main

    run_dir, _ = run
    monkeypatch.setattr(sys, "argv", ["gaincurate", "difficulty", "evaluate", "--online", str(run_dir)])
    main()
    out = capsys.readouterr().out
    assert "predicted from the feedback up to t" in out and "pooled" in out and "2 -> 3" in out
    monkeypatch.setattr(sys, "argv", ["gaincurate", "difficulty", "evaluate", "--online", str(run_dir), "--json"])
    main()
    report = json.loads(capsys.readouterr().out)
    assert report["strategy"] == "dots" and len(report["per_epoch"]) == EPOCHS - 1
