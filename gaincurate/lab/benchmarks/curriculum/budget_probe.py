"""The bench arm `probe-budget`: `probe` whose likelihood refresh measures its budget after every epoch.

`probe` measures only what a draw can use (`ProbeStrategy.wants`): nothing while every group's mean reward is the
same, the next draw's prompts while no group carries a likelihood, the budget otherwise. This arm measures the budget
after every epoch, whatever the epoch's rewards, as `probe` did before; its fit and draws are `probe`'s. It is kept
for comparison and registered in a pair's process only, so `gaincurate schedule status` cannot name its runs.
"""

from __future__ import annotations

from typing import Any

from gaincurate.schedule.strategies.probe import ProbeStrategy

BUDGET_PROBE = "probe-budget"


class BudgetProbe(ProbeStrategy):
    """`probe`, its likelihood refresh asked ahead of each epoch's feedback: the budget, always."""

    name = BUDGET_PROBE

    def wants(self, state: Any, end: Any = None) -> Any:
        return ProbeStrategy.wants(self, state)

    @classmethod
    def register(cls) -> None:
        """Make `--strategy probe-budget` name it, in this process."""
        from gaincurate.schedule.strategies.registry import STRATEGIES

        STRATEGIES.setdefault(BUDGET_PROBE, cls)
