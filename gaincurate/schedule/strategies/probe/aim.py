"""The probe's aimed draw: each prompt's log-weight, from its estimate and, with `--record`, from its own groups.

Without a record the log-weight is -|estimate - target| / tau. With `--record R` it is -(1 - q) m / tau, where
m = max(target, 1 - target) and q = (c + R I) / (1 + R G) weighs the fit's closeness to the target,
c = 1 - |estimate - target| / m, against the prompt's own informative groups I out of its groups G, each weighing
forget ** age as in the fit. A group is informative where its correctness sum lies strictly between 0 and its
rollouts (rewards in {0, 1}). R = 0 is the plain aim, and so is any R for a prompt never measured; at R = 1 the fit's
closeness counts as much as one group of the prompt's own.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gaincurate.numerics import int_powers


def log_weights(
    options: Any, rates: np.ndarray, gc_ids: np.ndarray, pool: np.ndarray, groups: dict[str, np.ndarray] | None,
    *, now: int,
) -> np.ndarray:  # fmt: skip
    """The log-weight of each of `gc_ids` (estimated `rates`), `pool` the strategy's sorted gc_ids and `groups` its
    measured ones (`Measured.groups`; read only with a record), aged to epoch `now`."""
    target, record = options.target, options.record
    if not record:
        return -np.abs(rates - target) / options.tau
    widest = max(target, 1.0 - target)
    ages = int_powers(options.forget, np.maximum(now - groups["epochs"], 0))
    informative = (groups["sums"] > 0) & (groups["sums"] < groups["counts"])
    rows, at = np.searchsorted(pool, groups["gc_ids"]), np.searchsorted(pool, gc_ids)
    seen, told = (np.bincount(rows, w, minlength=len(pool))[at] for w in (ages, ages * informative))
    odds = (1.0 - np.abs(rates - target) / widest + record * told) / (1.0 + record * seen)
    return -(1.0 - odds) * widest / options.tau
