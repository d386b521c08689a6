"""Filters register like strategies: one `FILTERS` line each, from which the config, state.json, the CLI and
`schedule status` follow; a `Filter` takes every `Strategy` hook it does not override from its base."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from types import FunctionType
from typing import Any

import numpy as np
import pytest

from gaincurate.errors import ConfigError
from gaincurate.schedule.config import ScheduleConfig
from gaincurate.schedule.options import flag
from gaincurate.schedule.strategies.base import Filter, Spent, Strategy
from gaincurate.schedule.strategies.registry import FILTERS, STRATEGIES, check_filters, how_it_draws
from gaincurate.schedule.strategies.uniform import UniformStrategy

# The hooks a filter does not take from its base: what it is built from, and `select`, whose default walks the
# filter's own `priority`.
OWN = {"build", "select"}


class Answers(Strategy):
    """A base whose every hook answers with its own name, so a forwarded call is seen to reach it."""

    name = "answers"
    needs = frozenset({"its needs"})
    draws = "its draws"
    columns = ()


def _answer(hook: str) -> Any:
    def answer(self, *args: Any, **kwargs: Any) -> Any:
        return (hook, args, kwargs)

    return answer


HOOKS = [name for name, value in vars(Strategy).items() if isinstance(value, FunctionType | classmethod)]
for _hook in HOOKS:
    setattr(Answers, _hook, _answer(_hook))
Answers.spent = property(lambda self: Spent(rollouts=7))  # type: ignore[assignment]


class Bare(Filter):
    """A filter that changes nothing."""

    setting = "bare"


def test_a_filter_takes_every_hook_it_does_not_override_from_its_base():
    assert {"rank", "priority", "observe", "update", "report", "measure", "use_screener", "notes"} <= set(HOOKS)
    wrapped = Bare(Answers())
    for hook in set(HOOKS) - OWN:
        assert getattr(wrapped, hook)(1, key=2) == (hook, (1,), {"key": 2}), hook
    assert wrapped.spent == Spent(rollouts=7)
    assert (wrapped.name, wrapped.needs, wrapped.draws, wrapped.columns) == ("answers", {"its needs"}, "its draws", ())


def test_a_filter_s_own_hooks_and_attributes_win_over_its_base_s():
    from gaincurate.schedule.strategies.greso import GresoStrategy, ZeroVarianceFilter

    class Needy(UniformStrategy):
        needs = frozenset({"its needs"})

    over = ZeroVarianceFilter(Needy(), np.arange(4))
    assert over.needs == {"its needs", "rollouts"} and over.draws.startswith("every prompt equally likely")
    assert over.initial_memory()["zero_variance"]["explore_easy"] == 0.5  # its own, around the base's memory
    greso = GresoStrategy(np.arange(4))
    assert (greso.name, GresoStrategy.name, greso.needs) == ("greso", "greso", {"rollouts"})
    assert GresoStrategy.draw_words({}) == "by greso"  # read on the class: Strategy's default, bound to greso


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
    with pytest.raises(ConfigError, match="use it with dots, mopps, screen"):
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
