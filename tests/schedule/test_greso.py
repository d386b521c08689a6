"""GRESO's zero-variance skipping: the skip rule, streaks and exploration rates by hand, the filter over
other strategies, the history's skip counts, byte-identical runs and resume after a kill, and the CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from schedule_helpers import check_killed_step_resumes, drive_epochs, snapshot, without_timings

from gaincurate.errors import ConfigError, InputError
from gaincurate.schedule.config import ScheduleConfig
from gaincurate.schedule.core import Scheduler
from gaincurate.schedule.feedback import Feedback
from gaincurate.schedule.run import rundir
from gaincurate.schedule.state import ScheduleState
from gaincurate.schedule.strategies.contract import PromptSet, RankingContext, Strategy
from gaincurate.schedule.strategies.filters import chosen_through
from gaincurate.schedule.strategies.greso import (
    EXPLORE_STEP,
    KEEP_FLOOR,
    ZeroVarianceFilter,
    next_rate,
    next_streaks,
    skip_probabilities,
)

CONFIG = ScheduleConfig(strategy="greso", subset_size=8, seed=5)


def prompt_set(count: int) -> PromptSet:
    ids = np.arange(count, dtype=np.int64)
    return PromptSet(gc_ids=ids, scores=-ids.astype(float), ranking_scores=-ids.astype(float), question_tokens=ids)


def zero_variance_state(streaks: list[int], *, easy: float = 0.5, hard: float = 0.5) -> ScheduleState:
    count = len(streaks)
    nonzero = [i for i, streak in enumerate(streaks) if streak]
    memory = {
        "zero_variance": {
            "gc_ids": nonzero,
            "streaks": [streaks[i] for i in nonzero],
            "explore_easy": easy,
            "explore_hard": hard,
        }
    }
    return ScheduleState(ranking=np.arange(count), scores=np.zeros(count), memory=memory)


def context_for(count: int, subset: int) -> RankingContext:
    subset_size = ScheduleConfig(strategy="gain", subset_size=subset).subset_count(count)
    return RankingContext(gc_ids=np.arange(count), scores=np.zeros(count), subset_size=subset_size)


def test_skip_probabilities_follow_the_rule():
    streaks = np.array([0, 1, 3, -1, -2, 4, -9])
    got = skip_probabilities(streaks, explore_easy=0.5, explore_hard=0.2)
    # 1 - max(p ** |streak|, 0.01): easy streaks use p = 0.5, hard ones p = 0.2; no streak, no skip.
    expected = [0.0, 0.5, 1 - 0.125, 0.8, 1 - 0.04, 1 - 0.0625, 1 - KEEP_FLOOR]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-15)


def test_the_filter_skips_each_prompt_as_often_as_its_rule_says():
    streaks = [0, 1, 2, -1, -3, 1, 0, -2]
    state = zero_variance_state(streaks, easy=0.6, hard=0.3)
    strategy = ZeroVarianceFilter("gain", np.arange(8))
    context = context_for(8, 2)
    draws = 4000
    counts = np.zeros(8)
    for seed in range(draws):
        skipped, _ = strategy.skips(state, context, np.random.default_rng([21, seed]))
        counts += skipped
    expected = skip_probabilities(np.array(streaks), explore_easy=0.6, explore_hard=0.3)
    spread = np.sqrt(draws * expected * (1 - expected))
    assert np.all(counts[expected == 0] == 0)
    # Binomial z test per prompt at 4.5 sd (Bonferroni over 6 prompts: false alarm under 1e-4), fixed seeds.
    assert np.abs((counts - draws * expected)[expected > 0] / spread[expected > 0]).max() < 4.5


def test_streaks_count_agreeing_epochs_and_reset_on_a_mixed_one():
    streaks = np.array([0, 2, -1, 3, -2, 0])
    sums = np.array([4.0, 4.0, 4.0, 0.0, 0.0, 2.0])
    counts = np.array([4, 4, 4, 4, 4, 4])
    # all right: +1 (or a fresh +1 after a hard streak); all wrong: -1 likewise; mixed: 0.
    np.testing.assert_array_equal(next_streaks(streaks, sums, counts), [1, 3, 1, -1, -3, 0])
    # Correctness is reward / reward_max, so 3 rollouts of reward 0.1 / 0.1 are all right up to rounding.
    assert next_streaks(np.array([0]), np.array([0.1 / 0.1 * 3 - 1e-15]), np.array([3]))[0] == 1


def test_exploration_rates_step_toward_the_target():
    assert next_rate(0.5, 0.3, 0.25, low=0.05, high=0.95) == pytest.approx(0.5 - EXPLORE_STEP)
    assert next_rate(0.5, 0.1, 0.25, low=0.05, high=0.95) == pytest.approx(0.5 + EXPLORE_STEP)
    assert next_rate(0.06, 0.9, 0.25, low=0.05, high=0.95) == 0.05
    assert next_rate(0.94, 0.0, 0.25, low=0.05, high=0.95) == 0.95


def test_the_scheduler_moves_streaks_and_rates_from_the_epochs_rollouts():
    config = ScheduleConfig(**{**CONFIG.to_dict(), "subset_size": 10, "target_zero_variance": 0.3})
    scheduler = Scheduler(config, prompt_set(10))
    scheduler.step()
    # 1 and 2 all right, 3 all wrong, 4 mixed; the other six have no rollout.
    records = [{"gc_id": i, "correct": True} for i in (1, 2) for _ in range(3)]
    records += [{"gc_id": 3, "reward": 0.0}] * 3 + [{"gc_id": 4, "correct": c} for c in (True, False)]
    step = scheduler.step(feedback=records)
    memory = scheduler.state.memory["zero_variance"]
    assert (memory["gc_ids"], memory["streaks"]) == ([1, 2, 3], [1, 1, -1])
    # Of the 4 prompts with rollouts, 2/4 were all right (target 0.3 / 3) and 1/4 all wrong (target 0.2):
    # both at or above target, so both rates drop by a step from 0.5.
    assert (memory["explore_easy"], memory["explore_hard"]) == (0.5 - EXPLORE_STEP, 0.5 - EXPLORE_STEP)
    assert step.record.selection["skipped"] == 0  # epoch 0 had nothing to skip
    # Next epoch: 3 turns mixed, 1 right again, 2 has no rollout and keeps its streak.
    records = [{"gc_id": 1, "correct": True}] + [{"gc_id": 3, "correct": c} for c in (True, False)]
    scheduler.step(feedback=records)
    memory = scheduler.state.memory["zero_variance"]
    assert (memory["gc_ids"], memory["streaks"]) == ([1, 2], [2, 1])


def test_without_streaks_the_filter_draws_what_its_base_draws():
    prompts = prompt_set(40)
    plain = Scheduler(ScheduleConfig(strategy="gain", subset_size=8, seed=2, sigma=10), prompts)
    filtered = Scheduler(
        ScheduleConfig(strategy="gain", subset_size=8, seed=2, sigma=10, skip_zero_variance=True), prompts
    )
    np.testing.assert_array_equal(plain.step().plan.gc_ids, filtered.step().plan.gc_ids)


class FixedOrder(Strategy):
    """A base strategy whose priority is fixed: 9, 8, ..., 0."""

    name = "fixed"

    def start(self, prompts):
        return np.arange(len(prompts)), None

    def choose(self, state, context, rng):
        return np.arange(context.n_prompts)[::-1].copy()


def test_the_epoch_keeps_its_size_with_the_bases_next_choices():
    # Prompts 9 and 7 have long streaks (skipped unless a 1% keep comes up); the base wants 9, 8, 7, ...
    state = zero_variance_state([0, 0, 0, 0, 0, 0, 0, -40, 0, 40], easy=0.05, hard=0.05)
    steps = (ZeroVarianceFilter("fixed", np.arange(10)),)
    selection = chosen_through(FixedOrder(), steps, state, context_for(10, 3), np.random.default_rng(0))
    assert selection.positions.tolist() == [5, 6, 8]
    assert selection.info == {
        "skipped": 2,
        "skipped_easy": 1,
        "skipped_hard": 1,
        "explore_easy": 0.05,
        "explore_hard": 0.05,
    }
    # Nearly everything skipped: the skipped prompts the base wants most fill the epoch after all.
    state = zero_variance_state([40] * 8 + [0, 0], easy=0.05, hard=0.05)
    selection = chosen_through(FixedOrder(), steps, state, context_for(10, 4), np.random.default_rng(0))
    assert selection.positions.tolist() == [6, 7, 8, 9] and selection.info["skipped"] == 6


def test_a_bare_accuracy_is_refused_in_one_line():
    scheduler = Scheduler(CONFIG, prompt_set(20))
    scheduler.step()
    with pytest.raises(InputError, match="per-rollout feedback") as error:
        scheduler.step(feedback=Feedback.from_accuracy(0.5))
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("options", "flag"),
    [
        ({"explore_min": -0.1}, "explore_min"),
        ({"explore_max": 1.5}, "explore_max"),
        ({"explore_min": 0.6, "explore_max": 0.4}, "explore_min=0.6 is above explore_max=0.4"),
        ({"target_zero_variance": 2.0}, "target_zero_variance"),
        ({"skip_zero_variance": True}, "drop skip_zero_variance"),
        ({"strategy": "gain", "skip_zero_variance": "yes"}, "skip_zero_variance is a switch"),
    ],
    ids=["min", "max", "swapped", "target", "greso-and-skip", "not-a-switch"],
)
def test_bad_greso_values_name_the_flag(options, flag):
    with pytest.raises(ConfigError, match=flag):
        ScheduleConfig(**{"strategy": "gain", **{"strategy": "greso", **options}})


# -- on disk -------------------------------------------------------------------------------------------


def feedback_file(path: Path, gc_ids, epoch: int) -> Path:
    """Prompts below 15 are always right, 15-29 always wrong, the rest mixed: streaks grow."""
    lines = [
        json.dumps({"gc_id": int(i), "correct": bool(i < 15 or (i >= 30 and (i + r + epoch) % 2))})
        for i in gc_ids
        for r in range(4)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def run_epochs(run_dir: Path, scores_dir: Path, epochs: int, config: ScheduleConfig = CONFIG) -> None:
    drive_epochs(run_dir, scores_dir, epochs, config, feedback_file)


@pytest.mark.determinism
@pytest.mark.parametrize(
    "config",
    [CONFIG, ScheduleConfig(strategy="uniform", subset_size=8, seed=5, skip_zero_variance=True)],
    ids=["greso", "uniform-skip"],
)
def test_seeded_runs_are_byte_identical_and_log_their_skips(tmp_path, scores_dir, config):
    run_epochs(tmp_path / "a", scores_dir, 4, config)
    run_epochs(tmp_path / "b", scores_dir, 4, config)
    first, second = snapshot(tmp_path / "a"), snapshot(tmp_path / "b")
    assert {k: v for k, v in first.items() if k != "history.jsonl"} == {
        k: v for k, v in second.items() if k != "history.jsonl"
    }
    history = without_timings(rundir.read_history(tmp_path / "a"))
    assert history == without_timings(rundir.read_history(tmp_path / "b"))
    skipped = [line["selection"]["skipped"] for line in history]
    assert skipped[0] == 0 and sum(skipped) > 0  # nothing to skip before any rollout; later, streaks skip
    for line in history:
        selection = line["selection"]
        assert selection["skipped"] == selection["skipped_easy"] + selection["skipped_hard"]
        assert len(line["subset_ids"]) == 8  # skipping never shrinks the epoch


@pytest.mark.determinism
def test_killed_step_resumes_to_the_same_run(tmp_path, scores_dir, monkeypatch):
    check_killed_step_resumes(tmp_path, scores_dir, CONFIG, feedback_file, monkeypatch)


def test_schedule_cli_takes_the_reward_history_options(scores_dir, tmp_path, monkeypatch, capsys):
    from gaincurate.cli import main

    def init(run: Path, *options: str) -> ScheduleConfig:
        command = [
            "gaincurate",
            "schedule",
            "init",
            "--strategy",
            "gain",
            "--scores",
            str(scores_dir),
            "--run",
            str(run),
            *options,
        ]
        monkeypatch.setattr(sys, "argv", command)
        main()
        return rundir.load_run(run).config

    config = init(tmp_path / "mopps", "--strategy", "mopps", "--prior", "2,3", "--forget", "0.6", "--target", "0.4")
    options = config.options
    assert (config.strategy, options.prior, options.forget, options.target) == ("mopps", (2.0, 3.0), 0.6, 0.4)
    config = init(
        tmp_path / "greso", "--strategy", "greso", "--explore-min", "0.1", "--explore-max", "0.8",
        "--target-zero-variance", "0.2",
    )  # fmt: skip
    options = config.options
    assert (options.explore_min, options.explore_max, options.target_zero_variance) == (0.1, 0.8, 0.2)
    assert init(tmp_path / "skip", "--strategy", "length", "--skip-zero-variance").skip_zero_variance
    monkeypatch.setattr(sys, "argv", ["gaincurate", "schedule", "init", "--scores", str(scores_dir), "--run",
                                      str(tmp_path / "bad"), "--strategy", "mopps", "--prior", "1;1"])  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code != 0 and "--prior" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
