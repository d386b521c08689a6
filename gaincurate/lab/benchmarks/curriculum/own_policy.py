"""Does a run's control read uniform as the whole pool does, measured under the run's own policy?

A run's control (probe's uniform slice) is a uniform draw under the aimed run's policy. The bench's uniform arm trains
a policy of its own, which parts from the aimed run's after epoch 1, so `agreement` holds the control against a
second policy wherever the aim works. With the pool instrument on at the trained group's size
(`WarmStartVerdict.measure_pool`), every pool prompt gets one group under the aimed run's policy as each epoch is drawn
(diagnosis.py): a uniform draw of the whole pool, the same policy and epoch as the control, every prompt counted. Per
task and arm with a control, over the same (seed, epoch)s:

* the control's share of groups with nonzero reward variance against that measured pool's (the readout's own claim,
  checked), with Newcombe's interval as `agreement.agreement` counts it;
* the measured pool's share against the uniform arm's (how far the two policies have parted);
* the first comparison by epoch.

The pool is measured as the epoch is drawn, and the control's groups are rolled out during it (a few optimizer steps
later): the policy moves a little between.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Hashable
from pathlib import Path
from typing import Any

from gaincurate.lab.benchmarks.curriculum import agreement
from gaincurate.lab.benchmarks.curriculum.report import DIAGNOSIS
from gaincurate.schedule.control import Arm

Sides = tuple[Arm, Arm, Arm]  # the control, the pool measured under the same policy, the uniform arm


def epoch_sides(folder: Path) -> dict[str, dict[tuple[int, int], Sides]]:
    """Per arm with a control: (seed, epoch) -> its control's groups, its pool measurement's, the uniform arm's; only
    epochs with all three (`agreement.epoch_arms` pairs the first and the last)."""
    path = Path(folder) / DIAGNOSIS
    if not path.is_file():
        return {}
    pool: dict[tuple[str, int, int], Arm] = {}
    for line in map(json.loads, path.read_text().splitlines()):
        if line.get("pool_prompts"):  # older diagnoses lack the count
            prompts = int(line["pool_prompts"])
            key = (line["strategy"], int(line["seed"]), int(line["epoch"]))
            pool[key] = Arm(prompts, round(line["pool_informative"] * prompts))
    sides = {}
    for arm, epochs in agreement.epoch_arms(folder).items():
        kept = {key: (control, pool[(arm, *key)], uniform) for key, (control, uniform) in epochs.items()
                if (arm, *key) in pool}  # fmt: skip
        if kept:
            sides[arm] = kept
    return sides


def task_agreement(folders: list[Path]) -> dict[str, dict[str, Any]]:
    """Per arm with a control and a measured pool, over `folders` (a task's comparison folders): the control against
    the pool over every epoch and by epoch, and the pool against the uniform arm over every epoch."""
    kept: dict[str, list[tuple[Hashable, Sides]]] = defaultdict(list)
    for folder in folders:
        for arm, epochs in epoch_sides(folder).items():
            kept[arm] += list(epochs.items())
    result = {}
    for arm, pairs in kept.items():
        epochs: dict[int, list[tuple[Hashable, tuple[Arm, Arm]]]] = defaultdict(list)
        for draw, (control, pool, _) in pairs:
            epochs[draw[1]].append((draw, (control, pool)))
        result[arm] = {
            "control_pool": agreement.agreement([(draw, (control, pool)) for draw, (control, pool, _) in pairs]),
            "pool_uniform": agreement.agreement([(draw, (pool, uniform)) for draw, (_, pool, uniform) in pairs]),
            "by_epoch": {str(epoch): agreement.agreement(drawn) for epoch, drawn in sorted(epochs.items())},
        }  # fmt: skip
    return result


def lines(summary: dict[str, Any]) -> list[str]:
    """The report's section: a row per task and arm, then the first comparison by epoch, a column per task and arm."""
    rows = [(task, arm, entry) for task, data in summary["tasks"].items()
            for arm, entry in (data.get("own_policy") or {}).items()]  # fmt: skip
    if not rows:
        return []
    words, differ = agreement.share_words, agreement.difference_words
    out = ["", "Each run's control against the whole pool measured under the run's own policy (the pool instrument: "
           "one group of every pool prompt, of the trained group's size, as each epoch is drawn; not charged): the "
           "share of groups with nonzero reward variance over the same seeds and epochs, and the difference with its "
           "95% interval (Newcombe); beside it, the measured pool against the uniform arm, whose policy trained on "
           "its own draws.", "",
           "| task | arm | control | pool, own policy | control - pool | uniform arm | pool - uniform arm |",
           "|---|---|---|---|---|---|---|"]  # fmt: skip
    for task, arm, entry in rows:
        first, second = entry["control_pool"], entry["pool_uniform"]
        out.append(f"| {task} | {arm} | {words(first['control'])} "
                   f"| {words(first['uniform_arm'])} | {differ(first)} "
                   f"| {words(second['uniform_arm'])} | {differ(second)} |")  # fmt: skip
    epochs = sorted({int(epoch) for _, _, entry in rows for epoch in entry["by_epoch"]})
    out += ["", "The control against the pool under the same policy, by epoch (control share / pool share: the "
            "difference and its interval):", "", "| epoch | " + " | ".join(f"{task}, {arm}" for task, arm, _ in rows)
            + " |", "|---|" + "---|" * len(rows)]  # fmt: skip
    for epoch in epochs:
        cells = []
        for _, _, entry in rows:
            part = entry["by_epoch"].get(str(epoch))
            cells.append("-" if part is None else f"{words(part['control'])} / {words(part['uniform_arm'])}: "
                         f"{differ(part)}")  # fmt: skip
        out.append(f"| {epoch} | " + " | ".join(cells) + " |")
    return out
