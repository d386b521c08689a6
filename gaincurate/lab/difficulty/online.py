"""`difficulty evaluate --online RUN`: how well DOTS predicted, epoch by epoch, what a run then measured.

A random hold-out asks how well the predictor fills in prompts measured at the same time. A run asks
something harder: from everything measured up to epoch t, how well does it predict epoch t+1, which the
policy trains a step later? That is the number that says whether DOTS works in a run.

For every epoch t with a next epoch, the measurements up to t (a `--reference` file at time -1, the feedback
of epochs 0..t, and any fresh reference sets rolled up to t) give the DOTS estimates exactly as the
scheduler computed them before drawing epoch t+1 (`gaincurate.difficulty.estimate`, with the run's
tau_attn, forget and calibrator). They are compared with the pass rates epoch t+1 measured, prompt by prompt:

* `dots`: the aged estimate selection aimed with;
* `neighbours`: the neighbours' prediction alone (leave-one-out attention);
* `global_mean`: the mean pass rate of every rollout up to t (no correlation: one number for all);
* `own_last`: a prompt's own rate the last time it was measured, over the prompts measured before
  (`remeasured`); `dots` is scored on those same prompts too (`dots_remeasured`), for a fair comparison.

`pooled` concatenates every epoch's pairs. The run directory is read by the caller (the CLI), so this
module needs only the scores directory and the feedback files with their times.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gaincurate.difficulty.estimate import estimate_pass_rates
from gaincurate.difficulty.predict import prepare_embeddings
from gaincurate.difficulty.reference import PassRates, load_embeddings, read_measurements
from gaincurate.errors import InputError
from gaincurate.metrics import pearson, spearman
from gaincurate.shards import read_manifest

METHODS = ("dots", "neighbours", "global_mean", "own_last", "dots_remeasured")


def _metrics(predicted: np.ndarray, observed: np.ndarray) -> dict[str, float | None]:
    if not len(predicted):
        return {"pearson": None, "spearman": None, "mae": None}
    spread = len(predicted) > 2 and np.ptp(predicted) > 0 and np.ptp(observed) > 0

    def correlation(function: Any) -> float | None:
        value = float(function(predicted, observed)) if spread else float("nan")
        return value if np.isfinite(value) else None

    return {
        "pearson": correlation(pearson),
        "spearman": correlation(spearman),
        "mae": float(np.mean(np.abs(predicted - observed))),
    }


def online_evaluation(
    scores_dir: Path,
    feedback: dict[int, Path],
    *,
    references: Sequence[tuple[int, Path]] = (),
    tau_attn: float,
    forget: float,
    reward_max: float = 1.0,
    reward_min: float = 0.0,
    calibrator_path: Path | None = None,
) -> dict[str, Any]:
    """Predict each epoch t+1's pass rates from the measurements up to t, and score the predictions.

    `feedback` maps each trained epoch to its feedback file; `references` are other measurements with their
    times (a `--reference` file at -1, fresh reference sets at the epoch after which they were rolled).
    """
    prompts = load_embeddings(Path(scores_dir))
    center, calibrator = None, None
    if calibrator_path is not None:
        from gaincurate.difficulty.calibrate import load_calibrator

        calibrator, center = load_calibrator(Path(calibrator_path), prompts, read_manifest(Path(scores_dir)))
    embeddings = prepare_embeddings(prompts.embeddings, center=center)

    def measured(path: Path) -> dict[int, tuple[float, int]]:
        return read_measurements(path, prompts.gc_ids, reward_max=reward_max, reward_min=reward_min)

    epochs = {epoch: measured(path) for epoch, path in feedback.items()}
    timeline = sorted([(time, measured(path)) for time, path in references] + list(epochs.items()), key=_time)
    per_epoch, pooled = [], {name: ([], []) for name in METHODS}
    for epoch in sorted(epochs):
        if epoch + 1 not in epochs:
            continue
        known = [per_prompt for time, per_prompt in timeline if time <= epoch]
        rates = PassRates.empty()
        for time, per_prompt in (item for item in timeline if item[0] <= epoch):
            rates = rates.add(per_prompt, time=time, forget=forget)
        estimates = estimate_pass_rates(
            embeddings, prompts.gc_ids, rates, now=epoch, tau=tau_attn, forget=forget, calibrator=calibrator
        )
        line, predictions = _score_epoch(epoch, epochs[epoch + 1], known, estimates, prompts.rows_of)
        per_epoch.append(line)
        for name, (predicted, actual) in predictions.items():
            pooled[name][0].append(predicted)
            pooled[name][1].append(actual)
    if not per_epoch:
        left = "one more epoch" if epochs else "two epochs"  # any epoch fed back pairs with its next
        said = f"the run has no two consecutive epochs with feedback yet; evaluate it after {left} with feedback"
        raise InputError(said)
    joined = {name: (np.concatenate(p), np.concatenate(o)) for name, (p, o) in pooled.items()}
    return {
        "scores_dir": str(scores_dir),
        "tau_attn": tau_attn,
        "forget": forget,
        "calibrator": None if calibrator_path is None else str(calibrator_path),
        "feedback": {str(epoch): str(path) for epoch, path in sorted(feedback.items())},
        "references": [{"time": time, "file": str(path)} for time, path in references],
        "per_epoch": per_epoch,
        "pooled": {
            "prompts": sum(line["prompts"] for line in per_epoch),
            "remeasured": sum(line["remeasured"] for line in per_epoch),
            "methods": {name: _metrics(*pair) for name, pair in joined.items()},
        },
    }


def _time(item: tuple[int, Any]) -> int:
    return item[0]


def _score_epoch(
    epoch: int,
    target: dict[int, tuple[float, int]],
    known: list[dict[int, tuple[float, int]]],
    estimates: Any,
    rows_of: Any,
) -> tuple[dict[str, Any], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Epoch `epoch + 1`'s measured rates against every method's prediction from the `known` measurements."""
    ids = np.asarray(sorted(target), dtype=np.int64)
    observed = np.asarray([target[int(i)][0] / target[int(i)][1] for i in ids])
    rows = rows_of(ids)
    last_rate: dict[int, float] = {}
    for per_prompt in known:  # oldest first, so the last measurement wins
        last_rate |= {gc_id: total / count for gc_id, (total, count) in per_prompt.items()}
    mean = sum(total for per in known for total, _ in per.values()) / sum(
        count for per in known for _, count in per.values()
    )
    again = np.asarray([int(i) in last_rate for i in ids], dtype=bool)
    predictions = {
        "dots": (estimates.estimate[rows], observed),
        "neighbours": (estimates.neighbour[rows], observed),
        "global_mean": (np.full(len(ids), mean), observed),
        "own_last": (np.asarray([last_rate[int(i)] for i in ids[again]], dtype=np.float64), observed[again]),
        "dots_remeasured": (estimates.estimate[rows][again], observed[again]),
    }
    line = {
        "epoch": epoch,
        "predicted_epoch": epoch + 1,
        "prompts": len(ids),
        "remeasured": int(again.sum()),
        "mean_pass_rate": float(observed.mean()),
        "methods": {name: _metrics(*pair) for name, pair in predictions.items()},
    }
    return line, predictions
