"""The savings readout (issue 39): per epoch, what the strategy aimed at, what the feedback measured, uniform's
estimate, the estimate's quality and the warnings, the same for every strategy, from its one report hook."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from schedule_helpers import write_hf_model
from simulation import ROLLOUTS, bundled_policy, simulate, simulated_screener, write_scores

from gaincurate.feedback_lines import append_rollouts
from gaincurate.schedule.config import ScheduleConfig
from gaincurate.schedule.feedback import Feedback
from gaincurate.schedule.readout import (
    CORRELATION_MIN_PROMPTS,
    Thresholds,
    correlation_of,
    epoch_readout,
    uniform_zero_variance,
)
from gaincurate.schedule.run.run import Run
from gaincurate.schedule.run.steps import init_run
from gaincurate.schedule.state import Drawn, ScheduleState, Tally

EPOCHS = 4


def console(*args: object) -> subprocess.CompletedProcess:
    script = Path(sys.executable).with_name("gaincurate")
    env = {**os.environ, "COLUMNS": "250"}
    return subprocess.run([str(script), *map(str, args)], env=env, capture_output=True, text=True, timeout=300)


def groups_in(path: Path) -> dict[int, list[float]]:
    """Each prompt's rewards in a feedback file, read from the lines themselves."""
    groups: dict[int, list[float]] = defaultdict(list)
    for line in path.read_text().splitlines():
        record = json.loads(line)
        groups[record["gc_id"]].append(record["reward"])
    return groups


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    policy = bundled_policy(0, epochs=EPOCHS + 1)
    return policy, write_scores(tmp_path_factory.mktemp("readout") / "scores", policy)


def test_a_dots_run_through_schedule_step_shows_its_readout_in_history_and_status(world, tmp_path):
    """The issue's "done when": dots fed feedback through `schedule step --feedback`, by the console script."""
    policy, scores = world
    run = tmp_path / "run"
    # Epoch 0 (uniform: nothing fed yet) is set up in this process, through the driver the console script calls.
    init_run(run, scores, ScheduleConfig(strategy="dots", subset_size="128", seed=3))
    Run.open(run).step()
    picked, zero = [], []
    for epoch in range(EPOCHS):
        state = json.loads((run / "state.json").read_text())
        picked.append(state["selection"].get("picked"))
        ids = np.asarray(state["ranking"])[state["positions"]]
        feedback = tmp_path / f"rollouts-{epoch}.jsonl"
        append_rollouts(feedback, np.repeat(ids, ROLLOUTS).tolist(), policy.rollouts(ids, epoch).ravel().tolist())
        groups = groups_in(feedback)
        zero.append(sum(len(set(rewards)) == 1 for rewards in groups.values()) / len(groups))
        result = console("schedule", "step", "--run", run, "--feedback", feedback, "--quiet")
        assert result.returncode == 0, result.stderr
    history = [json.loads(line)["readout"] for line in (run / "history.jsonl").read_text().splitlines()]
    status = console("schedule", "status", "--run", run, "--json")
    assert status.returncode == 0, status.stderr
    shown = json.loads(status.stdout)
    assert "epoch 0 is uniform" in shown["draws"]
    for epoch, readout in enumerate(history):
        assert readout["zero_variance"] == pytest.approx(zero[epoch], abs=1e-12)  # what the lines give
        assert readout["all_wrong"] + readout["all_right"] == pytest.approx(readout["zero_variance"])
        assert shown["history"][epoch]["readout"] == readout
    # Epoch 0 is uniform: dots has nothing measured to estimate with, and says so.
    assert picked[0] is None and history[0]["estimated_pass_rate"] is None and "no estimate" in history[0]["estimate"]
    for epoch in range(1, EPOCHS):
        readout = history[epoch]
        assert readout["estimated_pass_rate"] == pytest.approx(math.fsum(picked[epoch]) / len(picked[epoch]))
        assert 0.0 < readout["uniform_zero_variance_estimate"] < 1.0
        assert readout["correlation"] is not None and readout["correlated_prompts"] == 128 * epoch
        assert readout["band"] == [0.25, 0.75] and 0.0 <= readout["estimated_in_band"] <= 1.0
        assert readout["warnings"] == []  # the policy learns, and dots' estimates track it
    # Spent in nonzero-variance groups, every epoch; dots keeps no control, so nothing is claimed against uniform.
    nonzero = [ROLLOUTS * round(128 * (1 - r["zero_variance"])) for r in history]
    assert history[-1]["nonzero_rollouts"] == sum(nonzero)
    assert all(r["verdict"] == "no control" and "informative_gain" not in r for r in history)
    # dots aims where groups vary: fewer zero-variance groups than its estimate of a uniform draw
    assert np.mean([r["zero_variance"] for r in history[1:]]) < np.mean(
        [r["uniform_zero_variance_estimate"] for r in history[1:]]
    )
    table = console("schedule", "status", "--run", run).stdout
    assert "how dots draws: epoch 0 is uniform" in table and "zero variance" in table
    assert "rollouts in groups with nonzero reward variance so far" in table and "no control" in table


@pytest.mark.parametrize(
    "strategy, estimate",
    [
        ("uniform", "no pass-rate estimate"),
        ("gain", "no pass-rate estimate"),
        ("length", "no pass-rate estimate"),
        ("greso", "no pass-rate estimate"),
        ("mopps", "posterior mean"),
        ("variance", "posterior mean"),
        ("screen", "screened pass rate (4 rollouts)"),
    ],
)
def test_every_strategy_gives_the_same_readout(world, tmp_path, monkeypatch, strategy, estimate):
    policy, scores = world
    calls: list = []
    monkeypatch.setattr("gaincurate.lab.strategies.screening.checkpoint_screener", simulated_screener(policy, calls))
    checkpoint = write_hf_model(tmp_path / "policy") if strategy == "screen" else None  # the stand-in ignores it
    result = simulate(scores, tmp_path / "run", policy, strategy=strategy, seed=1, epochs=EPOCHS, checkpoint=checkpoint)
    readouts = [line["readout"] for line in result.history]
    assert len(readouts) == EPOCHS - 1
    for line, readout in zip(result.history, readouts, strict=True):
        assert readout["estimate"] == estimate
        rates = [sum(rewards) / len(rewards) for rewards in groups_in(_feedback(tmp_path, line["epoch"])).values()]
        assert readout["measured_pass_rate"] == pytest.approx(np.mean(rates))
        assert readout["groups"] == 128 and readout["nonzero_rollouts"] >= 0
        if estimate == "no pass-rate estimate":
            assert readout["estimated_pass_rate"] is None and readout["uniform_zero_variance_estimate"] is None
            assert readout["correlation"] is None
    if estimate != "no pass-rate estimate":
        assert readouts[-1]["uniform_zero_variance_estimate"] is not None
        assert readouts[-1]["estimated_pass_rate"] is not None
        assert readouts[-1]["correlation"] is not None and readouts[-1]["correlation"] > 0.1  # they track the policy
    found = [warning for readout in readouts for warning in readout["warnings"]]
    assert not [w for w in found if "zero reward variance" in w], "a learning policy is no cause for that warning"
    if strategy == "mopps":  # its posterior tracks the policy from epoch 1 on (variance's picks sit at the prior)
        assert found == []


def _feedback(run_root: Path, epoch: int) -> Path:
    return run_root / "run" / f"rollouts-{epoch:04d}.jsonl"


def test_the_warnings_fire_where_every_reward_is_zero(world, tmp_path):
    policy, scores = world
    zero = type(policy)(policy.embeddings, policy.hardness, policy.uniforms, start=-50.0, rate=0.0)
    result = simulate(scores, tmp_path / "run", zero, strategy="dots", seed=1, epochs=EPOCHS)
    readouts = [line["readout"] for line in result.history]
    assert [r["zero_variance"] for r in readouts] == [1.0] * (EPOCHS - 1)
    assert readouts[0]["warnings"] == []  # one epoch is not yet "two in a row"
    for readout in readouts[1:]:
        assert any("zero reward variance two epochs in a row" in w and "all wrong" in w for w in readout["warnings"])
        assert any("max_completion_length" in w for w in readout["warnings"])
        assert any("estimates are all equal" in w for w in readout["warnings"])
    shown = console("schedule", "status", "--run", tmp_path / "run").stdout
    assert "warning: 100% of rollout groups had zero reward variance" in shown
    # Estimates all equal describe no pool: the spent line says so rather than "a uniform draw would have spent ~0",
    # and the table's uniform column says it has no estimate (issue 49).
    assert all(r["estimate_spread"] == 0.0 and r["uniform_zero_variance_estimate"] is not None for r in readouts[1:])
    assert "no control" in shown and "would have spent" not in shown and "a saving" not in shown
    assert "~100%" not in shown and "no estimate" in shown
    quiet = console("schedule", "status", "--run", tmp_path / "run", "--warn-zero-variance", "1.01", "--json")
    assert not any("zero reward variance" in w for w in json.loads(quiet.stdout)["warnings"])


def test_float_rewards_count_a_group_zero_variance_only_when_its_rewards_are_equal():
    feedback = Feedback(
        accuracy=0.5, rollouts=6, prompts=3,
        per_prompt={1: (1.0, 2), 2: (1.0, 2), 3: (2.0, 2)},
        extremes={1: (0.5, 0.5), 2: (0.0, 1.0), 3: (1.0, 1.0)},
    )  # fmt: skip
    readout, tally, _ = epoch_readout(None, np.array([1, 2, 3]), feedback, None)
    assert readout["zero_variance"] == pytest.approx(2 / 3)
    assert (readout["all_wrong"], readout["all_right"]) == (0.0, pytest.approx(1 / 3))  # 0.5, 0.5: neither side
    assert tally.nonzero_rollouts == 2 and readout["estimate"] == "no pass-rate estimate"


def test_uniform_estimate_and_correlation_are_the_plain_formulas():
    pool = np.array([0.0, 0.25, 0.5, 1.0])
    table = uniform_zero_variance(pool)
    assert table[0] == 1.0 and table[3] == pytest.approx(np.mean(pool**4 + (1 - pool) ** 4), abs=1e-12)
    rng = np.random.default_rng(0)
    x, y = rng.random(40), rng.random(40)
    sums = (math.fsum(x), math.fsum(y), math.fsum(x * x), math.fsum(y * y), math.fsum(x * y))
    r, why = correlation_of(Tally(pairs=40, sums=sums))
    assert why is None and r == pytest.approx(np.corrcoef(x, y)[0, 1], abs=1e-9)
    assert correlation_of(Tally(pairs=CORRELATION_MIN_PROMPTS - 1, sums=sums)) == (None, None)
    flat = (40 * 0.3, math.fsum(y), 40 * 0.09, math.fsum(y * y), 0.3 * math.fsum(y))
    assert correlation_of(Tally(pairs=40, sums=flat))[1] == "estimates all equal"


def test_uncorrelated_estimates_warn():
    drawn = Drawn(source="estimate", picked=tuple([0.5, 0.1] * 20), uniform_zero_variance=(1.0,) * 64, pool_spread=0.4)
    ids = np.arange(40)
    feedback = Feedback(
        accuracy=0.5, rollouts=80, prompts=40, per_prompt={i: (float(i // 2 % 2) + 0.5, 2) for i in ids}
    )
    readout, _, _ = epoch_readout(drawn, ids, feedback, None, Thresholds(correlation=0.1))
    assert readout["correlation"] == pytest.approx(0.0, abs=1e-9)
    assert any("do not track the measured pass rates" in w for w in readout["warnings"])


def test_a_state_written_before_the_record_loads_its_figures_into_it():
    old = {"epoch": 2, "positions": [0], "ranking": [5, 6], "scores": [1.0, None],
           "memory": {"posterior": {"gc_ids": []}, "selection": {"posterior_mean": 0.5}}}  # fmt: skip
    state = ScheduleState.from_json(old)
    assert state.memory == {"posterior": {"gc_ids": []}} and state.selection.figures == {"posterior_mean": 0.5}
    again = ScheduleState.from_json(state.to_json())
    assert again.selection == state.selection and again.memory == state.memory
    screen = ScheduleState.from_json({**old, "memory": {"selection": {"screened": 4}}})
    assert screen.memory is None and screen.selection.figures == {"screened": 4}


def test_every_registered_strategy_says_how_it_draws():
    from gaincurate.schedule.strategies.contract import draws
    from gaincurate.schedule.strategies.registry import STRATEGIES

    for name, cls in STRATEGIES.items():
        assert draws(cls) != cls.about.summary, f"{name} has no `draws` line for schedule status"


@pytest.mark.parametrize(
    "options, band",
    [({"band": (0.2, 0.8)}, [0.2, 0.8]), ({"skip_zero_variance": True}, [0.25, 0.75])],
)
def test_the_filters_pass_the_base_strategys_readout_on(world, tmp_path, options, band):
    """--band aims the readout at its band; --skip-zero-variance keeps the base's estimate and adds its skips."""
    policy, scores = world
    result = simulate(scores, tmp_path / "run", policy, strategy="mopps", seed=2, epochs=EPOCHS, **options)
    for line in result.history:
        assert line["readout"]["estimate"] == "posterior mean" and line["readout"]["band"] == band
        assert ("skipped" in line["selection"]) == ("skip_zero_variance" in options)
        assert ("band_kept" in line["selection"]) == ("band" in options)
    shown = json.loads(console("schedule", "status", "--run", tmp_path / "run", "--json").stdout)
    assert ("prompts estimated inside [0.2, 0.8] first" in shown["draws"]) == ("band" in options)
    assert ("recent rollouts all agreed" in shown["draws"]) == ("skip_zero_variance" in options)


def test_a_strategy_declaring_its_own_number_gets_it_in_status_the_plot_and_schedule_step(world, tmp_path, monkeypatch):
    """A new strategy is its module and a registry line: status, the plot and `schedule step` show what it declares
    (tests/made_up_strategy.py: a `temperature` drawn, plotted `t`, logged) and name nothing of gain's."""
    import made_up_strategy

    from gaincurate.schedule.strategies.registry import STRATEGIES

    monkeypatch.setitem(STRATEGIES, made_up_strategy.NAME, made_up_strategy.TemperedStrategy)
    policy, scores = world
    run = tmp_path / "run"
    result = simulate(scores, run, policy, strategy=made_up_strategy.NAME, seed=1, epochs=3)
    assert [line["temperature"] for line in result.history] == [1.0, 0.5]

    def tempered(*args: object) -> subprocess.CompletedProcess:  # the console script, with the strategy registered
        env = {**os.environ, "COLUMNS": "250"}
        command = [sys.executable, made_up_strategy.__file__, *map(str, args)]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return done

    shown = json.loads(tempered("schedule", "status", "--run", run, "--json").stdout)
    assert shown["draw"] == {"temperature": 0.25}
    assert [(line["temperature"], line["temperature_next"]) for line in shown["history"]] == [(1.0, 0.5), (0.5, 0.25)]
    assert shown["mu"] is None and shown["uses_mu"] is False  # 0.x's keys stay, null for a strategy without mu
    table = tempered("schedule", "status", "--run", run, "--plot", tmp_path / "chart.txt").stdout
    header = next(line for line in table.splitlines() if "┃ epoch" in line)
    assert [cell.strip() for cell in header.split("┃")[1:-1]] == ["epoch", "temp", "acc", "temp next"], header
    assert "epoch 2, temp 0.250" in " ".join(table.split())  # the title: the number that draws the waiting epoch
    rows = [line.split("│") for line in table.splitlines() if line.count("│") >= 4]
    assert [[cell.strip() for cell in row[1:5]] for row in rows[:3]] == [
        ["0", "1.000", rows[0][3].strip(), "0.500"],
        ["1", "0.500", rows[1][3].strip(), "0.250"],
        ["2", "0.250", "-", "waiting for training"],
    ]
    chart = (tmp_path / "chart.txt").read_text()
    assert chart.splitlines()[-1].startswith("t = temp, a = accuracy") and "t" in chart.split("+")[0]
    feedback = tmp_path / "rollouts-2.jsonl"
    ids = np.asarray(result.selected[2])
    append_rollouts(feedback, np.repeat(ids, ROLLOUTS).tolist(), policy.rollouts(ids, 2).ravel().tolist())
    stepped = tempered("schedule", "step", "--run", run, "--feedback", feedback).stdout
    assert "rollouts, cooled 0.250 -> 0.125" in stepped and "prompts by tempered (temp 0.125) ->" in stepped


@pytest.mark.parametrize("r", [-0.95, -0.4, 0.3])
def test_the_plot_shows_every_readout_point_r_below_zero_too(r):
    """r runs over [-1, 1]; the readout panel's limits hold every point it draws, a negative r as well."""
    pytest.importorskip("matplotlib")
    from gaincurate.schedule.run.plot import figure

    history = [
        {
            "epoch": epoch,
            "accuracy": 0.5,
            "readout": {"zero_variance": 0.2, "measured_pass_rate": 0.5, "correlation": c},
        }
        for epoch, c in enumerate((None, r, r / 2))
    ]
    status = {"run": "/runs/coin", "epoch": 3, "n_prompts": 40, "params": {"strategy": "probe"}, "draw": {}}
    readout = figure(status | {"history": history}).axes[1]
    low, high = readout.get_ylim()
    plotted = [y for line in readout.get_lines() for y in line.get_ydata()]
    assert r in plotted and all(low < y < high for y in plotted), (low, high, plotted)
    assert high <= 1.05 and (low >= -0.05 if r > 0 else low <= r)
