"""The GAIN-RL update of the Gaussian's centre mu after an epoch.

    delta     = clamp(n * tanh(alpha * (acc - beta)) + n * tanh(alpha * signal), adj_min, adj_max)
    mu_next   = clamp(mu + delta, 0, N - 1)

`--mu-control sweep` (gain's ablation option, `gaincurate.schedule.gain`) replaces delta by a fixed rate.
`adj_min` may be negative: then an epoch below the target accuracy moves mu back.

`acc` is the epoch's mean rollout correctness in [0, 1]. `signal` is the angle term: the mean fresh score
`ang` of the epoch's prompts under the newest model, as is (`raw`, the paper's formula), or standardised
with the mean and spread of the same fresh scores (`centered`): (ang - mean) / std. The scheduler passes
signal 0 when no fresh score exists (`--rescore none`, or no checkpoint yet): stored scores are one fixed
number per subset, not model signal. Pure functions of floats.
"""

from __future__ import annotations

import math


def angle_signal(ang: float | None, *, mode: str, score_mean: float | None, score_std: float | None) -> float:
    """The value fed to tanh in the angle term; 0 when there is no usable angle at all."""
    if ang is None or not math.isfinite(ang):
        return 0.0
    if mode == "raw":
        return float(ang)
    if mode == "centered":
        if score_mean is None or not score_std or not math.isfinite(score_std):
            return 0.0  # a set whose scores do not vary carries no angle information
        return (float(ang) - score_mean) / score_std
    raise ValueError(f"unknown angle signal mode {mode!r}")


def mu_delta(
    accuracy: float, signal: float, *, step_size: float, alpha: float, beta: float, adj_min: float, adj_max: float
) -> float:
    """The clamped step of mu for one epoch."""
    raw = step_size * math.tanh(alpha * (accuracy - beta)) + step_size * math.tanh(alpha * signal)
    return min(max(raw, adj_min), adj_max)


def next_mu(mu: float, delta: float, n_prompts: int) -> float:
    """mu moved by delta, kept on the ranking [0, N - 1]."""
    return min(max(mu + delta, 0.0), float(n_prompts - 1))
