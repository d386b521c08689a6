"""Does a run's control read uniform as the bench's uniform arm measures it? Per task of a warm-start verdict.

A run with a control (probe's uniform slice) counts, each epoch, the slice's groups and how many had nonzero reward
variance: its readout of what a uniform draw would get, under the run's own policy. The bench's uniform arm
measures the same share under its own policy. Two comparisons, each per task and arm with a control, at the first
epoch with a control (epoch 1: every arm of a seed draws epoch 0 alike, uniformly, so both runs start it from the
same training) and over the later epochs:

* **Shares** (readouts.jsonl): the control's share against the uniform arm's over the same (seed, epoch)s, with
  the difference's Newcombe interval (one look, 95%; "agrees" when it includes 0); and per epoch, pooled over the
  units, so that where they part shows. The bench seeds every warm start's draws alike, so a seed's control slice
  and the uniform arm's epoch are the same prompts on every warm start of a task: `agreement` counts each such draw
  once (eight warm starts of one six-prompt slice are six prompts, not 48), or the interval is too narrow for what
  the prompts can carry.
* **The same prompts** (controls.jsonl): the bench seeds every arm's draw of an epoch alike, so the control's
  prompts are the first of the permutation the uniform arm draws its epoch from, and the uniform arm trained on
  them in that same epoch. Each control prompt's group, informative or not, in the aimed run and in the uniform arm:
  the prompts' own difficulty drops out, and what remains is the two policies. Exact McNemar test on the discordant
  prompts ("agrees" when its two-sided p is at least 0.05). `control_prompts` extracts the file from a comparison's
  run folders (`pooled.publish`), checking each rebuilt slice against what the run drew and counted.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Hashable
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from gaincurate.lab.benchmarks.curriculum.report import READOUTS
from gaincurate.numerics import recorded
from gaincurate.schedule.control import Arm, difference_interval

BASELINE = "uniform"  # the arm whose measured share the controls are held against
CONTROLS = "controls.jsonl"  # each control prompt's group in the aimed run and in the uniform arm


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


def agreement(pairs: list[tuple[Hashable, tuple[Arm, Arm]]]) -> dict[str, Any] | None:
    """The control's share against the uniform arm's over the same epochs (None: nothing to hold together). Each
    pair carries its draw: the prompts it was drawn from (a task's seed and epoch). Pairs of one draw, from k warm
    starts, count 1/k each: a prompt counted once however many warm starts drew it (Kish's design effect of an exact
    repeat, an upper bound where warm starts differ). Newcombe's interval on those counts, as the run's own
    readout reads its control (one look: 95%)."""
    draws: dict[Hashable, list[tuple[Arm, Arm]]] = defaultdict(list)
    for draw, pair in pairs:
        draws[draw].append(pair)

    def counted_once(side: int, field: str) -> float:
        return math.fsum(getattr(pair[side], field) / len(kept) for kept in draws.values() for pair in kept)

    n1, x1, n2, x2 = (counted_once(side, field) for side in (0, 1) for field in ("groups", "informative"))
    if not n1 or not n2:
        return None
    low, high = difference_interval(Arm(n1, x1), Arm(n2, x2))  # Wilson's and Newcombe's formulas take fractional counts
    groups = [sum(pair[side].groups for kept in draws.values() for pair in kept) for side in (0, 1)]
    return {"control": [recorded(n1), recorded(x1)], "uniform_arm": [recorded(n2), recorded(x2)], "groups": groups,
            "difference": recorded(x1 / n1 - x2 / n2), "interval": [recorded(low), recorded(high)],
            "agrees": low <= 0.0 <= high}  # fmt: skip


def task_agreement(folders: list[Path]) -> dict[str, dict[str, Any]]:
    """Per arm with a control, over `folders` (a task's comparison folders): `agreement` at the first epoch with a
    control and over every epoch it shares with the uniform arm."""
    pairs: dict[str, list[tuple[tuple[int, int], tuple[Arm, Arm]]]] = defaultdict(list)
    for folder in folders:
        for arm, epochs in epoch_arms(folder).items():
            pairs[arm] += list(epochs.items())
    result = {}
    for arm, kept in pairs.items():
        first = min(epoch for (_, epoch), _ in kept)
        result[arm] = {"first": agreement([(draw, pair) for draw, pair in kept if draw[1] == first]),
                       "all": agreement(kept)}  # fmt: skip
    return result


def by_epoch(tasks: dict[str, list[Path]], arm: str) -> dict[int, dict[str, Any] | None]:
    """`arm`'s agreement per epoch, pooled over every task's comparison folders and their seeds (tasks draw from
    different pools: a seed's draw on two tasks is two draws)."""
    pooled: dict[int, list[tuple[Hashable, tuple[Arm, Arm]]]] = defaultdict(list)
    for task, folders in tasks.items():
        for folder in folders:
            for (seed, epoch), pair in epoch_arms(folder).get(arm, {}).items():
                pooled[epoch].append(((task, seed, epoch), pair))
    return {epoch: agreement(pairs) for epoch, pairs in sorted(pooled.items())}


def share_words(counts: list[float]) -> str:
    groups, informative = counts
    # counted once: fractional where a draw is missing from some of the warm starts that share it
    size = f"{groups:.0f}" if float(groups).is_integer() else f"{groups:.1f}"
    return f"{informative / groups:.0%} of {size}"


def difference_words(entry: dict[str, Any] | None) -> str:
    if entry is None:
        return "-"
    low, high = entry["interval"]
    said = "agrees" if entry["agrees"] else "differs"
    return f"{100 * entry['difference']:+.0f} points [{100 * low:+.0f}, {100 * high:+.0f}]: {said}"


def control_prompts(compare: Path) -> list[dict[str, Any]]:
    """Per (arm, seed, epoch) with a control, its prompts and whether each one's group was informative in the arm's
    run and in the uniform arm's (None: the uniform arm did not draw it), from the run folders of a comparison."""
    from gaincurate.schedule.strategies.contract import draw_order

    runs = Path(compare) / "runs"
    lines = []
    for run in sorted(runs.glob("*-seed*")):
        arm, seed = run.name.rsplit("-seed", 1)
        uniform = runs / f"{BASELINE}-seed{seed}"
        if arm == BASELINE or not uniform.is_dir():
            continue
        ranking = np.asarray(json.loads((run / "state.json").read_text())["ranking"], dtype=np.int64)
        uniform_lines = {int(line["epoch"]): line for line in _history(uniform)}
        for line in _history(run):
            epoch, readout = int(line["epoch"]), line.get("readout") or {}
            if not readout.get("control_groups") or epoch not in uniform_lines:
                continue
            ids = ranking[draw_order(np.zeros(len(ranking)), np.random.default_rng([int(seed), epoch]))]
            slice_ids = sorted(int(i) for i in ids[: readout["control_groups"]])
            mine, theirs = _informative(run, line, ranking), _informative(uniform, uniform_lines[epoch], ranking)
            counted = sum(mine.get(g, False) for g in slice_ids)
            if not set(slice_ids) <= set(line["subset_ids"]) or counted != round(
                readout["control_informative"] * len(slice_ids)
            ):
                raise ValueError(f"{run}: epoch {epoch}'s control is not the slice the bench's seeding gives")
            lines.append({"strategy": arm, "seed": int(seed), "epoch": epoch, "gc_ids": slice_ids,
                          "aimed_run": [mine[g] for g in slice_ids],
                          "uniform_arm": [theirs.get(g) for g in slice_ids]})  # fmt: skip
    return lines


def control_lines(compare: Path) -> list[dict[str, Any]]:
    """A comparison's controls.jsonl (a published folder), else extracted from its run folders (a bench's --out)."""
    path = Path(compare) / CONTROLS
    if path.is_file():
        return [json.loads(line) for line in path.read_text().splitlines()]
    return control_prompts(compare) if (Path(compare) / "runs").is_dir() else []


def _history(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]


def _informative(run: Path, line: dict[str, Any], known: np.ndarray) -> dict[int, bool]:
    """Per prompt of the epoch of history `line` in `run`: whether its group was informative, as the readout reads
    the epoch's feedback file."""
    from gaincurate.schedule.feedback import read_feedback
    from gaincurate.schedule.readout import informative_prompts
    from gaincurate.schedule.run.rundir import feedback_path

    path = feedback_path(run, int(line["epoch"]))
    return informative_prompts(read_feedback(path, epoch_ids=line["subset_ids"], known_ids=known, reward_max=1.0))


def same_prompts(folders: list[Path]) -> dict[str, dict[str, Any]]:
    """Per arm, over `folders`' controls.jsonl: the control prompts' groups in the aimed run against the same
    prompts' groups in the uniform arm, at the first epoch with a control and over the later ones."""
    counts: dict[str, dict[str, list[int]]] = defaultdict(lambda: {"first": [0, 0, 0, 0], "later": [0, 0, 0, 0]})
    for folder in folders:
        for line in control_lines(folder):
            part = counts[line["strategy"]]["first" if line["epoch"] == 1 else "later"]
            for mine, theirs in zip(line["aimed_run"], line["uniform_arm"], strict=True):
                if theirs is not None:  # both informative, the aimed run's only, the uniform arm's only, neither
                    part[(0 if theirs else 1) if mine else (2 if theirs else 3)] += 1
    return {arm: {name: paired(cells) for name, cells in parts.items()} for arm, parts in counts.items()}


def paired(cells: list[int]) -> dict[str, Any] | None:
    """[both, aimed run only, uniform arm only, neither] as shares and the exact McNemar p (None: no prompts)."""
    both, mine, theirs, _ = cells
    prompts = sum(cells)
    if not prompts:
        return None
    p = mcnemar_p(mine, theirs)
    return {"prompts": prompts, "aimed_run": both + mine, "uniform_arm": both + theirs, "discordant": [mine, theirs],
            "p": recorded(p), "agrees": p >= 0.05}  # fmt: skip


def mcnemar_p(b: int, c: int) -> float:
    """The exact two-sided McNemar p: twice the smaller binomial tail of b among b + c discordant pairs at 1/2."""
    n = b + c
    if n == 0:
        return 1.0
    tail = Fraction(sum(math.comb(n, k) for k in range(min(b, c) + 1)), 2**n)  # exact at any count
    return float(min(Fraction(1), 2 * tail))


def same_prompts_words(entry: dict[str, Any] | None) -> str:
    if entry is None:
        return "-"
    said = "agrees" if entry["agrees"] else "differs"
    return (f"{entry['aimed_run']} / {entry['uniform_arm']} of {entry['prompts']} "
            f"(McNemar p {entry['p']:.2g}): {said}")  # fmt: skip
