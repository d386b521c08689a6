"""The bench arm `probe-budget`: `probe` whose likelihood refresh measures its budget after every epoch.

`probe` measures only what a draw can use (`ProbeStrategy.wants`): nothing while every group's mean reward is the
same, the next draw's prompts while no group carries a likelihood, the budget otherwise. This arm measures the budget
after every epoch, whatever the epoch's rewards, as `probe` did before; its fit and draws are `probe`'s. It is kept
for comparison and registered only while a pair trains, so `gaincurate schedule status` cannot name its runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from gaincurate.schedule.strategies.probe import ProbeStrategy

BUDGET_PROBE = "probe-budget"


class BudgetProbe(ProbeStrategy):
    """`probe`, its likelihood refresh asked ahead of each epoch's feedback: the budget, always."""

    name = BUDGET_PROBE

    def wants(self, state: Any, feedback: Any = None) -> Any:
        return ProbeStrategy.wants(self, state)

    @classmethod
    @contextmanager
    def registered(cls) -> Iterator[None]:
        """`--strategy probe-budget` names it while the block runs, in this process only, and no longer."""
        from gaincurate.schedule.strategies.registry import STRATEGIES

        STRATEGIES[BUDGET_PROBE] = cls
        try:
            yield
        finally:
            del STRATEGIES[BUDGET_PROBE]
