"""The bench's pool instrument (`measure_pool`): every arm's estimates held against the whole pool, measured.

With `measure_pool` on, at epoch 0's draw and at every epoch end (right after the curriculum drew the next epoch)
the bench measures every pool prompt's pass rate with the current policy, with the oracle's measuring code
(`oracle_rollouts` samples per prompt, the training temperature) and a sampling seed stream of its own, inside the
clock's `pool` exclusion: reported apart, never charged to the arm, and no draw of the arm's training changes
(the test runs an arm with it on and off). It reads the strategy's whole-pool estimate from its report hook
(`Strategy.report`, the savings readout's), the same call the draw made, so it sees what the draw saw.

Per (arm, seed, drawn epoch), in OUT/diagnosis.jsonl:

* `pearson`, `spearman`: the correlation, over the prompts the strategy has an estimate for, of its estimate with
  the measured pass rate (None without an estimate, with fewer than 3, or with one side all equal);
* `pool_prompts`, `pool_pass_rate`, `pool_informative`: the pool's size, its mean measured pass rate and its share
  with 0 < p < 1;
* `trained_pass_rate`, `trained_informative`: the same over the prompts drawn for the epoch (what it trained on);
* `zero_variance`: the share of the epoch's trained rollout groups with zero reward variance (the savings
  readout's, from the feedback; None for the draw after the last step, which is never trained).

Sums are `math.fsum` in a fixed order and every float goes through `gaincurate.numerics.recorded`, so the
figures do not depend on the SIMD path. `--report` re-derives the tables from diagnosis.jsonl.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import numpy as np

from gaincurate.numerics import recorded

MIN_PAIRS = 3  # a correlation over fewer prompts says nothing
DEFAULT_TARGET = 0.5  # what a strategy that names no band is held to aim at
FIGURES = ("pearson", "spearman", "informative_auc", "aimed_informative", "pool_informative", "trained_pass_rate",
           "trained_informative", "zero_variance")  # fmt: skip

Measure = Callable[[np.ndarray, int], tuple[np.ndarray, int]]
# (ranking, measured rates, the epoch's positions, target) -> each candidate feature's figures (candidates.py)
Candidates = Callable[[np.ndarray, np.ndarray, np.ndarray, float], dict[str, dict[str, Any]]]
CANDIDATE_FIGURES = ("spearman", "fit_spearman", "fit_auc", "fit_aimed")


class PoolInstrument:
    """Measures the whole pool after every draw of `curriculum` and keeps each epoch's diagnosis (`epochs`)."""

    def __init__(
        self,
        curriculum: Any,
        measure: Measure,
        rollouts: int,
        off_clock: Callable[[], Any] = nullcontext,
        candidates: Candidates | None = None,
    ) -> None:
        self.curriculum = curriculum
        self.measure = measure
        self.candidates = candidates  # the chain task's candidate features against the same measurement
        self.rollouts = rollouts
        self.off_clock = off_clock  # a context in which the arm's clock stands still (`Clock.exclude`)
        self.epochs: list[dict[str, Any]] = []
        self.costs = {"pool_measure_rollouts": 0, "pool_measure_tokens": 0, "pool_measure_seconds": 0.0}

    def callback(self) -> Any:
        """A trainer callback to list after the curriculum's: it measures once the epoch is drawn."""
        from transformers import TrainerCallback

        outer = self

        class PoolMeasure(TrainerCallback):
            def on_train_begin(self, args, state, control, **kwargs):
                outer.take()

            def on_epoch_end(self, args, state, control, **kwargs):
                outer.take()

        return PoolMeasure()

    def take(self) -> None:
        """Measure the pool as the current epoch was drawn (once per epoch), all of it off the arm's clock."""
        with self.off_clock():
            self._take()

    def _take(self) -> None:
        scheduler = self.curriculum.run.scheduler
        state = scheduler.state
        if state.epoch < 0 or any(line["epoch"] == state.epoch for line in self.epochs):
            return
        report = scheduler.reported  # the strategy's own report of the draw, as it stood
        assert report is not None, "the diagnosis reads the report of a draw this process made"
        started = time.perf_counter()
        rates, tokens = self.measure(np.asarray(state.ranking), int(state.epoch))
        seconds = time.perf_counter() - started
        self.costs["pool_measure_rollouts"] += len(rates) * self.rollouts
        self.costs["pool_measure_tokens"] += int(tokens)
        self.costs["pool_measure_seconds"] += seconds
        target = DEFAULT_TARGET if report.band is None else (report.band[0] + report.band[1]) / 2.0
        diagnosis = epoch_diagnosis(int(state.epoch), report.estimates, report.source, rates, state.positions, target)
        if self.candidates is not None:
            diagnosis["candidates"] = self.candidates(np.asarray(state.ranking), rates, state.positions, target)
        self.epochs.append(diagnosis)


def epoch_diagnosis(
    epoch: int,
    estimates: np.ndarray | None,
    source: str,
    rates: np.ndarray,
    positions: np.ndarray,
    target: float = DEFAULT_TARGET,
) -> dict[str, Any]:
    """One drawn epoch's figures: the estimates (rank positions) against the measured rates, and the picks'.

    Beside the correlations, what the estimate could aim with: `aimed_pass_rate` and `aimed_informative`, the
    measured figures of the epoch's worth of prompts whose estimate lies nearest `target` (a greedy aim, whatever
    the strategy's own draw does), and `informative_auc`, the chance that a prompt measured with 0 < p < 1 has its
    estimate nearer `target` than one measured at 0 or 1 (0.5: the estimate cannot tell them apart)."""
    rates = np.asarray(rates, dtype=np.float64)
    picked = rates[np.asarray(positions, dtype=np.int64)]
    pearson = spearman = auc = None
    aimed: list[float] = []
    compared = 0
    if estimates is not None:
        values = np.asarray(estimates, dtype=np.float64)
        known = np.isfinite(values)
        compared = int(known.sum())
        pearson = pearson_r(values[known].tolist(), rates[known].tolist())
        spearman = pearson_r(ranks(values[known].tolist()), ranks(rates[known].tolist()))
        closeness = (-np.abs(values[known] - target)).tolist()
        informative = [0.0 < r < 1.0 for r in rates[known].tolist()]
        auc = informative_auc(closeness, informative)
        nearest = sorted(range(compared), key=lambda i: (-closeness[i], i))[: len(picked)]
        aimed = [rates[known].tolist()[i] for i in nearest] if compared else []
    return {
        "epoch": epoch,
        "estimate": source,
        "compared": compared,
        "pearson": pearson,
        "spearman": spearman,
        "informative_auc": auc,
        "aimed_pass_rate": _mean(aimed),
        "aimed_informative": _informative(aimed),
        "pool_prompts": len(rates),
        "pool_pass_rate": _mean(rates.tolist()),
        "pool_informative": _informative(rates.tolist()),
        "trained_pass_rate": _mean(picked.tolist()),
        "trained_informative": _informative(picked.tolist()),
    }


def informative_auc(scores: list[float], positive: list[bool]) -> float | None:
    """Mann-Whitney AUC of `scores` for the positives (ties count half); None when either side is empty."""
    n1 = sum(positive)
    n0 = len(positive) - n1
    if not n1 or not n0:
        return None
    rank = ranks(scores)
    positives = math.fsum(r for r, p in zip(rank, positive, strict=True) if p)
    return recorded((positives - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def pearson_r(xs: list[float], ys: list[float]) -> float | None:
    """Pearson's r by centred `math.fsum` sums (None: fewer than MIN_PAIRS, or one side constant)."""
    n = len(xs)
    if n < MIN_PAIRS:
        return None
    mx, my = math.fsum(xs) / n, math.fsum(ys) / n
    dx, dy = [x - mx for x in xs], [y - my for y in ys]
    sxx, syy = math.fsum(d * d for d in dx), math.fsum(d * d for d in dy)
    if sxx <= 0.0 or syy <= 0.0:
        return None
    return recorded(max(-1.0, min(1.0, math.fsum(a * b for a, b in zip(dx, dy, strict=True)) / math.sqrt(sxx * syy))))


def ranks(values: list[float]) -> list[float]:
    """1-based ranks, ties given their mean rank (Spearman's convention)."""
    order = sorted(range(len(values)), key=lambda i: (values[i], i))
    out = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for i in order[start : end + 1]:
            out[i] = (start + end) / 2.0 + 1.0
        start = end + 1
    return out


def diagnosis_lines(pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OUT/diagnosis.jsonl: one line per (arm, seed, drawn epoch), with the trained epoch's zero-variance share."""
    lines = []
    for pair in pairs:
        zero = {e["epoch"]: (e.get("readout") or {}).get("zero_variance") for e in pair.get("epochs", [])}
        for epoch in pair.get("pool_epochs") or []:
            lines.append({"strategy": pair["strategy"], "seed": pair["seed"], **epoch,
                          "zero_variance": zero.get(epoch["epoch"])})  # fmt: skip
    return lines


def arm_diagnosis(lines: list[dict[str, Any]]) -> dict[str, Any]:
    """Per arm: each epoch's figures averaged over seeds, and the mean over the trained epochs after the first."""
    by_arm: dict[str, dict[int, list[dict[str, Any]]]] = {}
    for line in lines:
        by_arm.setdefault(line["strategy"], {}).setdefault(int(line["epoch"]), []).append(line)
    arms = {}
    for arm, epochs in by_arm.items():
        per_epoch = {
            epoch: {"seeds": len(rows), **{key: _mean_of(rows, key) for key in ("pool_pass_rate", *FIGURES)}}
            for epoch, rows in sorted(epochs.items())
        }
        trained = [rows for epoch, rows in epochs.items() if epoch >= 1]  # epoch 0 is every arm's first guess
        later = [row for rows in trained for row in rows if row.get("zero_variance") is not None]
        arms[arm] = {
            "estimate": epochs[max(epochs)][-1]["estimate"],  # what it says at its last draw
            "seeds": len({row["seed"] for rows in epochs.values() for row in rows}),
            "trained_epochs_after_first": {key: _mean_of(later, key) for key in FIGURES},
            "epochs": {str(epoch): figures for epoch, figures in per_epoch.items()},
        }
        candidates = arm_candidates(later)  # the chain task's candidate features (candidates.py)
        if candidates is not None:
            arms[arm]["candidates"] = candidates
    return arms


def diagnosis_markdown(arms: dict[str, Any]) -> str:
    """The diagnosis tables: per arm over the trained epochs after the first, then per arm and epoch."""
    if not arms:
        return ""
    head = (
        "| pearson r | spearman r | AUC 0<p<1 | aimed 0<p<1 | pool 0<p<1 | trained p | trained 0<p<1 "
        "| zero-variance groups |"
    )
    lines = [
        "",
        "Pool diagnosis (`measure_pool`: the whole pool measured with the current policy at every draw, not charged; "
        "r: the strategy's estimate against that measurement; trained: the prompts drawn for the epoch, as measured; "
        "AUC: how well nearness of the estimate to its target tells the prompts measured with 0<p<1 from the rest; "
        "aimed: the epoch's worth of prompts whose estimate is nearest its target, as measured; "
        "mean over seeds of the trained epochs 1 and later):",
        "",
        "| arm | seeds | estimate " + head,
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for arm, data in arms.items():
        lines.append(f"| {arm} | {data['seeds']} | {data['estimate']} | " + _cells(data["trained_epochs_after_first"]))
    lines += _per_epoch(arms, "spearman r / trained 0<p<1 / zero-variance groups (the last draw is never trained; "
                        "`-`: none)", (("spearman", "{:+.2f}"), ("trained_informative", "{:.0%}"),
                                       ("zero_variance", "{:.0%}")))  # fmt: skip
    lines += _per_epoch(arms, "AUC 0<p<1 / aimed 0<p<1 (how the estimate tells the informative prompts apart, "
                        "and the share it would aim at them)", (("informative_auc", "{:.2f}"),
                                                                ("aimed_informative", "{:.0%}")))  # fmt: skip
    lines += candidates_markdown(arms)
    return "\n".join(lines) + "\n"


def _per_epoch(arms: dict[str, Any], what: str, figures: tuple[tuple[str, str], ...]) -> list[str]:
    """One table of the given figures, a row per epoch and a column per arm, mean over seeds."""
    names = list(arms)
    lines = ["", f"Per epoch, mean over seeds: {what}:", "", "| epoch | " + " | ".join(names) + " |",
             "|---" * (len(names) + 1) + "|"]  # fmt: skip
    for epoch in sorted({int(epoch) for data in arms.values() for epoch in data["epochs"]}):
        cells = [_epoch_cell(arms[name]["epochs"].get(str(epoch)), figures) for name in names]
        lines.append(f"| {epoch} | " + " | ".join(cells) + " |")
    return lines


def _epoch_cell(values: dict[str, Any] | None, figures: tuple[tuple[str, str], ...]) -> str:
    if values is None:
        return ""
    return " / ".join("-" if values[k] is None else f.format(values[k]) for k, f in figures)


def _cells(figures: dict[str, Any]) -> str:
    formats = ("{:+.2f}", "{:+.2f}", "{:.2f}", "{:.0%}", "{:.0%}", "{:.2f}", "{:.0%}", "{:.0%}")
    cells = ("-" if figures[k] is None else f.format(figures[k]) for k, f in zip(FIGURES, formats, strict=True))
    return " | ".join(cells) + " |"


def _mean_of(rows: list[dict[str, Any]], key: str) -> float | None:
    return _mean([float(row[key]) for row in rows if row.get(key) is not None])


def _mean(values: list[float]) -> float | None:
    return recorded(math.fsum(values) / len(values)) if values else None


def _informative(values: list[float]) -> float | None:
    return recorded(sum(0.0 < v < 1.0 for v in values) / len(values)) if values else None


def arm_candidates(rows: list[dict[str, Any]]) -> dict[str, dict[str, float | None]] | None:
    """Each candidate's figures, mean over `rows` (an arm's diagnosis lines); None when none measured candidates."""
    measured = [row["candidates"] for row in rows if row.get("candidates")]
    if not measured:
        return None
    return {name: {key: _mean([float(m[name][key]) for m in measured if m[name][key] is not None])
                   for key in CANDIDATE_FIGURES} for name in measured[0]}  # fmt: skip


def candidates_markdown(arms: dict[str, Any]) -> list[str]:
    """The candidates table: a row per (arm, candidate), mean over seeds of the trained epochs 1 and later."""
    rows = [(arm, name, figures) for arm, data in arms.items()
            for name, figures in (data.get("candidates") or {}).items()]  # fmt: skip
    if not rows:
        return []
    lines = ["", "Candidate features (the whole pool measured at every draw; raw: the feature's rank correlation "
             "with the measured pass rates; fit: the probe's fit on the embedding and that feature, cross-fitted on "
             "halves of the pool, against the same measurement; mean over seeds of the trained epochs 1 and later):",
             "", "| arm | feature | raw spearman r | fit spearman r | fit AUC 0<p<1 | fit aimed 0<p<1 |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    formats = ("{:+.2f}", "{:+.2f}", "{:.2f}", "{:.0%}")
    for arm, name, figures in rows:
        pairs = zip(CANDIDATE_FIGURES, formats, strict=True)
        cells = ("-" if figures[k] is None else f.format(figures[k]) for k, f in pairs)
        lines.append(f"| {arm} | {name} | " + " | ".join(cells) + " |")
    return lines
