"""The default strategy is the one the published bench chose, and everything that uses a default uses it."""

from __future__ import annotations

import json
from pathlib import Path

from gaincurate.schedule.config import DEFAULT_STRATEGY, ScheduleConfig
from gaincurate.scoring.config import ScoreConfig

RESULTS = Path(__file__).resolve().parents[2] / "docs" / "results"


def test_the_default_is_the_strongest_significant_saving_in_the_published_results():
    # Every published bench with a declared analysis: the primary arm that beats the baseline with the lowest
    # rollouts ratio (docs/strategies.md, "Which strategy should I use?").
    winners = {}
    for summary_file in sorted(RESULTS.glob("*/summary.json")):
        summary = json.loads(summary_file.read_text())
        beating = {arm: r["ratio"] for arm, r in summary["primary"].items() if r["verdict"] == "beats"}
        if summary["analysis"]["declared"] and beating:
            winners[summary["config"]] = min(beating, key=beating.get)
    # cpu-mult: no arm beat uniform, in the published run or in the headroom verdict (issue 38).
    assert winners == {"cpu-arith": "dots", "cpu-arith-headroom": "dots"}
    assert DEFAULT_STRATEGY == "dots"
    assert ScheduleConfig().strategy == DEFAULT_STRATEGY


def test_scoring_stores_what_the_default_strategy_reads():
    assert ScoreConfig(dataset="x").embed  # dots predicts pass rates from the question embeddings
