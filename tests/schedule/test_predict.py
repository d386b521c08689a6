"""`predict`: the chance a prompt's next group is informative, learned across prompts (schedule/strategies/predict.py).

Its formulas against a brute-force float64 computation over the observations one by one; the diagnosis it answers
(a family whose members are each all right or all wrong looks like 0.5 to a pass-rate average, not to this
predictor); the simulated improving policy of tests/simulation.py; resume; its options' one-line errors through the
console script; and an epoch's draw over a 1,000-prompt pool (its speed is not asserted: timing is for benches).
"""

from __future__ import annotations

import json
import math
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from schedule_helpers import check_killed_step_resumes, drive_epochs, snapshot, without_timings
from simulation import ALL_OR_NOTHING_SPREAD, band, bundled_policy, simulate, write_scores, zero_variance_share
from test_recorded_runs import write_recorded_scores

from gaincurate.difficulty.predict import prepare_embeddings
from gaincurate.errors import ConfigError, InputError
from gaincurate.lab.strategies.predict import (
    Evidence,
    PredictOptions,
    PredictStrategy,
    group_outcomes,
    predict_informative,
)
from gaincurate.schedule.config import ScheduleConfig
from gaincurate.schedule.feedback import Feedback, summarize_feedback
from gaincurate.schedule.run import rundir
from gaincurate.schedule.state import ScheduleState
from gaincurate.schedule.strategies.contract import RankingContext
from gaincurate.schedule.strategies.filters import chosen_through

SEEDS = (0, 1, 2)


def observations(rng: np.random.Generator, n: int, epochs: int) -> list[tuple[int, int, float, float, int]]:
    """(gc_id, epoch, informative, correct, rollouts) of some prompts' groups over `epochs` epochs."""
    found = []
    for epoch in range(epochs):
        for gc_id in rng.choice(n, n // 3, replace=False):
            rollouts = int(rng.integers(2, 6))
            correct = float(rng.integers(0, rollouts + 1))
            found.append((int(gc_id), epoch, float(0 < correct < rollouts), correct, rollouts))
    return found


def evidence(found, options: PredictOptions) -> Evidence:
    """The observations folded in epoch by epoch, as the scheduler does: 0/1 rewards, `correct` of them right."""
    folded = Evidence.empty()
    for epoch in sorted({o[1] for o in found}):
        ids = [o[0] for o in found if o[1] == epoch]
        records = [
            {"gc_id": gc_id, "reward": float(r < correct)} for gc_id, t, _, correct, rollouts in found if t == epoch
            for r in range(rollouts)
        ]  # fmt: skip
        feedback = summarize_feedback(records, epoch_ids=ids, known_ids=range(10_000), reward_max=1.0)
        folded = folded.add(feedback, "predict", time=epoch, options=options)
    return folded


def brute_force(raw: np.ndarray, found, now: int, options: PredictOptions):
    """The module docstring's formulas, observation by observation, in Python floats (cosines without the grid)."""
    centred = raw - raw.mean(axis=0)
    unit = centred / np.linalg.norm(centred, axis=1, keepdims=True)
    a0, b0 = options.informative_prior
    k, rate, pass_rate = options.neighbours, [], []
    for q in range(len(raw)):
        own = [0.0] * 4
        near = [0.0] * 4
        for gc_id, epoch, informative, correct, rollouts in found:
            weight = options.forget ** (now - epoch)
            group = options.forget_solved ** (now - epoch) if correct == rollouts else weight
            values = (weight * informative, group, weight * correct, weight * rollouts)
            if gc_id == q:
                own = [o + v for o, v in zip(own, values, strict=True)]
            else:
                kernel = math.exp((float(unit[q] @ unit[gc_id]) - 1.0) / options.bandwidth)
                near = [s + kernel * v for s, v in zip(near, values, strict=True)]
        neighbour = (a0 + near[0]) / (a0 + b0 + near[1])
        alpha, beta = k * neighbour + own[0], k * (1 - neighbour) + own[1] - own[0]
        rate.append(alpha / (alpha + beta))
        pass_rate.append((k * (0.5 + near[2]) / (1.0 + near[3]) + own[2]) / (k + own[3]))
    return np.array(rate), np.array(pass_rate)


@pytest.mark.parametrize("seed", range(4))
def test_the_prediction_is_the_formula_computed_by_brute_force(seed):
    rng = np.random.default_rng(seed)
    raw = rng.normal(size=(30, 8)) + np.repeat(rng.normal(0, 2, (3, 8)), 10, axis=0)  # three families
    options = PredictOptions(
        forget=[0.7, 0.5, 1.0, 0.9][seed],
        forget_solved=[1.0, 0.8, 0.6, 0.9][seed],
        bandwidth=[0.05, 0.2, 0.5, 1.0][seed],
        neighbours=[4.0, 1.0, 2.5, 8.0][seed],
        informative_prior=[(1.0, 1.0), (2.0, 0.5), (0.3, 3.0), (1.0, 4.0)][seed],
    )
    found = observations(rng, 30, 4)
    got = predict_informative(prepare_embeddings(raw), np.arange(30), evidence(found, options), now=3, options=options)
    rate, pass_rate = brute_force(raw, found, 3, options)
    # The grid moves a cosine by under 1e-7 (gaincurate.difficulty.predict), so agreement is to that, not to the bit.
    np.testing.assert_allclose(got.rate, rate, rtol=2e-5, atol=1e-7)
    np.testing.assert_allclose(got.pass_rate, pass_rate, rtol=2e-5, atol=1e-7)


def test_without_evidence_every_prompt_sits_at_the_prior():
    rng = np.random.default_rng(0)
    options = PredictOptions(informative_prior=(1.0, 3.0), neighbours=2.0)
    embeddings = prepare_embeddings(rng.normal(size=(12, 4)))
    got = predict_informative(embeddings, np.arange(12), Evidence.empty(), now=-1, options=options)
    assert np.all(got.alpha == 0.5) and np.all(got.beta == 1.5)  # neighbours * A / (A + B): Beta(0.5, 1.5)
    assert np.all(got.pass_rate == 0.5)


def test_a_family_of_all_right_and_all_wrong_prompts_is_told_from_one_at_the_frontier():
    """The diagnosis (docs/strategies.md): family A's members are each all right or all wrong, family B's are mixed.
    Both average a pass rate near 0.5, so a pass-rate estimate cannot tell their unseen members apart; the
    predicted chance of an informative group can, and a prompt seen all right is predicted unlikely to teach."""
    rng = np.random.default_rng(5)
    centres = rng.normal(0, 3, (2, 16))
    raw = np.repeat(centres, 40, axis=0) + rng.normal(0, 0.3, (80, 16))
    seen = np.r_[0:20, 40:60]  # half of each family trained once, 4 rollouts each
    records = []
    for gc_id in seen:
        rewards = [float(gc_id % 2)] * 4 if gc_id < 40 else [1.0, 0.0, 1.0, 0.0]
        records += [{"gc_id": int(gc_id), "reward": r} for r in rewards]
    feedback = summarize_feedback(records, epoch_ids=seen, known_ids=range(80), reward_max=1.0)
    strategy = PredictStrategy(np.arange(80), raw, PredictOptions())
    state = ScheduleState(ranking=np.arange(80), scores=np.zeros(80), memory=None, epoch=0)
    state = ScheduleState(ranking=np.arange(80), scores=np.zeros(80), memory=strategy.observe(state, feedback), epoch=1)
    prediction = strategy.prediction(state)
    unseen_a, unseen_b = prediction.rate[20:40], prediction.rate[60:80]
    assert unseen_b.min() > unseen_a.max() + 0.3
    assert abs(prediction.pass_rate[20:40].mean() - prediction.pass_rate[60:80].mean()) < 0.1  # both near 0.5
    assert prediction.rate[1] < 0.2 and prediction.rate[40] > 0.7  # seen all right; seen mixed
    context = RankingContext(gc_ids=np.arange(80), scores=np.zeros(80), subset_size=20)
    picked = chosen_through(strategy, (), state, context, np.random.default_rng(1)).positions
    assert np.isin(picked, np.r_[40:80]).mean() > 0.9


def test_each_group_is_informative_all_right_or_neither_by_its_extremes():
    records = [{"gc_id": 1, "reward": r} for r in (1.0, 1.0)] + [{"gc_id": 2, "reward": r} for r in (0.5, 0.5)]
    records += [{"gc_id": 3, "reward": r} for r in (0.0, 0.5)] + [{"gc_id": 4, "reward": r} for r in (0.0, 0.0)]
    feedback = summarize_feedback(records, epoch_ids=[1, 2, 3, 4], known_ids=range(5), reward_max=1.0)
    informative, solved = group_outcomes(feedback, "predict")
    assert informative == {1: (0.0, 0), 2: (0.0, 1), 3: (1.0, 1), 4: (0.0, 1)}  # all right counts in `solved` only
    assert solved == {1: (1.0, 1), 2: (0.0, 1), 3: (0.0, 1), 4: (0.0, 1)}
    with pytest.raises(InputError, match="per-rollout feedback") as error:
        group_outcomes(Feedback.from_accuracy(0.5), "predict")
    assert "\n" not in str(error.value)


def test_an_epochs_draw_over_a_1000_prompt_pool_takes_distinct_prompts():
    # A pool twice the bench's, embeddings of a real model's width: the draw is still one epoch of distinct prompts.
    rng = np.random.default_rng(0)
    strategy = PredictStrategy(np.arange(1000), rng.normal(size=(1000, 576)).astype(np.float32), PredictOptions())
    memory = evidence(observations(rng, 1000, 10), PredictOptions()).to_memory()
    state = ScheduleState(ranking=np.arange(1000), scores=np.zeros(1000), memory=memory, epoch=10)
    context = RankingContext(gc_ids=np.arange(1000), scores=np.zeros(1000), subset_size=128)
    picked = np.asarray(chosen_through(strategy, (), state, context, np.random.default_rng(0)).positions)
    assert len(picked) == 128 == len(set(picked.tolist())) and set(picked.tolist()) <= set(range(1000))


# -- the simulated improving policy -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    policy = bundled_policy()
    return root, policy, write_scores(root / "scores", policy)


@pytest.mark.parametrize("seed", SEEDS)
def test_it_follows_an_improving_policy_to_the_informative_prompts(world, seed):
    """Over epochs 5-19 (docs/strategies.md's simulation tables: ratio 0.649, 99% fewer extremes, 27% zero-variance
    groups against uniform's 45% and dots' 29%), with room for seed-to-seed spread."""
    root, policy, scores = world
    result = simulate(scores, root / f"run-{seed}", policy, strategy="predict", seed=seed)
    measured = band(result)
    assert measured["distance_ratio"] < 0.75
    assert measured["fewer_extremes"] > 0.8
    assert zero_variance_share(result) < 0.35
    figures = [line["selection"] for line in result.history[5:]]
    assert all(f["informative_estimate"] > f["pool_informative_estimate"] for f in figures)  # it picks its best


def test_where_each_prompt_is_all_right_or_all_wrong_it_wastes_fewer_groups_than_dots_and_mopps(tmp_path):
    """The all-or-nothing variant of the simulation (docs/strategies.md: uniform 78% zero-variance groups, dots 71%,
    mopps 60%, predict 56%, an oracle 48%), where embedding neighbours share a level but each prompt is mostly all
    right or all wrong, as on the bench's `cpu-mult`: seed 0, with room for spread."""
    policy = bundled_policy(member_spread=ALL_OR_NOTHING_SPREAD)
    scores = write_scores(tmp_path / "scores", policy)
    wasted = {
        name: zero_variance_share(simulate(scores, tmp_path / name, policy, strategy=name, seed=0))
        for name in ("uniform", "dots", "mopps", "predict")
    }
    assert wasted["predict"] < wasted["dots"] - 0.08 and wasted["predict"] < wasted["uniform"] - 0.15
    assert wasted["predict"] < wasted["mopps"] - 0.02, wasted


def test_epoch_0_is_a_uniform_draw(world):
    """Before any feedback every prompt's Beta is the same: the epoch's prompts are a uniform draw, so over seeds
    every prompt is about as likely (a chi-square over 320 prompts, 60 draws of 128)."""
    root, policy, scores = world
    counts = np.zeros(320)
    for seed in range(60):
        result = simulate(scores, root / f"zero-{seed}", policy, strategy="predict", seed=seed, epochs=1)
        counts[result.selected[0]] += 1
    expected = 60 * 128 / 320
    statistic = float(np.sum((counts - expected) ** 2 / (expected * (1 - 128 / 320))))
    assert statistic < 420  # 319 degrees of freedom: the 0.01% point is about 420


# -- on disk -------------------------------------------------------------------------------------------------------

CONFIG = ScheduleConfig(strategy="predict", subset_size=5, seed=3)


def feedback_file(path: Path, gc_ids, epoch: int) -> Path:
    """Rollout r of gc_id i in epoch t is right when (i + r * t) % 3 == 0: some prompts mixed, some all alike."""
    lines = [json.dumps({"gc_id": int(i), "correct": (int(i) + r * epoch) % 3 == 0}) for i in gc_ids for r in range(4)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.determinism
def test_seeded_runs_are_byte_identical_and_a_killed_step_resumes(tmp_path, monkeypatch):
    scores = write_recorded_scores(tmp_path / "scores")
    drive_epochs(tmp_path / "a", scores, 3, CONFIG, feedback_file)
    drive_epochs(tmp_path / "b", scores, 3, CONFIG, feedback_file)
    first, second = snapshot(tmp_path / "a"), snapshot(tmp_path / "b")
    assert {k: v for k, v in first.items() if k != "history.jsonl"} == {
        k: v for k, v in second.items() if k != "history.jsonl"
    }
    assert without_timings(rundir.read_history(tmp_path / "a")) == without_timings(rundir.read_history(tmp_path / "b"))
    state = json.loads((tmp_path / "a" / "state.json").read_text())
    assert set(state["memory"]) == {"informative", "solved", "pass_rates"}
    history = check_killed_step_resumes(tmp_path / "resume", scores, CONFIG, feedback_file, monkeypatch)
    assert all(
        set(line["selection"]) == {"informative_estimate", "pool_informative_estimate", "evidence"} for line in history
    )
    assert history[-1]["readout"]["estimate"].startswith("pass rate by the predict kernel")


def test_its_options_are_its_own():
    config = ScheduleConfig(strategy="predict", bandwidth=0.2, informative_prior=(1, 3))
    assert config.options == PredictOptions(bandwidth=0.2, informative_prior=(1.0, 3.0))
    assert ScheduleConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    for options, message in [
        ({"bandwidth": 0}, "bandwidth must be a positive number"),
        ({"explore": 2}, r"explore must be a number in \[0, 1\]"),
        ({"informative_prior": (0, 1)}, "informative_prior must be two positive numbers"),
        ({"neighbours": -1}, "neighbours must be a positive number"),
    ]:
        with pytest.raises(ConfigError, match=message) as error:
            ScheduleConfig(strategy="predict", **options)
        assert "\n" not in str(error.value)


def console(*args: object) -> subprocess.CompletedProcess:
    script = Path(sys.executable).with_name("gaincurate")
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([str(script), *map(str, args)], env=env, capture_output=True, text=True, timeout=120)


def test_the_console_script_runs_it_and_refuses_a_bad_option_in_one_line(tmp_path, scores_dir):
    bare = console("schedule", "init", "--scores", scores_dir, "--run", tmp_path / "bare", "--strategy", "predict")
    assert bare.returncode != 0 and len(bare.stderr.strip().splitlines()) == 1
    assert "has no gc_embedding column" in bare.stderr and "gaincurate score --embed" in bare.stderr
    scores = write_recorded_scores(tmp_path / "scores")
    run = tmp_path / "run"
    refused = console("schedule", "init", "--scores", scores, "--run", run, "--strategy", "predict", "--bandwidth", "0")
    assert refused.returncode != 0
    line = "gaincurate: error: --bandwidth must be a positive number (1e-100 or more); got 0.0"
    assert refused.stderr.strip().splitlines() == [line]
    done = console("schedule", "init", "--scores", scores, "--run", run, "--strategy", "predict", "--explore", "0.2",
                   "--subset-size", "4")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert console("schedule", "step", "--run", run, "--quiet").returncode == 0
    assert (run / "epoch-0000.parquet").is_file()
    shown = console("schedule", "init", "--help").stdout
    assert "kept for comparison (the lab's)" in shown and "--bandwidth" in shown and "--informative-prior" in shown


def test_schedule_run_drives_it_with_a_trainer_command(tmp_path):
    """The `--trainer-cmd` path: a stand-in trainer writes each epoch's rewards; predict learns from them alone."""
    scores = write_recorded_scores(tmp_path / "scores")
    run = tmp_path / "run"
    init = ("schedule", "init", "--scores", scores, "--run", run, "--strategy", "predict", "--subset-size", "5")
    assert console(*init).returncode == 0
    trainer = tmp_path / "trainer.py"
    trainer.write_text(
        "import json, sys\n"
        "epoch = int(sys.argv[3])\n"
        "with open(sys.argv[2], 'w') as f:\n"
        "    for i in range(20):\n"
        "        for r in range(4):\n"
        "            f.write(json.dumps({'gc_id': i, 'correct': (i + r * epoch) % 3 == 0}) + '\\n')\n"
    )
    command = f"{shlex.quote(sys.executable)} -S {shlex.quote(str(trainer))} {{epoch_data}} {{feedback_file}} {{epoch}}"
    done = console("schedule", "run", "--run", run, "--epochs", "3", "--trainer-cmd", command)
    assert done.returncode == 0, done.stderr
    history = rundir.read_history(run)
    assert [line["epoch"] for line in history] == [0, 1, 2]
    assert all(line["selection"]["informative_estimate"] is not None for line in history)
    assert rundir.load_run(run).schedule.memory["informative"]["gc_ids"]  # it learned from the command's rewards
