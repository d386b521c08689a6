"""The GAIN-RL update of the Gaussian's centre mu after an epoch.

    delta     = clamp(n * tanh(alpha * (acc - beta)) + n * tanh(alpha * signal), adj_min, adj_max)
    mu_next   = clamp(mu + delta, 0, N - 1)

`--mu-control sweep` (gain's ablation option, `gaincurate.schedule.strategies.gain`) replaces delta by a fixed rate.
`adj_min` may be negative: then an epoch below the target accuracy moves mu back.

`acc` is the epoch's mean rollout correctness in [0, 1]. `signal` is the angle term: the mean fresh score
`ang` of the epoch's prompts under the newest model, as is (`raw`, the paper's formula), or standardised
with the mean and spread of the same fresh scores (`centered`): (ang - mean) / std. The scheduler passes
signal 0 when no fresh score exists (`--rescore none`, or no checkpoint yet): stored scores are one fixed
number per subset, not model signal.

`MU_COLUMNS`, `mu_moved` and `mu_drawn` are what gain and length declare about these numbers (their `columns`,
`update_words` and `draw_words`): status's mu columns, the plot's `m`, TRL's `curriculum/mu`, `schedule step`'s line;
`angle_source_note` is what `schedule init` says of the angle term, and `positions_of` finds fresh scores' positions.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gaincurate.schedule.figures import ACCURACY, Column

MU_COLUMNS = (
    Column("mu", "mu", ".1f", mark="m", rank=True, drawn=True, top_level=True),  # the centre that drew the epoch
    ACCURACY,
    Column("ang", "ang", ".4f", logged="ang"),
    Column("delta", "delta", "+.1f", logged="delta"),
    Column("mu next", "mu_next", ".1f", logged="mu"),  # logged as `curriculum/mu`: where mu went
)


def mu_moved(record: dict[str, Any]) -> str:
    """ ", ang 1.7120 (rescored), delta +410.7, mu 0.0 -> 410.7": how an epoch's update moved mu."""
    ang = "n/a" if record["ang"] is None else f"{record['ang']:.4f} ({record['ang_source']})"
    if record["ang_source"] == "stored":  # not model signal: logged, but the angle term is off
        ang = ang[:-1] + ", angle term off)" if record["ang"] is not None else "off"
    return f", ang {ang}, delta {record['delta']:+.1f}, mu {record['mu']:.1f} -> {record['mu_next']:.1f}"


def mu_drawn(draw: dict[str, Any]) -> str:
    """ "around mu 410.7": how an epoch was drawn."""
    return f"around mu {draw['mu']:.1f}"


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


def angle_source_note(options: Any) -> str:
    """One line on where the angle term comes from, for `schedule init` to print."""
    if options.rescore == "none":
        return "--rescore none: the angle term is off, and mu moves by accuracy alone"
    every = "each epoch" if options.rescore_every == 1 else f"every {options.rescore_every} epochs"
    what = {"subset": "the epoch's prompts", "window": "mu ± 3 sigma", "full": "every prompt"}[options.rescore]
    return (
        f"ang: {what} re-scored with the newest checkpoint {every} (--rescore {options.rescore}); "
        "an epoch without a checkpoint or fresh scores has no angle term"
    )


def positions_of(ranking: np.ndarray, gc_ids: np.ndarray) -> np.ndarray:
    """The rank positions of `gc_ids`; an id outside the ranking is refused."""
    gc_ids = np.asarray(gc_ids, dtype=np.int64)
    order = np.argsort(ranking, kind="stable")
    sorted_ids = ranking[order]
    found = np.clip(np.searchsorted(sorted_ids, gc_ids), 0, len(sorted_ids) - 1)
    unknown = gc_ids[sorted_ids[found] != gc_ids]
    if len(unknown):
        raise ValueError(f"re-scored gc_id {int(unknown[0])} is not in the prompt set")
    return order[found]
