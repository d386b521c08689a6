"""Does a run's control read uniform as the bench's uniform arm measures it? Per unit of a warm-start verdict.

A run with a control (probe's uniform slice) counts, each epoch, the slice's groups and how many had nonzero reward
variance: its readout of what a uniform draw would get, under the run's own policy. The bench's uniform arm
measures the same share under its own policy. Held side by side over the same (seed, epoch)s, from a comparison
folder's readouts.jsonl:

* per arm with a control: the control's share, the uniform arm's over the same (seed, epoch)s, and the difference
  with Newcombe's interval (one look, 95%): "agrees" when it includes 0;
* per epoch, pooled over the units and arms given: the same, so that where they part shows (the two policies start
  from the same weights and part as the aimed run learns what uniform does not).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from gaincurate.numerics import recorded
from gaincurate.schedule.control import Arm, compare

READOUTS = "readouts.jsonl"
BASELINE = "uniform"


def epoch_arms(folder: Path) -> dict[str, dict[tuple[int, int], tuple[Arm, Arm]]]:
    """Per arm with a control: (seed, epoch) -> (its control's groups, the uniform arm's groups that epoch)."""
    path = Path(folder) / READOUTS
    if not path.is_file():
        return {}
    uniform: dict[tuple[int, int], Arm] = {}
    control: dict[str, dict[tuple[int, int], Arm]] = defaultdict(dict)
    for line in map(json.loads, path.read_text().splitlines()):
        readout, key = line["readout"], (int(line["seed"]), int(line["epoch"]))
        if line["strategy"] == BASELINE:
            groups = readout.get("groups") or 0
            uniform[key] = Arm(groups, round((1.0 - (readout.get("zero_variance") or 0.0)) * groups), 0)
        elif readout.get("control_groups"):
            groups = readout["control_groups"]
            control[line["strategy"]][key] = Arm(groups, round(readout["control_informative"] * groups), 0)
    return {arm: {key: (kept, uniform[key]) for key, kept in sorted(epochs.items()) if key in uniform}
            for arm, epochs in control.items()}  # fmt: skip


def agreement(pairs: list[tuple[Arm, Arm]]) -> dict[str, Any] | None:
    """The control's share against the uniform arm's over the same epochs (None: nothing to hold together)."""
    kept = sum((c for c, _ in pairs), Arm())
    measured = sum((u for _, u in pairs), Arm())
    comparison = compare(kept, measured)  # one look, after the runs: 95%
    if comparison is None:
        return None
    low, high = comparison.gain_interval
    return {"control": [kept.groups, kept.informative], "uniform_arm": [measured.groups, measured.informative],
            "difference": recorded(comparison.gain), "interval": [recorded(low), recorded(high)],
            "agrees": low <= 0.0 <= high}  # fmt: skip


def unit_agreement(folder: Path) -> dict[str, Any]:
    """Per arm with a control: `agreement` over every (seed, epoch) it shares with the uniform arm."""
    return {arm: agreement(list(epochs.values())) for arm, epochs in epoch_arms(folder).items()}


def by_epoch(folders: list[Path], arm: str) -> dict[int, dict[str, Any] | None]:
    """`arm`'s agreement per epoch, pooled over `folders` (each a comparison folder) and their seeds."""
    pooled: dict[int, list[tuple[Arm, Arm]]] = defaultdict(list)
    for folder in folders:
        for (_, epoch), pair in epoch_arms(folder).get(arm, {}).items():
            pooled[epoch].append(pair)
    return {epoch: agreement(pairs) for epoch, pairs in sorted(pooled.items())}


def share_words(counts: list[int]) -> str:
    groups, informative = counts
    return f"{informative / groups:.0%} of {groups}"


def difference_words(entry: dict[str, Any] | None) -> str:
    if entry is None:
        return "-"
    low, high = entry["interval"]
    said = "agrees" if entry["agrees"] else "differs"
    return f"{100 * entry['difference']:+.0f} points [{100 * low:+.0f}, {100 * high:+.0f}]: {said}"
