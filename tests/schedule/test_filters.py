"""Filters register like strategies: one `FILTERS` line each, from which the config, state.json, the CLI and
`schedule status` follow; a `Filter` is a step over its base's draw, not a strategy, and answers for none of its
hooks."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from types import FunctionType

import numpy as np
import pytest

from gaincurate.errors import ConfigError
from gaincurate.schedule.config import ScheduleConfig
from gaincurate.schedule.core import Scheduler
from gaincurate.schedule.options import flag
from gaincurate.schedule.strategies.contract import PromptSet, RankingContext, Strategy, draw_words
from gaincurate.schedule.strategies.filters import Filter, chosen_through
from gaincurate.schedule.strategies.registry import FILTERS, STRATEGIES, check_filters, how_it_draws
from gaincurate.schedule.strategies.uniform import UniformStrategy

# A filter's own steps (`Filter`), some of them named as a strategy's hooks are, with steps' signatures.
STEPS = {"reorder", "walk", "describe", "aim", "initial_memory", "observe"}
HOOKS = [name for name, value in vars(Strategy).items() if isinstance(value, FunctionType | classmethod | property)]


class Bare(Filter):
    """A filter that changes nothing."""

    setting = "bare"


def test_a_filter_is_no_strategy_and_answers_for_none_of_its_hooks():
    assert {"build", "start", "choose", "observe", "wants", "report"} <= set(HOOKS)
    bare = Bare()
    assert not isinstance(bare, Strategy) and not hasattr(bare, "base")
    assert [hook for hook in HOOKS if hasattr(bare, hook) and hook not in STEPS] == []
    for name in ("name", "about"):
        assert not hasattr(bare, name), name


@pytest.mark.parametrize("seed", range(3))
def test_a_filter_that_changes_nothing_leaves_the_base_s_draw_and_memory_as_they_are(seed):
    prompts = PromptSet(np.arange(30), np.zeros(30), np.zeros(30), np.full(30, 10))
    plain = Scheduler(ScheduleConfig(strategy="mopps", subset_size=6, seed=seed), prompts)
    bare = Scheduler(ScheduleConfig(strategy="mopps", subset_size=6, seed=seed), prompts, strategy=plain.strategy,
                     filters=(Bare(),))  # fmt: skip
    assert bare.state.memory == plain.state.memory
    context = RankingContext(plain.state.ranking, plain.state.scores, plain.subset_size)
    alone = chosen_through(plain.strategy, (), plain.state, context, np.random.default_rng(seed))
    through = chosen_through(plain.strategy, (Bare(),), plain.state, context, np.random.default_rng(seed))
    assert through.positions.tolist() == alone.positions.tolist() and through.info == alone.info


def test_the_zero_variance_filter_keeps_its_memory_beside_the_base_s_and_greso_is_a_strategy_of_its_own():
    from gaincurate.schedule.strategies.greso import GresoStrategy, ZeroVarianceFilter

    skipping = ZeroVarianceFilter("gain", np.arange(4))
    memory = skipping.initial_memory({"mu": 0.0})
    assert list(memory) == ["mu", "zero_variance"] and memory["zero_variance"]["explore_easy"] == 0.5
    greso = GresoStrategy(np.arange(4))
    assert isinstance(greso, Strategy) and (greso.name, greso.about.needs) == ("greso", {"rollouts"})
    prompts = PromptSet(np.arange(4), np.zeros(4), np.zeros(4), np.full(4, 10))
    assert list(greso.start(prompts)[1]) == ["zero_variance"]
    assert draw_words(GresoStrategy, {}) == "by greso"


def test_every_filter_is_a_config_field_a_flag_and_a_stored_setting():
    fields = {field.name for field in dataclasses.fields(ScheduleConfig)}
    assert set(FILTERS) <= fields
    config = ScheduleConfig(strategy="mopps", band=[0.2, 0.8], skip_zero_variance=True, explore_min=0.1)
    stored = config.to_dict()
    assert stored["band"] == [0.2, 0.8] and stored["skip_zero_variance"]["explore_min"] == 0.1
    assert json.loads(json.dumps(stored)) == stored and ScheduleConfig.from_dict(stored) == config
    assert ScheduleConfig(strategy="mopps", skip_zero_variance=False).skip_zero_variance is None
    script = Path(sys.executable).with_name("gaincurate")
    shown = subprocess.run(
        [str(script), "schedule", "init", "--help"],
        capture_output=True, text=True, check=True, env={**os.environ, "COLUMNS": "300"}, timeout=300,
    ).stdout  # fmt: skip
    for setting, filter_class in FILTERS.items():
        assert flag(setting) in shown and filter_class.summary[:40] in shown
    assert "--no-skip-zero-variance" in shown


@pytest.mark.parametrize("setting", list(FILTERS))
def test_a_filter_goes_over_exactly_the_strategies_it_applies_to(setting):
    value = {"band": (0.2, 0.8), "skip_zero_variance": True}[setting]
    for name, cls in STRATEGIES.items():
        if FILTERS[setting].applies_to(cls):
            config = ScheduleConfig(strategy=name, **{setting: value})
            assert FILTERS[setting].note(getattr(config, setting)) in how_it_draws(config) or (
                FILTERS[setting].applied_by(cls)
            )
        else:
            with pytest.raises(ConfigError):
                ScheduleConfig(strategy=name, **{setting: value})


def test_a_refused_filter_says_which_strategies_take_it():
    with pytest.raises(ConfigError, match="use it with dots, mopps, probe, pilot, screen"):
        ScheduleConfig(strategy="uniform", band=(0.1, 0.9))
    config = ScheduleConfig(strategy="dots", band=(0.1, 0.9))
    check_filters(config)  # no error for a strategy it applies to


def test_a_filter_that_says_nothing_of_its_refusal_still_refuses_in_one_line():
    class Picky(Filter):
        setting = "band"  # any config field; only the words are under test

        @classmethod
        def applies_to(cls, strategy):
            return strategy is not UniformStrategy

    assert Picky.refusal(UniformStrategy, ["dots", "mopps"]) == "band cannot go over uniform; use it with dots, mopps"


@pytest.mark.parametrize("setting", [{"skip_zero_variance": True}, {"band": (0.2, 0.8)}], ids=["skip", "band"])
@pytest.mark.parametrize("whole_pool", [False, True], ids=["subset", "whole-pool"])
def test_a_control_that_fills_the_epoch_leaves_the_filters_nothing_to_walk(tmp_path, setting, whole_pool):
    """probe's uniform share of 1 draws the whole epoch as its control, which the filters step over: each epoch then
    holds exactly the subset, down to a subset that is the whole pool (an empty order for the filters)."""
    from test_recorded_runs import write_recorded_scores

    from gaincurate.schedule.run.inputs import load_scores

    scores = load_scores(write_recorded_scores(tmp_path / "scores"))
    size = len(scores.prompts.gc_ids) if whole_pool else 5
    config = ScheduleConfig(strategy="probe", subset_size=size, uniform_share=1.0, likelihood=False, **setting)
    scheduler = Scheduler(config, scores.prompts, scores=scores)
    plan = scheduler.step().plan
    for _ in range(4):
        assert len(plan.gc_ids) == size == len(set(plan.gc_ids.tolist()))
        feedback = [{"gc_id": int(g), "reward": float(k == 0 and g % 2 == 0)} for g in plan.gc_ids for k in range(4)]
        plan = scheduler.step(feedback=feedback).plan


def test_a_paused_epoch_s_figures_describe_the_uniform_draw_it_trains_on(tmp_path):
    """Where only the control's groups vary, the gate pauses the aim: that epoch is drawn uniformly, and its history
    says nothing of the aimed draw set aside (here, the prompts the zero-variance filter skipped in it)."""
    import pyarrow as pa
    from fake_scores import score_columns, write_scores_dir

    from gaincurate.schedule.gate import PAUSED
    from gaincurate.schedule.run.inputs import load_scores

    ids, rng = np.arange(400), np.random.default_rng(5)
    columns = score_columns(rng.uniform(0.5, 2.0, 400), 5 + ids % 40)
    columns["gc_embedding"] = pa.array(list(rng.normal(size=(400, 8)).astype(np.float16)), pa.list_(pa.float16()))
    inputs = pa.table({"problem": [f"question {i}" for i in ids]})
    scores = load_scores(write_scores_dir(tmp_path, inputs, columns, dataset={"name": "toy", "fingerprint": "x"}))
    config = ScheduleConfig(strategy="probe", subset_size=100, skip_zero_variance=True, seed=1)
    scheduler = Scheduler(config, scores.prompts, scores=scores)
    plan, skipped = scheduler.step().plan, {}
    for _ in range(5):
        control = set(scheduler.state.selection.control or ())
        feedback = [
            {"gc_id": int(g), "reward": float(r == 0 and int(g) in control)} for g in plan.gc_ids for r in range(4)
        ]
        plan = scheduler.step(feedback=feedback).plan
        paused = scheduler.state.gate is not None and scheduler.state.gate.level == PAUSED
        skipped.setdefault(paused, []).append(scheduler.state.selection.figures.get("skipped"))
    assert all(skipped[False]) and set(skipped[True]) == {None}, skipped  # aimed epochs skip; paused ones draw all
