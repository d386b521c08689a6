"""Replays every committed warm-start bench pair's recorded groups through the gate as committed (a window of recent
epochs) and through the gate before it (evidence summed since the level last changed: the same code with a window
that never drops an epoch), and prints where their levels first differ beside the epoch the pair first reached its
target.

    python docs/results/gate-window-2026-11-27/replay.py

Each epoch's aimed and control groups come from the pair's readout (readouts.jsonl: groups, and informative shares
that give back the counts exactly). Only arms that ran with the pause on decide anything; the others are listed as
what the gate would have said. A paused epoch's in-band counts are not in the readout, so a replay stops at a pause.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

from gaincurate.schedule import gate
from gaincurate.schedule.control import Arm

RESULTS = Path(__file__).resolve().parent.parent


def counted(groups: int, share: float | None) -> Arm:
    return Arm(groups, round(groups * share)) if groups else Arm()


def levels(lines: list[dict], window_groups: float) -> list[int]:
    saved, gate.WINDOW_GROUPS = gate.WINDOW_GROUPS, window_groups
    try:
        state, out = gate.Gate(), []
        for line in lines:
            if state.level == gate.PAUSED:
                break
            readout = line["readout"]
            evidence = gate.Evidence(
                counted(readout.get("aimed_groups", 0), readout.get("aimed_informative")),
                counted(readout.get("control_groups", 0), readout.get("control_informative")),
            )
            state, _ = gate.advance(state, evidence, refreshes=True)
            out.append(state.level)
        return out
    finally:
        gate.WINDOW_GROUPS = saved


def first_reached(unit: Path, strategy: str, seed: int) -> int | None:
    """The first epoch whose evaluation reached the unit's target (raw sampled accuracy; the bench smooths over 3)."""
    config = json.loads((unit / "bench.json").read_text())["config"]
    steps_per_epoch = config["subset_size"] // config["prompts_per_step"]
    for line in (unit / "runs.jsonl").read_text().splitlines():
        point = json.loads(line)
        if point["strategy"] == strategy and point["seed"] == seed and point["sampled_accuracy"] >= config["target"]:
            return math.ceil(point["step"] / steps_per_epoch) - 1
    return None


def main() -> None:
    for readouts in sorted(RESULTS.glob("*/*/ws*/compare/readouts.jsonl")):
        unit = readouts.parent
        pauses = {arm: spec.get("pause", True) for arm, spec in
                  json.loads((unit / "bench.json").read_text())["config"]["schedule"].items()}  # fmt: skip
        pairs = defaultdict(list)
        for line in readouts.read_text().splitlines():
            record = json.loads(line)
            pairs[record["strategy"], record["seed"]].append(record)
        for (strategy, seed), lines in sorted(pairs.items()):
            if not any(line["readout"].get("control_groups") for line in lines):
                continue
            before, now = levels(lines, math.inf), levels(lines, gate.WINDOW_GROUPS)
            differs = next((epoch for epoch, (a, b) in enumerate(zip(before, now, strict=False)) if a != b), None)
            if differs is None and not any(before):
                continue
            name = str(unit.relative_to(RESULTS).parent)
            print(
                f"{name} {strategy} seed {seed} (pause {'on' if pauses.get(strategy, True) else 'off'}): "
                f"summed paused after epochs {[e for e, level in enumerate(before) if level]}, "
                f"levels first differ after epoch {differs}"
                + ("" if differs is None else f" (window: {gate.LEVEL_WORDS[now[differs]]})")
                + f"; target first reached in epoch {first_reached(unit, strategy, seed)}"
            )


if __name__ == "__main__":
    main()
