"""The offline reading behind record-mult-pilot's declaration (docs/benchmark-history.md), from a warm-start run.

    python docs/results/record-mult-pilot-2026-11-28/replay.py last OUT ARM SEEDS
    python docs/results/record-mult-pilot-2026-11-28/replay.py aim OUT ARM SEEDS

Run at ad59461, the commit that adds `probe --record` and its `probe.aim` (taken out again after the run). OUT is a
warm-start run's `--out` for one task (OUT/wsK/compare/runs/ARM-seedS), whose run folders keep every trained
group; the published result folders do not, so the runs are made again first, deterministic per seed on the same
CPU: `gaincurate bench curriculum --bench default-mult --out D` at f57c195 (`last D/cpu-mult probe 318-325`, and
`aim` the same), `--bench default-others --out E` at 84a4feb (`aim E/cpu-chain probe 318-319`, and `E/cpu-arith`),
and this run's own (`last R/cpu-mult probe-record1 90-92`, each arm).

`last`: the aimed groups (the uniform slice left out) of every epoch from 1 on, by the prompt's digit count (the pool's
`digits` column) and by what the prompt's last group before it did (differed, agreed, or none yet): how many, and
the share whose rewards differed; then every aimed group's, its share by digit count, and the distinct prompts a
run trained (mean over runs). `aim`: the probe's fit made again before each epoch from the groups before it;
over the run's uniform slices (a uniform sample of the pool under the run's policy), the informative share of a draw
weighted as each aim weighs, one softmax of `probe.aim`'s log-weights over every slice group.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from gaincurate.difficulty.reference import embeddings_from_table
from gaincurate.lab.benchmarks.curriculum.run_options import parse_seeds
from gaincurate.schedule.strategies.probe import Measured, ProbeOptions, ProbeStrategy
from gaincurate.schedule.strategies.probe.aim import log_weights
from gaincurate.shards import read_scores

RECORDS = (0.0, 1.0, 0.5)


def runs(out: Path, arm: str, seeds: list[int]):
    """(unit folder, run folder, its groups, its history) of every seed's run under every warm start."""
    for unit in sorted(out.glob("ws*/compare")):
        for seed in seeds:
            run = unit / "runs" / f"{arm}-seed{seed}"
            if not (run / "state.json").is_file():
                print(f"left out: {run} (no run)", file=sys.stderr)
                continue
            groups = Measured(json.loads((run / "state.json").read_text())["memory"]).groups
            history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
            yield unit, run, groups, history


def last(out: Path, arm: str, seeds: list[int]) -> None:
    counts: Counter = Counter()
    distinct = []
    for unit, _, groups, history in runs(out, arm, seeds):
        distinct.append(len(set(groups["gc_ids"].tolist())))
        digits = [json.loads(line)["digits"] for line in (unit / "assets" / "pool.jsonl").read_text().splitlines()]
        before: dict[int, str] = {}
        for epoch in range(int(groups["epochs"].max()) + 1):
            now = groups["epochs"] == epoch
            control = set(history[epoch].get("control_ids") or [])
            for gc_id, total, rollouts in zip(*(groups[key][now] for key in ("gc_ids", "sums", "counts")), strict=True):
                differed = 0 < total < rollouts
                if epoch and int(gc_id) not in control:
                    counts[digits[gc_id], before.get(int(gc_id), "none yet"), differed] += 1
                before[int(gc_id)] = "differed" if differed else "agreed"
    aimed = {family: sum(v for k, v in counts.items() if k[0] == family) for family in sorted({k[0] for k in counts})}
    informative = sum(v for k, v in counts.items() if k[2])
    print(f"aimed groups {sum(aimed.values())}, {informative / sum(aimed.values()):.1%} informative; by digits: "
          + ", ".join(f"{family} {n / sum(aimed.values()):.1%}" for family, n in aimed.items())
          + f"; distinct prompts a run {np.mean(distinct):.0f}")  # fmt: skip
    print("digits | last group before | aimed groups | differed")
    for family in sorted({key[0] for key in counts}):
        for state in ("none yet", "differed", "agreed"):
            total = counts[family, state, True] + counts[family, state, False]
            if total:
                print(f"{family} | {state} | {total} | {counts[family, state, True] / total:.0%}")


def aim(out: Path, arm: str, seeds: list[int]) -> None:
    logits: dict[float, list[float]] = {record: [] for record in RECORDS}
    differed: list[bool] = []
    for unit, _, groups, history in runs(out, arm, seeds):
        prompts = embeddings_from_table(read_scores(unit / "assets" / "scores"), str(unit), blocks=True)
        strategy = ProbeStrategy(prompts.gc_ids, prompts.embeddings, ProbeOptions())
        for epoch in range(2, int(groups["epochs"].max()) + 1):
            before = Measured(None)
            before.groups = {key: value[groups["epochs"] < epoch] for key, value in groups.items()}
            rates = strategy._fit(before, now=epoch - 1).rates
            now = groups["epochs"] == epoch
            sliced = now & np.isin(groups["gc_ids"], history[epoch].get("control_ids") or [])
            ids = groups["gc_ids"][sliced]
            at = np.searchsorted(strategy.gc_ids, ids)
            for record in RECORDS:
                options = ProbeOptions(record=record)
                logits[record].extend(
                    log_weights(options, rates[at], ids, strategy.gc_ids, before.groups, now=epoch - 1)
                )
            differed.extend((groups["sums"][sliced] > 0) & (groups["sums"][sliced] < groups["counts"][sliced]))
    positive = np.asarray(differed, dtype=np.float64)
    print(f"{len(positive)} slice groups, {positive.mean():.3f} informative")
    for record in RECORDS:
        values = np.asarray(logits[record])
        weights = np.exp(values - values.max())
        print(
            f"  record {record:g}: informative share of the aim-weighted draw {weights @ positive / weights.sum():.3f}"
        )


if __name__ == "__main__":
    check, out, arm, seeds = sys.argv[1:5]
    {"last": last, "aim": aim}[check](Path(out), arm, parse_seeds(seeds))
