"""A strategy made up for the tests: one module, as a new strategy is, declaring a number of its own.

It draws uniformly and keeps a `temperature` that halves every epoch. It declares the temperature drawn (status's
title and waiting row), plotted (`t`) and logged (`curriculum/temperature`), and says its update in words; nothing
outside this module names it. `register()` is the registry line a real strategy would add.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from gaincurate.schedule.figures import ACCURACY, Column
from gaincurate.schedule.strategies.base import Strategy, draw_order

NAME = "tempered"


class TemperedStrategy(Strategy):
    name = NAME
    summary = "made up for the tests: uniform draws under a temperature that halves each epoch"
    draws = "every prompt equally likely; its temperature halves each epoch"
    columns = (
        Column("temp", "temperature", ".3f", logged="temperature", mark="t", drawn=True),
        ACCURACY,
        Column("temp next", "temperature_next", ".3f", logged="temperature_next"),
    )

    @classmethod
    def update_words(cls, record: dict[str, Any]) -> str:
        return f", cooled {record['temperature']:.3f} -> {record['temperature_next']:.3f}"

    def initial_memory(self) -> dict[str, Any]:
        return {"temperature": 1.0}

    def priority(self, state, context, rng) -> np.ndarray:
        return draw_order(np.zeros(context.n_prompts), rng)

    def update(self, state, following, feedback, fresh):
        temperature = state.memory["temperature"]
        following = replace(following, memory={"temperature": temperature / 2})
        return following, {"temperature": temperature, "temperature_next": temperature / 2}


def register() -> None:
    """The one registry line (`gaincurate.schedule.strategies.registry.STRATEGIES`), made at run time."""
    from gaincurate.schedule.strategies.registry import STRATEGIES

    STRATEGIES[NAME] = TemperedStrategy


if __name__ == "__main__":  # the console script with the strategy registered: python made_up_strategy.py ARGS
    register()
    from gaincurate.cli import main

    main()
