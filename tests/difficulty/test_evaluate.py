"""Held-out evaluation and the `gaincurate difficulty` commands, on made-up embeddings with a known signal."""

from __future__ import annotations

import json

import numpy as np
import pytest
from difficulty_helpers import true_pass_rates, write_feedback
from helpers import run_cli

from gaincurate.difficulty.predict import prepare_embeddings
from gaincurate.lab.difficulty.evaluate import (
    EvaluateConfig,
    compare_column,
    evaluate_predictions,
    least_squares_predict,
    noise_ceiling,
    paired_wins,
    solved_counts,
)


def test_least_squares_baseline_recovers_a_line():
    x = np.array([1.0, 2.0, 3.0, np.nan])
    np.testing.assert_allclose(
        least_squares_predict(x, 2 * np.nan_to_num(x, nan=2.0) + 1, np.array([4.0, np.nan])), [9.0, 5.0]
    )


def test_noise_ceiling_matches_a_simulation():
    rng = np.random.default_rng(0)
    truth = rng.uniform(0.05, 0.95, 4000)
    measured = rng.binomial(4, truth) / 4
    ceiling = noise_ceiling(measured, np.full(4000, 4.0))
    assert abs(ceiling - np.corrcoef(truth, measured)[0, 1]) < 0.02
    assert noise_ceiling(measured, np.ones(4000)) is None  # one rollout each: noise cannot be estimated


def synthetic(count: int = 80):
    embeddings, truth = true_pass_rates(count, seed=4)
    measured = np.random.default_rng(5).binomial(16, truth) / 16
    rng = np.random.default_rng(6)
    return prepare_embeddings(embeddings), measured, np.full(count, 16.0), rng.integers(5, 50, count), rng.random(count)


def test_attention_beats_the_baselines_when_embeddings_carry_the_signal():
    report = evaluate_predictions(*synthetic(), EvaluateConfig(repeats=3, tau_attn=0.1, fit_steps=40, fit_dim=6))
    methods = report["methods"]
    assert set(methods) == {"attention", "attention_fit", "global_mean", "length", "angle"}
    assert methods["attention"]["pearson"] > 0.8
    assert methods["attention_fit"]["pearson"] > 0.8
    assert methods["global_mean"]["pearson"] is None
    assert methods["attention"]["mae"] < methods["global_mean"]["mae"]
    assert abs(methods["length"]["pearson"]) < 0.6 and abs(methods["angle"]["pearson"]) < 0.6
    assert report["held_out"] == 16 and len(report["per_repeat"]) == 3


def test_paired_wins_count_split_by_split():
    def split(attention, length_pearson, length_mae):
        return {
            "attention": {"pearson": attention[0], "mae": attention[1]},
            "global_mean": {"pearson": None, "mae": 0.2},
            "length": {"pearson": length_pearson, "mae": length_mae},
        }

    per_repeat = [split((0.5, 0.1), 0.4, 0.15), split((0.3, 0.3), 0.4, 0.15), split((0.6, 0.1), None, 0.05)]
    wins = paired_wins(per_repeat)
    assert wins == {
        "global_mean": {"splits": 3, "pearson_higher": None, "mae_lower": 2},
        "length": {"splits": 3, "pearson_higher": 1, "mae_lower": 1},
    }


def test_solved_counts_and_a_known_label_beside_the_methods():
    assert solved_counts(np.array([0.0, 0.25, 1.0, 0.0, 0.5])) == {"never": 2, "sometimes": 2, "always": 1}
    levels = np.array([1, 1, 2, 2, 3, np.nan])
    rates = np.array([0.75, 0.25, 0.5, 0.0, 0.0, 1.0])
    compared = compare_column(levels, rates)
    assert compared["prompts"] == 5  # the NaN label is left out
    assert compared["pearson"] == pytest.approx(np.corrcoef(levels[:5], rates[:5])[0, 1])
    assert compared["by_value"] == [
        {"value": 1.0, "prompts": 2, "mean_pass_rate": 0.5},
        {"value": 2.0, "prompts": 2, "mean_pass_rate": 0.25},
        {"value": 3.0, "prompts": 1, "mean_pass_rate": 0.0},
    ]
    assert compare_column(np.arange(30.0), np.linspace(0, 1, 30))["by_value"] is None  # too many levels to list


def test_evaluation_is_seeded():
    data = synthetic()
    config = EvaluateConfig(repeats=2, fit=False)
    assert evaluate_predictions(*data, config) == evaluate_predictions(*data, config)
    other_seed = EvaluateConfig(repeats=2, fit=False, seed=1)
    assert evaluate_predictions(*data, config) != evaluate_predictions(*data, other_seed)


def test_cli_predict_fit_evaluate(embedded_scores, tmp_path, monkeypatch, capsys):
    feedback = [
        write_feedback(tmp_path / "a.jsonl", range(0, 60, 2), samples=4, seed=0),
        write_feedback(tmp_path / "b.jsonl", range(1, 60, 4), samples=4, seed=1),
    ]
    sources = [arg for path in feedback for arg in ("--feedback", str(path))]

    code, out, _ = run_cli(
        ["difficulty", "predict", str(embedded_scores), *sources, "--tau-attn", "0.2"], monkeypatch, capsys
    )
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(rows) == 60 and [r["gc_id"] for r in rows] == list(range(60))
    assert rows[0]["measured"] is not None and rows[3]["measured"] is None and rows[3]["rollouts"] == 0
    assert all(0 <= r["predicted"] <= 1 for r in rows)

    calibrator = tmp_path / "calibrator.npz"
    code, out, _ = run_cli(
        [
            "difficulty",
            "fit",
            str(embedded_scores),
            *sources,
            "--out",
            str(calibrator),
            "--dim",
            "4",
            "--steps",
            "20",
            "--folds",
            "3",
            "--json",
        ],
        monkeypatch,
        capsys,
    )
    report = json.loads(out)
    assert code == 0 and calibrator.is_file() and report["reference_prompts"] == 45
    assert report["loo_fit"]["pearson"] > 0.5

    code, out, _ = run_cli(
        [
            "difficulty",
            "predict",
            str(embedded_scores),
            *sources,
            "--calibrator",
            str(calibrator),
            "--out",
            str(tmp_path / "p.jsonl"),
        ],
        monkeypatch,
        capsys,
    )
    assert code == 0 and len((tmp_path / "p.jsonl").read_text().splitlines()) == 60

    code, out, _ = run_cli(
        ["difficulty", "evaluate", str(embedded_scores), *sources, "--repeats", "2", "--no-fit", "--json",
         "--against", "answer"],
        monkeypatch,
        capsys,
    )  # fmt: skip
    report = json.loads(out)
    assert code == 0 and report["prompts"] == 45 and report["held_out"] == 9
    assert report["methods"]["attention"]["pearson"] > 0.5
    assert report["attention_vs"]["length"]["splits"] == 2
    assert sum(report["measured"].values()) == 45
    # "answer" is i % 7 for gc_id i: 7 levels, each with the measured prompts of that residue.
    assert [level["value"] for level in report["against"]["answer"]["by_value"]] == list(range(7))
    assert sum(level["prompts"] for level in report["against"]["answer"]["by_value"]) == 45

    code, out, err = run_cli(
        ["difficulty", "evaluate", str(embedded_scores), *sources, "--against", "problem"], monkeypatch, capsys
    )
    assert code == 1 and "--against problem: the column is not numeric" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--feedback", "missing.jsonl"], "does not exist"),
        (["--feedback", "bad.jsonl"], "not valid JSON"),
        (["--feedback", "unknown.jsonl"], "gc_id 999 is not in the prompt set"),
    ],
    ids=["missing-file", "bad-line", "unknown-id"],
)
def test_bad_feedback_is_one_line(embedded_scores, tmp_path, monkeypatch, capsys, args, message):
    (tmp_path / "bad.jsonl").write_text('{"gc_id": 1, "reward": 1.0}\nnot json\n')
    (tmp_path / "unknown.jsonl").write_text('{"gc_id": 999, "reward": 1.0}\n')
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(["difficulty", "evaluate", str(embedded_scores), *args], monkeypatch, capsys)
    assert code == 1 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1
