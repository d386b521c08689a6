"""The bench's own arms of `probe`, kept for comparison: registered only while a pair trains (`registered`), so
`gaincurate schedule status` cannot name their runs.

* `probe-budget`: the likelihood refresh measures its budget after every epoch, whatever the epoch's rewards, as
  `probe` did before it measured only what a draw can use (`ProbeStrategy.wants`: nothing while every group's mean
  reward is the same, the next draw's prompts while no group carries a likelihood, the budget otherwise).
* `probe-pool-first`: while no fitted group carries a likelihood (normally after epoch 0), every prompt is measured
  rather than the next draw's, and each of the epoch's groups whose prompt had none takes the value measured right
  after it (by the model that trained it, one epoch on), so the first aimed draw weighs the likelihood and predicts
  each prompt from its own (docs/benchmark-history.md, "Every prompt's likelihood after epoch 0").

Their fits and draws are `probe`'s.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from gaincurate.schedule.strategies import contract
from gaincurate.schedule.strategies.probe import NONE_CARRIED, ProbeStrategy, reaches_draw
from gaincurate.schedule.strategies.probe.memory import Measured

BUDGET_PROBE, POOL_FIRST = "probe-budget", "probe-pool-first"


class BudgetProbe(ProbeStrategy):
    """`probe`, its likelihood refresh asked ahead of each epoch's feedback: the budget, always."""

    name = BUDGET_PROBE

    def wants(self, state: Any, end: Any = None) -> Any:
        return ProbeStrategy.wants(self, state)


class PoolFirstProbe(ProbeStrategy):
    """`probe` whose first likelihood measurement covers the pool, and whose epoch's groups take it."""

    name = POOL_FIRST

    def wants(self, state: Any, end: contract.EpochEnd = contract.AHEAD) -> contract.Wants:
        if self.options.likelihood and end.feedback is not None:
            measured = Measured(state.memory)
            measured.add_groups(contract.per_prompt_feedback(end.feedback, self.name), state.epoch)
            if reaches_draw(self.weighed(measured, now=state.epoch)) == NONE_CARRIED:
                return contract.Wants(self.gc_ids.copy())
        return ProbeStrategy.wants(self, state, end)

    def observe(self, state: Any, feedback: Any, fresh: contract.Fresh = contract.NOTHING_FRESH) -> dict[str, Any]:
        measured = Measured(ProbeStrategy.observe(self, state, feedback, fresh))
        groups = measured.groups
        unmeasured = np.flatnonzero((groups["epochs"] == state.epoch) & np.isnan(groups["logps"]))
        groups["logps"][unmeasured] = measured.logps_of(groups["gc_ids"][unmeasured])  # NaN where still unmeasured
        return measured.to_memory()


@contextmanager
def registered() -> Iterator[None]:
    """`--strategy probe-budget` and `probe-pool-first` name them while the block runs, in this process only."""
    from gaincurate.schedule.strategies.registry import STRATEGIES

    STRATEGIES.update({BUDGET_PROBE: BudgetProbe, POOL_FIRST: PoolFirstProbe})
    try:
        yield
    finally:
        del STRATEGIES[BUDGET_PROBE], STRATEGIES[POOL_FIRST]
