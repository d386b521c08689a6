"""The seconds check: first imports paid once and apart (warm.py), and what the report says the seconds include
(seconds.py), on fixed curves, a fake scoring pass and a published results folder."""

from __future__ import annotations

import json
import pkgutil
import shutil
import sys
import time
from pathlib import Path

import pytest

from gaincurate.lab.benchmarks.curriculum import warm
from gaincurate.lab.benchmarks.curriculum.configs import BenchConfig
from gaincurate.lab.benchmarks.curriculum.report import report
from gaincurate.lab.benchmarks.curriculum.seconds import LESS_SCORING, less_scoring
from gaincurate.lab.benchmarks.curriculum.summary import summarize
from gaincurate.lab.benchmarks.curriculum.warm import SCORING_FIRST_IMPORT, WARM_UP_SECONDS

ROOT = Path(__file__).resolve().parents[2]
ROLLOUTS = [0, 80, 160, 240]
ACCURACY = {("uniform", 0): [0.2, 0.4, 0.5, 0.6], ("uniform", 1): [0.2, 0.3, 0.5, 0.55],
            ("probe", 0): [0.2, 0.5, 0.6, 0.6], ("probe", 1): [0.2, 0.4, 0.6, 0.6]}  # fmt: skip
SECONDS = {("uniform", 0): [0, 10, 20, 30], ("uniform", 1): [0, 11, 22, 33],
           ("probe", 0): [0, 11, 22, 33], ("probe", 1): [0, 10, 20, 30]}  # fmt: skip
SCORING = {0: 7.5, 1: 12.25}  # seconds of each seed's scoring pass, charged to probe only


def points(charged: dict[int, float]) -> list[dict]:
    return [
        {"strategy": arm, "seed": seed, "step": 10 * i, "rollouts": ROLLOUTS[i], "tokens": 3 * ROLLOUTS[i],
         "seconds": SECONDS[arm, seed][i] + (charged.get(seed, 0.0) if arm == "probe" else 0.0),
         "accuracy": accuracy, "zero_variance_fraction": None, "sampled_accuracy": accuracy}
        for (arm, seed), curve in ACCURACY.items() for i, accuracy in enumerate(curve)
    ]  # fmt: skip


def costs(**extra: float) -> dict[tuple[str, int], dict[str, float]]:
    return {(arm, seed): {"scoring_seconds": SCORING[seed] if arm == "probe" else 0.0, **extra}
            for arm, seed in ACCURACY}  # fmt: skip


CONFIG = BenchConfig(name="hand", smooth=1, target=0.5)


def test_leaving_the_scoring_pass_out_undoes_its_charge_exactly():
    charged = summarize(points(SCORING), CONFIG, costs())["strategies"]["probe"]["vs_baseline"]["seconds"]
    never = summarize(points({}), CONFIG, costs())["strategies"]["probe"]["vs_baseline"]["seconds"]
    less = less_scoring(points(SCORING), CONFIG, costs())
    assert less == {"probe": never}
    assert charged["mean"] > never["mean"]  # the charge is what moved the ratio


def test_records_that_time_the_first_imports_apart_or_charge_no_scoring_need_no_re_derivation():
    assert less_scoring(points(SCORING), CONFIG, costs(**{WARM_UP_SECONDS: 0.0})) is None
    free = {key: {"scoring_seconds": 0.0} for key in ACCURACY}
    assert less_scoring(points({}), CONFIG, free) is None


def test_the_scoring_warm_up_reads_the_first_rows_in_a_folder_it_removes(tmp_path):
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps({"problem": f"{i}+1", "answer": str(i + 1)}) + "\n" for i in range(5)))
    seen = []

    def score(rows: Path, out: Path) -> float:
        seen.append((rows.read_text().splitlines(), out.parent))
        time.sleep(0.01)
        return 0.0

    seconds = warm.scoring_first_import(score, pool, tmp_path / "warm-up")
    assert seen == [(pool.read_text().splitlines()[: warm.WARM_UP_ROWS], tmp_path / "warm-up")]
    assert seconds >= 0.01 and not (tmp_path / "warm-up").exists()

    def fails(rows: Path, out: Path) -> float:
        raise RuntimeError("scoring failed")

    with pytest.raises(RuntimeError, match="scoring failed"):
        warm.scoring_first_import(fails, pool, tmp_path / "warm-up")
    assert not (tmp_path / "warm-up").exists()


def test_a_process_pays_its_first_imports_once_before_any_clock(monkeypatch):
    monkeypatch.setattr(warm, "_warmed", False)
    loads = []
    assert warm.warm_up_process(lambda: loads.append(1)) > 0 and loads == [1]
    for name in warm.CURRICULUM_PACKAGES:
        package = sys.modules[name]
        assert all(module.name in sys.modules for module in pkgutil.walk_packages(package.__path__, f"{name}."))
    assert warm.warm_up_process(lambda: loads.append(1)) == 0.0 and loads == [1]


def test_the_report_says_what_the_seconds_include(tmp_path):
    """Kept records without the first imports apart: the seconds headings say they include them, the compute
    check gives the ratios with the scoring pass left out. The same records with them apart: neither."""
    published = ROOT / "docs" / "results" / "cpu-chain-refresh-pilot"
    summary, table = report(published)
    assert summary[LESS_SCORING] and "(measured, first imports included)" in table
    assert "with the scoring pass left out" in table and "| included |" in table

    folder = tmp_path / "results"
    shutil.copytree(published, folder)
    lines = [json.loads(line) for line in (folder / "costs.jsonl").read_text().splitlines()]
    for line in lines:
        charged = line["costs"]["scoring_seconds"] > 0
        line["costs"] |= {WARM_UP_SECONDS: 0.5, **({SCORING_FIRST_IMPORT: 3.0} if charged else {})}
    (folder / "costs.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    summary, table = report(folder)
    assert LESS_SCORING not in summary and "first imports included" not in table
    assert "(measured) |" in table and "as a long run pays it" in table
    assert "| uniform | 0.0 | 0.5 |" in table and "| probe-likelihood | 12.8 | 3.5 |" in table
