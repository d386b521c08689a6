"""The bench's summary against hand computations on fixed curves (stats.py's pieces are tested on their own)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gaincurate.lab.benchmarks.curriculum.configs import BenchConfig
from gaincurate.lab.benchmarks.curriculum.report import markdown_table
from gaincurate.lab.benchmarks.curriculum.stats import sign_flip_p
from gaincurate.lab.benchmarks.curriculum.summary import summarize

ROLLOUTS = [0, 80, 160, 240]
CURVES = {  # (arm, seed): (greedy accuracy per point, seconds per point)
    ("uniform", 0): ([0.2, 0.4, 0.5, 0.6], [0, 10, 20, 30]),
    ("uniform", 1): ([0.2, 0.3, 0.5, 0.55], [0, 11, 22, 33]),
    ("gain", 0): ([0.2, 0.5, 0.6, 0.6], [5, 16, 27, 38]),
    ("gain", 1): ([0.2, 0.4, 0.6, 0.6], [5, 15, 25, 35]),
    ("oracle", 0): ([0.2, 0.6, 0.7, 0.7], [0, 10, 20, 30]),
    ("oracle", 1): ([0.2, 0.5, 0.6, 0.7], [0, 10, 20, 30]),
}


def lines_of(curves: dict) -> list[dict]:
    lines = []
    for (arm, seed), (accuracy, seconds) in curves.items():
        for i, (acc, sec) in enumerate(zip(accuracy, seconds, strict=True)):
            lines.append({
                "strategy": arm, "seed": seed, "step": 10 * i, "rollouts": ROLLOUTS[i], "tokens": 3 * ROLLOUTS[i],
                "seconds": sec, "accuracy": acc, "zero_variance_fraction": None if i == 0 else 0.5,
                "sampled_accuracy": acc / 2,
            })  # fmt: skip
    return lines


def config(**fields) -> BenchConfig:
    return BenchConfig(name="hand", **{"smooth": 1, **fields})


def test_a_declared_target_is_read_by_interpolated_crossings():
    summary = summarize(lines_of(CURVES), config(target=0.5, primary=("gain",)))
    assert summary["analysis"]["target"] == 0.5 and summary["analysis"]["declared"]
    uniform, gain = summary["strategies"]["uniform"], summary["strategies"]["gain"]
    # uniform crosses 0.5 at 160 on both seeds; gain at 80 (seed 0) and 80 + 80 * (0.1 / 0.2) = 120 (seed 1).
    assert uniform["to_target"]["rollouts"]["mean"] == 160.0
    assert gain["to_target"]["rollouts"]["mean"] == pytest.approx(100.0)
    ratio = gain["vs_baseline"]["rollouts"]
    assert ratio["per_seed"] == pytest.approx([0.5, 0.75])
    assert ratio["mean"] == pytest.approx(math.sqrt(0.375))
    assert ratio["p"] == pytest.approx(0.5)  # two seeds: 2 of the 4 sign patterns are as extreme
    # Seconds interpolate the same way: gain seed 0 at 16 s, seed 1 at 15 + 10 * 0.5 = 20 s; uniform at 20 and 22.
    assert gain["vs_baseline"]["seconds"]["per_seed"] == pytest.approx([16 / 20, 20 / 22])
    assert uniform["vs_baseline"] is None


def test_seeds_that_miss_the_target_are_censored_and_counted():
    summary = summarize(lines_of(CURVES), config(target=0.58))
    uniform, gain = summary["strategies"]["uniform"], summary["strategies"]["gain"]
    # uniform seed 0: 160 + 80 * 0.8 = 224; seed 1 tops out at 0.55: censored at its budget, 240, and kept.
    assert uniform["censored"] == 1
    assert uniform["to_target"]["rollouts"]["mean"] == pytest.approx((224 + 240) / 2)
    # gain: 80 + 80 * 0.8 = 144 and 80 + 80 * 0.9 = 152.
    ratio = gain["vs_baseline"]["rollouts"]
    assert ratio["per_seed"] == pytest.approx([144 / 224, 152 / 240])
    assert (ratio["censored"], ratio["baseline_censored"]) == (0, 1)
    row = "| uniform | 2 | 0.200 [0.200, 0.200] | 0.575 [0.257, 0.893] | 1 | 232 [130, 334] |"
    assert row in markdown_table(summary)
    # Steps are rollouts / 8 here, so their ratios are the same.
    assert gain["vs_baseline"]["steps"]["per_seed"] == pytest.approx([144 / 224, 152 / 240])


def test_partial_auc_difference_over_the_declared_budget():
    summary = summarize(lines_of(CURVES), config(target=0.5, pauc_budget=160))
    pauc = summary["strategies"]["gain"]["vs_baseline"]["pauc"]
    # Seed 0: gain (28 + 44) / 160 against uniform (24 + 36) / 160; seed 1: (24 + 40) / 160 against (20 + 32) / 160.
    assert pauc["per_seed"] == pytest.approx([12 / 160, 12 / 160])
    assert pauc["mean"] == pytest.approx(0.075)


def test_a_centred_mean_smooths_before_the_crossing_and_finals_average_the_last_points():
    summary = summarize(lines_of(CURVES), config(target=0.45, smooth=3))
    uniform = summary["strategies"]["uniform"]
    # Seed 0 smoothed: 0.2, 0.3667, 0.5, 0.6 -> 0.45 at 80 + 80 * (0.0833 / 0.1333) = 130.
    smoothed_seed0 = [0.2, 1.1 / 3, 0.5, 0.6]
    expected = 80 + 80 * (0.45 - smoothed_seed0[1]) / (smoothed_seed0[2] - smoothed_seed0[1])
    seed1 = [0.2, 1.0 / 3, 0.45, 0.55]  # 0.45 reached exactly at 160
    assert seed1[2] == pytest.approx(0.45)
    assert uniform["to_target"]["rollouts"]["mean"] == pytest.approx((expected + 160) / 2)
    assert uniform["final"]["mean"] == pytest.approx((0.5 + 0.45) / 2)  # mean of each seed's last three points


def test_an_undeclared_target_follows_the_arms_and_says_so():
    summary = summarize(lines_of(CURVES), config())
    # Mean finals: uniform 0.575, gain 0.6; the oracle's 0.7 does not count. Every arm starts at 0.2.
    assert summary["analysis"]["target"] == pytest.approx(0.2 + 0.9 * (0.6 - 0.2))
    assert summary["analysis"]["target_rule"] == "0.9 of the way from the start to the best final (not declared)"
    assert not summary["analysis"]["declared"]


def six_seed_curves(effect: dict[str, float]) -> dict:
    """uniform crosses 0.5 at 160 rollouts on every seed; each arm at 160 x its effect (a straight line)."""
    curves = {}
    for seed in range(6):
        curves[("uniform", seed)] = ([0.2, 0.35, 0.5, 0.6], [0, 10, 20, 30])
        for arm, factor in effect.items():
            wobble = 1 + 0.02 * seed  # every seed differs a little, all in the same direction
            at_80 = min(0.2 + 0.3 * (80 / (160 * factor * wobble)), 1.0)
            curves[(arm, seed)] = ([0.2, at_80, 0.7, 0.8], [0, 10, 20, 30])
    return curves


def test_holm_across_the_primary_arms_decides_the_verdict():
    curves = six_seed_curves({"dots": 0.5, "mopps": 0.5})
    one = summarize(lines_of(curves), config(target=0.5, primary=("dots",)))
    assert one["primary"]["dots"]["p"] == pytest.approx(2 / 64)
    assert one["primary"]["dots"]["verdict"] == "beats"
    assert "At the 5% level, after Holm's correction over dots: dots beats uniform" in markdown_table(one)
    # mopps beside dots with identical curves: both p = 2/64, Holm keeps 2 x 2/64 = 0.0625 for both.
    two = summarize(lines_of(curves), config(target=0.5, primary=("dots", "mopps")))
    assert two["primary"]["dots"]["p_holm"] == pytest.approx(0.0625)
    assert {r["verdict"] for r in two["primary"].values()} == {"not distinguishable from"}
    assert "no arm beats uniform" in markdown_table(two)
    ratios = [float(r) for r in one["strategies"]["dots"]["vs_baseline"]["rollouts"]["per_seed"]]
    assert one["primary"]["dots"]["p"] == pytest.approx(sign_flip_p([math.log(r) for r in ratios]))


def test_sensitivity_reads_the_same_pairs_at_other_targets():
    summary = summarize(lines_of(CURVES), config(target=0.5, other_targets=(0.4, 0.58)))
    gain = summary["strategies"]["gain"]["sensitivity"]
    # At 0.4: uniform at 80 (seed 0) and 80 + 80 * 0.5 = 120 (seed 1); gain at 80 * (0.2 / 0.3) and at 80.
    assert gain["0.4"]["rollouts"]["per_seed"] == pytest.approx([(80 * 2 / 3) / 80, 80 / 120])
    assert gain["0.58"]["rollouts"]["per_seed"] == pytest.approx([144 / 224, 152 / 240])
    assert "target 0.580" in markdown_table(summary)


def test_headroom_is_the_oracles_rollouts_to_uniforms_final_accuracy():
    room = summarize(lines_of(CURVES), config(target=0.5))["headroom"]
    # Seed 0: uniform ends at 0.6 (240 rollouts); the oracle has 0.6 at 80. Seed 1: 0.55, reached at 240 by uniform
    # and at 80 + 80 * 0.5 = 120 by the oracle.
    assert room["rollouts_ratio"]["mean"] == pytest.approx(math.sqrt(1 / 3 * 1 / 2))
    assert room["baseline_gain"]["mean"] == pytest.approx((0.4 + 0.35) / 2)
    assert room["line"].startswith("selection can save at most 59% of rollouts on this setup")


def test_a_baseline_that_never_moved_leaves_no_headroom_to_read():
    flat = [line | {"accuracy": 0.2} if line["strategy"] == "uniform" else line for line in lines_of(CURVES)]
    room = summarize(flat, config(target=0.5))["headroom"]
    assert room["baseline_gain"]["mean"] == pytest.approx(0.0, abs=1e-12)
    assert room["line"] == (
        "no headroom can be read on this setup: uniform gained +0.0 points over its run, so uniform's final greedy "
        "accuracy is where every arm starts (the oracle gained +50.0 points), 2 seed(s)"
    )


def test_the_table_has_every_arm_and_the_costs():
    costs = {key: {"total_seconds": 30.0, "eval_seconds": 2.0} for key in CURVES}
    costs[("oracle", 0)] |= {"measure_rollouts": 1000.0, "measure_seconds": 9.0}
    table = markdown_table(summarize(lines_of(CURVES), config(target=0.5), costs))
    for arm in ("uniform", "gain", "oracle"):
        assert f"| {arm} | 2 |" in table
    assert "Target 0.500 (declared in the config before the runs)" in table
    assert "No primary comparison was declared" in table
    assert np.isfinite(0.0)


def test_a_pilot_hands_on_targets_at_shares_of_the_baselines_gain():
    from gaincurate.lab.benchmarks.curriculum.report import pilot_targets

    summary = summarize(lines_of(CURVES), config(target=0.5))
    # uniform: initial 0.2, final (0.6 + 0.55) / 2 = 0.575, so a gain of 0.375 (0.3875 rounds down in binary).
    assert pilot_targets(summary) == {0.5: 0.387, 0.75: 0.481, 0.9: 0.537}
    assert "(50%: 0.387, 75%: 0.481, 90%: 0.537)" in markdown_table(summary)
