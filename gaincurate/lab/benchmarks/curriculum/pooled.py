"""A warm-start verdict's report: each unit's ratio, the pooled ratio over warm starts, the worst warm start.

    summary, markdown = report(Path("docs/results/warm-starts"))   # `gaincurate bench curriculum --report DIR`
    publish(Path("OUT"), Path("docs/results/warm-starts"))

Every figure comes from the unit folders' small files (`report.report` on each): the pilot's uniform gain gives the
unit's targets again, and the report refuses a comparison whose declared targets differ from them; the comparison
gives the arm's paired compute ratio to the target, per seed (censored seeds at their budget, counted).

The pooled ratio is the geometric mean over warm starts of each warm start's geometric mean over seeds: every warm
start weighs the same, as the task is the unit and each warm start one draw of it. Its interval is a two-stage
(hierarchical) percentile bootstrap: resample the warm starts, then each drawn warm start's seeds, so both the spread
between warm starts and the seed noise within each reach it. With four warm starts it is narrow-biased (a resample
of four units has at most four distinct values), and it takes each warm start's seeds as its own, while the bench
runs the same seeds on every warm start of a verdict: a seed's draws and sampling are shared, and its effect on the
ratio with them (a lucky order of prompts helps every warm start alike) does not shrink as warm starts are added. So
a t interval stands beside it: for that crossed design `stats.crossed_mean_ci` (warm starts and seeds both random),
else the t interval over the warm starts' means.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from gaincurate.errors import ConfigError
from gaincurate.fileio import atomic_write_bytes
from gaincurate.lab.benchmarks.curriculum import agreement, own_policy, stats
from gaincurate.lab.benchmarks.curriculum.configs import parse_seeds
from gaincurate.lab.benchmarks.curriculum.report import FILES, READOUTS, pilot_targets
from gaincurate.lab.benchmarks.curriculum.report import publish as publish_bench
from gaincurate.lab.benchmarks.curriculum.report import report as bench_report
from gaincurate.lab.benchmarks.curriculum.verdicts import WarmStartVerdict
from gaincurate.lab.benchmarks.curriculum.warm_starts import COMPARE, DECLARATION, PILOT, unit_folder

UNIT = "compute"  # the verdict's cost: priced compute to the target (compute.py)
RAMP_EPOCHS = 10  # the epochs the informative table shows: where aims differ most, before most targets are reached


def pooled_ratio(logs: list[list[float]], seeds: list[list[int]] | None = None, *,
                 resamples: int = stats.BOOTSTRAP_RESAMPLES) -> dict[str, Any]:  # fmt: skip
    """exp(mean over warm starts of the mean log ratio over each one's seeds), with a 95% two-stage percentile
    bootstrap (warm starts with replacement, then seeds within each) and a t interval beside it. `logs`: per warm
    start, its seeds' log ratios; `seeds`: their seed numbers. Where every warm start ran the same seeds (a crossed
    design), the t interval is `stats.crossed_mean_ci` (`t_kind` "crossed"), which counts a seed's effect shared by
    every warm start; otherwise the t interval over the warm starts' means ("warm starts")."""
    kept = [(list(map(float, values)), list(mine)) for values, mine in zip(logs, seeds or [[]] * len(logs),
                                                                           strict=True) if values]  # fmt: skip
    logs = [values for values, _ in kept]
    if not logs:
        return {"mean": None, "low": None, "high": None, "t_low": None, "t_high": None, "t_kind": None,
                "warm_starts": 0}  # fmt: skip
    means = [stats.mean(values) for values in logs]
    crossed = len({tuple(sorted(mine)) for _, mine in kept}) == 1 and all(len(m) == len(v) > 1 for v, m in kept)
    if crossed:
        order = sorted(kept[0][1])
        t = stats.crossed_mean_ci([[dict(zip(mine, values, strict=True))[s] for s in order] for values, mine in kept])
    else:
        t = stats.mean_ci(means)
    result = {"mean": math.exp(stats.mean(means)), "low": None, "high": None, "warm_starts": len(logs),
              "t_low": None if t["low"] is None else math.exp(t["low"]),
              "t_high": None if t["high"] is None else math.exp(t["high"]),
              "t_kind": "crossed" if crossed else "warm starts"}  # fmt: skip
    if len(logs) < 2:
        return result
    values = sorted(bootstrap_draws(logs, resamples))
    result["low"] = math.exp(values[int(0.025 * (len(values) - 1))])
    result["high"] = math.exp(values[int(math.ceil(0.975 * (len(values) - 1)))])
    return result


def bootstrap_draws(logs: list[list[float]], resamples: int) -> list[float]:
    """Each resample's pooled mean log ratio: PCG64 integers (the same on every platform), sums by math.fsum."""
    rng = np.random.default_rng(stats.BOOTSTRAP_SEED)
    width = len(logs)
    out = []
    for _ in range(resamples):
        drawn = rng.integers(0, width, size=width).tolist()
        means = []
        for index in drawn:
            seeds = logs[index]
            picks = rng.integers(0, len(seeds), size=len(seeds)).tolist()
            means.append(math.fsum(seeds[i] for i in picks) / len(seeds))
        out.append(math.fsum(means) / width)
    return out


def informative_by_epoch(folders: list[Path]) -> dict[str, list[list[int]]]:
    """Per arm, per epoch from 0: [groups with nonzero reward variance, groups], summed over `folders`' seeds (each
    comparison's readouts.jsonl; [0, 0] for an epoch none counted): where in a run an aim becomes informative."""
    counts: dict[str, dict[int, list[int]]] = {}
    for folder in folders:
        path = folder / READOUTS
        for line in map(json.loads, path.read_text().splitlines() if path.is_file() else []):
            readout = line["readout"]
            groups = readout.get("groups") or 0
            if readout.get("zero_variance") is None or not groups:
                continue
            cell = counts.setdefault(line["strategy"], {}).setdefault(int(line["epoch"]), [0, 0])
            cell[0] += round((1.0 - readout["zero_variance"]) * groups)
            cell[1] += groups
    return {arm: [epochs.get(e, [0, 0]) for e in range(max(epochs) + 1)] for arm, epochs in counts.items()}


def between_arms(arms: tuple[str, ...], units: dict[int, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each of `arms` after the first against the first, seed by seed over `units` (the compared warm starts): the
    geometric mean of their ratio (the baseline's compute cancels: the same pair), with a 95% t interval over the
    seeds. Each seed one draw: for verdicts whose warm starts ran their own seeds."""
    first, out = arms[0], {}
    for arm in arms[1:]:
        logs = []
        for unit in units.values():
            mine, theirs = unit["arms"].get(arm), unit["arms"].get(first)
            if mine and theirs:
                by_seed = dict(zip(theirs["seeds"], theirs["per_seed"], strict=True))
                logs += [math.log(r / by_seed[s]) for s, r in zip(mine["seeds"], mine["per_seed"], strict=True)
                         if s in by_seed]  # fmt: skip
        ci = stats.mean_ci(logs)
        out[arm] = {"n": ci["n"], **{k: None if ci[k] is None else math.exp(ci[k]) for k in ("mean", "low", "high")}}
    return out


def _read_verdict(folder: Path) -> tuple[WarmStartVerdict, dict[str, Any]]:
    path = Path(folder) / DECLARATION
    if not path.is_file():
        raise ConfigError(f"{folder} lacks {DECLARATION}: point --report at a warm-start run or its docs/results copy")
    kept = json.loads(path.read_text())
    data = kept["verdict"]
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return WarmStartVerdict(**fields), kept


def _digest(folder: Path) -> str | None:
    path = folder / "summary.json"
    return json.loads(path.read_text()).get("initial_sha256") if path.is_file() else None


def unit_result(verdict: WarmStartVerdict, folder: Path, task: str, warm_start: int) -> dict[str, Any]:
    """One unit from its folders: status, digest, targets (re-derived from the pilot) and each arm's ratios."""
    pilot, compare = folder / PILOT, folder / COMPARE
    if not (pilot / FILES[1]).is_file():
        return {"status": "not run"}
    pilot_summary, _ = bench_report(pilot)
    targets = pilot_targets(pilot_summary)
    entry: dict[str, Any] = {"digest": _digest(pilot), "pilot_seeds": pilot_summary["strategies"]["uniform"]["seeds"],
                             "targets": {f"{share:g}": value for share, value in targets.items()}}  # fmt: skip
    if not (compare / FILES[1]).is_file():
        return {**entry, "status": "pilot only" if targets else "no target: uniform gained nothing on the pilot"}
    summary, _ = bench_report(compare)
    analysis = summary["analysis"]
    declared = verdict.compare_config(task, warm_start, targets)
    kept = json.loads((compare / FILES[0]).read_text())["config"]
    if (analysis["target"], tuple(analysis["other_targets"]), kept["warm_start_seed"]) != (
        declared.target,
        declared.other_targets,
        warm_start,
    ):
        raise ConfigError(f"{compare}: its targets or warm start are not the ones its pilot gives by the declared rule")
    if _digest(compare) not in (None, entry["digest"]):
        raise ConfigError(f"{compare} started from other weights than its pilot ({_digest(compare)})")
    arms = {}
    for arm, arm_entry in summary["strategies"].items():
        ratio = (arm_entry["vs_baseline"] or {}).get(UNIT)
        if ratio is not None:
            sensitivity = {name: (versus or {}).get(UNIT) for name, versus in arm_entry["sensitivity"].items()}
            arms[arm] = {**{k: ratio[k] for k in ("mean", "low", "high", "n", "p", "per_seed", "censored",
                                                   "baseline_censored")}, "seeds": arm_entry["vs_baseline"]["seeds"],
                         "p_holm": summary.get("compute_primary", {}).get(arm, {}).get("p_holm"),
                         "sensitivity": {k: v and v["mean"] for k, v in sensitivity.items()}}  # fmt: skip
    seeds = summary["strategies"].get(verdict.arms[0], {}).get("seeds", [])
    done = len(seeds) == len(parse_seeds(verdict.seeds))
    return {**entry, "status": "compared", "seeds": seeds, "complete": done, "arms": arms,
            "analysis": {"target": analysis["target"], "other_targets": analysis["other_targets"]}}  # fmt: skip


def report(folder: Path) -> tuple[dict[str, Any], str]:
    """(summary, markdown) of a warm-start run, re-derived from its unit folders."""
    verdict, kept = _read_verdict(folder)
    units = {f"{task}/ws{k}": unit_result(verdict, unit_folder(folder, task, k), task, k)
             for task, k in verdict.units()}  # fmt: skip
    for name, unit in units.items():
        unit["cpu"] = kept.get("cpu", {}).get(name)
    tasks, every = {}, {}  # every: per task, each compared unit's comparison folder
    for task in verdict.tasks:
        mine = {k: units[f"{task}/ws{k}"] for k in verdict.warm_starts}
        # Only warm starts whose every declared seed finished are pooled: a part of one is not a draw of the task.
        compared = {k: u for k, u in mine.items() if u["status"] == "compared" and u["complete"] and u["arms"]}
        arms = {}
        for arm in verdict.arms[1:]:
            measured = {k: u["arms"][arm] for k, u in compared.items() if arm in u["arms"]}
            logs = [[math.log(r) for r in m["per_seed"]] for m in measured.values()]
            pooled = pooled_ratio(logs, [m["seeds"] for m in measured.values()])
            worst = max(measured, key=lambda k: measured[k]["mean"], default=None)
            arms[arm] = {**pooled, "worst_warm_start": worst, "within_sd": stats.within_sd(logs),
                         "seed_counts": [len(values) for values in logs],
                         "worst": None if worst is None else measured[worst]["mean"],
                         "censored": sum(m["censored"] for m in measured.values()),
                         "baseline_censored": sum(m["baseline_censored"] for m in measured.values()),
                         "seeds": sum(m["n"] for m in measured.values())}  # fmt: skip
        folders = [unit_folder(folder, task, k) / COMPARE for k in sorted(compared)]
        every[task] = folders
        tasks[task] = {"warm_starts_compared": sorted(compared), "arms": arms,
                       "agreement": agreement.task_agreement(folders),
                       "same_prompts": agreement.same_prompts(folders),
                       "informative_by_epoch": informative_by_epoch(folders)}  # fmt: skip
        if verdict.seeds_apart:
            tasks[task]["between_arms"] = between_arms(verdict.arms[1:], compared)
        if verdict.measure_pool:
            tasks[task]["own_policy"] = own_policy.task_agreement(folders)
    goal = _goal(verdict, tasks)
    by_epoch = {str(epoch): entry for epoch, entry in agreement.by_epoch(every, verdict.goal_arm).items()}
    summary = {"verdict": verdict.name, "declared": kept["verdict"], "units": units, "tasks": tasks, "goal": goal,
               "agreement_by_epoch": by_epoch}  # fmt: skip
    return summary, markdown(verdict, summary)


def _goal(verdict: WarmStartVerdict, tasks: dict[str, Any]) -> dict[str, Any]:
    """Whether the goal arm's pooled ratio is at most goal_pooled on every task and no warm start above goal_worst,
    over the warm starts compared (`complete`: every declared unit was)."""
    per_task = {}
    for task, entry in tasks.items():
        arm = entry["arms"].get(verdict.goal_arm) or {}
        if arm.get("mean") is None:
            per_task[task] = None
            continue
        per_task[task] = arm["mean"] <= verdict.goal_pooled and arm["worst"] <= verdict.goal_worst
    complete = all(len(e["warm_starts_compared"]) == len(verdict.warm_starts) for e in tasks.values())
    met = all(per_task.values()) and None not in per_task.values()
    return {"per_task": per_task, "met": met, "complete": complete}


def _ratio(entry: dict[str, Any] | None) -> str:
    if not entry or entry.get("mean") is None:
        return "n/a"
    interval = "" if entry.get("low") is None else f" [{entry['low']:.2f}, {entry['high']:.2f}]"
    return f"{entry['mean']:.2f}{interval}"


def _pooled_cell(arm: dict[str, Any]) -> str:
    kind = "crossed t" if arm.get("t_kind") == "crossed" else "t"
    return f"{_ratio(arm)} ({kind}: {_ratio({'mean': arm['mean'], 'low': arm['t_low'], 'high': arm['t_high']})})"


def markdown(verdict: WarmStartVerdict, summary: dict[str, Any]) -> str:
    """Per task: a row per warm start (digest, CPU, targets, each arm's compute ratio), the pooled row, the worst."""
    compared = verdict.arms[1:]
    shift = f"by {verdict.seed_stride}" if verdict.seed_stride else "by their count"
    apart = f", each warm start its own (the next one's shifted {shift})" if verdict.seeds_apart else ""
    lines = [f"Warm-start verdict {verdict.name}: compute to the target over {verdict.arms[0]}'s, paired by seed "
             f"(geometric mean, 95% t interval; censored seeds at their budget, counted in brackets). Targets per "
             f"warm start from {verdict.arms[0]} on pilot seeds {verdict.pilot_seeds} (75% of its mean gain; 50% and "
             f"90% for sensitivity); fresh seeds {verdict.seeds}{apart}. Pooled: the geometric mean over warm starts, "
             f"95% two-stage bootstrap (warm starts, then seeds); beside it, where every warm start ran the same "
             f"seeds, the crossed t interval, which counts a seed's effect shared by every warm start (the bootstrap "
             f"and a t over the warm starts' means leave it out), else the t interval over warm starts."]  # fmt: skip
    for task, entry in summary["tasks"].items():
        lines += ["", f"**{task}**", "", "| warm start | digest | CPU | targets (50/75/90%) | seeds | "
                  + " | ".join(compared) + " |", "|---|---|---|---|---|" + "---|" * len(compared)]  # fmt: skip
        for k in verdict.warm_starts:
            unit = summary["units"][f"{task}/ws{k}"]
            cpu = unit.get("cpu") or {}
            where = f"{cpu.get('torch_kernels', '?')}, {cpu.get('model', '?')}" if cpu else "?"
            targets = "/".join(f"{v:.3f}" for v in (unit.get("targets") or {}).values()) or "-"
            if unit["status"] != "compared":
                lines.append(f"| {k} | {(unit.get('digest') or '-')[:8]} | {where} | {targets} | {unit['status']} |"
                             + " |" * len(compared))  # fmt: skip
                continue
            cells = [f"{_ratio(unit['arms'].get(arm))} ({(unit['arms'].get(arm) or {}).get('censored', '-')})"
                     for arm in compared]  # fmt: skip
            seeds = f"{len(unit['seeds'])}" + ("" if unit["complete"] else f" of {verdict.seeds}, not pooled")
            lines.append(f"| {k} | {unit['digest'][:8]} | {where} | {targets} | {seeds} | "
                         + " | ".join(cells) + " |")  # fmt: skip
        pooled = [_pooled_cell(entry["arms"][arm]) for arm in compared]
        worst = [f"{entry['arms'][arm]['worst']:.2f} (ws{entry['arms'][arm]['worst_warm_start']})"
                 if entry["arms"][arm]["worst"] is not None else "n/a" for arm in compared]  # fmt: skip
        lines += [f"| pooled over {len(entry['warm_starts_compared'])} | | | | | " + " | ".join(pooled) + " |",
                  "| worst warm start | | | | | " + " | ".join(worst) + " |"]  # fmt: skip
    goal = summary["goal"]
    said = "met" if goal["met"] else "missed"
    per_task = ", ".join(f"{task} {'met' if ok else 'missed' if ok is not None else 'not measured'}"
                         for task, ok in goal["per_task"].items())  # fmt: skip
    lines += ["", f"Goal ({verdict.goal_arm}: pooled at most {verdict.goal_pooled:.2f}x on every task and no warm "
              f"start above {verdict.goal_worst:.2f}x): {said} ({per_task})"
              + ("." if goal["complete"] else "; over the units that finished, not every declared one.")]  # fmt: skip
    lines += _between_lines(verdict, summary) + _noise_lines(verdict, summary) + _ramp_lines(summary)
    return "\n".join(lines + _agreement_lines(verdict, summary) + own_policy.lines(summary)) + "\n"


def _between_lines(verdict: WarmStartVerdict, summary: dict[str, Any]) -> list[str]:
    """Per task, each compared arm after the first against the first, seed by seed (`between_arms`)."""
    said = [f"{task}: {arm} {_ratio(entry)} over {entry['n']} seeds" for task, task_entry in summary["tasks"].items()
            for arm, entry in task_entry.get("between_arms", {}).items() if entry["n"]]  # fmt: skip
    if not said:
        return []
    first = verdict.arms[1]
    return ["", f"Against {first}, seed by seed (the same seed's compute to the target over {first}'s; geometric mean, "
            "95% t interval over the seeds, each warm start's its own): " + "; ".join(said) + "."]  # fmt: skip


def _ramp_lines(summary: dict[str, Any]) -> list[str]:
    """Per task, each arm's share of informative groups in its first epochs, pooled over the warm starts compared."""
    lines = []
    for task, entry in summary["tasks"].items():
        ramp = entry.get("informative_by_epoch") or {}
        if not ramp:
            continue
        shown = min(RAMP_EPOCHS, max(len(cells) for cells in ramp.values()))
        lines += ["", f"{task}: each arm's groups with nonzero reward variance by epoch, pooled over the warm starts "
                  f"compared (epochs 0 to {shown - 1}):", "",
                  "| arm | " + " | ".join(str(e) for e in range(shown)) + " |", "|---|" + "---|" * shown]  # fmt: skip
        for arm, cells in ramp.items():
            shares = [f"{x / n:.0%}" if n else "-" for x, n in cells[:shown]] + ["-"] * (shown - len(cells[:shown]))
            lines.append(f"| {arm} | " + " | ".join(shares) + " |")
    return lines


def _noise_lines(verdict: WarmStartVerdict, summary: dict[str, Any]) -> list[str]:
    """How often seed noise alone would put one warm start above the goal's bound, were the goal arm at the pooled
    goal on every warm start: the worst warm start's reading at this verdict's size, and at twice its seeds."""
    said = []
    for task, entry in summary["tasks"].items():
        arm = entry["arms"].get(verdict.goal_arm) or {}
        if arm.get("within_sd") is None:
            continue
        chances = [stats.chance_any_above(arm["within_sd"], [times * n for n in arm["seed_counts"]],
                                          verdict.goal_pooled, verdict.goal_worst) for times in (1, 2)]  # fmt: skip
        now, twice = (f"{p:.0%}" if p >= 0.005 else "under 1%" for p in chances)
        said.append(f"{now} on {task} ({twice} with twice the seeds; SD {arm['within_sd']:.2f})")
    if not said:
        return []
    return ["", f"The worst warm start at this size: were {verdict.goal_arm} at {verdict.goal_pooled:.2f}x on every "
            f"warm start, seed noise alone would read one of them above {verdict.goal_worst:.2f}x with probability "
            + ", ".join(said) + ". Each seed's log ratio taken as normal about the true one with the standard "
            "deviation (SD) within a warm start pooled over the verdict's, and the warm starts as independent (where "
            "they share seeds, less often)."]  # fmt: skip


def _agreement_lines(verdict: WarmStartVerdict, summary: dict[str, Any]) -> list[str]:
    """Each run's control against the uniform arm per task and arm (epoch 1 and every epoch), then per epoch."""
    rows = [(task, arm, entry) for task, data in summary["tasks"].items()
            for arm, entry in (data.get("agreement") or {}).items()]  # fmt: skip
    if not rows:
        return []
    words = agreement.share_words
    lines = ["", "Each run's control against the bench's uniform arm: the share of groups with nonzero reward variance "
             "over the same seeds and epochs, pooled over the warm starts compared, and the difference with its 95% "
             "interval (Newcombe). A seed draws the same prompts on every warm start of a task, so a draw counts "
             "once: groups over the warm starts that drew it. Epoch 1 is the first with a control; every arm of a "
             "seed drew epoch 0 alike, so both runs start it from the same training.", "",
             "| task | arm | epoch 1: control | uniform arm | control - uniform arm | every epoch: control "
             "| uniform arm | control - uniform arm |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for task, arm, entry in rows:
        cells = []
        for part in (entry["first"], entry["all"]):
            cells += ["-", "-", "-"] if part is None else [words(part["control"]), words(part["uniform_arm"]),
                                                           agreement.difference_words(part)]  # fmt: skip
        lines.append(f"| {task} | {arm} | " + " | ".join(cells) + " |")
    paired = [(task, arm, entry) for task, data in summary["tasks"].items()
              for arm, entry in (data.get("same_prompts") or {}).items()]  # fmt: skip
    if paired:
        lines += ["", "The same prompts: each control prompt's group in the aimed run against the same prompt's group "
                  "in the uniform arm, the same seed and epoch (the bench draws every arm's epoch from one "
                  "permutation, so the uniform arm trained on the control's prompts too). Informative groups, aimed "
                  "run / uniform arm, of the prompts; exact McNemar test on the discordant ones.", "",
                  "| task | arm | epoch 1 | later epochs |", "|---|---|---|---|"]  # fmt: skip
        for task, arm, entry in paired:
            lines.append(f"| {task} | {arm} | {agreement.same_prompts_words(entry.get('first'))} "
                         f"| {agreement.same_prompts_words(entry.get('later'))} |")  # fmt: skip
    lines += ["", f"{verdict.goal_arm}'s control against the uniform arm by epoch, pooled over every unit compared:",
              "", "| epoch | control | uniform arm | control - uniform arm |", "|---|---|---|---|"]  # fmt: skip
    for epoch, entry in summary["agreement_by_epoch"].items():
        if entry is not None:
            lines.append(f"| {epoch} | {words(entry['control'])} | {words(entry['uniform_arm'])} "
                         f"| {agreement.difference_words(entry)} |")  # fmt: skip
    return lines


def publish(out: Path, folder: Path) -> None:
    """Copy a warm-start run's small files (each unit bench's, and the declaration) into a results folder."""
    verdict, _ = _read_verdict(out)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / DECLARATION).write_bytes((Path(out) / DECLARATION).read_bytes())
    for task, k in verdict.units():
        for phase in (PILOT, COMPARE):
            source = unit_folder(out, task, k) / phase
            if (source / FILES[1]).is_file():
                publish_bench(source, unit_folder(folder, task, k) / phase)
        compare = unit_folder(out, task, k) / COMPARE
        if (compare / FILES[1]).is_file():  # the control prompts' groups, from the run folders it does not copy
            lines = agreement.control_lines(compare)
            text = "".join(json.dumps(line) + "\n" for line in lines)
            atomic_write_bytes(unit_folder(folder, task, k) / COMPARE / agreement.CONTROLS, text.encode())
