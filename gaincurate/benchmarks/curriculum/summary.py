"""From runs.jsonl's evaluation points to summary.json and a markdown table.

Definitions (docs/benchmarks.md, "Training efficiency" says the same in words):

* A curve is one (strategy, seed) pair's points by step. Before any threshold is read, accuracy is smoothed by
  a trailing mean over `smooth` points (1: none). Final accuracy is the smoothed value at the last point.
* The target, per metric (greedy `accuracy`, `sampled_accuracy`), is `target_fraction` times the best mean
  final accuracy of any strategy (the oracle excluded); `target`, when set, replaces it for the headline metric.
* X-to-target (X = steps, rollouts, seconds) is X at the first point whose smoothed accuracy reaches the
  target; a seed that never reaches it is left out of the mean and counted in `reached`.
* Means carry a 95% Student-t interval over seeds. The paired ratio against the baseline divides each seed's
  X-to-target by the baseline's at the same seed; its mean is geometric, with the interval taken on log ratios.
* AUC is the trapezoid area under accuracy against rollouts divided by the rollout span: the mean accuracy
  over the rollout budget.
* Headroom (when `oracle` ran beside the baseline): per seed, the oracle's rollouts to reach the baseline's
  own final accuracy, over the baseline's rollouts to reach it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np

from gaincurate.benchmarks.curriculum.configs import BenchConfig

METRICS = {"greedy": "accuracy", "sampled": "sampled_accuracy"}
ORACLE = "oracle"
# Two-sided 95% Student-t quantiles for 1..30 degrees of freedom; above that the normal 1.96 is close enough.
T975 = (
    *(12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131),
    *(2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042),
)


def t_quantile(df: int) -> float:
    return T975[df - 1] if df <= len(T975) else 1.96


def mean_ci(values: list[float]) -> dict[str, Any]:
    """Mean and 95% t interval; the interval is None with fewer than two values."""
    values = [float(v) for v in values]
    n = len(values)
    if n == 0:
        return {"mean": None, "low": None, "high": None, "n": 0}
    mean = float(np.mean(values))
    if n == 1:
        return {"mean": mean, "low": None, "high": None, "n": 1}
    half = t_quantile(n - 1) * float(np.std(values, ddof=1)) / math.sqrt(n)
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": n}


def ratio_ci(ratios: list[float]) -> dict[str, Any]:
    """Geometric mean of positive ratios with a 95% t interval on their logarithms."""
    kept = [float(r) for r in ratios if r is not None and r > 0]
    stats = mean_ci([math.log(r) for r in kept])
    return {key: (math.exp(value) if key != "n" and value is not None else value) for key, value in stats.items()} | {
        "per_seed": [float(r) if r is not None else None for r in ratios]
    }


def smoothed(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over `window` points (fewer at the start)."""
    sums = np.cumsum(np.concatenate([[0.0], values]))
    index = np.arange(1, len(values) + 1)
    start = np.maximum(0, index - window)
    return (sums[index] - sums[start]) / (index - start)


def curves(points: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, np.ndarray]]:
    """(strategy, seed) -> arrays of every point field, ordered by step."""
    grouped: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for point in points:
        grouped[(point["strategy"], int(point["seed"]))].append(point)
    out = {}
    for key, rows in grouped.items():
        rows = sorted(rows, key=lambda p: p["step"])
        out[key] = {
            field: np.array([np.nan if r.get(field) is None else r[field] for r in rows], dtype=np.float64)
            for field in ("step", "rollouts", "tokens", "seconds", "accuracy", "sampled_accuracy")
        }
    return out


def first_reach(curve: dict[str, np.ndarray], metric: str, target: float, window: int) -> dict[str, float] | None:
    """steps, rollouts and seconds at the first point whose smoothed `metric` reaches `target`; None if never."""
    reached = np.flatnonzero(smoothed(curve[metric], window) >= target - 1e-12)
    if not len(reached):
        return None
    i = int(reached[0])
    return {
        "steps": float(curve["step"][i]),
        "rollouts": float(curve["rollouts"][i]),
        "seconds": float(curve["seconds"][i]),
    }


def auc(curve: dict[str, np.ndarray], metric: str) -> float | None:
    x, y = curve["rollouts"], curve[metric]
    span = x[-1] - x[0]
    if len(x) < 2 or span <= 0:
        return None
    return float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)) / span)


def _strategy_metric(by_seed, baseline_by_seed, metric: str, target: float, window: int) -> dict[str, Any]:
    """One strategy's figures for one metric: final, AUC, X-to-target and paired ratios against the baseline."""
    finals = [float(smoothed(c[metric], window)[-1]) for c in by_seed.values()]
    reach = {seed: first_reach(c, metric, target, window) for seed, c in by_seed.items()}
    to_target = {
        unit: mean_ci([r[unit] for r in reach.values() if r is not None]) for unit in ("steps", "rollouts", "seconds")
    }
    result = {
        "final": mean_ci(finals),
        "initial": mean_ci([float(c[metric][0]) for c in by_seed.values()]),
        "auc": mean_ci([a for a in (auc(c, metric) for c in by_seed.values()) if a is not None]),
        "to_target": to_target,
        "reached": f"{sum(r is not None for r in reach.values())}/{len(reach)}",
        "ratio_vs_baseline": None,
    }
    if baseline_by_seed:
        base = {seed: first_reach(c, metric, target, window) for seed, c in baseline_by_seed.items()}
        seeds = sorted(set(reach) & set(base))
        result["ratio_vs_baseline"] = {
            unit: ratio_ci([
                reach[s][unit] / base[s][unit] if reach[s] and base[s] and base[s][unit] > 0 else None for s in seeds
            ])
            for unit in ("steps", "rollouts", "seconds")
        }  # fmt: skip
    return result


def headroom(by_strategy, config: BenchConfig, metric_name: str) -> dict[str, Any] | None:
    """The oracle's rollouts to reach the baseline's final accuracy, over the baseline's, per seed."""
    oracle, base = by_strategy.get(ORACLE), by_strategy.get(config.baseline)
    if not oracle or not base:
        return None
    metric, window = METRICS[metric_name], config.smooth
    ratios, steps, misses = [], [], 0
    for seed in sorted(set(oracle) & set(base)):
        target = float(smoothed(base[seed][metric], window)[-1])
        own, best = first_reach(base[seed], metric, target, window), first_reach(oracle[seed], metric, target, window)
        if best is None:
            misses += 1
        usable = best is not None and own is not None and own["rollouts"] > 0
        ratios.append(best["rollouts"] / own["rollouts"] if usable else None)
        steps.append(best["steps"] / own["steps"] if usable and own["steps"] > 0 else None)
    gains = [float(smoothed(c[metric], window)[-1] - c[metric][0]) for c in base.values()]
    oracle_gains = [float(smoothed(c[metric], window)[-1] - c[metric][0]) for c in oracle.values()]
    result = {"metric": metric_name, "rollouts_ratio": ratio_ci(ratios), "steps_ratio": ratio_ci(steps),
              "oracle_missed": misses, "baseline_gain": mean_ci(gains),
              "oracle_gain": mean_ci(oracle_gains)}  # fmt: skip
    result["line"] = headroom_line(result, config.baseline)
    return result


def _points(fraction: float) -> str:
    """An accuracy change in signed points, one decimal, without a "-0.0" from rounding noise."""
    return f"{round(100 * fraction, 1) + 0.0:+.1f}"


def headroom_line(result: dict[str, Any], baseline: str) -> str:
    ratio = result["rollouts_ratio"]
    seeds = len(ratio["per_seed"])
    reach = f"{baseline}'s final {result['metric']} accuracy"
    if ratio["mean"] is None and not result["oracle_missed"]:
        # The baseline ended where it started: every arm "reaches" that at step 0, so no ratio exists.
        gain, oracle_gain = result["baseline_gain"]["mean"], result["oracle_gain"]["mean"]
        return (
            f"no headroom can be read on this setup: {baseline} gained {_points(gain)} points over its run, so "
            f"{reach} is where every arm starts (the oracle gained {_points(oracle_gain)} points), {seeds} seed(s)"
        )
    if ratio["mean"] is None:
        return f"the oracle never reached {reach} within the budget ({result['oracle_missed']} of {seeds} seeds)"
    interval = f" [95% CI {ratio['low']:.2f}, {ratio['high']:.2f}]" if ratio["low"] is not None else ""
    missed = f"; it missed it on {result['oracle_missed']} seed(s)" if result["oracle_missed"] else ""
    gain = result["baseline_gain"]["mean"]
    figures = (
        f"the oracle needs {ratio['mean']:.2f}x {baseline}'s rollouts to reach {reach}{interval}, {seeds} seed(s); "
        f"{baseline} gained {_points(gain)} points over its run"
    )
    if ratio["mean"] < 1:
        saved = 100 * (1 - ratio["mean"])
        return f"selection can save at most {saved:.0f}% of rollouts on this setup ({figures}{missed})"
    return f"selection cannot save rollouts on this setup ({figures}{missed})"


def summarize(
    points: list[dict[str, Any]], config: BenchConfig, costs: dict[tuple[str, int], dict[str, float]] | None = None
) -> dict[str, Any]:
    """summary.json's content for the points of runs.jsonl (see the module docstring for every definition)."""
    by_strategy: dict[str, dict[int, dict[str, np.ndarray]]] = defaultdict(dict)
    for (strategy, seed), curve in curves(points).items():
        by_strategy[strategy][seed] = curve
    targets, rules = {}, {}
    for name, metric in METRICS.items():
        finals = [
            float(np.mean([smoothed(c[metric], config.smooth)[-1] for c in seeds.values()]))
            for strategy, seeds in by_strategy.items()
            if strategy != ORACLE
        ]
        if config.target is not None and name == config.headline:
            targets[name], rules[name] = config.target, "given"
        else:
            best = max(finals) if finals else float("nan")
            targets[name], rules[name] = config.target_fraction * best, f"{config.target_fraction:g} x best final"
    baseline = by_strategy.get(config.baseline)
    strategies = {}
    for strategy, seeds in by_strategy.items():
        metrics = {
            name: _strategy_metric(
                seeds, baseline if strategy != config.baseline else None, metric, targets[name], config.smooth
            )
            for name, metric in METRICS.items()
        }
        spent = [costs[(strategy, s)] for s in seeds if costs and (strategy, s) in costs]
        cost_keys = sorted({k for c in spent for k in c})
        strategies[strategy] = {
            "seeds": sorted(seeds),
            "metrics": metrics,
            "costs": {k: float(np.mean([c.get(k, 0.0) for c in spent])) for k in cost_keys},
        }
    room = headroom(by_strategy, config, config.headline)
    return {
        "config": config.name,
        "headline": config.headline,
        "baseline": config.baseline,
        "smooth": config.smooth,
        "targets": targets,
        "target_rules": rules,
        "strategies": strategies,
        "headroom": room,
    }


def _fmt(stats: dict[str, Any] | None, digits: int = 2) -> str:
    if not stats or stats.get("mean") is None:
        return "n/a"
    if stats.get("low") is None:
        return f"{stats['mean']:.{digits}f}"
    return f"{stats['mean']:.{digits}f} [{stats['low']:.{digits}f}, {stats['high']:.{digits}f}]"


def markdown_table(summary: dict[str, Any]) -> str:
    """The headline metric's table (means with 95% CIs), the cost table, and the headroom line."""
    headline, baseline = summary["headline"], summary["baseline"]
    target = summary["targets"][headline]
    lines = [
        f"Headline: held-out {headline} accuracy; target {target:.3f} ({summary['target_rules'][headline]}). "
        f"Means over seeds with 95% CIs; ratios are paired against {baseline} (geometric mean).",
        "",
        "| strategy | seeds | initial | final | AUC | reached | steps to target | rollouts to target "
        f"| seconds to target | rollouts / {baseline} | seconds / {baseline} |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in summary["strategies"].items():
        m = entry["metrics"][headline]
        ratio = m["ratio_vs_baseline"] or {}
        lines.append(
            f"| {name} | {len(entry['seeds'])} | {_fmt(m['initial'], 3)} | {_fmt(m['final'], 3)} | {_fmt(m['auc'], 3)} "
            f"| {m['reached']} | {_fmt(m['to_target']['steps'], 0)} | {_fmt(m['to_target']['rollouts'], 0)} "
            f"| {_fmt(m['to_target']['seconds'], 0)} | {_fmt(ratio.get('rollouts'))} | {_fmt(ratio.get('seconds'))} |"
        )
    lines += ["", "| strategy | scoring s | curriculum s (re-score, select) | total s | eval s (not charged) "
              "| oracle measurement (not charged) |", "|---|---|---|---|---|---|"]  # fmt: skip
    for name, entry in summary["strategies"].items():
        c = entry["costs"]
        measured = (f"{c['measure_rollouts']:.0f} rollouts, {c['measure_seconds']:.0f} s"
                    if "measure_rollouts" in c else "")  # fmt: skip
        lines.append(
            f"| {name} | {c.get('scoring_seconds', 0):.1f} | {c.get('curriculum_seconds', 0):.1f} "
            f"({c.get('rescore_seconds', 0):.1f}, {c.get('select_seconds', 0):.1f}) | {c.get('total_seconds', 0):.0f} "
            f"| {c.get('eval_seconds', 0):.0f} | {measured} |"
        )
    if summary.get("headroom"):
        lines += ["", f"Headroom: {summary['headroom']['line']}."]
    return "\n".join(lines) + "\n"
