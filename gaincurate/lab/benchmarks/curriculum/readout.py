"""The savings readout of each arm of a bench: the per-epoch readout a user's run shows, averaged over the seeds.

Every pair trains through the in-process curriculum, so each of its epochs carries the readout of
`gaincurate.schedule.readout` (the strategy's report hook and the feedback, nothing measured apart): a bench and
a user's run mean the same thing by each number. Per arm: the mean over seeds, epoch by epoch, of the share of
zero-variance groups, the strategy's model of uniform's, the strategy's estimated and the measured pass rates of its
picks; at the last epoch every seed reached, the estimate's correlation and the rollouts spent in groups with
nonzero variance; and, pooled over seeds and epochs, what the arm's own control (its uniform slice) measured of
uniform, beside what the bench's uniform arm measured: the check that a run's readout of uniform is right. In
OUT/table.md and summary.json's `readout`, re-derived by `--report` from OUT/readouts.jsonl.
"""

from __future__ import annotations

import math
from typing import Any

from gaincurate.numerics import recorded
from gaincurate.schedule.control import Arm, compare, wilson

EPOCH_FIGURES = ("zero_variance", "uniform_zero_variance_estimate", "estimated_pass_rate", "measured_pass_rate")
FINAL_FIGURES = ("correlation", "nonzero_rollouts")


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
            "control": control_of(seeds),
        }
    uniform = by_arm.get("uniform")
    if uniform is not None:
        measured = sum((_counted(line, None) for seed in uniform for line in seed), Arm())
        for data in arms.values():
            data["uniform_arm"] = _arm_json(measured)
    return arms


def control_of(seeds: list[list[dict[str, Any]]]) -> dict[str, Any] | None:
    """The arm's aimed groups and control groups pooled over its seeds and epochs, and their comparison (None: it
    kept no control)."""
    lines = [line for seed in seeds for line in seed if line.get("control_groups")]
    if not lines:
        return None
    aimed = sum((_counted(line, "aimed") for line in lines), Arm())
    control = sum((_counted(line, "control") for line in lines), Arm())
    comparison = compare(aimed, control)  # pooled once, after the runs: one look at 95%
    return {
        "aimed": _arm_json(aimed),
        "control": _arm_json(control),
        "verdict": None if comparison is None else comparison.verdict,
        "informative_gain": None if comparison is None else recorded(comparison.gain),
        "informative_gain_interval": None if comparison is None else [recorded(v) for v in comparison.gain_interval],
    }


def _counted(readout: dict[str, Any], arm: str | None) -> Arm:
    """An epoch's groups (`arm` None: all of them; else the aimed or control arm's) as counts."""
    if arm is None:
        groups = readout.get("groups") or 0
        share = 1.0 - (readout.get("zero_variance") or 0.0)
    else:
        groups, share = readout.get(f"{arm}_groups") or 0, readout.get(f"{arm}_informative") or 0.0
    return Arm(groups, round(share * groups), 0)


def _arm_json(arm: Arm) -> dict[str, Any]:
    low, high = wilson(arm.informative, arm.groups)
    share = arm.share
    return {"groups": arm.groups, "informative": None if share is None else recorded(share),
            "interval": [recorded(low), recorded(high)]}  # fmt: skip


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
        "| arm | estimate | zero-variance groups | uniform (model) | r | informative: its control [95%] "
        "| informative: uniform arm | aimed against control |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for arm, data in arms.items():
        epochs, final = data["epochs"], data["final"]
        zero = _mean([e["zero_variance"] for e in epochs])
        uniform = _mean([e["uniform_zero_variance_estimate"] for e in epochs])
        control, measured = data.get("control"), data.get("uniform_arm")
        slice_share = "no control" if control is None else _share_words(control["control"])
        against = "-" if control is None or control["verdict"] is None else _gain_words(control)
        lines.append(
            f"| {arm} | {data['estimate']} | {_number(zero, '{:.0%}')} | {_number(uniform, '{:.0%}')} "
            f"| {_number(final['correlation'], '{:+.2f}')} | {slice_share} "
            f"| {'-' if measured is None else _share_words(measured)} | {against} |"
        )
    return "\n".join(lines) + "\n"


def _share_words(arm: dict[str, Any]) -> str:
    low, high = arm["interval"]
    return f"{_number(arm['informative'], '{:.0%}')} [{low:.0%}, {high:.0%}] of {arm['groups']}"


def _gain_words(control: dict[str, Any]) -> str:
    low, high = control["informative_gain_interval"]
    gain = control["informative_gain"]
    return f"{control['verdict']}: {100 * gain:+.0f} points [{100 * low:+.0f}, {100 * high:+.0f}]"


def _mean(values: list[Any]) -> float | None:
    present = [float(value) for value in values if value is not None]
    return recorded(math.fsum(present) / len(present)) if present else None


def _number(value: float | None, spec: str) -> str:
    return "-" if value is None else spec.format(value)
