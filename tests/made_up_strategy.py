"""A strategy made up for the tests: one module, as a new strategy is, declaring a number of its own.

It draws uniformly and keeps a `temperature` that halves every epoch. It declares the temperature drawn (status's
title and waiting row), plotted (`t`) and logged (`curriculum/temperature`), and says its update in words; nothing
outside this module names it. `register()` is the registry line a real strategy would add.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gaincurate.schedule.figures import ACCURACY, Column
from gaincurate.schedule.strategies.contract import About, Observed, Strategy, draw_order

NAME = "tempered"


def cooled(record: dict[str, Any]) -> str:
    return f", cooled {record['temperature']:.3f} -> {record['temperature_next']:.3f}"


class TemperedStrategy(Strategy):
    """Uniform draws under a temperature that halves each epoch."""

    name = NAME
    about = About(
        summary="made up for the tests: uniform draws under a temperature that halves each epoch",
        draws="every prompt equally likely; its temperature halves each epoch",
        columns=(
            Column("temp", "temperature", ".3f", logged="temperature", mark="t", drawn=True),
            ACCURACY,
            Column("temp next", "temperature_next", ".3f", logged="temperature_next"),
        ),
        update_words=cooled,
    )

    def start(self, prompts):
        return super().start(prompts)[0], {"temperature": 1.0}

    def choose(self, state, context, rng) -> np.ndarray:
        return draw_order(np.zeros(context.n_prompts), rng)

    def observe(self, state, feedback, fresh=None):
        temperature = state.memory["temperature"]
        return Observed(
            {"temperature": temperature / 2}, {"temperature": temperature, "temperature_next": temperature / 2}
        )


def register() -> None:
    """The one registry line (`gaincurate.schedule.strategies.registry.STRATEGIES`), made at run time."""
    from gaincurate.schedule.strategies.registry import STRATEGIES

    STRATEGIES[NAME] = TemperedStrategy


if __name__ == "__main__":  # the console script with the strategy registered: python made_up_strategy.py ARGS
    register()
    from gaincurate.cli import main

    main()
