"""Does a run's control read uniform as the bench's uniform arm measures it? Per task of a warm-start verdict.

A run with a control (probe's uniform slice) counts, each epoch, the slice's groups and how many had nonzero reward
variance: its readout of what a uniform draw would get, under the run's own policy. The bench's uniform arm
measures the same share under its own policy. Held side by side over the same (seed, epoch)s, from the comparison
folders' readouts.jsonl, with the difference's Newcombe interval (one look, 95%; "agrees" when it includes 0):

* per task and arm with a control, at the first epoch with a control (epoch 1: every arm of a seed draws epoch 0
  alike, uniformly, so both runs start it from the same training) and over every epoch;
* per epoch, pooled over the units, so that where they part shows (the policies part as the aimed run learns what
  uniform does not).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from gaincurate.lab.benchmarks.curriculum.report import READOUTS
from gaincurate.numerics import recorded
from gaincurate.schedule.control import Arm, compare

BASELINE = "uniform"  # the arm whose measured share the controls are held against


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


def task_agreement(folders: list[Path]) -> dict[str, dict[str, Any]]:
    """Per arm with a control, over `folders` (a task's comparison folders): `agreement` at the first epoch with a
    control and over every epoch it shares with the uniform arm."""
    pairs: dict[str, list[tuple[int, tuple[Arm, Arm]]]] = defaultdict(list)
    for folder in folders:
        for arm, epochs in epoch_arms(folder).items():
            pairs[arm] += [(epoch, pair) for (_, epoch), pair in epochs.items()]
    return {arm: {"first": agreement([pair for epoch, pair in kept if epoch == min(e for e, _ in kept)]),
                  "all": agreement([pair for _, pair in kept])} for arm, kept in pairs.items()}  # fmt: skip


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
