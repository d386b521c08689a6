"""The savings readout in words: an epoch's in one line (`schedule run`'s epoch line, `schedule step`, `schedule
status`), r or what it waits for, and what `schedule init` says of an epoch too small for its readout to tell.
"""

from __future__ import annotations

import math
from typing import Any

from gaincurate.schedule.readout import CORRELATION_MIN_PROMPTS, ENOUGH_GROUPS
from gaincurate.schedule.strategies.contract import NO_ESTIMATE


def epoch_words(line: dict[str, Any] | None) -> str:
    """A history line's readout in one line: what it rests on, what it measured against uniform's, r, "too few"."""
    line = line or {}
    readout = line.get("readout") or {}
    groups = readout.get("groups") or 0
    if not groups:
        return "readout: nothing measured (the feedback gave no prompt's own rollouts)"
    uniform, aimed = readout.get("uniform_zero_variance_estimate"), readout.get("estimated_pass_rate")
    aimed_at = "" if aimed is None else f", {aimed:.2f} aimed at"
    compared = uniform is not None and readout.get("estimate_spread")  # all-equal estimates describe no pool
    against = f" against ~{uniform:.0%} for a uniform draw (estimated)" if compared else ""
    parts = [
        f"zero variance {readout['zero_variance']:.0%} ({readout['all_wrong']:.0%} all wrong, "
        f"{readout['all_right']:.0%} all right){against}",
        f"pass rate {readout['measured_pass_rate']:.2f} measured{aimed_at}",
        r_words(readout),
    ]
    if groups < ENOUGH_GROUPS:
        parts.append(f"{groups} groups are too few to tell the share from chance (it takes {ENOUGH_GROUPS})")
    return f"readout on {groups} rollout groups ({groups} prompts, {line['rollouts']} rollouts): " + "; ".join(parts)


def r_words(readout: dict[str, Any], *, cell: bool = False) -> str:
    """r over how many measured prompts, why there is none, or what it waits for: status's `cell` says it shorter."""
    correlation, so_far = readout.get("correlation"), readout.get("correlated_prompts") or 0
    if correlation is not None:
        return f"{correlation:+.2f}" if cell else f"r {correlation:+.2f} over {so_far} measured prompts"
    if readout.get("correlation_note") or readout.get("estimate") == NO_ESTIMATE:
        return "-" if cell else f"r: none ({readout.get('correlation_note') or 'the strategy keeps no estimate'})"
    waits = f"after {CORRELATION_MIN_PROMPTS}" + ("" if cell else " measured prompts")
    return f"{waits} ({so_far} so far)" if cell else f"r: {waits} ({so_far} so far)"


def readout_needs(scheduler: Any) -> list[str]:
    """What `schedule init` says when the run's epoch is too small for its readout to tell (else nothing)."""
    size = scheduler.subset_size
    if size >= ENOUGH_GROUPS:
        return []
    epochs = math.ceil(CORRELATION_MIN_PROMPTS / size)
    r = f"; r shows after {epochs} epochs drawn with estimates ({CORRELATION_MIN_PROMPTS} measured prompts)"
    r = r if scheduler.strategy.about.estimates else ""
    return [
        f"readout: {size} prompts an epoch are too few for an epoch's zero-variance share to tell from chance (it "
        f"takes {ENOUGH_GROUPS}: --subset-size {ENOUGH_GROUPS} or more){r}"
    ]
