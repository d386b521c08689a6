"""The bench's statistics against hand computations: crossings, censoring, sign flips, partial AUC, Holm."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from gaincurate.lab.benchmarks.curriculum import stats


def test_centred_mean_narrows_symmetrically_and_does_not_lag():
    values = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    assert stats.centred_mean(values, 1) == pytest.approx(values)
    # Index 0 and 5 keep their own value; 1..4 average with one neighbour on each side: a line stays itself.
    assert stats.centred_mean(values, 3) == pytest.approx(values)
    assert stats.centred_mean(np.array([0.0, 3.0, 0.0, 3.0]), 3) == pytest.approx([0.0, 1.0, 2.0, 3.0])
    assert stats.centred_mean(np.array([1.0, 2.0, 6.0, 1.0, 5.0]), 5) == pytest.approx([1.0, 3.0, 3.0, 4.0, 5.0])
    with pytest.raises(ValueError, match="odd"):
        stats.centred_mean(values, 2)


def test_crossing_is_interpolated_between_evaluation_points():
    x = np.array([0.0, 100.0, 200.0, 300.0])
    y = np.array([0.2, 0.4, 0.8, 0.9])
    # 0.5 lies a quarter of the way from 0.4 (x=100) to 0.8 (x=200).
    assert stats.crossing(x, y, 0.5) == pytest.approx(125.0)
    assert stats.crossing(x, y, 0.8) == pytest.approx(200.0)
    assert stats.crossing(x, y, 0.1) == 0.0  # already there at the start
    assert stats.crossing(x, y, 0.95) is None
    # The first crossing counts, even when the curve dips back below afterwards.
    assert stats.crossing(x, np.array([0.2, 0.6, 0.3, 0.9]), 0.5) == pytest.approx(75.0)


def test_a_curve_that_never_reaches_the_target_is_censored_at_its_budget():
    x = np.array([0.0, 64.0, 128.0])
    assert stats.reach(x, np.array([0.1, 0.2, 0.3]), 0.5) == stats.Reach(128.0, True)
    assert stats.reach(x, np.array([0.1, 0.3, 0.5]), 0.4) == stats.Reach(96.0, False)


def brute_force_sign_flip(values):
    observed = abs(sum(values))
    patterns = list(itertools.product((1, -1), repeat=len(values)))
    return sum(abs(sum(s * v for s, v in zip(signs, values, strict=True))) >= observed - 1e-12
               for signs in patterns) / len(patterns)  # fmt: skip


@pytest.mark.parametrize(
    "values",
    [[0.3], [0.5, -0.1], [0.2, 0.4, -0.1, 0.3], [-0.3, -0.2, -0.4, -0.1, -0.5, -0.25], [0.1, -0.1, 0.2, -0.2, 0.0]],
)
def test_sign_flip_p_is_the_exact_share_of_sign_patterns(values):
    assert stats.sign_flip_p(values) == pytest.approx(brute_force_sign_flip(values))


def test_sign_flip_needs_six_seeds_for_five_percent():
    assert stats.sign_flip_p([-0.3] * 5) == pytest.approx(2 / 32)  # the best five seeds can do: 0.0625
    assert stats.sign_flip_p([-0.3] * 6) == pytest.approx(2 / 64)
    # Twelve seeds, all better by different amounts: only the observed pattern and its mirror are as extreme.
    assert stats.sign_flip_p([-0.1 * (i + 1) for i in range(12)]) == pytest.approx(2 / 4096)
    assert stats.sign_flip_p([]) is None


def brute_force_t_quantile(df: int) -> float:
    """The t quantile whose central mass is 95%: Simpson's rule over the density from 0, bisected, in float64."""

    def density(x: float) -> float:
        scale = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)
        return scale * (1 + x * x / df) ** (-(df + 1) / 2)

    def mass(t: float, steps: int = 4000) -> float:
        h = t / steps
        return h / 3 * sum((1 if i in (0, steps) else 4 if i % 2 else 2) * density(i * h) for i in range(steps + 1))

    low, high = 1.9, 13.0
    for _ in range(50):
        middle = (low + high) / 2
        low, high = (middle, high) if mass(middle) < 0.475 else (low, middle)
    return (low + high) / 2


@pytest.mark.parametrize("df", [1, 2, 7, 15, 30, 31, 32, 47, 100, 1000])
def test_the_t_quantile_is_the_densitys_own(df):
    """The table to its three decimals; beyond it, the expansion within 1e-7 (the normal 1.96 is 0.08 off at 31)."""
    assert stats.t_quantile(df) == pytest.approx(brute_force_t_quantile(df), abs=5e-4 if df <= 30 else 1e-7)


def test_paired_ratio_counts_censored_seeds_at_their_budget():
    arm = [stats.Reach(50.0, False), stats.Reach(400.0, True), stats.Reach(100.0, False)]
    base = [stats.Reach(100.0, False), stats.Reach(200.0, False), stats.Reach(400.0, True)]
    result = stats.paired_ratio(arm, base, floor=10.0)
    logs = [math.log(0.5), math.log(2.0), math.log(0.25)]
    assert result["per_seed"] == pytest.approx([0.5, 2.0, 0.25])
    assert result["mean"] == pytest.approx(math.exp(np.mean(logs)))
    half = stats.t_quantile(2) * np.std(logs, ddof=1) / math.sqrt(3)
    centre = np.mean(logs)
    assert (result["low"], result["high"]) == pytest.approx((math.exp(centre - half), math.exp(centre + half)))
    assert result["p"] == pytest.approx(brute_force_sign_flip(logs))
    assert (result["censored"], result["baseline_censored"]) == (1, 1)
    # A crossing at the start (x = 0) counts as the floor, not as a division by zero.
    assert stats.paired_ratio([stats.Reach(0.0, False)], [stats.Reach(40.0, False)], floor=10.0)["mean"] == 0.25
    # Below the floor on both sides (an arm's scoring pass, spent before a start already at the target): no saving.
    at_start = stats.paired_ratio([stats.Reach(26.9, False)], [stats.Reach(0.0, False)], floor=203.0)
    assert at_start["mean"] == 1.0


def test_partial_auc_cuts_the_last_trapezoid_at_the_budget():
    x = np.array([0.0, 100.0, 200.0, 300.0])
    y = np.array([0.2, 0.4, 0.8, 0.9])
    # Up to 150: trapezoid 0-100 (area 30) plus 100-150 from 0.4 to 0.6 (area 25), over 150.
    assert stats.partial_auc(x, y, 150.0) == pytest.approx(55 / 150)
    assert stats.partial_auc(x, y, 300.0) == pytest.approx((30 + 60 + 85) / 300)
    assert stats.partial_auc(x, y, 301.0) is None  # the curve ends before the budget


def test_paired_difference():
    result = stats.paired_difference([0.5, 0.6, 0.7], [0.4, 0.6, 0.5])
    assert result["per_seed"] == pytest.approx([0.1, 0.0, 0.2])
    assert result["mean"] == pytest.approx(0.1)
    assert result["p"] == pytest.approx(brute_force_sign_flip([0.1, 0.0, 0.2]))


def test_holm_steps_down_and_stays_monotone():
    adjusted = stats.holm({"a": 0.01, "b": 0.04, "c": 0.03})
    # Sorted 0.01, 0.03, 0.04 -> x3, x2, x1 = 0.03, 0.06, 0.04 -> monotone 0.03, 0.06, 0.06.
    assert adjusted == pytest.approx({"a": 0.03, "c": 0.06, "b": 0.06})
    assert stats.holm({"a": 0.6, "b": 0.7}) == pytest.approx({"a": 1.0, "b": 1.0})
    assert stats.holm({}) == {}


def test_share_of_saving_is_the_saving_ratio_of_geometric_means_with_a_bootstrap_over_seeds():
    arm, oracle = [0.5, 0.8, 0.6, 1.1], [0.3, 0.5, 0.4, 0.6]
    geo = lambda values: float(np.exp(np.mean(np.log(np.array(values, dtype=np.float64)))))  # noqa: E731
    share = stats.share_of_saving(arm, oracle)
    assert share["mean"] == pytest.approx((1 - geo(arm)) / (1 - geo(oracle)), rel=1e-12)
    assert share["n"] == 4 and share["low"] < share["mean"] < share["high"]
    # The interval is a percentile bootstrap of the same rule over resampled seeds, drawn as documented.
    draws = np.random.default_rng(stats.BOOTSTRAP_SEED).integers(0, 4, size=(stats.BOOTSTRAP_RESAMPLES, 4))
    brute = sorted(
        (1 - geo([arm[i] for i in row])) / (1 - geo([oracle[i] for i in row]))
        for row in draws
        if geo([oracle[i] for i in row]) < 1
    )
    assert share["low"] == pytest.approx(brute[int(0.025 * (len(brute) - 1))], rel=1e-12)
    assert share["high"] == pytest.approx(brute[int(np.ceil(0.975 * (len(brute) - 1)))], rel=1e-12)
    assert stats.share_of_saving(arm, [1.0, 1.2, 0.9, 1.0])["mean"] is None  # the oracle saved nothing: no share
    assert stats.share_of_saving([0.5], [0.25]) == {"mean": pytest.approx(2 / 3), "low": None, "high": None, "n": 1}


def test_the_crossed_interval_is_the_two_way_random_effects_variance_of_the_grand_mean():
    """Brute force in float64: the mean squares from the residuals of the additive fit (numpy's least squares on the
    row and column indicators), each variance component floored at 0, Satterthwaite's degrees of freedom."""
    rng = np.random.default_rng(5)
    for rows, columns, spread in [(8, 4, (0.2, 0.4, 0.3)), (4, 8, (0.0, 0.0, 0.3)), (3, 2, (0.5, 0.0, 0.1))]:
        grid = (rng.normal(0, spread[0], (rows, 1)) + rng.normal(0, spread[1], (1, columns))
                + rng.normal(0, spread[2], (rows, columns)))  # fmt: skip
        design = np.zeros((rows * columns, rows + columns - 1))
        for r, c in itertools.product(range(rows), range(columns)):
            design[r * columns + c, r] = 1.0
            if c:
                design[r * columns + c, rows + c - 1] = 1.0
        y = grid.ravel()
        fitted = design @ np.linalg.lstsq(design, y, rcond=None)[0]
        ms_e = ((y - fitted) ** 2).sum() / ((rows - 1) * (columns - 1))
        ms_r = columns * grid.mean(1).var(ddof=1)
        ms_c = rows * grid.mean(0).var(ddof=1)
        components = [max(0.0, (ms_r - ms_e) / columns), max(0.0, (ms_c - ms_e) / rows), ms_e]
        variance = components[0] / rows + components[1] / columns + components[2] / (rows * columns)
        coefficients = {"r": (ms_r, rows - 1), "c": (ms_c, columns - 1), "e": (ms_e, (rows - 1) * (columns - 1))}
        used = [k for k, v in zip("rc", components[:2], strict=True) if v > 0]
        parts = [coefficients[k] for k in used] or [coefficients["e"]]
        if len(used) == 2:
            parts.append((-ms_e, coefficients["e"][1]))
        df = sum(m for m, _ in parts) ** 2 / sum(m * m / d for m, d in parts)
        half = stats.t_quantile(max(1, math.floor(df))) * math.sqrt(variance)
        result = stats.crossed_mean_ci(grid.tolist())
        assert result["mean"] == pytest.approx(grid.mean(), abs=1e-12)
        assert [result["low"], result["high"]] == pytest.approx([grid.mean() - half, grid.mean() + half], abs=1e-12)
    assert stats.crossed_mean_ci([[0.1, 0.2]])["low"] is None


def test_a_seed_shared_by_every_warm_start_widens_the_interval_to_its_coverage():
    """Simulated verdicts, eight warm starts by four seeds, a seed's effect shared by every warm start: the crossed
    interval covers the true pooled ratio about 95% of the time, the t over the warm starts' means far less."""
    rng = np.random.default_rng(11)
    crossed = naive = 0
    trials = 2000
    for _ in range(trials):
        grid = rng.normal(0, 0.15, (8, 1)) + rng.normal(0, 0.3, (1, 4)) + rng.normal(0, 0.3, (8, 4))
        result = stats.crossed_mean_ci(grid.tolist())
        crossed += result["low"] <= 0.0 <= result["high"]
        means = stats.mean_ci(grid.mean(1).tolist())
        naive += means["low"] <= 0.0 <= means["high"]
    assert 0.93 <= crossed / trials <= 0.99
    assert naive / trials < 0.8


def test_within_sd_is_the_pooled_standard_deviation_about_each_groups_mean():
    rng = np.random.default_rng(5)
    groups = [rng.normal(m, 0.4, n).tolist() for m, n in ((0.0, 4), (1.5, 3), (-2.0, 6), (0.3, 1))]
    squares = sum(((np.array(g) - np.mean(g)) ** 2).sum() for g in groups)
    assert stats.within_sd(groups) == pytest.approx(math.sqrt(squares / (3 + 2 + 5)), rel=1e-12)
    assert stats.within_sd([[0.1], [0.2]]) is None


def test_chance_any_above_matches_simulated_verdicts():
    """Warm starts of 4, 4, 8 and 3 seeds, each seed's log ratio normal about log 0.6: how often the highest warm
    start's geometric mean reads above 1.05x, counted over 200,000 simulated verdicts in float64."""
    rng = np.random.default_rng(17)
    counts, sd, ratio, bound = [4, 4, 8, 3], 0.64, 0.6, 1.05
    trials = 200_000
    highest = np.max([rng.normal(math.log(ratio), sd, (trials, n)).mean(1) for n in counts], axis=0)
    simulated = float((highest > math.log(bound)).mean())
    assert stats.chance_any_above(sd, counts, ratio, bound) == pytest.approx(simulated, abs=0.005)
    assert stats.chance_any_above(sd, [4], 1.05, 1.05) == pytest.approx(0.5, abs=1e-12)
    assert stats.chance_any_above(0.0, [4, 4], 0.6, 1.05) == 0.0 and stats.chance_any_above(0.0, [4], 1.1, 1.05) == 1.0
