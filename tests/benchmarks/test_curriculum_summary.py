"""The bench's summary statistics against a hand computation on a fixed runs.jsonl."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from gaincurate.benchmarks.curriculum.configs import BenchConfig
from gaincurate.benchmarks.curriculum.summary import markdown_table, mean_ci, smoothed, summarize

ROLLOUTS = [0, 80, 160, 240]
CURVES = {  # (strategy, seed): (greedy accuracy per point, seconds per point)
    ("uniform", 0): ([0.2, 0.4, 0.5, 0.6], [0, 10, 20, 30]),
    ("uniform", 1): ([0.2, 0.3, 0.5, 0.55], [0, 11, 22, 33]),
    ("gain", 0): ([0.2, 0.5, 0.6, 0.6], [5, 16, 27, 38]),
    ("gain", 1): ([0.2, 0.4, 0.6, 0.6], [5, 15, 25, 35]),
    ("oracle", 0): ([0.2, 0.6, 0.7, 0.7], [0, 10, 20, 30]),
    ("oracle", 1): ([0.2, 0.5, 0.6, 0.7], [0, 10, 20, 30]),
}
T_1DF = 12.706  # two-sided 95% Student t, one degree of freedom


def runs_lines() -> list[dict]:
    lines = []
    for (strategy, seed), (accuracy, seconds) in CURVES.items():
        for i, (acc, sec) in enumerate(zip(accuracy, seconds, strict=True)):
            lines.append({
                "strategy": strategy, "seed": seed, "step": 10 * i, "rollouts": ROLLOUTS[i], "tokens": 3 * ROLLOUTS[i],
                "seconds": sec, "accuracy": acc, "zero_variance_fraction": None if i == 0 else 0.5,
                "sampled_accuracy": acc / 2,
            })  # fmt: skip
    return lines


@pytest.fixture()
def summary(tmp_path):
    path = tmp_path / "runs.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in runs_lines()))
    points = [json.loads(line) for line in path.read_text().splitlines()]
    return summarize(points, BenchConfig(name="hand", smooth=1, target_fraction=0.9))


def test_target_is_a_fraction_of_the_best_final_accuracy_without_the_oracle(summary):
    # Mean finals: uniform (0.6 + 0.55) / 2 = 0.575, gain 0.6; the oracle's 0.7 does not count.
    assert summary["targets"]["greedy"] == pytest.approx(0.9 * 0.6)
    assert summary["targets"]["sampled"] == pytest.approx(0.9 * 0.3)


def test_to_target_means_and_intervals(summary):
    uniform = summary["strategies"]["uniform"]["metrics"]["greedy"]
    gain = summary["strategies"]["gain"]["metrics"]["greedy"]
    # 0.54 is first reached at the last point by both uniform seeds, at the third point by both gain seeds.
    assert uniform["reached"] == "2/2" and gain["reached"] == "2/2"
    assert uniform["to_target"]["rollouts"] == {"mean": 240.0, "low": 240.0, "high": 240.0, "n": 2}
    assert gain["to_target"]["steps"]["mean"] == 20.0
    seconds = uniform["to_target"]["seconds"]
    half = T_1DF * np.std([30, 33], ddof=1) / math.sqrt(2)  # = 12.706 * 1.5
    assert seconds["mean"] == pytest.approx(31.5)
    assert (seconds["low"], seconds["high"]) == pytest.approx((31.5 - half, 31.5 + half))
    assert half == pytest.approx(19.059)


def test_final_accuracy_and_auc(summary):
    uniform = summary["strategies"]["uniform"]["metrics"]["greedy"]
    assert uniform["final"]["mean"] == pytest.approx(0.575)
    assert uniform["initial"]["mean"] == pytest.approx(0.2)
    # Trapezoids over 80-rollout steps, divided by the 240-rollout span: 104 / 240 and 94 / 240.
    assert uniform["auc"]["mean"] == pytest.approx((104 / 240 + 94 / 240) / 2)


def test_paired_ratio_against_uniform_is_a_geometric_mean(summary):
    ratio = summary["strategies"]["gain"]["metrics"]["greedy"]["ratio_vs_baseline"]
    assert ratio["rollouts"]["mean"] == pytest.approx(160 / 240)
    assert ratio["rollouts"]["per_seed"] == pytest.approx([2 / 3, 2 / 3])
    logs = [math.log(27 / 30), math.log(25 / 33)]
    half = T_1DF * abs(logs[0] - logs[1]) / 2  # t * (sd / sqrt 2), sd of two values = |a - b| / sqrt 2
    seconds = ratio["seconds"]
    assert seconds["mean"] == pytest.approx(math.sqrt(27 / 30 * 25 / 33))
    assert seconds["low"] == pytest.approx(math.exp(np.mean(logs) - half))
    assert seconds["high"] == pytest.approx(math.exp(np.mean(logs) + half))
    assert summary["strategies"]["uniform"]["metrics"]["greedy"]["ratio_vs_baseline"] is None


def test_headroom_is_the_oracles_rollouts_to_uniforms_final_accuracy(summary):
    room = summary["headroom"]
    # Seed 0: uniform ends at 0.6 (240 rollouts); the oracle has 0.6 at 80. Seed 1: 0.55 at 240; the oracle at 160.
    assert room["rollouts_ratio"]["per_seed"] == pytest.approx([1 / 3, 2 / 3])
    assert room["rollouts_ratio"]["mean"] == pytest.approx(math.sqrt(2 / 9))
    assert room["baseline_gain"]["mean"] == pytest.approx((0.4 + 0.35) / 2)
    assert room["line"].startswith("selection can save at most 53% of rollouts on this setup")
    assert "Headroom: selection can save at most 53%" in markdown_table(summary)


def test_a_baseline_that_never_moved_leaves_no_headroom_to_read():
    # uniform ends where it starts (0.2), which every arm has at step 0: no ratio, and the line says why.
    flat = [line | {"accuracy": 0.2} if line["strategy"] == "uniform" else line for line in runs_lines()]
    room = summarize(flat, BenchConfig(name="hand", smooth=1))["headroom"]
    assert room["rollouts_ratio"]["mean"] is None and room["oracle_missed"] == 0
    assert room["baseline_gain"]["mean"] == pytest.approx(0.0, abs=1e-12)
    assert room["oracle_gain"]["mean"] == pytest.approx(0.5)
    assert room["line"] == (
        "no headroom can be read on this setup: uniform gained +0.0 points over its run, so uniform's final greedy "
        "accuracy is where every arm starts (the oracle gained +50.0 points), 2 seed(s)"
    )


def test_smoothing_and_an_absolute_target():
    assert smoothed(np.array([1.0, 2.0, 3.0, 4.0]), 2) == pytest.approx([1.0, 1.5, 2.5, 3.5])
    summary = summarize(runs_lines(), BenchConfig(name="hand", smooth=2, target=0.5))
    assert summary["targets"]["greedy"] == 0.5
    uniform = summary["strategies"]["uniform"]["metrics"]["greedy"]
    # Smoothed seed 0: 0.2, 0.3, 0.45, 0.55 -> 0.5 first at the last point; seed 1: 0.2, 0.25, 0.4, 0.525.
    assert uniform["to_target"]["rollouts"]["mean"] == 240.0
    assert uniform["final"]["mean"] == pytest.approx((0.55 + 0.525) / 2)


def test_mean_ci_edge_cases():
    assert mean_ci([]) == {"mean": None, "low": None, "high": None, "n": 0}
    assert mean_ci([0.3]) == {"mean": 0.3, "low": None, "high": None, "n": 1}
