"""From the evaluation points of every finished pair to summary.json: the declared analysis, arm by arm.

Definitions (docs/benchmark-history.md, "How the summary reads the curves", says the same in words; the statistics
themselves are in stats.py):

* A curve is one (arm, seed) pair's points by step. Crossings are read on a centred mean over `smooth` points
  (1: the raw curve) and interpolated linearly between evaluation points. Final accuracy is the mean of the raw
  curve's last `smooth` points, initial accuracy its first point.
* The target, on the headline metric, is the config's `target`, declared before the runs. Without one the
  target lies `target_fraction` of the way from the mean initial accuracy to the best mean final of any arm but
  the oracle; that rule moves with the arms, so the summary marks it as not declared.
* X-to-target (X = steps, rollouts, seconds, and compute where the pairs recorded tokens by kind: priced GPU-seconds,
  `compute.py`) is X at the crossing. A seed that never crosses is censored at its
  budget (its last X) and counted in `censored`: it stays in every mean and ratio, never dropped.
* Against the baseline, per seed: the ratio of X-to-target (geometric mean, t interval on log ratios, exact
  sign-flip p) and the difference of the partial AUC over `pauc_budget` rollouts. The arms named in `primary`
  are corrected together with Holm's method on the rollouts ratio's p; an arm beats the baseline when its
  Holm-adjusted p is below 0.05 and its ratio is below 1. Where compute was recorded, the same test on the compute
  ratio is `compute_primary`, and `account` holds each arm's tokens by kind over the run, their FLOPs and price.
* Headroom (when `oracle` ran beside the baseline): per seed, the oracle's rollouts to reach the baseline's own
  final accuracy, over the baseline's rollouts to reach it.
* Share of the oracle's saving (when `oracle` ran): (1 - arm's rollouts ratio) / (1 - the oracle's), both geometric
  means against the baseline at the declared target over the seeds both ran, with a 95% percentile bootstrap over
  those seeds (`stats.share_of_saving`). 1 captures all the oracle saves, 0 nothing, below 0 the arm costs more
  than the baseline.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np

from gaincurate.lab.benchmarks.curriculum import compute, stats
from gaincurate.lab.benchmarks.curriculum.configs import BenchConfig
from gaincurate.lab.benchmarks.curriculum.oracle import ARMS as ORACLE_ARMS

METRICS = {"greedy": "accuracy", "sampled": "sampled_accuracy"}
ORACLE = "oracle"  # the ceiling arm the headroom line reads
UNITS = ("steps", "rollouts", "seconds")
COMPUTE = "compute"  # the unit of the compute account, where the pairs recorded it
ALPHA = 0.05
Curve = dict[str, np.ndarray]


def curves(points: list[dict[str, Any]]) -> dict[tuple[str, int], Curve]:
    """(arm, seed) -> arrays of every point field, ordered by step."""
    grouped: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for point in points:
        grouped[(point["strategy"], int(point["seed"]))].append(point)
    out = {}
    for key, rows in grouped.items():
        rows = sorted(rows, key=lambda p: p["step"])
        out[key] = {
            field: np.array([np.nan if r.get(field) is None else r[field] for r in rows], dtype=np.float64)
            for field in ("step", "rollouts", "seconds", *compute.KINDS, "accuracy", "sampled_accuracy")
        }
        out[key]["steps"] = out[key]["step"]
    return out


def final(curve: Curve, metric: str, window: int) -> float:
    return stats.mean(curve[metric][-window:].tolist())


def units_of(curve: Curve) -> tuple[str, ...]:
    """The units a curve can be read in: compute only where its pair recorded every kind of token."""
    return (*UNITS, COMPUTE) if COMPUTE in curve else UNITS


def reaches(curve: Curve, metric: str, target: float, window: int) -> dict[str, stats.Reach]:
    """Steps, rollouts, seconds (and compute) at the interpolated crossing of the smoothed curve (censored at the
    budget)."""
    y = stats.centred_mean(curve[metric], window)
    return {unit: stats.reach(curve[unit], y, target) for unit in units_of(curve)}


def auc(curve: Curve, metric: str) -> float | None:
    """Mean accuracy over the whole rollout span (the partial AUC at the run's own budget)."""
    x = curve["rollouts"]
    return stats.partial_auc(x, curve[metric], float(x[-1])) if len(x) > 1 and x[-1] > x[0] else None


def _floor(curve: Curve, unit: str) -> float:
    """What a crossing at X = 0 counts as: half the first evaluation interval (never zero, never a whole step)."""
    positive = curve[unit][curve[unit] > 0]
    return float(positive[0]) / 2 if len(positive) else 1.0


def _arm(by_seed: dict[int, Curve], base: dict[int, Curve] | None, metric: str, target: float, config: BenchConfig,
         budget: float | None) -> dict[str, Any]:  # fmt: skip
    """One arm's figures on one metric: finals, AUC, X-to-target with censoring, the paired comparison."""
    window = config.smooth
    seeds = sorted(by_seed)
    reach = {seed: reaches(by_seed[seed], metric, target, window) for seed in seeds}
    units = units_of(by_seed[seeds[0]])
    result: dict[str, Any] = {
        "initial": stats.mean_ci([float(by_seed[s][metric][0]) for s in seeds]),
        "final": stats.mean_ci([final(by_seed[s], metric, window) for s in seeds]),
        "auc": stats.mean_ci([a for a in (auc(by_seed[s], metric) for s in seeds) if a is not None]),
        "to_target": {unit: stats.mean_ci([reach[s][unit].value for s in seeds]) for unit in units},
        "censored": sum(reach[s]["rollouts"].censored for s in seeds),
        "vs_baseline": None,
    }
    paired = sorted(set(seeds) & set(base or {}))
    if base is None or not paired:
        return result
    base_reach = {seed: reaches(base[seed], metric, target, window) for seed in paired}
    comparison = {
        unit: stats.paired_ratio(
            [reach[s][unit] for s in paired], [base_reach[s][unit] for s in paired], _floor(base[paired[0]], unit)
        )  # fmt: skip
        for unit in units
    }
    if budget is not None:
        arm_pauc = [stats.partial_auc(by_seed[s]["rollouts"], by_seed[s][metric], budget) for s in paired]
        base_pauc = [stats.partial_auc(base[s]["rollouts"], base[s][metric], budget) for s in paired]
        if None not in arm_pauc and None not in base_pauc:
            comparison["pauc"] = stats.paired_difference(arm_pauc, base_pauc)
    result["vs_baseline"] = comparison | {"seeds": paired}
    return result


def headroom(by_arm: dict[str, dict[int, Curve]], config: BenchConfig) -> dict[str, Any] | None:
    """The oracle's rollouts to reach the baseline's final accuracy, over the baseline's, per seed."""
    oracle, base = by_arm.get(ORACLE), by_arm.get(config.baseline)
    if not oracle or not base:
        return None
    metric, window = METRICS[config.headline], config.smooth
    ratios, misses = [], 0
    for seed in sorted(set(oracle) & set(base)):
        target = final(base[seed], metric, window)
        own = reaches(base[seed], metric, target, window)["rollouts"]
        best = reaches(oracle[seed], metric, target, window)["rollouts"]
        misses += best.censored
        floor = _floor(base[seed], "rollouts")
        ratios.append(math.log(max(best.value, floor) / max(own.value, floor)))  # both cross at or after 0
    gains = [final(c, metric, window) - float(c[metric][0]) for c in base.values()]
    oracle_gains = [final(c, metric, window) - float(c[metric][0]) for c in oracle.values()]
    ratio = stats.mean_ci(ratios)
    result = {
        "metric": config.headline,
        "rollouts_ratio": {k: (math.exp(v) if k != "n" and v is not None else v) for k, v in ratio.items()},
        "oracle_missed": misses,
        "seeds": len(ratios),
        "baseline_gain": stats.mean_ci(gains),
        "oracle_gain": stats.mean_ci(oracle_gains),
    }
    result["line"] = headroom_line(result, config.baseline)
    return result


def _points(fraction: float) -> str:
    """An accuracy change in signed points, one decimal, without a "-0.0" from rounding noise."""
    return f"{round(100 * fraction, 1) + 0.0:+.1f}"


def headroom_line(result: dict[str, Any], baseline: str) -> str:
    ratio, seeds = result["rollouts_ratio"], result["seeds"]
    reach = f"{baseline}'s final {result['metric']} accuracy"
    gain, oracle_gain = result["baseline_gain"]["mean"], result["oracle_gain"]["mean"]
    if gain is not None and gain <= 0:
        return (
            f"no headroom can be read on this setup: {baseline} gained {_points(gain)} points over its run, so "
            f"{reach} is where every arm starts (the oracle gained {_points(oracle_gain)} points), {seeds} seed(s)"
        )
    interval = f" [95% CI {ratio['low']:.2f}, {ratio['high']:.2f}]" if ratio["low"] is not None else ""
    misses = result["oracle_missed"]
    missed = f"; it missed it on {misses} seed(s), counted at its budget" if misses else ""
    figures = (
        f"the oracle needs {ratio['mean']:.2f}x {baseline}'s rollouts to reach {reach}{interval}, {seeds} seed(s); "
        f"{baseline} gained {_points(gain)} points over its run"
    )
    if ratio["mean"] < 1:
        saved = 100 * (1 - ratio["mean"])
        return f"selection can save at most {saved:.0f}% of rollouts on this setup ({figures}{missed})"
    return f"selection cannot save rollouts on this setup ({figures}{missed})"


def _target(by_arm: dict[str, dict[int, Curve]], config: BenchConfig) -> tuple[float, str, bool]:
    """(target, how it was set, declared?) on the headline metric."""
    if config.target is not None:
        return config.target, "declared in the config before the runs", True
    metric = METRICS[config.headline]
    arms = [seeds for arm, seeds in by_arm.items() if arm not in ORACLE_ARMS]
    finals = [stats.mean(final(c, metric, config.smooth) for c in seeds.values()) for seeds in arms]
    starts = [c[metric][0] for seeds in arms for c in seeds.values()]
    if not finals:
        return float("nan"), "no arm but the oracle ran (not declared)", False
    # A share of the way from the start, not of the level: 0.9 x a final that is 4 points above a 41% start lies
    # below the start, and every arm would "reach" it at step 0.
    start, best = stats.mean(starts), float(max(finals))
    rule = f"{config.target_fraction:g} of the way from the start to the best final (not declared)"
    return start + config.target_fraction * (best - start), rule, False


def _oracle_shares(arms: dict[str, Any]) -> None:
    """Each practical arm's `oracle_share`: the share of the oracle's rollout saving it captured, seed by seed."""
    versus = (arms.get(ORACLE) or {}).get("vs_baseline")
    if not versus:
        return
    oracle = dict(zip(versus["seeds"], versus["rollouts"]["per_seed"], strict=True))
    for arm, entry in arms.items():
        mine = entry["vs_baseline"]
        if arm in ORACLE_ARMS or not mine:
            continue
        ratios = dict(zip(mine["seeds"], mine["rollouts"]["per_seed"], strict=True))
        seeds = sorted(set(ratios) & set(oracle))
        entry["oracle_share"] = stats.share_of_saving([ratios[s] for s in seeds], [oracle[s] for s in seeds])


def _verdicts(arms: dict[str, Any], config: BenchConfig, unit: str = "rollouts") -> dict[str, Any]:
    """Holm over the primary arms' p-values of the ratio in `unit`, and who beats the baseline at the 5% level."""
    compared = {arm: arms[arm]["vs_baseline"] for arm in config.primary if arm in arms}
    tested = {arm: v[unit] for arm, v in compared.items() if v and unit in v and v[unit]["p"] is not None}
    adjusted = stats.holm({arm: ratio["p"] for arm, ratio in tested.items()})
    out = {}
    for arm, ratio in tested.items():
        better = adjusted[arm] < ALPHA and ratio["mean"] < 1
        worse = adjusted[arm] < ALPHA and ratio["mean"] > 1
        out[arm] = {"ratio": ratio["mean"], "low": ratio["low"], "high": ratio["high"], "p": ratio["p"],
                    "p_holm": adjusted[arm], "censored": ratio["censored"],
                    "verdict": "beats" if better else "loses to" if worse else "not distinguishable from"}  # fmt: skip
    return out


def arm_order(arms, config: BenchConfig) -> list[str]:
    """The baseline, the primary arms, the config's other arms, then any other by name: tables read the same
    whichever command wrote the points last."""
    declared = [config.baseline, *config.primary, *config.strategies, *config.defined_arms()]
    rank = {arm: i for i, arm in reversed(list(enumerate(declared)))}
    return sorted(arms, key=lambda arm: (rank.get(arm, len(rank)), arm))


def summarize(
    points: list[dict[str, Any]], config: BenchConfig, costs: dict[tuple[str, int], dict[str, float]] | None = None
) -> dict[str, Any]:
    """summary.json's content for the points of runs.jsonl (see the module docstring for every definition)."""
    by_arm: dict[str, dict[int, Curve]] = defaultdict(dict)
    for (arm, seed), curve in curves(points).items():
        by_arm[arm][seed] = curve
    by_arm = {arm: by_arm[arm] for arm in arm_order(by_arm, config)}
    parameters = _parameters(costs)
    accounted = parameters is not None and all(_recorded(c) for seeds in by_arm.values() for c in seeds.values())
    if accounted:
        batch = decode_batch(config)
        for seeds in by_arm.values():
            for curve in seeds.values():
                curve[COMPUTE] = compute.gpu_seconds(curve, parameters, batch)
    target, rule, declared = _target(by_arm, config)
    base = by_arm.get(config.baseline)
    budget = config.pauc_budget
    if budget is None and base:
        budget = float(min(c["rollouts"][-1] for c in base.values()))
    headline_metric = METRICS[config.headline]
    arms = {}
    for arm, seeds in by_arm.items():
        entry = _arm(seeds, base if arm != config.baseline else None, headline_metric, target, config, budget)
        entry["other_metrics"] = {
            name: {"final": stats.mean_ci([final(c, metric, config.smooth) for c in seeds.values()]),
                   "auc": stats.mean_ci([a for a in (auc(c, metric) for c in seeds.values()) if a is not None])}
            for name, metric in METRICS.items() if name != config.headline
        }  # fmt: skip
        entry["sensitivity"] = {
            f"{other:g}": _arm(seeds, base if arm != config.baseline else None, headline_metric, other, config, None)
            ["vs_baseline"] for other in config.other_targets
        }  # fmt: skip
        spent = [costs[(arm, s)] for s in seeds if costs and (arm, s) in costs]
        keys = sorted({k for c in spent for k in c})
        entry["seeds"] = sorted(seeds)
        entry["costs"] = {k: stats.mean(c.get(k, 0.0) for c in spent) for k in keys}
        arms[arm] = entry
    _oracle_shares(arms)
    accounting = {}
    if accounted:
        accounting = {"compute_primary": _verdicts(arms, config, COMPUTE),
                      "account": account(by_arm, parameters, decode_batch(config))}  # fmt: skip
    return {
        "config": config.name,
        "headline": config.headline,
        "baseline": config.baseline,
        "analysis": {
            "target": target,
            "target_rule": rule,
            "declared": declared,
            "primary": list(config.primary),
            "other_targets": list(config.other_targets),
            "pauc_budget": budget,
            "smooth": config.smooth,
            "alpha": ALPHA,
        },  # fmt: skip
        "strategies": arms,
        "primary": _verdicts(arms, config),
        "headroom": headroom(by_arm, config),
        **accounting,
    }


def _parameters(costs: dict[tuple[str, int], dict[str, float]] | None) -> int | None:
    """N of the pairs' model (every pair records it since the account; None before)."""
    found = {int(c[compute.PARAMETERS]) for c in (costs or {}).values() if compute.PARAMETERS in c}
    if len(found) > 1:
        raise ValueError(f"the pairs of one bench record different model sizes: {sorted(found)}")
    return found.pop() if found and all(compute.PARAMETERS in c for c in costs.values()) else None


def _recorded(curve: Curve) -> bool:
    return not any(np.isnan(curve[kind]).any() for kind in compute.KINDS)


def decode_batch(config: BenchConfig) -> int:
    """The sequences one decoding step serves, as the price assumes: a training step's rollouts."""
    return config.prompts_per_step * config.num_generations


def account(by_arm: dict[str, dict[int, Curve]], parameters: int, batch: int) -> dict[str, Any]:
    """The priced account: each kind's price per token, and per arm the run's tokens by kind, FLOPs, GPU-seconds and
    the curriculum's shares of them (scoring, refresh), means over seeds of each pair's last point."""
    price = compute.H100.seconds_per_token(parameters, batch)
    arms = {}
    for arm, seeds in by_arm.items():
        finals = [{kind: float(curve[kind][-1]) for kind in compute.KINDS} for curve in seeds.values()]
        costs = [{kind: tokens[kind] * price[kind] for kind in compute.KINDS} for tokens in finals]
        totals = [sum(cost.values()) for cost in costs]
        arms[arm] = {
            **{kind: stats.mean(tokens[kind] for tokens in finals) for kind in compute.KINDS},
            "flops": stats.mean(compute.flops(tokens, parameters) for tokens in finals),
            "gpu_seconds": stats.mean(totals),
            **{f"{kind}_share": stats.mean(c[kind] / t if t else 0.0 for c, t in zip(costs, totals, strict=True))
               for kind in ("scoring_tokens", "refresh_tokens")},
            "refresh_tokens_share_max": max(c["refresh_tokens"] / t if t else 0.0
                                            for c, t in zip(costs, totals, strict=True)),
        }  # fmt: skip
    return {"setup": compute.H100.name, "parameters": parameters, "decode_batch": batch, "seconds_per_token": price,
            "arms": arms}  # fmt: skip
