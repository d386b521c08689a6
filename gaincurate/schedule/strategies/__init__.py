"""Strategy plug-ins and filters: one module each, listed in `registry`; the protocol they implement is `base`.

A new strategy subclasses `Strategy` (importable from here) and adds one line to `registry.STRATEGIES`.
A new filter subclasses `Filter` and adds one line to `registry.FILTERS`.
"""

from gaincurate.schedule.strategies.base import (
    EMBEDDINGS,
    FRESH_SCORES,
    LIKELIHOOD,
    NOTHING_FRESH,
    POLICY,
    ROLLOUTS,
    SCORES,
    About,
    Fresh,
    Observed,
    Priority,
    PromptSet,
    RankingContext,
    Report,
    Selection,
    Strategy,
    StrategyInputs,
    Wants,
)
from gaincurate.schedule.strategies.filters import Filter

__all__ = [
    "EMBEDDINGS",
    "FRESH_SCORES",
    "LIKELIHOOD",
    "NOTHING_FRESH",
    "POLICY",
    "ROLLOUTS",
    "SCORES",
    "About",
    "Filter",
    "Fresh",
    "Observed",
    "Priority",
    "PromptSet",
    "RankingContext",
    "Report",
    "Selection",
    "Strategy",
    "StrategyInputs",
    "Wants",
]
