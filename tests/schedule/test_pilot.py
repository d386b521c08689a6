"""`pilot`: candidates drawn by the posterior, piloted with the current policy, the teachable committed.

Unit tests of the draw, the commit and the posterior update (against brute force), the simulated improving policy
of tests/simulation.py (it follows the frontier and wastes fewer groups than uniform and than screen with the same
pilot budget), and resume: a step killed mid-pilot or before state.json, taken again, gives the same files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from schedule_helpers import fixed_screener, prompt_set, snapshot, without_timings, write_hf_model
from simulation import ROLLOUTS, band, bundled_policy, simulate, simulated_screener, write_scores

from gaincurate.errors import ConfigError, InputError
from gaincurate.feedback_lines import append_rollouts
from gaincurate.lab.strategies.pilot import (
    CANDIDATE_STREAM,
    PILOT_FACTOR,
    PILOT_KEY,
    PILOT_ROLLOUTS,
    PilotOptions,
    commit_order,
    thompson_candidates,
)
from gaincurate.lab.strategies.screening import Metered
from gaincurate.schedule.config import ScheduleConfig
from gaincurate.schedule.core import Scheduler
from gaincurate.schedule.run import rundir
from gaincurate.schedule.run.run import Run
from gaincurate.schedule.run.steps import init_run
from gaincurate.schedule.state import ScheduleState
from gaincurate.schedule.strategies.mopps import update_posterior

SEEDS = (0, 1, 2)


@pytest.mark.parametrize("seed", range(10))
def test_the_candidates_are_the_thompson_draws_nearest_the_target(seed):
    rng = np.random.default_rng(seed)
    alpha, beta = rng.uniform(0.5, 8, 50), rng.uniform(0.5, 8, 50)
    rows = thompson_candidates(alpha, beta, 12, 0.3, np.random.default_rng([seed, 1]))
    draws = np.random.default_rng([seed, 1]).beta(alpha, beta)  # brute force: the same draw, sorted by hand
    assert rows.tolist() == sorted(range(50), key=lambda i: (abs(draws[i] - 0.3), i))[:12]


@pytest.mark.parametrize("seed", range(10))
def test_the_commit_order_is_in_band_then_nearest_the_target_then_the_draw(seed):
    rates = np.random.default_rng(seed).integers(0, 5, 30) / 4.0
    band = None if seed % 2 else (0.125, 0.25)  # Pilot-Commit's low band

    def key(i):
        inside = 0 < rates[i] < 1 if band is None else band[0] <= rates[i] <= band[1]
        return (not inside, abs(float(rates[i]) - 0.5), i)

    assert commit_order(rates, band, 0.5).tolist() == sorted(range(30), key=key)


def test_epoch_0_pilots_k_times_m_candidates_and_commits_the_m_that_can_teach():
    prompts = prompt_set(60)
    rates = {int(i): [0.0, 0.5, 1.0, 0.5, 0.5, 0.5][k % 6] for k, i in enumerate(prompts.gc_ids)}
    calls: list = []
    scheduler = Scheduler(ScheduleConfig(strategy="pilot", subset_size=8, pilot_factor=2.5, seed=4), prompts)
    scheduler.policy = Metered(fixed_screener(rates, calls))
    plan = scheduler.step().plan
    ((candidates, epoch, rollouts),) = calls
    assert epoch == 0 and rollouts == PILOT_ROLLOUTS and len(set(candidates.tolist())) == 20
    # Under the prior every draw is uniform: the candidates are the epoch's Thompson draws nearest 0.5.
    expected = thompson_candidates(np.ones(60), np.ones(60), 20, 0.5, np.random.default_rng([4, 0, CANDIDATE_STREAM]))
    assert candidates.tolist() == prompts.gc_ids[expected].tolist()
    in_band = [int(i) for i in candidates if rates[int(i)] == 0.5]
    assert len(in_band) > 8
    assert sorted(plan.gc_ids.tolist()) == sorted(in_band[:8])  # in the band, in the order drawn
    info = scheduler.state.selection.figures
    assert (info["piloted"], info["pilot_rollouts"], info["pilot_tokens"]) == (20, 20 * PILOT_ROLLOUTS, 60)
    assert info["in_band"] == len(in_band) and info["chosen_pass_rate"] == 0.5
    assert scheduler.policy.spent.rollouts == 20 * PILOT_ROLLOUTS
    assert scheduler.state.memory == {"posterior": {"gc_ids": [], "alpha": [], "beta": []}}  # nowhere to keep it


def test_the_next_pilot_feeds_the_posterior_and_the_feedback_is_not_discounted_twice():
    prompts = prompt_set(40)
    rates = {int(i): (0.5 if k % 3 else 1.0) for k, i in enumerate(prompts.gc_ids)}
    calls: list = []
    config = ScheduleConfig(strategy="pilot", subset_size=5, seed=2, forget=0.5, prior=(1.0, 2.0))
    scheduler = Scheduler(config, prompts)
    scheduler.policy = Metered(fixed_screener(rates, calls))
    scheduler.step()
    first = scheduler.state.subset_ids
    feedback = [{"gc_id": int(i), "reward": float(r)} for i in first for r in (1, 0, 0)]
    plan = scheduler.step(feedback=feedback).plan
    (_, _, _), (piloted, epoch, rollouts) = calls
    assert epoch == 1 and len(piloted) == 10
    memory = scheduler.state.memory
    assert memory[PILOT_KEY]["epoch"] == 1 and memory[PILOT_KEY]["gc_ids"] == piloted.tolist()
    assert set(plan.gc_ids.tolist()) <= set(piloted.tolist())
    # Brute force: epoch 0's feedback discounted once, then the pilot discounted once more (a new epoch).
    stored = memory["posterior"]
    posterior = dict(zip(stored["gc_ids"], zip(stored["alpha"], stored["beta"], strict=True), strict=True))
    for gc_id in set(first.tolist()) | set(piloted.tolist()):
        a, b = 1.0, 2.0
        if gc_id in first:
            a, b = (float(v[0]) for v in update_posterior([a], [b], [1.0], [3], prior=(1.0, 2.0), forget=0.5))
        if gc_id in piloted:
            s = rates[gc_id] * rollouts
            a, b = (float(v[0]) for v in update_posterior([a], [b], [s], [rollouts], prior=(1.0, 2.0), forget=0.5))
        assert posterior[gc_id] == (a, b), gc_id
    # Epoch 1's feedback on a prompt piloted for epoch 1 adds its rollouts without a second discount.
    state = scheduler.state
    trained = int(state.subset_ids[0])
    after = scheduler.strategy.fold_feedback(state, scheduler.summarize([{"gc_id": trained, "reward": 1.0}]))
    assert PILOT_KEY not in after
    row = after["posterior"]["gc_ids"].index(trained)
    assert after["posterior"]["alpha"][row] == posterior[trained][0] + 1.0
    assert after["posterior"]["beta"][row] == posterior[trained][1]


def test_the_report_gives_posterior_means_and_the_pilot_rates_of_the_candidates():
    prompts = prompt_set(30)
    rates = {int(i): 0.5 for i in prompts.gc_ids}
    scheduler = Scheduler(ScheduleConfig(strategy="pilot", subset_size=4), prompts)
    scheduler.policy = Metered(fixed_screener(rates, []))
    scheduler.step()
    drawn = scheduler.state.selection
    assert drawn.picked == (0.5,) * 4 and drawn.band == (0.25, 0.75)  # 0 < k/2 < 1
    assert "pilot pass rate (2 rollouts)" in drawn.source
    assert drawn.pool_mean == 0.5  # the prior's mean elsewhere, the pilots' 0.5 on the candidates


def test_pilot_without_a_policy_says_what_is_missing():
    scheduler = Scheduler(ScheduleConfig(strategy="pilot", subset_size=4), prompt_set(20))
    with pytest.raises(ConfigError, match="no model was given to pilot with"):
        scheduler.step()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"strategy": "pilot", "pilot_factor": 0.5}, "pilot_factor must be a number 1 or more"),
        ({"strategy": "pilot", "pilot_rollouts": 0}, "pilot_rollouts must be a whole number 1 or more"),
        ({"strategy": "mopps", "pilot_rollouts": 2}, "pilot_rollouts is a pilot option"),
        ({"strategy": "pilot", "skip_zero_variance": True}, "already drops prompts"),
    ],
)
def test_its_options_are_checked(options, message):
    with pytest.raises(ConfigError, match=message):
        ScheduleConfig(**options)


def test_its_defaults_survive_a_round_trip():
    config = ScheduleConfig(strategy="pilot", band=(0.125, 0.25), pilot_factor=1.5)
    assert config.options == PilotOptions(pilot_factor=1.5)
    assert (PilotOptions().pilot_factor, PilotOptions().pilot_rollouts) == (PILOT_FACTOR, PILOT_ROLLOUTS)
    assert ScheduleConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


# -- under the simulated improving policy -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The simulated policy, its scores, a stand-in checkpoint, and a cache of finished runs with their pilots."""
    root = tmp_path_factory.mktemp("pilot")
    policy = bundled_policy()
    scores = write_scores(root / "scores", policy)
    checkpoint = write_hf_model(root / "policy")  # the stand-in screener ignores it
    runs: dict[tuple, tuple] = {}

    def run(strategy: str, seed: int, **options):
        key = (strategy, tuple(sorted(options.items())), seed)
        if key not in runs:
            calls: list = []
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(
                    "gaincurate.lab.strategies.screening.checkpoint_screener", simulated_screener(policy, calls)
                )
                folder = root / f"run-{len(runs)}"
                result = simulate(
                    scores, folder, policy, strategy=strategy, seed=seed, checkpoint=checkpoint, **options
                )
            runs[key] = (result, calls)
        return runs[key]

    return run


def zero_variance(result) -> float:
    """The share of the trained groups whose rollouts all agreed, over epochs 5-18 (the readout's, per epoch)."""
    return float(np.mean([line["readout"]["zero_variance"] for line in result.history[5:]]))


@pytest.mark.parametrize("seed", SEEDS)
def test_it_follows_the_frontier_and_wastes_fewer_groups_than_uniform_and_screen(world, seed):
    """Same pilot budget as screen (k = 2 candidates per prompt, r = 2 rollouts each): the prior's candidates are
    nearer the frontier than screen's uniform ones, so fewer trained groups are all right or all wrong."""
    pilot, calls = world("pilot", seed)
    screen, screen_calls = world("screen", seed, screen_factor=2, screen_rollouts=2)
    uniform, _ = world("uniform", seed)
    assert sum(len(ids) * r for ids, _, r in calls) == sum(len(ids) * r for ids, _, r in screen_calls)
    measured = band(pilot)
    assert measured["distance_ratio"] < 0.8, measured
    assert measured["fewer_extremes"] > 0.75, measured
    assert band(pilot)["extremes"] < band(screen)["extremes"]
    wasted = zero_variance(pilot)
    assert wasted < zero_variance(screen) - 0.04 and wasted < zero_variance(uniform) - 0.1, (wasted, seed)


def test_every_pilot_rollout_is_counted_and_the_committed_prompts_were_piloted(world):
    result, calls = world("pilot", 0)
    epochs = len(result.selected)
    assert [epoch for _, epoch, _ in calls] == list(range(epochs))  # one pilot per epoch drawn, in order
    assert all(len(ids) == 2 * 128 and rollouts == PILOT_ROLLOUTS for ids, _, rollouts in calls)
    per_epoch = 2 * 128 * PILOT_ROLLOUTS
    assert [line["selection"]["pilot_rollouts"] for line in result.history] == [per_epoch] * (epochs - 1)
    assert result.selections[-1].figures["pilot_rollouts"] == per_epoch  # the epoch still waiting
    for (ids, _, _), chosen in zip(calls, result.selected, strict=True):
        assert set(chosen.tolist()) <= set(ids.tolist())
    # What a pilot measured is in the posterior: a prompt piloted but never trained on has left the prior.
    trained = set(np.concatenate(result.selected).tolist())
    only_piloted = set(np.concatenate([ids for ids, _, _ in calls[1:-1]]).tolist()) - trained
    assert only_piloted and only_piloted <= set(result.memories[-1]["posterior"]["gc_ids"])


# -- resume ---------------------------------------------------------------------------------------------------


def drive(run_dir: Path, scores: Path, checkpoint: Path, policy, epochs: int, *, config: ScheduleConfig) -> None:
    init_run(run_dir, scores, config)
    Run.open(run_dir).step(checkpoint=checkpoint)
    for epoch in range(epochs):
        Run.open(run_dir).step(feedback=feedback_file(run_dir, policy, epoch), checkpoint=checkpoint)


def feedback_file(run_dir: Path, policy, epoch: int) -> Path:
    ids = rundir.load_run(run_dir).schedule.subset_ids
    path = run_dir.parent / f"{run_dir.name}-rollouts-{epoch}.jsonl"
    path.unlink(missing_ok=True)
    append_rollouts(path, np.repeat(ids, ROLLOUTS).tolist(), policy.rollouts(ids, epoch).ravel().tolist())
    return path


@pytest.mark.determinism
def test_a_step_killed_in_its_pilot_or_before_state_json_resumes_to_the_same_run(tmp_path, monkeypatch):
    policy = bundled_policy()
    scores = write_scores(tmp_path / "scores", policy)
    checkpoint = write_hf_model(tmp_path / "policy")
    config = ScheduleConfig(strategy="pilot", subset_size=32, seed=6)
    monkeypatch.setattr("gaincurate.lab.strategies.screening.checkpoint_screener", simulated_screener(policy, []))
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    drive(straight, scores, checkpoint, policy, 4, config=config)
    drive(killed, scores, checkpoint, policy, 2, config=config)
    before = (killed / "state.json").read_bytes()

    def dies_in_its_pilot(*args, **kwargs):
        def screen(gc_ids, epoch, rollouts):
            raise KeyboardInterrupt

        return screen

    with monkeypatch.context() as patch:  # killed while piloting epoch 3's candidates
        patch.setattr("gaincurate.lab.strategies.screening.checkpoint_screener", dies_in_its_pilot)
        with pytest.raises(KeyboardInterrupt):
            Run.open(killed).step(feedback=feedback_file(killed, policy, 2), checkpoint=checkpoint)
    assert (killed / "state.json").read_bytes() == before
    Run.open(killed).step(feedback=feedback_file(killed, policy, 2), checkpoint=checkpoint)
    with monkeypatch.context() as patch:  # killed after the epoch file and the history line, before state.json
        patch.setattr(rundir, "save_run", lambda *args, **kwargs: (_ for _ in ()).throw(KeyboardInterrupt()))
        with pytest.raises(KeyboardInterrupt):
            Run.open(killed).step(feedback=feedback_file(killed, policy, 3), checkpoint=checkpoint)
    Run.open(killed).step(feedback=feedback_file(killed, policy, 3), checkpoint=checkpoint)
    names = {name for name in snapshot(straight) if name != "history.jsonl"}
    assert names == {name for name in snapshot(killed) if name != "history.jsonl"}
    assert {n: h for n, h in snapshot(killed).items() if n in names} == {
        n: h for n, h in snapshot(straight).items() if n in names
    }  # state.json and every epoch file, byte for byte
    assert without_timings(rundir.read_history(killed)) == without_timings(rundir.read_history(straight))


@pytest.mark.determinism
def test_a_scheduler_rebuilt_from_its_state_json_draws_what_the_running_one_draws():
    """In process (TRL's checkpoint carries the state as JSON): rebuilt mid-run, the same epochs and state."""
    prompts = prompt_set(50)
    rates = {int(i): (i % 5) / 4 for i in prompts.gc_ids}
    config = ScheduleConfig(strategy="pilot", subset_size=6, seed=9)

    def step(scheduler, epoch):
        ids = scheduler.state.subset_ids
        return scheduler.step(feedback=[{"gc_id": int(i), "reward": float((i + epoch) % 2)} for i in ids])

    running = Scheduler(config, prompts)
    running.policy = Metered(fixed_screener(rates, []))
    running.step()
    for epoch in range(2):
        step(running, epoch)
    saved = json.dumps(running.state.to_json())
    rebuilt = Scheduler(config, prompts, state=ScheduleState.from_json(json.loads(saved)))
    rebuilt.policy = Metered(fixed_screener(rates, []))
    for epoch in range(2, 5):
        assert step(running, epoch).plan.gc_ids.tolist() == step(rebuilt, epoch).plan.gc_ids.tolist()
        assert json.dumps(running.state.to_json()) == json.dumps(rebuilt.state.to_json())


def test_a_pilot_run_without_a_checkpoint_after_epoch_0_is_refused(tmp_path):
    policy = bundled_policy()
    scores = write_scores(tmp_path / "scores", policy)
    run = tmp_path / "run"
    init_run(run, scores, ScheduleConfig(strategy="pilot", subset_size=8))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("gaincurate.lab.strategies.screening.checkpoint_screener", simulated_screener(policy, []))
        Run.open(run).step()  # epoch 0 pilots with the model the prompts were scored with
        before = (run / "state.json").read_bytes()
        with pytest.raises(InputError, match="--strategy pilot .* pass --checkpoint PATH"):
            Run.open(run).step(feedback=feedback_file(run, policy, 0))
    assert (run / "state.json").read_bytes() == before
