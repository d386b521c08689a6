"""The mopps strategy: the discounted Beta update by hand, the Thompson draw against a Monte Carlo of its
formula, the memory in the state, and runs on disk that are byte-identical and resume after a kill."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from schedule_helpers import check_killed_step_resumes, drive_epochs, snapshot, without_timings

from gaincurate.errors import ConfigError, InputError
from gaincurate.schedule.config import ScheduleConfig
from gaincurate.schedule.core import Scheduler
from gaincurate.schedule.feedback import Feedback
from gaincurate.schedule.run import rundir
from gaincurate.schedule.run.status import run_status
from gaincurate.schedule.state import ScheduleState
from gaincurate.schedule.strategies.contract import PromptSet, RankingContext
from gaincurate.schedule.strategies.filters import chosen_through
from gaincurate.schedule.strategies.mopps import (
    DEFAULT_FORGET,
    MoppsStrategy,
    posterior_mean,
    posterior_sd,
    update_posterior,
)

CONFIG = ScheduleConfig(strategy="mopps", subset_size=8, seed=3, prior=(1.0, 2.0), forget=0.5)


def drawn(strategy, state, context, rng):
    """The positions a strategy draws, through no filter, as the scheduler takes them."""
    return chosen_through(strategy, (), state, context, rng)


def prompt_set(count: int) -> PromptSet:
    ids = np.arange(count, dtype=np.int64)
    return PromptSet(gc_ids=ids, scores=np.ones(count), ranking_scores=np.ones(count), question_tokens=ids + 5)


def test_update_matches_a_hand_computation_with_forgetting():
    # prior Beta(1, 2), forget 0.5, posterior Beta(4, 3), 3 rollouts of which 2 right:
    # a = 0.5 * 4 + 0.5 * 1 + 2 = 4.5 and b = 0.5 * 3 + 0.5 * 2 + 1 = 3.5.
    alpha, beta = update_posterior(np.array([4.0]), np.array([3.0]), [2.0], [3], prior=(1.0, 2.0), forget=0.5)
    assert (alpha[0], beta[0]) == (4.5, 3.5)
    # forget 1 is the plain conjugate update; forget 0 starts from the prior every time.
    for forget, expected in [(1.0, (6.0, 4.0)), (0.0, (3.0, 3.0))]:
        alpha, beta = update_posterior(np.array([4.0]), np.array([3.0]), [2.0], [3], prior=(1.0, 2.0), forget=forget)
        assert (alpha[0], beta[0]) == expected
    assert posterior_mean(np.array(4.5), np.array(3.5)) == pytest.approx(4.5 / 8)
    assert posterior_sd(np.array(4.5), np.array(3.5)) == pytest.approx(np.sqrt(4.5 * 3.5 / (64 * 9)))


def stored_posteriors(scheduler: Scheduler) -> dict[int, tuple[float, float]]:
    memory = scheduler.state.memory["posterior"]
    return dict(zip(memory["gc_ids"], zip(memory["alpha"], memory["beta"], strict=True), strict=True))


def test_the_scheduler_updates_the_measured_prompts_and_keeps_the_rest():
    # Every prompt is in every epoch (subset = N), so which prompts get rollouts is up to the test.
    scheduler = Scheduler(ScheduleConfig(**{**CONFIG.to_dict(), "subset_size": 20}), prompt_set(20))
    scheduler.step()
    # Prompt 3: rewards 1, 0.5, 0 (a partial reward counts as half a success); prompt 7: wrong twice.
    records = [{"gc_id": 3, "reward": r} for r in (1.0, 0.5, 0.0)] + [{"gc_id": 7, "correct": False}] * 2
    scheduler.step(feedback=records)
    assert stored_posteriors(scheduler) == {
        3: (0.5 * 1 + 0.5 * 1 + 1.5, 0.5 * 2 + 0.5 * 2 + 1.5),
        7: (0.5 * 1 + 0.5 * 1 + 0.0, 0.5 * 2 + 0.5 * 2 + 2.0),
    }
    # Next epoch only prompts 7 (right once) and 11 (right, wrong) have rollouts: prompt 3 keeps its posterior.
    records = [{"gc_id": 7, "correct": True}, {"gc_id": 11, "correct": True}, {"gc_id": 11, "correct": False}]
    scheduler.step(feedback=records)
    assert stored_posteriors(scheduler) == {
        3: (2.5, 3.5),
        7: (0.5 * 1.0 + 0.5 * 1 + 1.0, 0.5 * 4.0 + 0.5 * 2 + 0.0),
        11: (0.5 * 1 + 0.5 * 1 + 1.0, 0.5 * 2 + 0.5 * 2 + 1.0),
    }


def test_thompson_selection_frequencies_match_a_monte_carlo_of_the_formula():
    # Six prompts with fixed posteriors; each epoch keeps the 2 whose Beta draws lie nearest 0.4.
    alpha = np.array([1.0, 2.0, 5.0, 8.0, 1.5, 20.0])
    beta = np.array([1.0, 6.0, 5.0, 2.0, 3.0, 25.0])
    target, keep, draws = 0.4, 2, 3000
    strategy = MoppsStrategy(np.arange(6), target=target)
    memory = {"posterior": {"gc_ids": list(range(6)), "alpha": alpha.tolist(), "beta": beta.tolist()}}
    state = ScheduleState(ranking=np.arange(6), scores=np.ones(6), memory=memory)
    subset_size = ScheduleConfig(strategy="mopps", subset_size=keep).subset_count(6)
    context = RankingContext(gc_ids=np.arange(6), scores=np.ones(6), subset_size=subset_size)
    counts = np.zeros(6)
    for seed in range(draws):
        selection = drawn(strategy, state, context, np.random.default_rng([11, seed]))
        counts[selection.positions] += 1

    # The formula, simulated independently: theta ~ Beta(alpha, beta), keep the `keep` smallest |theta - target|.
    theta = np.random.default_rng(99).beta(alpha, beta, size=(400_000, 6))
    nearest = np.argsort(np.abs(theta - target), axis=1)[:, :keep]
    expected = np.bincount(nearest.ravel(), minlength=6) / len(theta)
    assert expected.min() < 0.15 and expected.max() > 0.5  # the posteriors matter: far from 2/6 each

    # Each prompt's count is Binomial(draws, expected): a two-sided z test at 4.5 sd, Bonferroni over the
    # six prompts (false alarm under 1e-4), on fixed seeds, so the test is deterministic.
    z = (counts - draws * expected) / np.sqrt(draws * expected * (1 - expected))
    assert np.abs(z).max() < 4.5, (counts / draws, expected)
    # And it is not a draw from the posterior mean: that picks prompts 2 and 4 nearly always.
    assert counts[[2, 4]].sum() < 0.8 * 2 * draws


def test_epoch_zero_is_a_uniform_draw_under_a_flat_prior():
    scheduler = Scheduler(ScheduleConfig(strategy="mopps", subset_size=5, seed=1), prompt_set(50))
    step = scheduler.step()
    assert len(step.plan.gc_ids) == 5 and len(set(step.plan.gc_ids.tolist())) == 5
    assert scheduler.state.selection.figures == {
        "posterior_mean": 0.5,
        "posterior_sd": pytest.approx(np.sqrt(1 / 12)),
    }


def test_a_bare_accuracy_is_refused_in_one_line():
    scheduler = Scheduler(CONFIG, prompt_set(20))
    scheduler.step()
    with pytest.raises(InputError, match="per-rollout feedback") as error:
        scheduler.step(feedback=Feedback.from_accuracy(0.5))
    assert "\n" not in str(error.value)


def test_config_checks_and_defaults():
    config = ScheduleConfig(strategy="mopps")
    options = config.options
    assert (options.target, options.prior, options.forget) == (0.5, (1.0, 1.0), DEFAULT_FORGET)
    assert ScheduleConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config  # the prior survives JSON
    for options, message in [
        ({"prior": (0.0, 1.0)}, "prior must"),
        ({"prior": (1.0,)}, "prior must"),
        ({"forget": 1.2}, "forget must"),
        ({"forget": float("nan")}, "forget must"),
    ]:
        with pytest.raises(ConfigError, match=message):
            ScheduleConfig(strategy="mopps", **options)


# -- on disk -------------------------------------------------------------------------------------------


def feedback_file(path: Path, gc_ids, epoch: int) -> Path:
    """Deterministic mixed rewards: rollout r of gc_id i in epoch t is right when (i + r + t) % 3 == 0."""
    lines = [json.dumps({"gc_id": int(i), "correct": (int(i) + r + epoch) % 3 == 0}) for i in gc_ids for r in range(4)]
    path.write_text("\n".join(lines) + "\n")
    return path


def run_epochs(run_dir: Path, scores_dir: Path, epochs: int, config: ScheduleConfig = CONFIG) -> None:
    drive_epochs(run_dir, scores_dir, epochs, config, feedback_file)


@pytest.mark.determinism
@pytest.mark.parametrize("options", [{}, {"skip_zero_variance": True}], ids=["mopps", "mopps-skip"])
def test_seeded_runs_are_byte_identical(tmp_path, scores_dir, options):
    config = ScheduleConfig(**{**CONFIG.to_dict(), **options})
    run_epochs(tmp_path / "a", scores_dir, 3, config)
    run_epochs(tmp_path / "b", scores_dir, 3, config)
    first, second = snapshot(tmp_path / "a"), snapshot(tmp_path / "b")
    assert {k: v for k, v in first.items() if k != "history.jsonl"} == {
        k: v for k, v in second.items() if k != "history.jsonl"
    }
    assert without_timings(rundir.read_history(tmp_path / "a")) == without_timings(rundir.read_history(tmp_path / "b"))
    run_epochs(tmp_path / "c", scores_dir, 3, ScheduleConfig(**{**config.to_dict(), "seed": 4}))
    assert snapshot(tmp_path / "c")["epoch-0002.parquet"] != first["epoch-0002.parquet"]


@pytest.mark.determinism
def test_killed_step_resumes_to_the_same_run(tmp_path, scores_dir, monkeypatch):
    history = check_killed_step_resumes(tmp_path, scores_dir, CONFIG, feedback_file, monkeypatch)
    assert all(set(line["selection"]) == {"posterior_mean", "posterior_sd"} for line in history)


def test_status_shows_the_posterior_of_the_selected_prompts(tmp_path, scores_dir):
    run_epochs(tmp_path / "run", scores_dir, 2)
    report = run_status(tmp_path / "run")
    state = rundir.load_run(tmp_path / "run").schedule
    strategy = MoppsStrategy(np.arange(40), prior=CONFIG.options.prior, forget=CONFIG.options.forget)
    alpha, beta = strategy.posterior(state)
    chosen = state.subset_ids
    assert report["selection"]["posterior_mean"] == pytest.approx(np.mean(posterior_mean(alpha, beta)[chosen]))
    assert report["selection"]["posterior_sd"] == pytest.approx(np.mean(posterior_sd(alpha, beta)[chosen]))
    assert [line["selection"]["posterior_mean"] for line in report["history"]] == [
        line["selection"]["posterior_mean"] for line in rundir.read_history(tmp_path / "run")
    ]


def test_status_command_prints_the_posterior_column(tmp_path, scores_dir, monkeypatch, capsys):
    import sys

    from gaincurate.cli import main

    run_epochs(tmp_path / "run", scores_dir, 1, ScheduleConfig(**{**CONFIG.to_dict(), "skip_zero_variance": True}))
    monkeypatch.setattr(sys, "argv", ["gaincurate", "schedule", "status", "--run", str(tmp_path / "run")])
    monkeypatch.setenv("COLUMNS", "400")  # one line per row
    main()
    printed = capsys.readouterr().out
    info = rundir.load_run(tmp_path / "run").schedule.selection.figures
    assert "selected" in printed
    # The figures as mopps and the zero-variance filter name them: status names no strategy's keys.
    assert f"posterior mean {info['posterior_mean']:.3g}, posterior sd {info['posterior_sd']:.3g}, skipped 0" in printed
