"""The savings readout of each arm of a bench: the per-epoch readout a user's run shows, averaged over the seeds.

Every pair trains through the in-process curriculum, so each of its epochs carries the readout of
`gaincurate.schedule.readout` (the strategy's report hook and the feedback, nothing measured apart): a bench and
a user's run mean the same thing by each number. Per arm: the mean over seeds, epoch by epoch, of the share of
zero-variance groups, uniform's estimate of it, the strategy's estimated and the measured pass rates of its
picks, and, at the last epoch every seed reached, the estimate's correlation and the rollouts spent in groups with
nonzero variance beside uniform's estimate. In OUT/table.md and summary.json's `readout`, re-derived by
`--report` from OUT/readouts.jsonl.
"""

from __future__ import annotations

import math
from typing import Any

from gaincurate.numerics import recorded

EPOCH_FIGURES = ("zero_variance", "uniform_zero_variance_estimate", "estimated_pass_rate", "measured_pass_rate")
FINAL_FIGURES = ("correlation", "compared_nonzero_rollouts", "uniform_nonzero_rollouts_estimate", "nonzero_rollouts")


def arm_readouts(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per arm: each epoch's mean readout over the seeds that trained it, and the final figures' means."""
    by_arm: dict[str, list[list[dict[str, Any]]]] = {}
    for pair in pairs:
        readouts = [epoch["readout"] for epoch in pair.get("epochs", []) if epoch.get("readout")]
        by_arm.setdefault(pair["strategy"], []).append(readouts)
    arms = {}
    for arm, seeds in by_arm.items():
        reached = min((len(readouts) for readouts in seeds), default=0)
        if not reached:
            continue
        epochs = [{key: _mean([seed[e].get(key) for seed in seeds]) for key in EPOCH_FIGURES} for e in range(reached)]
        last = [seed[reached - 1] for seed in seeds]
        arms[arm] = {
            "seeds": len(seeds),
            "estimate": last[0].get("estimate"),
            "epochs": epochs,
            "final": {key: _mean([line.get(key) for line in last]) for key in FINAL_FIGURES},
        }
    return arms


def readout_lines(pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OUT/readouts.jsonl: one line per (arm, seed, epoch) with a readout, what a report re-derives the table from."""
    return [
        {"strategy": pair["strategy"], "seed": pair["seed"], "epoch": epoch["epoch"], "readout": epoch["readout"]}
        for pair in pairs
        for epoch in pair.get("epochs", [])
        if epoch.get("readout")
    ]


def pairs_of(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The pairs' epochs back from `readout_lines`, for `arm_readouts`."""
    pairs: dict[tuple[str, int], dict[str, Any]] = {}
    for line in lines:
        pair = pairs.setdefault((line["strategy"], line["seed"]), {**line, "epochs": []})
        pair["epochs"].append({"epoch": line["epoch"], "readout": line["readout"]})
    return list(pairs.values())


def readout_markdown(arms: dict[str, Any]) -> str:
    """The per-arm readout as a markdown table (empty when no pair carries a readout)."""
    if not arms:
        return ""
    lines = [
        "",
        "Savings readout per arm (mean over seeds; `gaincurate schedule status` shows the same on a run):",
        "",
        "| arm | estimate | zero-variance groups | uniform's (est.) | r | nonzero-variance rollouts (uniform, est.) |",
        "|---|---|---|---|---|---|",
    ]
    for arm, data in arms.items():
        epochs, final = data["epochs"], data["final"]
        zero = _mean([e["zero_variance"] for e in epochs])
        uniform = _mean([e["uniform_zero_variance_estimate"] for e in epochs])
        spent = _number(final["compared_nonzero_rollouts"], "{:.0f}")
        versus = _number(final["uniform_nonzero_rollouts_estimate"], "~{:.0f}")
        lines.append(
            f"| {arm} | {data['estimate']} | {_number(zero, '{:.0%}')} | {_number(uniform, '{:.0%}')} "
            f"| {_number(final['correlation'], '{:+.2f}')} | {spent} ({versus}) |"
        )
    return "\n".join(lines) + "\n"


def _mean(values: list[Any]) -> float | None:
    present = [float(value) for value in values if value is not None]
    return recorded(math.fsum(present) / len(present)) if present else None


def _number(value: float | None, spec: str) -> str:
    return "-" if value is None else spec.format(value)
