"""`screen` (SPEED-style screening) and `--band LO,HI`: the rules against brute force, the options, and a
simulated learning policy (tests/simulation.py) driven through `schedule step`'s public API.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from schedule_helpers import fixed_screener, prompt_set, write_hf_model
from simulation import band, bundled_policy, simulate, simulated_screener, write_scores

from gaincurate.errors import ConfigError, InputError
from gaincurate.lab.strategies.screen import SCREEN_FACTOR, SCREEN_ROLLOUTS, in_band, keep_order
from gaincurate.lab.strategies.screening import Metered
from gaincurate.schedule.config import ScheduleConfig
from gaincurate.schedule.core import Scheduler
from gaincurate.schedule.strategies.contract import RankingContext
from gaincurate.schedule.strategies.filters import chosen_through

SEEDS = (0, 1, 2)


@pytest.mark.parametrize("seed", range(20))
def test_keep_order_matches_a_brute_force_sort(seed):
    rng = np.random.default_rng(seed)
    rates = rng.integers(0, 5, 40) / 4.0  # measured with r = 4: many exact ties, zeros and ones
    ties = rng.random(40)
    band = None if seed % 2 else (0.25, 0.5)
    order = keep_order(rates, band, 0.5, ties)

    def key(i):
        inside = 0 < rates[i] < 1 if band is None else band[0] <= rates[i] <= band[1]
        return (not inside, abs(float(rates[i]) - 0.5), float(ties[i]))

    assert order.tolist() == sorted(range(40), key=key)
    assert in_band(np.array([0.0, 0.25, 1.0]), None).tolist() == [False, True, False]
    assert in_band(np.array([0.0, 0.25, 1.0]), (0.0, 0.25)).tolist() == [True, True, False]


def test_screen_draws_k_times_m_candidates_and_keeps_the_m_in_band_nearest_the_target():
    prompts = prompt_set(60)
    rates = {int(i): [0.0, 0.25, 0.5, 0.75, 1.0][k % 5] for k, i in enumerate(prompts.gc_ids)}
    calls: list = []
    scheduler = Scheduler(ScheduleConfig(strategy="screen", subset_size=8, screen_factor=3), prompts)
    scheduler.policy = Metered(fixed_screener(rates, calls))
    plan = scheduler.step().plan
    ((candidates, epoch, rollouts),) = calls
    assert epoch == 0 and rollouts == SCREEN_ROLLOUTS and len(set(candidates.tolist())) == 24
    assert set(plan.gc_ids.tolist()) <= set(candidates.tolist()) and len(plan.gc_ids) == 8
    # The kept prompts are the candidates at 0.5 first, then 0.25/0.75 (brute force over the candidates).
    by_distance = sorted(abs(rates[int(i)] - 0.5) for i in candidates if 0 < rates[int(i)] < 1)
    assert sorted(abs(rates[int(i)] - 0.5) for i in plan.gc_ids) == by_distance[:8]
    info = scheduler.state.selection.figures
    assert info["screened"] == 24 and info["screen_rollouts"] == 24 * SCREEN_ROLLOUTS
    assert info["screen_tokens"] == 72 and info["in_band"] == sum(0 < rates[int(i)] < 1 for i in candidates)
    assert scheduler.policy.spent.rollouts == 24 * SCREEN_ROLLOUTS


def test_screen_fills_the_epoch_from_out_of_band_candidates_when_too_few_are_in_it():
    prompts = prompt_set(40)
    rates = {int(i): (0.5 if k < 3 else 1.0 if k % 2 else 0.0) for k, i in enumerate(prompts.gc_ids)}
    calls: list = []
    scheduler = Scheduler(ScheduleConfig(strategy="screen", subset_size=10, screen_factor=4), prompts)
    scheduler.policy = Metered(fixed_screener(rates, calls))
    plan = scheduler.step().plan
    assert len(plan.gc_ids) == 10  # the epoch keeps its size
    assert {int(i) for i in prompts.gc_ids[:3]} <= set(plan.gc_ids.tolist())  # all three in band are kept


def test_screen_is_seeded_and_draws_new_candidates_every_epoch():
    prompts = prompt_set(50)
    rates = {int(i): 0.5 for i in prompts.gc_ids}

    def first_two(seed):
        calls: list = []
        scheduler = Scheduler(ScheduleConfig(strategy="screen", subset_size=5, seed=seed), prompts)
        scheduler.policy = Metered(fixed_screener(rates, calls))
        scheduler.step()
        scheduler.step(feedback=[{"gc_id": int(i), "reward": 1.0} for i in scheduler.state.subset_ids])
        return [c[0].tolist() for c in calls]

    assert first_two(1) == first_two(1)
    assert first_two(1) != first_two(2)
    assert first_two(1)[0] != first_two(1)[1]


def test_screen_without_a_screener_says_what_is_missing():
    scheduler = Scheduler(ScheduleConfig(strategy="screen", subset_size=4), prompt_set(20))
    with pytest.raises(ConfigError, match="no model was given to screen with"):
        scheduler.step()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"strategy": "dots", "screen_factor": 2}, "screen_factor is a screen option"),
        ({"strategy": "uniform", "screen_rollouts": 2}, "screen_rollouts is a screen option"),
        ({"strategy": "screen", "screen_factor": 0}, "screen_factor must be a whole number 1 or more"),
        ({"strategy": "uniform", "band": (0.1, 0.9)}, "band filters by pass-rate estimates"),
        ({"strategy": "gain", "band": (0.1, 0.9)}, "use it with dots, mopps, probe, pilot, screen"),
        ({"strategy": "mopps", "band": (0.9, 0.1)}, "0 <= LO <= HI <= 1"),
        ({"strategy": "mopps", "band": (0.1, 1.5)}, "0 <= LO <= HI <= 1"),
        ({"strategy": "screen", "skip_zero_variance": True}, "already drops prompts"),
    ],
)
def test_screen_and_band_options_are_checked(options, message):
    with pytest.raises(ConfigError, match=message):
        ScheduleConfig(**{"strategy": "gain", **options})


def test_screen_defaults_are_filled_in_and_survive_a_round_trip():
    config = ScheduleConfig(strategy="screen", band=[0.1, 0.9])
    options = config.options
    assert (options.screen_factor, options.screen_rollouts, config.band) == (SCREEN_FACTOR, SCREEN_ROLLOUTS, (0.1, 0.9))
    assert ScheduleConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    gain = ScheduleConfig(strategy="gain")  # not a screen run: nothing to fill in, nothing stored
    assert not hasattr(gain.options, "screen_factor") and "screen_factor" not in gain.to_dict()


@pytest.mark.parametrize("seed", range(6))
def test_the_band_over_mopps_is_the_base_order_with_in_band_prompts_first(seed):
    prompts = prompt_set(30)
    rng = np.random.default_rng(seed)
    base = Scheduler(ScheduleConfig(strategy="mopps", subset_size=6, seed=seed), prompts)
    banded = Scheduler(ScheduleConfig(strategy="mopps", subset_size=6, seed=seed, band=(0.3, 0.7)), prompts)
    posterior = {"gc_ids": prompts.gc_ids.tolist(), "alpha": rng.uniform(0.5, 6, 30).tolist(),
                 "beta": rng.uniform(0.5, 6, 30).tolist()}  # fmt: skip
    state = replace(base.state, epoch=1, memory={"posterior": posterior})
    context = RankingContext(state.ranking, state.scores, base.subset_size)
    order = base.strategy.choose(state, context, np.random.default_rng([seed, 1])).order
    means = np.array(posterior["alpha"]) / (np.array(posterior["alpha"]) + np.array(posterior["beta"]))
    means = means[np.searchsorted(prompts.gc_ids, context.gc_ids)]  # brute force: a / (a + b) per position
    inside = [int(p) for p in order if 0.3 <= means[p] <= 0.7]
    outside = [int(p) for p in order if not 0.3 <= means[p] <= 0.7]
    chosen = chosen_through(banded.strategy, banded.filters, state, context, np.random.default_rng([seed, 1]))
    assert chosen.positions.tolist() == sorted((inside + outside)[:6])
    assert chosen.info["in_band"] == len(inside) and chosen.info["band"] == [0.3, 0.7]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The simulated policy, its scores, a stand-in checkpoint, and a cache of finished runs with their screenings."""
    root = tmp_path_factory.mktemp("screen")
    policy = bundled_policy()
    scores = write_scores(root / "scores", policy)
    checkpoint = write_hf_model(root / "policy")  # screen needs a checkpoint with weights; the stand-in ignores it
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


@pytest.mark.parametrize("seed", SEEDS)
def test_screen_selects_nearer_the_middle_than_a_uniform_draw_as_the_policy_learns(world, seed):
    result, _ = world("screen", seed)
    measured = band(result)
    assert measured["distance_ratio"] < 0.8, measured
    assert measured["fewer_extremes"] > 0.6, measured


def test_screening_rollouts_are_counted_exactly(world):
    result, calls = world("screen", 0)
    epochs = len(result.selected)
    assert [epoch for _, epoch, _ in calls] == list(range(epochs))  # one screening per epoch drawn, in order
    per_epoch = 2 * 128 * SCREEN_ROLLOUTS  # k x m candidates, r rollouts each
    assert all(len(ids) == 2 * 128 and rollouts == SCREEN_ROLLOUTS for ids, _, rollouts in calls)
    logged = [line["selection"]["screen_rollouts"] for line in result.history]
    assert logged == [per_epoch] * (epochs - 1)  # each finished epoch's history line
    assert result.selections[-1].figures["screen_rollouts"] == per_epoch  # the epoch still waiting
    for (ids, _, _), chosen in zip(calls, result.selected, strict=True):
        assert set(chosen.tolist()) <= set(ids.tolist())


def test_a_band_over_dots_and_mopps_keeps_extreme_prompts_out(world):
    for strategy in ("dots", "mopps"):
        alone = sum(band(world(strategy, seed)[0])["extremes"] for seed in SEEDS[:2])
        banded = sum(band(world(strategy, seed, band=(0.2, 0.8))[0])["extremes"] for seed in SEEDS[:2])
        assert banded <= alone, (strategy, banded, alone)


def test_a_screen_run_without_a_checkpoint_after_epoch_0_is_refused(tmp_path):
    from gaincurate.schedule.run import rundir
    from gaincurate.schedule.run.run import Run
    from gaincurate.schedule.run.steps import init_run

    policy = bundled_policy()
    scores = write_scores(tmp_path / "scores", policy)
    run = tmp_path / "run"
    init_run(run, scores, ScheduleConfig(strategy="screen", subset_size=8))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("gaincurate.lab.strategies.screening.checkpoint_screener", simulated_screener(policy, []))
        Run.open(run).step()  # epoch 0 screens with the model the prompts were scored with
        ids = rundir.load_run(run).schedule.subset_ids
        feedback = tmp_path / "rollouts.jsonl"
        feedback.write_text("".join(json.dumps({"gc_id": int(i), "reward": 1.0}) + "\n" for i in ids))
        before = (run / "state.json").read_bytes()
        with pytest.raises(InputError, match="pass --checkpoint PATH"):
            Run.open(run).step(feedback=feedback)
    assert (run / "state.json").read_bytes() == before


def test_schedule_status_says_what_screening_and_the_band_did():
    """Status shows each strategy's figures as the strategy names them, without knowing any of them."""
    from gaincurate.cli.status import figures

    screened = {"screened": 16, "screen_rollouts": 64, "in_band": 9, "chosen_pass_rate": 0.5}
    assert figures(screened) == "screened 16, screen rollouts 64, in band 9, chosen pass rate 0.5"
    banded = {"posterior_mean": 0.4, "posterior_sd": 0.1, "band": [0.2, 0.8], "band_kept": 7, "in_band": 20}
    assert figures(banded) == "posterior mean 0.4, posterior sd 0.1, band [0.2, 0.8], band kept 7, in band 20"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--strategy", "uniform", "--band", "0.1,0.9"], 1, "--band filters by pass-rate estimates"),
        (["--strategy", "mopps", "--band", "x"], 2, "--band x is not valid: expected two pass rates LO,HI"),
        (["--strategy", "dots", "--screen-factor", "3"], 1, "--screen-factor is a screen option"),
    ],
)
def test_bad_screen_and_band_options_through_the_console_script(tmp_path, args, code, message):
    import subprocess
    import sys
    from pathlib import Path

    scores = write_scores(tmp_path / "scores", bundled_policy())
    script = Path(sys.executable).with_name("gaincurate")
    command = [
        str(script),
        "schedule",
        "init",
        "--strategy",
        "gain",
        "--scores",
        str(scores),
        "--run",
        str(tmp_path / "run"),
        *args,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    errors = [line for line in result.stderr.splitlines() if line.startswith("gaincurate: error:")]
    assert result.returncode == code and len(errors) == 1 and message in errors[0], result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "run").exists()
