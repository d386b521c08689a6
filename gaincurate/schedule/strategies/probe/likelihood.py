"""The answer's likelihood in the probe: its two columns in the fit, their scale, and where its probability is the
estimate itself (`--use-probability`).

Where the reward checks a short exact answer sampled at temperature 1, the policy's probability of that answer is the
prompt's pass rate, measured without sampling noise. The fit across prompts only approximates it: it blends the
probability with the embedding and an intercept, learnt from groups whose likelihood was measured epochs before. So,
for a draw whose fit weighs the likelihood (`probe.reaches_draw`):

* `never`: the fit's estimate everywhere (after reasoning the probability is a proxy, and the fit weighs it);
* `fresh`: each prompt whose likelihood was measured after the last epoch takes that probability as its estimate; the
  fit estimates the rest;
* `when-better`: as `fresh` where the probability predicted the newest epoch's rewards better than the fit did (over
  that epoch's groups that carried a likelihood, its weighted squared error against that of the fit on the older
  epochs, `ridge.Choice.held_out`); otherwise as `never`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gaincurate.difficulty import ridge
from gaincurate.numerics import exp

LOGP_FLOOR = -30.0  # a log-probability below this says "never": clipped, so one hopeless prompt does not set the scale
NEVER, FRESH, WHEN_BETTER = "never", "fresh", "when-better"
CHOICES = (NEVER, FRESH, WHEN_BETTER)


def likelihood_columns(logps: np.ndarray) -> np.ndarray:
    """[N, 2]: the answer's probability and its log-probability (floored), NaN where unmeasured."""
    floored = np.maximum(logps, LOGP_FLOOR)  # NaN stays NaN
    measured = np.isfinite(floored)
    probability = np.full(len(logps), np.nan)
    probability[measured] = exp(floored[measured])  # not np.exp: its bits vary by CPU
    return np.stack([probability, floored], axis=1)


def likelihood_scale(pool_logps: np.ndarray | None) -> tuple[np.ndarray, np.ndarray] | None:
    """The mean and spread (1 where there is none) of the likelihood columns over the pool's measured prompts; None
    when none was measured (or the probe reads no likelihood)."""
    if pool_logps is None or not np.isfinite(pool_logps).any():
        return None
    reference = likelihood_columns(pool_logps[np.isfinite(pool_logps)])
    mean = reference.mean(axis=0)
    centred = reference - mean
    spread = np.sqrt((centred * centred).mean(axis=0))
    return mean, np.where(spread > 0, spread, 1.0)


def probability_predicts(groups: dict[str, np.ndarray], held_out: np.ndarray, choice: ridge.Choice | None) -> bool:
    """Whether, on the held-out (newest) groups whose prompt carried a likelihood, the answer's probability missed the
    mean reward by less than the fit on the older groups (`choice`; None: nothing held out, so no)."""
    logps = groups["logps"][held_out]
    carried = np.isfinite(logps)
    if choice is None or not carried.any():
        return False
    labels = (groups["sums"] / groups["counts"])[held_out][carried]
    weights = groups["counts"][held_out][carried]  # the newest epoch: not aged
    probability = likelihood_columns(logps[carried])[:, 0]
    own = math.fsum((weights * np.square(probability - labels)).tolist())
    fit = math.fsum((weights * np.square(choice.held_out[carried] - labels)).tolist())
    return own < fit


def estimates(
    rates: np.ndarray,
    gc_ids: np.ndarray,
    measured: Any,
    use: str,
    held_out: np.ndarray,
    choice: ridge.Choice | None,
    now: int,
) -> tuple[np.ndarray, int]:
    """The fit's `rates` (the pool's, in `gc_ids` order) with each prompt measured after epoch `now` at the answer's
    probability, as `use` says (`measured`: the probe's memory, `probe.Measured`; `held_out`, `choice`: the fit's
    newest groups and its penalty choice); and how many prompts took it."""
    if use == NEVER or (use == WHEN_BETTER and not probability_predicts(measured.groups, held_out, choice)):
        return rates, 0
    latest = measured.latest
    fresh = latest["epochs"] == now
    out = rates.copy()
    out[np.searchsorted(gc_ids, latest["gc_ids"][fresh])] = likelihood_columns(latest["values"][fresh])[:, 0]
    return out, int(fresh.sum())
