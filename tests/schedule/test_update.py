"""The mu update equals hand-computed values, with both clamps and with shares of N; the angle term is model signal."""

from __future__ import annotations

import numpy as np
import pytest

from gaincurate.errors import ConfigError
from gaincurate.schedule.config import ScheduleConfig
from gaincurate.schedule.core import Rescored, Scheduler
from gaincurate.schedule.feedback import Feedback
from gaincurate.schedule.strategies.contract import PromptSet
from gaincurate.schedule.strategies.gain import GainStrategy, resolve_sizes
from gaincurate.schedule.strategies.gain.update import angle_signal, next_mu

# tanh values used below: tanh(0.5) = 0.46211715726, tanh(0.2) = 0.19737532022,
# tanh(1) = 0.76159415596, tanh(2.8) = 0.99263152020.
ABSOLUTE = ScheduleConfig(strategy="gain", step_size=50, sigma=100, alpha=2, beta=0.5, adj_min=0, adj_max=80)
# The same numbers as shares of N = 1000.
FRACTIONS = ScheduleConfig(strategy="gain", step_size="5%", sigma="10%", alpha=2, beta=0.5, adj_min=0, adj_max="8%")


@pytest.mark.parametrize("config", [ABSOLUTE, FRACTIONS], ids=["absolute", "fractions"])
@pytest.mark.parametrize(
    ("accuracy", "signal", "expected"),
    [
        (0.75, 0.1, 50 * 0.46211715726 + 50 * 0.19737532022),  # 32.9746 inside both clamps
        (1.0, 1.4, 80.0),  # 50 * 0.76159 + 50 * 0.99263 = 87.71, clamped to adj_max
        (0.0, 0.0, 0.0),  # 50 * tanh(-1) = -38.08, clamped to adj_min
        (0.5, 0.5, 50 * 0.76159415596),  # acc at beta: only the angle term moves mu
    ],
)
def test_delta_hand_computed(config, accuracy, signal, expected):
    assert delta(config, 1000, accuracy, signal) == pytest.approx(expected, abs=1e-8)


def delta(config: ScheduleConfig, n_prompts: int, accuracy: float, signal: float) -> float:
    """gain's clamped step of mu for one epoch, its sizes resolved for `n_prompts`."""
    return GainStrategy(config.options, n_prompts)._delta(accuracy, signal)


def resolved(config: ScheduleConfig, n_prompts: int):
    """The config's numbers for N prompts: gain's sizes in ranks, and the subset size."""
    sizes = resolve_sizes(config.options, n_prompts)
    return type("Resolved", (), {**vars(sizes), "subset_size": config.subset_count(n_prompts)})


def test_fraction_arguments_resolve_to_rank_units():
    params = resolved(FRACTIONS, 1000)
    assert (params.step_size, params.sigma, params.adj_min, params.adj_max) == pytest.approx((50, 100, 0, 80))


def test_a_bare_number_below_one_is_ranks():
    # Before, any size below 1 was read as a share of N: --sigma 0.5 meant 500 ranks of 1000, not half a rank.
    params = resolved(
        ScheduleConfig(strategy="gain", sigma=0.5, step_size=0.25, adj_min=-0.5, adj_max=0.75, subset_size="1%"), 1000
    )
    assert (params.sigma, params.step_size, params.adj_min, params.adj_max) == (0.5, 0.25, -0.5, 0.75)
    assert params.subset_size == 10
    # A share stays spelled as given in the stored config; a plain number in a string is ranks.
    assert ScheduleConfig(strategy="gain", sigma=" 2.5% ").options.sigma == "2.5%"
    assert ScheduleConfig(strategy="gain", sigma="40").options.sigma == 40.0


def test_the_default_subset_rounds_to_the_trainer_batch():
    # MATH train: 256/7500 of 7,474 prompts is 255.1; a TRL trainer taking 8 prompts per batch needs 256.
    assert resolved(ScheduleConfig(strategy="gain"), 7474).subset_size == 255
    assert resolved(ScheduleConfig(strategy="gain", subset_multiple=8), 7474).subset_size == 256
    assert resolved(ScheduleConfig(strategy="gain", subset_size="5%", subset_multiple=16), 1000).subset_size == 48
    assert resolved(ScheduleConfig(strategy="gain", subset_size="99%", subset_multiple=16), 100).subset_size == 96
    with pytest.raises(ConfigError, match="subset_size=255 is not a multiple of subset_multiple=8.*248 or 256"):
        resolved(ScheduleConfig(strategy="gain", subset_size=255, subset_multiple=8), 7474)
    with pytest.raises(ConfigError, match="fewer than one batch"):
        resolved(ScheduleConfig(strategy="gain", subset_multiple=16), 10)


def test_negative_adj_min_lets_mu_move_back():
    config = ScheduleConfig(strategy="gain", step_size=50, adj_min=-100, adj_max=80)
    assert GainStrategy(config.options, 1000)._delta(0.0, 0.0) == pytest.approx(-38.079707797788245)
    assert next_mu(500.0, -38.079707797788245, 1000) == pytest.approx(461.920292202)


def test_mu_is_clamped_to_the_ranking():
    assert next_mu(990.0, 80.0, 1000) == 999.0
    assert next_mu(10.0, -38.0, 1000) == 0.0
    assert next_mu(10.0, 5.5, 1000) == 15.5


def test_angle_signal_raw_and_centered():
    assert angle_signal(1.45, mode="raw", score_mean=1.4, score_std=0.1) == 1.45
    assert angle_signal(1.45, mode="centered", score_mean=1.4, score_std=0.1) == pytest.approx(0.5)
    assert angle_signal(None, mode="raw", score_mean=1.4, score_std=0.1) == 0.0
    assert angle_signal(1.45, mode="centered", score_mean=1.4, score_std=0.0) == 0.0


def test_released_defaults_at_reference_size():
    params = resolved(ScheduleConfig(strategy="gain"), 7500)
    assert (params.step_size, params.sigma, params.adj_min, params.adj_max) == pytest.approx((500, 1000, 0, 1000))
    assert params.subset_size == 256
    assert (ScheduleConfig(strategy="gain").options.alpha, ScheduleConfig(strategy="gain").options.beta) == (2.0, 0.5)


def test_the_default_angle_comes_from_re_scoring_the_subset():
    assert ScheduleConfig(strategy="gain").options.rescore == ScheduleConfig(strategy="length").options.rescore
    assert ScheduleConfig(strategy="gain").options.rescore == "subset"
    # The other strategies never draw by mu: they have no re-scoring to ask for.
    with pytest.raises(ConfigError, match="rescore is a gain or length option; pass strategy='gain'"):
        ScheduleConfig(strategy="dots", rescore="subset")


def test_defaults_scale_with_n():
    params = resolved(ScheduleConfig(strategy="gain"), 750)
    assert (params.step_size, params.sigma, params.adj_max, params.subset_size) == pytest.approx((50, 100, 100, 26))


def prompt_set(n_prompts: int, scores: np.ndarray) -> PromptSet:
    return PromptSet(
        gc_ids=np.arange(n_prompts),
        scores=scores,
        ranking_scores=scores,
        question_tokens=np.full(n_prompts, 10),
    )


def test_scheduler_step_uses_the_formula_and_the_epoch_mean_fresh_score():
    """One step through the Scheduler: ang is the mean fresh score of the epoch's prompts."""
    n_prompts = 1000
    scores = np.linspace(2.0, 0.0, n_prompts)  # already in rank order: position i has score 2 - 2i/999
    config = ScheduleConfig(strategy="gain", step_size=50, sigma=100, adj_min=0, adj_max=80, subset_size=10)
    scheduler = Scheduler(config, prompt_set(n_prompts, scores))
    first = scheduler.step().plan
    assert first.epoch == 0 and first.draw["mu"] == 0.0
    fresh = np.linspace(0.1, 0.3, len(first.gc_ids))
    step = scheduler.step(feedback=Feedback.from_accuracy(0.6), rescored=Rescored(first.gc_ids, fresh))
    ang = float(fresh.mean())
    expected = min(max(50 * np.tanh(2 * 0.1) + 50 * np.tanh(2 * ang), 0), 80)
    assert step.record.update["ang"] == pytest.approx(ang)
    assert step.record.update["ang_source"] == "rescored"
    assert step.record.update["delta"] == pytest.approx(expected)
    assert step.plan.draw["mu"] == pytest.approx(expected) and step.plan.epoch == 1


@pytest.mark.parametrize("rescore", ["none", "subset"])
def test_without_fresh_scores_accuracy_at_beta_leaves_mu_where_it_is(rescore):
    # Stored scores are one fixed number per subset, not model signal. Before, raw stored scores of about 1.4 put
    # tanh near 1, and mu moved by about n every epoch at any accuracy.
    n_prompts = 1000
    scores = np.full(n_prompts, 1.4)
    config = ScheduleConfig(
        strategy="gain", step_size=50, sigma=100, adj_min=-80, adj_max=80, subset_size=10, rescore=rescore
    )
    scheduler = Scheduler(config, prompt_set(n_prompts, scores))
    scheduler.step()
    for _ in range(5):
        step = scheduler.step(feedback=Feedback.from_accuracy(0.5))
        assert (step.record.update["signal"], step.record.update["delta"], step.plan.draw["mu"]) == (0.0, 0.0, 0.0)
        assert step.record.update["ang"] == pytest.approx(1.4) and step.record.update["ang_source"] == "stored"


def test_centered_signal_uses_the_statistics_of_the_same_fresh_scores():
    # The stored scores sit near 1.4; the newest model scores its window about 0.6 higher. Before, the statistics
    # were those of the stored scores with the fresh ones written over the window, two models' scales mixed
    # (signal 1.72 here, against 1.15 from the fresh scores alone).
    n_prompts = 200
    scores = np.linspace(1.5, 1.3, n_prompts)
    config = ScheduleConfig(
        strategy="gain",
        step_size=10,
        sigma=20,
        adj_min=-50,
        adj_max=50,
        subset_size=5,
        angle_signal="centered",
        rescore="window",
    )
    scheduler = Scheduler(config, prompt_set(n_prompts, scores))
    first = scheduler.step().plan
    window = scheduler.rescore_ids()
    fresh = np.linspace(2.1, 1.9, len(window))
    step = scheduler.step(feedback=Feedback.from_accuracy(0.5), rescored=Rescored(window, fresh))
    own = fresh[np.searchsorted(window, first.gc_ids)]
    signal = (own.mean() - fresh.mean()) / fresh.std()
    assert step.record.update["ang"] == pytest.approx(own.mean()) and step.record.update["ang_source"] == "rescored"
    assert step.record.update["signal"] == pytest.approx(signal) and abs(signal) < 2
    assert step.record.update["delta"] == pytest.approx(10 * np.tanh(2 * signal))


def test_a_given_ang_is_centred_on_the_fresh_scores_passed_with_it():
    n_prompts = 200
    scores = np.linspace(1.5, 1.3, n_prompts)
    config = ScheduleConfig(
        strategy="gain",
        step_size=10,
        sigma=20,
        adj_min=-50,
        adj_max=50,
        subset_size=5,
        angle_signal="centered",
        rescore="full",
    )
    scheduler = Scheduler(config, prompt_set(n_prompts, scores))
    scheduler.step()
    with pytest.raises(ValueError, match="centered needs the fresh scores"):
        scheduler.step(feedback=Feedback.from_accuracy(0.5), ang=1.45)
    fresh = np.linspace(1.6, 1.2, n_prompts)
    step = scheduler.step(
        feedback=Feedback.from_accuracy(0.5), ang=1.45, rescored=Rescored(np.arange(n_prompts), fresh)
    )
    assert step.record.update["signal"] == pytest.approx((1.45 - fresh.mean()) / fresh.std())
    assert step.record.update["ang_source"] == "given"


@pytest.mark.parametrize("rescore", ["none", "subset"])
def test_centered_without_fresh_scores_around_the_subset_is_refused(rescore):
    with pytest.raises(ConfigError, match="angle_signal='centered'.*rescore='window' or rescore='full'"):
        ScheduleConfig(strategy="gain", angle_signal="centered", rescore=rescore)


@pytest.mark.parametrize(
    ("options", "flag"),
    [
        ({"subset_size": 0}, "subset_size"),
        ({"subset_size": 2.5}, "subset_size"),
        ({"subset_size": "0%"}, "subset_size"),
        ({"sigma": "wide"}, "sigma"),
        ({"subset_multiple": 0}, "subset_multiple"),
        ({"sigma": 0}, "sigma"),
        ({"step_size": -1}, "step_size"),
        ({"beta": 1.5}, "beta"),
        ({"reward_max": 0}, "reward_max"),
        ({"adj_min": 10, "adj_max": 5}, "adj_min"),
        ({"strategy": "zigzag"}, "strategy"),
        ({"rescore": "sometimes"}, "rescore"),
        ({"rescore_every": 0}, "rescore_every"),
        ({"seed": -1}, "seed"),
        ({"alpha": float("nan")}, "alpha"),
    ],
)
def test_bad_values_name_the_flag(options, flag):
    with pytest.raises(ConfigError, match=rf"^{flag}\b"):
        ScheduleConfig(**{"strategy": "gain", **options})


def test_resolve_errors_name_the_value():
    with pytest.raises(ConfigError, match="subset_size=300 is more than the 200 prompts"):
        resolved(ScheduleConfig(strategy="gain", subset_size=300), 200)
    with pytest.raises(ConfigError, match="subset_size 150% is more than the whole pool; give at most 100%"):
        ScheduleConfig(strategy="gain", subset_size="150%")
    with pytest.raises(ConfigError, match="adj_min resolves to 100"):
        resolved(ScheduleConfig(strategy="gain", adj_min="50%", adj_max=50), 200)


def test_stored_config_rejects_unknown_keys():
    with pytest.raises(ConfigError, match="sigmaa is not a schedule setting of any strategy"):
        ScheduleConfig.from_dict({"strategy": "gain", "sigma": 3, "sigmaa": 4})
    assert ScheduleConfig.from_dict(ABSOLUTE.to_dict()) == ABSOLUTE


@pytest.mark.parametrize(
    ("options", "angle"),
    [
        ([], "ang: the epoch's prompts re-scored with the newest checkpoint each epoch (--rescore subset)"),
        (["--rescore", "none"], "--rescore none: the angle term is off, and mu moves by accuracy alone"),
    ],
)
def test_init_says_what_subset_it_chose_and_where_ang_comes_from(
    scores_dir, tmp_path, monkeypatch, capsys, options, angle
):
    import sys

    from gaincurate.cli import main

    run = tmp_path / "run"
    args = [
        "gaincurate",
        "schedule",
        "init",
        "--strategy",
        "gain",
        "--scores",
        str(scores_dir),
        "--run",
        str(run),
        "--subset-size",
        "30%",
    ]
    monkeypatch.setattr(sys, "argv", [*args, "--subset-multiple", "5", *options])
    main()
    out = " ".join(capsys.readouterr().out.split())
    assert "subset size 10 prompts per epoch: 30% of N = 12.0 of 40, rounded to a multiple of 5" in out
    assert angle in out
