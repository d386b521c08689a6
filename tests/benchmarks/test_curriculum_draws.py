"""What each arm trained on: a pair's trained epochs condensed into one draws line, and read back per arm."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from fake_scores import score_columns, write_scores_dir

from gaincurate.lab.benchmarks.curriculum.draws import TOP_PROMPTS, arm_draws, draw_lines, draws_markdown


def _epoch(run, epoch, gc_ids, digits, trained=True):
    pq.write_table(pa.table({"gc_id": gc_ids, "digits": digits}), run / f"epoch-{epoch:04d}.parquet")
    if trained:
        (run / f"feedback-{epoch:04d}.jsonl").write_text("{}\n")


def test_only_trained_epochs_count_and_each_prompt_keeps_its_count(tmp_path):
    run = tmp_path / "runs" / "dots-seed3"
    run.mkdir(parents=True)
    _epoch(run, 0, [1, 2], [1, 2])
    _epoch(run, 1, [2, 3], [2, 3])
    _epoch(run, 2, [9, 9], [4, 4], trained=False)  # the last draw is never trained
    lines = draw_lines(tmp_path, [{"strategy": "dots", "seed": 3}, {"strategy": "uniform", "seed": 3}])
    assert lines == [
        {"strategy": "dots", "seed": 3, "drawn": [[1, 1], [2, 2], [3, 1]], "digits": {"1": 1, "2": 2, "3": 1}}
    ]


def test_the_oracles_trained_draws_count_from_its_record_with_families_from_the_scored_pool(tmp_path):
    inputs = pa.table({"problem": [f"{i}*3" for i in range(5)], "answer": ["0"] * 5, "digits": [1, 1, 2, 2, 3]})
    columns = score_columns(np.linspace(0, 1, 5), [4] * 5)
    write_scores_dir(tmp_path / "assets" / "scores", inputs, columns, dataset={"name": "t", "fingerprint": "t"})
    pair = {
        "strategy": "oracle", "seed": 1, "epochs": [{"epoch": 0}, {"epoch": 1}],
        "oracle_epochs": [{"epoch": 0, "chosen": [0, 2]}, {"epoch": 1, "chosen": [2, 4]},
                          {"epoch": 2, "chosen": [1, 3]}],  # the last draw is never trained
    }  # fmt: skip
    assert draw_lines(tmp_path, [pair, {"strategy": "uniform", "seed": 1}]) == [
        {"strategy": "oracle", "seed": 1, "drawn": [[0, 1], [2, 2], [4, 1]], "digits": {"1": 1, "2": 2, "3": 1}}
    ]


def test_per_arm_means_over_seeds_of_spread_concentration_and_families():
    many = [[g, 1] for g in range(TOP_PROMPTS + 8)]  # 40 prompts drawn once: the top 32 hold 32 of 40 draws
    lines = [
        {"strategy": "a", "seed": 0, "drawn": many, "digits": {"1": 10, "2": 30}},
        {"strategy": "a", "seed": 1, "drawn": [[0, 30], [1, 10]], "digits": {"1": 40}},
    ]
    arms = arm_draws(lines)
    assert arms["a"]["seeds"] == 2 and arms["a"]["distinct"] == (40 + 2) / 2
    assert arms["a"]["top_share"] == (32 / 40 + 1.0) / 2
    assert arms["a"]["digits"] == {"1": (10 / 40 + 1.0) / 2, "2": (30 / 40) / 2}
    assert "| a | 2 | 21 | 90% | 62% | 38% |" in draws_markdown(arms)
    assert draws_markdown({}) == ""
