"""Verdicts across warm starts: the pooled ratio and its bootstrap against brute force, and the report from files."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from gaincurate.errors import ConfigError
from gaincurate.lab.benchmarks.curriculum.pooled import (
    between_arms,
    bootstrap_draws,
    informative_by_epoch,
    pooled_ratio,
    publish,
    report,
)
from gaincurate.lab.benchmarks.curriculum.verdicts import VERDICTS
from gaincurate.lab.benchmarks.curriculum.warm_starts import run_warm_starts, unit_folder

ROOT = Path(__file__).resolve().parents[2]
# A published warm-start table sits between `<!-- warm-starts: docs/results/NAME -->` and `<!-- /warm-starts -->`.
BLOCK = re.compile(r"<!-- warm-starts: (?P<folder>\S+) -->\n(?P<table>.*?)<!-- /warm-starts -->", re.DOTALL)
PUBLISHED = [(m["folder"], m["table"]) for page in ("benchmarks.md", "benchmark-history.md")
             for m in BLOCK.finditer((ROOT / "docs" / page).read_text())]  # fmt: skip


def test_the_pooled_ratio_weighs_every_warm_start_alike():
    logs = [[math.log(0.5), math.log(0.7), math.log(0.6)], [math.log(1.1)], [math.log(0.9), math.log(0.8)]]
    by_hand = math.exp(sum(sum(seeds) / len(seeds) for seeds in logs) / len(logs))
    result = pooled_ratio(logs, resamples=2000)
    assert result["mean"] == pytest.approx(by_hand, rel=1e-12)
    assert result["warm_starts"] == 3
    assert result["low"] <= result["mean"] <= result["high"]
    assert result == pooled_ratio(logs, resamples=2000)  # seeded: the same bytes every time


def test_the_bootstrap_draws_warm_starts_then_seeds_as_brute_force_enumerates():
    """Two warm starts of two seeds each: every resample is one of 2^2 warm-start picks times 2^2 seed picks per
    drawn warm start, all equally likely; the bootstrap's frequencies match that exact distribution."""
    logs = [[0.0, 1.0], [10.0, 30.0]]
    exact: Counter[float] = Counter()
    for picks in itertools.product(range(2), repeat=2):
        for seeds in itertools.product(itertools.product(range(2), repeat=2), repeat=2):
            means = [sum(logs[w][i] for i in chosen) / 2 for w, chosen in zip(picks, seeds, strict=True)]
            exact[round(sum(means) / 2, 9)] += 1
    total = sum(exact.values())
    draws = Counter(round(value, 9) for value in bootstrap_draws(logs, 8000))
    assert set(draws) <= set(exact)
    for value, count in exact.items():
        assert draws[value] / 8000 == pytest.approx(count / total, abs=0.015), value


def test_arms_are_held_against_the_first_seed_by_seed_as_float64_brute_force_gives():
    """Two warm starts, six seeds both arms finished (a seventh only one did: left out); the seed's ratio to the
    baseline cancels to the arms' own ratio, and its logs' mean and t interval (the table's t 0.975 at 5 degrees of
    freedom, 2.571) are the arithmetic's."""
    units = {0: {"arms": {"a": {"seeds": [1, 2, 3], "per_seed": [0.5, 0.8, 1.2]},
                          "b": {"seeds": [1, 2, 3], "per_seed": [0.4, 0.9, 0.6]}}},
             5: {"arms": {"a": {"seeds": [7, 8, 9, 10], "per_seed": [0.7, 0.3, 2.0, 1.0]},
                          "b": {"seeds": [7, 8, 9], "per_seed": [0.35, 0.33, 1.5]}}}}  # fmt: skip
    logs = np.log(np.array([0.4 / 0.5, 0.9 / 0.8, 0.6 / 1.2, 0.35 / 0.7, 0.33 / 0.3, 1.5 / 2.0], dtype=np.float64))
    half = 2.571 * logs.std(ddof=1) / math.sqrt(6)
    got = between_arms(("a", "b"), units)["b"]
    assert got["n"] == 6
    assert got["mean"] == pytest.approx(math.exp(logs.mean()), rel=1e-12)
    assert (got["low"], got["high"]) == pytest.approx(
        (math.exp(logs.mean() - half), math.exp(logs.mean() + half)), rel=1e-12
    )


def test_the_t_interval_is_crossed_where_every_warm_start_ran_the_same_seeds():
    """The same seeds on every warm start (in any order): the crossed interval over the grid, seed by seed; other
    seeds, or none given: the t interval over the warm starts' means."""
    from gaincurate.lab.benchmarks.curriculum import stats

    logs = [[0.1, -0.4, -0.2], [-0.3, -0.9, -0.1], [0.2, -0.5, 0.0]]
    grid = stats.crossed_mean_ci([logs[0], logs[1], [logs[2][2], logs[2][0], logs[2][1]]])
    same = pooled_ratio(logs, [[1, 2, 3], [1, 2, 3], [2, 3, 1]], resamples=200)
    assert same["t_kind"] == "crossed"
    assert [same["t_low"], same["t_high"]] == pytest.approx([math.exp(grid["low"]), math.exp(grid["high"])])
    means = stats.mean_ci([sum(seeds) / 3 for seeds in logs])
    for other in ([[1, 2, 3], [4, 5, 6], [1, 2, 3]], None):
        apart = pooled_ratio(logs, other, resamples=200)
        assert apart["t_kind"] == "warm starts"
        assert [apart["t_low"], apart["t_high"]] == pytest.approx([math.exp(means["low"]), math.exp(means["high"])])
        assert (apart["low"], apart["high"]) == (same["low"], same["high"])  # the bootstrap does not read seeds


def test_seeds_apart_give_each_warm_start_its_own():
    """Shifted by their count per place in the verdict, so no two warm starts share a seed; without, the same."""
    apart = VERDICTS["apart"]
    assert apart.unit_seeds(0) == "326,327,328,329" and apart.unit_seeds(7) == "354,355,356,357"
    assert apart.compare_config("cpu-mult", 1, {}).seed_list == (330, 331, 332, 333)
    later = dataclasses.replace(apart, warm_starts=(4, 5))
    assert later.unit_seeds(4) == "326,327,328,329" and later.unit_seeds(5) == "330,331,332,333"
    assert VERDICTS["default-mult-eight"].unit_seeds(5) == "318-325"
    strided = VERDICTS["apart-mult-eight-seeds"]
    assert strided.unit_seeds(0) == "326,327,328,329,358,359,360,361"
    assert strided.unit_seeds(7) == "354,355,356,357,386,387,388,389"  # apart's warm start 7 and four more
    assert apart.smoked().unit_seeds(1) == "327-327"  # one seed: a range, since a lone number reads as a count


def test_one_warm_start_has_no_bootstrap_interval_and_equal_ones_collapse_it():
    assert pooled_ratio([[math.log(0.8), math.log(0.9)]])["low"] is None
    assert pooled_ratio([])["mean"] is None
    same = pooled_ratio([[math.log(0.7)] * 3] * 4, resamples=500)
    assert same["low"] == pytest.approx(0.7) and same["high"] == pytest.approx(0.7)


def test_informative_groups_by_epoch_sum_every_folder_and_seed(tmp_path):
    """Each arm's informative groups and groups per epoch, summed over comparison folders and seeds, as counted by
    hand from the readouts; an epoch without a count (no groups, or no zero-variance share) is [0, 0]."""
    rows = [("uniform", 1, 0, 8, 0.75), ("uniform", 1, 1, 8, 0.5), ("probe", 1, 0, 8, 0.75), ("probe", 1, 1, 8, 0.25),
            ("probe", 2, 1, 4, 0.0), ("probe", 2, 2, 0, None)]  # fmt: skip
    folders = []
    for index, part in enumerate((rows[:4], rows[4:])):
        folder = tmp_path / f"ws{index}"
        folder.mkdir()
        lines = [{"strategy": arm, "seed": seed, "epoch": epoch, "readout": {"groups": groups, "zero_variance": zv}}
                 for arm, seed, epoch, groups, zv in part]  # fmt: skip
        (folder / "readouts.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
        folders.append(folder)
    assert informative_by_epoch(folders) == {"uniform": [[2, 8], [4, 8]], "probe": [[2, 8], [10, 12]]}
    (folders[1] / "readouts.jsonl").write_text(json.dumps({"strategy": "probe", "seed": 3, "epoch": 3, "readout": {
        "groups": 4, "zero_variance": 0.5}}) + "\n")  # fmt: skip
    assert informative_by_epoch(folders)["probe"] == [[2, 8], [6, 8], [0, 0], [2, 4]]
    assert informative_by_epoch([tmp_path / "absent"]) == {}


# Two warm starts of cpu-arith (the cheapest task) at smoke size, two arms: the whole path (assets, pilot, targets,
# comparison).
TINY = dataclasses.replace(VERDICTS["warm-starts"], name="tiny", tasks=("cpu-arith",),
                           arms=("uniform", "probe-default"), primary=("probe-default",),
                           measure_pool=True)  # fmt: skip


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("warm-starts")
    run_warm_starts(TINY, out, smoke=True)
    summary, table = report(out)
    return out, summary, table


def test_a_smoke_run_reports_each_warm_start_and_the_pooled_ratio(tiny_run):
    out, summary, table = tiny_run
    units = summary["units"]
    assert sorted(units) == ["cpu-arith/ws0", "cpu-arith/ws1"]
    assert all(unit["status"] == "compared" and unit["cpu"]["model"] for unit in units.values())
    assert units["cpu-arith/ws0"]["digest"] != units["cpu-arith/ws1"]["digest"]  # warm_start_seed moves the start
    probe = summary["tasks"]["cpu-arith"]["arms"]["probe-default"]
    per_unit = [units[name]["arms"]["probe-default"]["mean"] for name in sorted(units)]
    assert probe["mean"] == pytest.approx(math.exp(sum(map(math.log, per_unit)) / 2))
    assert probe["worst"] == max(per_unit)
    assert "pooled over 2" in table and "worst warm start" in table
    measured = summary["tasks"]["cpu-arith"]["own_policy"]["probe-default"]  # the pool instrument, a group's size
    assert measured["control_pool"]["uniform_arm"][0] % 2 == 0 and "under the run's own policy" in table


def test_the_report_re_derives_from_the_published_files_and_refuses_moved_targets(tiny_run, tmp_path):
    out, summary, table = tiny_run
    published = tmp_path / "published"
    publish(out, published)
    assert not list(published.rglob("model"))  # small files only
    again, printed = report(published)
    assert printed == table
    assert json.loads(json.dumps(again)) == json.loads(json.dumps(summary))
    bench = unit_folder(published, "cpu-arith", 1) / "compare" / "bench.json"
    kept = json.loads(bench.read_text())
    kept["config"]["other_targets"] = [0.1, 0.2]
    bench.write_text(json.dumps(kept))
    with pytest.raises(ConfigError, match="targets"):
        report(published)


def test_a_unit_assembled_from_copied_pairs_records_its_config_and_reports(tiny_run, tmp_path):
    """Pairs copied in without the bench.json a training run writes (a verdict reusing another's pairs): the run
    trains nothing, records the config, and the report reads the units as if they had trained there."""
    out, _, table = tiny_run
    copied = tmp_path / "copied"
    shutil.copytree(out, copied)
    for k in (0, 1):
        (unit_folder(copied, "cpu-arith", k) / "compare" / "bench.json").unlink()
    run_warm_starts(TINY, copied, smoke=True)
    assert report(copied)[1] == table


@pytest.mark.parametrize("folder,table", PUBLISHED, ids=[folder for folder, _ in PUBLISHED])
def test_a_published_warm_start_table_re_derives_from_its_results(folder, table):
    assert report(ROOT / folder)[1] == table


def test_the_control_is_held_against_the_uniform_arm_over_the_same_seeds_and_epochs(tmp_path):
    """Only the (seed, epoch)s both have count; the difference and its interval are the control's own comparison
    of the pooled counts (one look at 95%); the first epoch with a control stands apart; by epoch pools the
    folders' seeds."""
    from gaincurate.lab.benchmarks.curriculum.agreement import by_epoch, task_agreement
    from gaincurate.schedule.control import Arm, compare, difference_interval

    def line(strategy, seed, epoch, **readout):
        return json.dumps({"strategy": strategy, "seed": seed, "epoch": epoch, "readout": readout})

    folders = []
    for k, informative in enumerate((3, 1)):
        folder = tmp_path / f"unit{k}"
        folder.mkdir()
        lines = [line("uniform", 0, 0, groups=64, zero_variance=0.75), line("uniform", 0, 1, groups=64,
                 zero_variance=0.5), line("uniform", 0, 2, groups=64, zero_variance=1.0),
                 line("uniform", 1, 1, groups=64, zero_variance=1.0),
                 line("probe", 0, 1, control_groups=6, control_informative=informative / 6),
                 line("probe", 0, 2, control_groups=6, control_informative=0.5),
                 line("probe", 0, 3, control_groups=6, control_informative=0.5),  # the uniform arm has no epoch 3
                 line("probe", 1, 0, verdict="no control")]  # fmt: skip
        (folder / "readouts.jsonl").write_text("\n".join(lines) + "\n")
        folders.append(folder)

    entry = task_agreement(folders[:1])["probe"]
    assert entry["first"]["control"] == [6, 3] and entry["first"]["uniform_arm"] == [64, 32]
    expected = compare(Arm(12, 6, 0), Arm(128, 32, 0))
    assert entry["all"]["control"] == [12, 6] and entry["all"]["uniform_arm"] == [128, 32]
    assert entry["all"]["difference"] == pytest.approx(expected.gain, abs=1e-12)
    assert entry["all"]["interval"] == pytest.approx(list(expected.gain_interval), abs=1e-12)
    assert entry["all"]["agrees"] == (expected.gain_interval[0] <= 0 <= expected.gain_interval[1])
    pooled = by_epoch({"task": folders}, "probe")
    assert list(pooled) == [1, 2] and pooled[1]["control"] == [6, 2] and pooled[1]["uniform_arm"] == [64, 32]
    assert pooled[1]["groups"] == [12, 128]
    assert task_agreement([tmp_path]) == {}  # no readouts: nothing to hold together

    # Two warm starts of one seed drew the same prompts: each draw counts once, its groups averaged over them, so
    # the interval is no narrower than one warm start's; two tasks' draws are two draws.
    first = task_agreement(folders)["probe"]["first"]
    assert first["control"] == [6, 2] and first["groups"] == [12, 128]
    assert first["interval"] == pytest.approx(list(difference_interval(Arm(6, 2), Arm(64, 32))), abs=1e-12)
    low, high = difference_interval(Arm(12, 4), Arm(128, 64))  # the two warm starts as if they had drawn apart
    assert first["interval"][1] - first["interval"][0] > high - low
    twice = by_epoch({"a": folders, "b": folders}, "probe")[1]
    assert twice["control"] == [12, 4] and twice["interval"] == pytest.approx([low, high])


def test_the_same_prompts_are_read_in_both_runs_and_tested_exactly(tmp_path):
    """The control's prompts are rebuilt from the bench's seeding and checked against the run; each prompt's group is
    paired with the same prompt's group in the uniform arm; McNemar's p is the exact binomial's, summed by brute
    force here."""
    import numpy as np

    from gaincurate.lab.benchmarks.curriculum.agreement import control_prompts, mcnemar_p, same_prompts
    from gaincurate.schedule.strategies.contract import draw_order

    ranking = [5, 3, 0, 4, 1, 2, 7, 6]
    slice_ids = sorted(np.asarray(ranking)[draw_order(np.zeros(8), np.random.default_rng([7, 1]))[:2]].tolist())
    runs = tmp_path / "compare" / "runs"

    def run(name, varied, subset, informative_share):
        folder = runs / name
        folder.mkdir(parents=True)
        (folder / "state.json").write_text(json.dumps({"ranking": ranking}))
        readout = {"control_groups": 2, "control_informative": informative_share}
        lines = [{"epoch": 0, "subset_ids": subset, "readout": {}}, {"epoch": 1, "subset_ids": subset,
                 "readout": readout if name.startswith("probe") else {}}]  # fmt: skip
        (folder / "history.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
        rewards = [{"gc_id": g, "reward": float(r)} for g in subset for r in ((0, 1) if g in varied else (1, 1))]
        (folder / "feedback-0001.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rewards))

    run("uniform-seed7", varied={slice_ids[1]}, subset=sorted(set(slice_ids) | {6}), informative_share=0.0)
    run("probe-seed7", varied={slice_ids[0]}, subset=sorted(set(slice_ids) | {2}), informative_share=0.5)
    lines = control_prompts(tmp_path / "compare")
    assert lines == [{"strategy": "probe", "seed": 7, "epoch": 1, "gc_ids": slice_ids, "aimed_run": [True, False],
                      "uniform_arm": [False, True]}]  # fmt: skip
    entry = same_prompts([tmp_path / "compare"])["probe"]
    assert entry["first"] == {"prompts": 2, "aimed_run": 1, "uniform_arm": 1, "discordant": [1, 1], "p": 1.0,
                              "agrees": True} and entry["later"] is None  # fmt: skip

    history = runs / "probe-seed7" / "history.jsonl"
    history.write_text(history.read_text().replace('"control_informative": 0.5', '"control_informative": 1.0'))
    with pytest.raises(ValueError, match="not the slice"):
        control_prompts(tmp_path / "compare")

    for b, c in [(0, 0), (3, 0), (8, 3), (10, 10), (1, 19)]:
        n = b + c
        brute = sum(math.comb(n, k) / 2**n for k in range(n + 1) if k <= min(b, c) or k >= n - min(b, c))
        assert mcnemar_p(b, c) == pytest.approx(min(1.0, brute if b != c else 1.0), abs=1e-12)


def test_the_control_is_held_against_the_pool_measured_under_its_own_policy(tmp_path):
    """The pool instrument's share of every prompt (its count from the line) against the control over the same
    (seed, epoch)s, the uniform arm's beside it; a diagnosis without the pool's size counts nothing."""
    from gaincurate.lab.benchmarks.curriculum import own_policy
    from gaincurate.schedule.control import Arm, difference_interval

    def line(strategy, seed, epoch, **readout):
        return json.dumps({"strategy": strategy, "seed": seed, "epoch": epoch, "readout": readout})

    def measured(strategy, seed, epoch, informative, prompts=550):
        return json.dumps({"strategy": strategy, "seed": seed, "epoch": epoch, "pool_prompts": prompts,
                           "pool_informative": informative / prompts})  # fmt: skip

    folder = tmp_path / "unit"
    folder.mkdir()
    lines = [line("uniform", 0, 1, groups=64, zero_variance=0.75), line("uniform", 0, 2, groups=64, zero_variance=0.5),
             line("probe", 0, 1, control_groups=6, control_informative=2 / 6),
             line("probe", 0, 2, control_groups=6, control_informative=0.5)]  # fmt: skip
    (folder / "readouts.jsonl").write_text("\n".join(lines) + "\n")
    pool = [measured("probe", 0, 1, 110), measured("probe", 0, 2, 99),
            json.dumps({"strategy": "probe", "seed": 0, "epoch": 3, "pool_informative": 0.2})]  # fmt: skip
    (folder / "diagnosis.jsonl").write_text("\n".join(pool) + "\n")

    entry = own_policy.task_agreement([folder])["probe"]
    assert entry["control_pool"]["control"] == [12, 5] and entry["control_pool"]["uniform_arm"] == [1100, 209]
    low, high = difference_interval(Arm(12, 5), Arm(1100, 209))
    assert entry["control_pool"]["interval"] == pytest.approx([low, high], abs=1e-12)
    assert entry["pool_uniform"]["control"] == [1100, 209] and entry["pool_uniform"]["uniform_arm"] == [128, 48]
    assert list(entry["by_epoch"]) == ["1", "2"] and entry["by_epoch"]["2"]["control"] == [6, 3]
    text = "\n".join(own_policy.lines({"tasks": {"cpu-x": {"own_policy": {"probe": entry}}}}))
    assert "| cpu-x | probe | 42% of 12 | 19% of 1100 |" in text and "| 2 | 50% of 6 / 18% of 550:" in text
    (folder / "diagnosis.jsonl").write_text(pool[2] + "\n")
    assert own_policy.task_agreement([folder]) == {}


def test_the_pool_instrument_changed_nothing_the_published_default_trained_on():
    """own-policy ran the default again with the instrument on, at apart's seeds: every point but the seconds is
    apart's (the instrument's sampling has its own generators and stands outside the clock)."""
    results = ROOT / "docs" / "results"

    def points(folder: Path) -> list[dict]:
        lines = [json.loads(line) for line in (folder / "compare" / "runs.jsonl").read_text().splitlines()]
        return [{k: v for k, v in line.items() if k != "seconds"} for line in lines
                if line["strategy"] == "probe-likelihood"]  # fmt: skip

    compared = 0
    for unit in sorted((results / "own-policy-2026-11-29").glob("cpu-*/ws*")):
        mine = points(unit)
        seeds = {line["seed"] for line in mine}
        theirs = [line for line in points(results / "apart-2026-11-28" / unit.parent.name / unit.name)
                  if line["seed"] in seeds]  # fmt: skip
        assert mine and mine == theirs, unit
        compared += len(seeds)
    assert compared == 48
