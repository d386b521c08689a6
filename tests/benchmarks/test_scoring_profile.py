"""The settings `bench scoring` and `bench profile` share (rows, model, dtype, threads), and a real profiled pass."""

from __future__ import annotations

import json

import pytest
from helpers import PROBLEMS

from gaincurate.lab.benchmarks.scoring import ScoringRows, selected_rows
from gaincurate.lab.benchmarks.scoring_profile import ProfileBench, bench_profile


def test_the_scoring_benches_read_the_rows_after_the_offset_into_a_file_of_their_own(problems_file):
    options = ScoringRows(data=str(problems_file), rows=4, offset=6)
    with selected_rows(options) as data:
        chosen = [json.loads(line)["problem"] for line in data.read_text().splitlines()]
    assert chosen == [row["problem"] for row in PROBLEMS[6:8]]  # 4 asked for after 6, 2 left
    assert not data.exists()
    config = options.score_config(str(data))
    assert (config.dataset, config.device, config.dtype, config.answer_column) == (str(data), "cpu", "auto", None)


def test_profile_scores_the_rows_warm_and_accounts_for_the_whole_profiled_time(tiny_llama, problems_file):
    options = ProfileBench(
        data=str(problems_file), rows=4, offset=2, model=str(tiny_llama), dtype="float32", batch_tokens=512, threads=1
    )
    result = bench_profile(options)
    assert (result["dtype"], result["batch_tokens"]) == ("float32", 512)
    assert result["seconds"]["matmul"] > 0
    assert sum(result["seconds"].values()) == pytest.approx(result["profiled_seconds"])
    assert "gates" not in result
