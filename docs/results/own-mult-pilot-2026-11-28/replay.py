"""The offline checks behind own-mult-pilot (docs/benchmark-history.md), replayed from a warm-start run's folders.

    python docs/results/own-mult-pilot-2026-11-28/replay.py own OUT ARM SEEDS
    python docs/results/own-mult-pilot-2026-11-28/replay.py informative OUT ARM SEEDS

OUT is a warm-start run's `--out` for one task (OUT/wsK/compare/runs/ARM-seedS), which keeps every trained group in
each run's state; the published result folders do not, so the runs are made again first, deterministic per seed:
`gaincurate bench curriculum --bench draw-mult-pilot --out D` at 063460f (`own D/cpu-mult probe 90,91,92`, and
`informative` the same) and `--bench embedding-others --out E` at 9887862 (`own E/cpu-chain probe-embedding 310,311`,
and `E/cpu-arith`).

`own`: the probe's fit is made again before each epoch from the groups of the epochs before it, and scored against
that epoch's groups (squared error of the estimate against the group's mean reward), on the prompts measured before:
the fit alone, each prompt's own aged mean reward alone (k = 0), and blends in which the fit's prediction weighs as
much as k of the prompt's own rollouts. `informative`: on the run's uniform slices only (a uniform sample of the
pool), how well the distance of the fit from even odds, and a fit of the label "the group's rewards differed", rank
the groups that came out informative: ROC area and the informative share of each ranking's top fifth.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from gaincurate.difficulty.reference import embeddings_from_table
from gaincurate.numerics import int_powers
from gaincurate.schedule.strategies.probe import Measured, ProbeOptions, ProbeStrategy
from gaincurate.shards import read_scores

BLENDS = (0, 2, 4, 8, 16, 32)  # k, in rollouts


def replays(out: Path, arm: str, seeds: list[int]):
    """(strategy, groups before the epoch, the epoch's groups, its uniform slice's gc_ids, epoch) of every epoch from 2
    on, of every seed's run under every warm start whose folder still holds the scores."""
    for unit in sorted(out.glob("ws*/compare")):
        if not (unit / "assets" / "scores" / "manifest.json").is_file():
            print(f"left out: {unit} holds no scores", file=sys.stderr)
            continue
        prompts = embeddings_from_table(read_scores(unit / "assets" / "scores"), str(unit), blocks=True)
        strategy = ProbeStrategy(prompts.gc_ids, prompts.embeddings, ProbeOptions())
        for seed in seeds:
            run = unit / "runs" / f"{arm}-seed{seed}"
            groups = Measured(json.loads((run / "state.json").read_text())["memory"]).groups
            history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
            for epoch in range(2, int(groups["epochs"].max()) + 1):
                before = Measured(None)
                before.groups = {key: value[groups["epochs"] < epoch] for key, value in groups.items()}
                now = {key: value[groups["epochs"] == epoch] for key, value in groups.items()}
                yield strategy, before, now, history[epoch].get("control_ids") or [], epoch


def own(out: Path, arm: str, seeds: list[int]) -> None:
    errors: dict[str, list[float]] = {}
    for strategy, before, now, _, epoch in replays(out, arm, seeds):
        fit = strategy._fit(before, now=epoch - 1).rates
        ages = int_powers(ProbeOptions().forget, np.maximum(epoch - 1 - before.groups["epochs"], 0))
        rows = np.searchsorted(strategy.gc_ids, before.groups["gc_ids"])
        rollouts = np.bincount(rows, ages * before.groups["counts"], minlength=len(fit))
        rewards = np.bincount(rows, ages * before.groups["sums"], minlength=len(fit))
        at = np.searchsorted(strategy.gc_ids, now["gc_ids"])
        seen = rollouts[at] > 0
        labels = (now["sums"] / now["counts"])[seen]
        estimates = {"fit": fit[at]} | {f"k={k}": (k * fit[at] + rewards[at]) / (k + rollouts[at]) for k in BLENDS[1:]}
        estimates["k=0"] = np.where(seen, rewards[at] / np.where(seen, rollouts[at], 1.0), fit[at])
        for name, estimate in estimates.items():
            errors.setdefault(name, []).extend(((estimate[seen] - labels) ** 2).tolist())
    total = sum(len(v) for v in errors.values()) // len(errors)
    print(f"{total} groups of prompts measured before; squared error of each estimate:")
    for name in ("fit", *(f"k={k}" for k in BLENDS)):
        print(f"  {name:>5}: {np.mean(errors[name]):.4f}")


def roc_area(score: np.ndarray, positive: np.ndarray) -> float:
    """P(a positive outranks a negative), ties counting half."""
    above = (score[positive][:, None] > score[~positive][None, :]).sum()
    ties = (score[positive][:, None] == score[~positive][None, :]).sum()
    return float((above + 0.5 * ties) / (positive.sum() * (~positive).sum()))


def informative(out: Path, arm: str, seeds: list[int]) -> None:
    near, fitted, differed = [], [], []
    for strategy, before, now, control, epoch in replays(out, arm, seeds):
        rates = strategy._fit(before, now=epoch - 1).rates
        labelled = Measured(None)
        labelled.groups = dict(before.groups)
        differs = (before.groups["sums"] > 0) & (before.groups["sums"] < before.groups["counts"])
        labelled.groups["sums"] = differs * before.groups["counts"]  # the fit's label: 1 where the rewards differed
        chance = strategy._fit(labelled, now=epoch - 1).rates
        sliced = np.isin(now["gc_ids"], control)
        at = np.searchsorted(strategy.gc_ids, now["gc_ids"][sliced])
        near.extend(-np.abs(rates[at] - 0.5))
        fitted.extend(chance[at])
        differed.extend((now["sums"][sliced] > 0) & (now["sums"][sliced] < now["counts"][sliced]))
    positive = np.asarray(differed)
    print(f"{len(positive)} groups of the uniform slices, {positive.mean():.3f} informative")
    for name, score in (("distance from even odds", np.asarray(near)), ("informative fit", np.asarray(fitted))):
        top = np.argsort(-score, kind="stable")[: len(score) // 5]
        print(f"  {name}: ROC area {roc_area(score, positive):.3f}, top fifth {positive[top].mean():.3f} informative")


if __name__ == "__main__":
    check, out, arm, seeds = sys.argv[1:5]
    {"own": own, "informative": informative}[check](Path(out), arm, [int(s) for s in seeds.split(",")])
