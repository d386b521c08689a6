"""The bench's paired statistics: crossings, censoring, intervals, sign-flip tests, partial AUC and Holm.

Every function works on a few small arrays (one curve, or one value per seed) and is checked against a hand
computation in tests/benchmarks/test_curriculum_stats.py. docs/benchmark-history.md ("How the summary reads the
curves") says the same in words.

* `centred_mean`: smoothing that does not lag. A trailing mean reaches a threshold about half its window late,
  which pushes every crossing (and so every ratio) toward the end of the run; a centred mean does not.
* `crossing`: the x (rollouts, steps, seconds) at which a piecewise-linear curve first reaches a target,
  interpolated between evaluation points, so ratios are not ratios of grid positions.
* `Reach`: a crossing, or the budget when the curve never gets there (censored: counted, never dropped).
* `paired_ratio`: per seed, arm over baseline; geometric mean with a Student-t interval on the log ratios and
  an exact two-sided sign-flip p-value.
* `partial_auc`: mean accuracy over a fixed rollout budget (the area under the curve up to it, over its span).
* `holm`: Holm's step-down adjustment across the arms compared with one baseline.
* `crossed_mean_ci`: the mean of a warm starts x seeds grid where every warm start ran the same seeds, with a t
  interval that counts each seed's effect shared by all of them (two-way random effects, Satterthwaite).
* `within_sd`, `chance_any_above`: how often seed noise alone puts some warm start above a bound, were every warm
  start's true ratio the same (the worst warm start's reading at a verdict's size).
* `share_of_saving`: how much of the oracle's saving an arm captured, (1 - arm) / (1 - oracle) on the geometric-mean
  ratios, with a percentile bootstrap over seeds (per-seed shares explode where a seed's oracle saved little).

Every float here reaches a kept summary.json, so each is the same on every CPU: sums are `math.fsum` (exactly
rounded, in no order a vector loop picks), logs and exponentials the C library's scalar `math.log` and `math.exp`
(numpy's `np.log` and `np.exp` round by SIMD width, scalars included), the rest single IEEE operations.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

# Two-sided 95% Student-t quantiles for 1..30 degrees of freedom, to three decimals as printed tables give them.
T975 = (
    *(12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131),
    *(2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042),
)
# Sign flips are enumerated exactly up to this many seeds (2^24 sums, in chunks); more is refused.
MAX_EXACT_SEEDS = 24
_FLIP_CHUNK = 1 << 16
# The bootstrap of `share_of_saving`: resamples of the seeds, drawn by numpy's PCG64 (its integers are the same on
# every platform) and summed in Python (math.fsum), so the interval does not depend on the CPU's SIMD path.
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 38


# Beyond them, Fisher and Cornish's expansion of the quantile in 1/df about the normal one, Z975: within 3e-8 of the
# exact quantile from 30 degrees of freedom on (the normal 1.96 alone would make an interval over 32 seeds 4% narrow).
Z975 = 1.959963984540054


def t_quantile(df: int) -> float:
    """The two-sided 95% Student-t quantile at `df` degrees of freedom; single IEEE operations beyond the table, so
    the same bits on every CPU."""
    if df <= len(T975):
        return T975[df - 1]
    z = Z975
    z2 = z * z
    g1 = z * (z2 + 1) / 4
    g2 = z * ((5 * z2 + 16) * z2 + 3) / 96
    g3 = z * (((3 * z2 + 19) * z2 + 17) * z2 - 15) / 384
    g4 = z * ((((79 * z2 + 776) * z2 + 1482) * z2 - 1920) * z2 - 945) / 92160
    x = 1.0 / df
    return z + x * (g1 + x * (g2 + x * (g3 + x * g4)))


def mean(values: Iterable[float]) -> float:
    """The arithmetic mean through an exactly rounded sum; NaN for no values."""
    values = [float(v) for v in values]
    return math.fsum(values) / len(values) if values else math.nan


def mean_ci(values: Iterable[float]) -> dict[str, Any]:
    """Mean and 95% t interval; the interval is None with fewer than two values."""
    values = [float(v) for v in values]
    n = len(values)
    if n == 0:
        return {"mean": None, "low": None, "high": None, "n": 0}
    centre = mean(values)
    if n == 1:
        return {"mean": centre, "low": None, "high": None, "n": 1}
    variance = math.fsum((v - centre) * (v - centre) for v in values) / (n - 1)
    half = t_quantile(n - 1) * math.sqrt(variance) / math.sqrt(n)
    return {"mean": centre, "low": centre - half, "high": centre + half, "n": n}


def crossed_mean_ci(grid: list[list[float]]) -> dict[str, Any]:
    """Mean and 95% t interval of a complete rows x columns grid where both are random draws and crossed: warm starts
    by seeds, when every warm start ran the same seeds, so a seed's effect (its draws, its sampling) is shared by
    every warm start and does not average out over them. Two-way random effects without replicates: with the mean
    squares MS_r, MS_c and MS_e (rows, columns, residual), Var(mean) = s_r^2/R + s_c^2/C + s_e^2/(RC), each
    component's estimate floored at 0, which is (max(MS_r, MS_e) + max(MS_c, MS_e) - MS_e)/(RC); Satterthwaite's
    degrees of freedom for that sum, rounded down. The interval is None below two rows or two columns."""
    rows, columns = len(grid), len(grid[0]) if grid else 0
    if rows < 2 or columns < 2:
        return {"mean": mean(v for row in grid for v in row) if grid else None, "low": None, "high": None}
    centre = mean(v for row in grid for v in row)
    row_means = [mean(row) for row in grid]
    column_means = [mean(row[c] for row in grid) for c in range(columns)]
    df_r, df_c, df_e = rows - 1, columns - 1, (rows - 1) * (columns - 1)
    ms_r = columns * math.fsum((m - centre) ** 2 for m in row_means) / df_r
    ms_c = rows * math.fsum((m - centre) ** 2 for m in column_means) / df_c
    ms_e = math.fsum((grid[r][c] - row_means[r] - column_means[c] + centre) ** 2
                     for r in range(rows) for c in range(columns)) / df_e  # fmt: skip
    # The floored sum: MS_e alone, or the one mean square above it alone, or both above it less MS_e.
    terms = [(t, df) for t, df in ((ms_r, df_r), (ms_c, df_c)) if t > ms_e]
    if not terms:
        terms = [(ms_e, df_e)]
    elif len(terms) == 2:
        terms.append((-ms_e, df_e))
    total = math.fsum(t for t, _ in terms)
    if total <= 0.0:
        return {"mean": centre, "low": centre, "high": centre}
    df = total * total / math.fsum(t * t / df for t, df in terms)
    half = t_quantile(max(1, math.floor(df))) * math.sqrt(total / (rows * columns))
    return {"mean": centre, "low": centre - half, "high": centre + half}


def within_sd(groups: list[list[float]]) -> float | None:
    """The standard deviation within groups, pooled: sqrt(sum of squares about each group's own mean over the sum of
    (n - 1)); None where no group has two values."""
    df = sum(len(g) - 1 for g in groups if len(g) > 1)
    if df == 0:
        return None
    squares = math.fsum((v - mean(g)) ** 2 for g in groups if len(g) > 1 for v in g)
    return math.sqrt(squares / df)


def chance_any_above(sd: float, counts: list[int], ratio: float, bound: float) -> float:
    """The chance that at least one of len(counts) warm starts reads a geometric-mean ratio above `bound` when every
    one's true ratio is `ratio` and its seeds' log ratios are normal about log(ratio) with standard deviation `sd`
    (warm start k averaging counts[k] seeds): 1 - prod_k Phi((log bound - log ratio) sqrt(n_k) / sd). With no spread
    every warm start reads the true ratio: 1 above the bound, else 0."""
    if sd <= 0.0:
        return float(ratio > bound)
    below = 1.0
    for n in counts:
        z = (math.log(bound) - math.log(ratio)) * math.sqrt(n) / sd
        below *= 0.5 * math.erfc(-z / math.sqrt(2.0))
    return 1.0 - below


def centred_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean over `window` points centred on each point (window odd; it narrows symmetrically at both ends)."""
    if window < 1 or window % 2 == 0:
        raise ValueError(f"a centred window is odd and at least 1; got {window}")
    values = np.asarray(values, dtype=np.float64)
    n, half = len(values), window // 2
    out = np.empty(n)
    for i in range(n):
        reach = min(half, i, n - 1 - i)
        out[i] = mean(values[i - reach : i + reach + 1].tolist())
    return out


def crossing(x: np.ndarray, y: np.ndarray, target: float) -> float | None:
    """The x at which the piecewise-linear curve through (x, y) first reaches `target`; None if it never does.

    A curve already at the target at its first point crosses there.
    """
    above = np.flatnonzero(np.asarray(y) >= target - 1e-12)
    if not len(above):
        return None
    i = int(above[0])
    if i == 0:
        return float(x[0])
    x0, x1, y0, y1 = float(x[i - 1]), float(x[i]), float(y[i - 1]), float(y[i])
    return x0 + (target - y0) / (y1 - y0) * (x1 - x0)


@dataclass(frozen=True)
class Reach:
    """Where a curve reached the target, or its budget (its last x) when it never did (`censored`)."""

    value: float
    censored: bool


def reach(x: np.ndarray, y: np.ndarray, target: float) -> Reach:
    found = crossing(x, y, target)
    return Reach(float(x[-1]), True) if found is None else Reach(found, False)


def sign_flip_p(values: list[float]) -> float | None:
    """Exact two-sided p-value of a zero-centred sign-flip test of the mean of `values` (paired differences).

    Under the null each difference is as likely to have either sign, so every one of the 2^n sign patterns
    is equally likely; p is the share whose |sum| is at least the observed |sum| (the observed one included).
    With n values it is never below 2 / 2^n: five seeds cannot reach p < 0.05.
    """
    d = np.asarray(values, dtype=np.float64)
    n = len(d)
    if n == 0:
        return None
    if n > MAX_EXACT_SEEDS:
        raise ValueError(f"an exact sign-flip test enumerates 2^n patterns; {n} seeds is more than {MAX_EXACT_SEEDS}")
    observed = abs(math.fsum(d.tolist()))
    # Patterns are summed by BLAS, in an order of its choosing: a count against a tolerance a million times any
    # rounding difference is the same on every path.
    tolerance = 1e-9 * max(1.0, observed)
    bits = np.arange(n)
    at_least = 0
    for start in range(0, 1 << n, _FLIP_CHUNK):
        patterns = np.arange(start, min(start + _FLIP_CHUNK, 1 << n))
        signs = 1.0 - 2.0 * ((patterns[:, None] >> bits) & 1)
        at_least += int(np.count_nonzero(np.abs(signs @ d) >= observed - tolerance))
    return at_least / float(1 << n)


def paired_ratio(arm: list[Reach], base: list[Reach], floor: float) -> dict[str, Any]:
    """Per seed arm / base; geometric mean, 95% t interval on the logs, sign-flip p, censored counts.

    `floor`: what a crossing at the very start (x = 0: the curve began at the target) counts as, so it gives a
    finite ratio rather than a division by zero. Against a baseline that began at the target, an arm counts at least
    the floor: having spent only its up-front cost (a scoring pass), it saved nothing against one that spent none.
    """
    logs = [
        math.log(_positive(a.value, floor, b.value) / _positive(b.value, floor)) for a, b in zip(arm, base, strict=True)
    ]
    stats = mean_ci(logs)
    return {
        "mean": None if stats["mean"] is None else math.exp(stats["mean"]),
        "low": None if stats["low"] is None else math.exp(stats["low"]),
        "high": None if stats["high"] is None else math.exp(stats["high"]),
        "n": stats["n"],
        "p": sign_flip_p(logs),
        "per_seed": [math.exp(v) for v in logs],
        "censored": sum(a.censored for a in arm),
        "baseline_censored": sum(b.censored for b in base),
    }


def _positive(value: float, floor: float, base: float = 1.0) -> float:
    """`value`, or the floor where it is 0, or below the floor against a `base` of 0."""
    return max(value, floor) if base <= 0 else value if value > 0 else floor


def partial_auc(x: np.ndarray, y: np.ndarray, budget: float) -> float | None:
    """Mean of the piecewise-linear curve over [x[0], budget]; None when the curve ends before the budget."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if budget <= x[0] or x[-1] < budget - 1e-9:
        return None
    end = float(np.interp(budget, x, y))
    inside = x < budget
    xs = np.concatenate([x[inside], [budget]])
    ys = np.concatenate([y[inside], [end]])
    return math.fsum(((ys[1:] + ys[:-1]) / 2 * np.diff(xs)).tolist()) / (budget - x[0])


def paired_difference(arm: list[float], base: list[float]) -> dict[str, Any]:
    """Per seed arm - base; mean with a 95% t interval and the sign-flip p."""
    differences = [a - b for a, b in zip(arm, base, strict=True)]
    return {**mean_ci(differences), "p": sign_flip_p(differences), "per_seed": differences}


def holm(pvalues: dict[str, float]) -> dict[str, float]:
    """Holm's step-down adjusted p-values: the i-th smallest times (m - i), kept monotone, capped at 1."""
    order = sorted(pvalues, key=lambda name: (pvalues[name], name))
    adjusted, running = {}, 0.0
    for i, name in enumerate(order):
        running = max(running, min(1.0, (len(order) - i) * pvalues[name]))
        adjusted[name] = running
    return adjusted


def share_of_saving(arm: list[float], oracle: list[float]) -> dict[str, Any]:
    """(1 - arm) / (1 - oracle) on the geometric means of paired per-seed ratios (same seeds, same order) to the
    baseline, with a 95% percentile bootstrap over seeds; resamples where the oracle saved nothing are left out.
    None values when the oracle's own mean ratio is 1 or more (there is no saving to share)."""
    n = len(arm)
    if n != len(oracle):
        raise ValueError(f"{n} arm ratios against {len(oracle)} oracle ratios")
    arm_logs, oracle_logs = [math.log(r) for r in arm], [math.log(r) for r in oracle]

    def share(rows: list[int]) -> float | None:
        saved = 1 - math.exp(math.fsum(oracle_logs[i] for i in rows) / len(rows))
        return None if saved <= 0 else (1 - math.exp(math.fsum(arm_logs[i] for i in rows) / len(rows))) / saved

    point = share(list(range(n))) if n else None
    if point is None or n < 2:
        return {"mean": point, "low": None, "high": None, "n": n}
    draws = np.random.default_rng(BOOTSTRAP_SEED).integers(0, n, size=(BOOTSTRAP_RESAMPLES, n))
    values = sorted(v for v in (share(row) for row in draws.tolist()) if v is not None)
    if not values:  # no resample in which the oracle saved: no interval
        return {"mean": point, "low": None, "high": None, "n": n}
    low = values[int(0.025 * (len(values) - 1))]
    high = values[int(math.ceil(0.975 * (len(values) - 1)))]
    return {"mean": point, "low": low, "high": high, "n": n}
