"""The file-level jobs behind `gaincurate difficulty predict|fit|evaluate`: read, compute, return.

Each reads a scores directory's embeddings (`gaincurate score --embed`) and the measured pass rates of
one or more feedback files (in time order; `forget` weighs older files down), runs the pure math of
`predict`, `calibrate` or `evaluate`, and returns plain data for the CLI to render.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gaincurate.difficulty.calibrate import attention_temperature, embedded_by, load_calibrator
from gaincurate.difficulty.predict import prepare_embeddings
from gaincurate.difficulty.reference import PassRates, PromptEmbeddings, load_embeddings, read_pass_rates
from gaincurate.errors import InputError
from gaincurate.schedule.options import OPEN_RATE, POSITIVE
from gaincurate.settings import flag, setting
from gaincurate.shards import read_manifest


@dataclass(frozen=True)
class Measured:
    """A scores directory's prompts, prepared embeddings, and the pass rates measured so far."""

    prompts: PromptEmbeddings
    embeddings: np.ndarray  # prepared (centred, cosine-scaled), float64
    center: np.ndarray
    rates: PassRates
    rows: np.ndarray  # row of each measured gc_id among the prompts


def load_measured(
    scores_dir: Path, feedback: Sequence[Path], *, reward_max: float = 1.0, forget: float = 1.0
) -> Measured:
    if not feedback:
        raise InputError("pass at least one --feedback FILE.jsonl with measured rollouts (`gaincurate rollout`)")
    prompts = load_embeddings(scores_dir)
    finite = prompts.has_embedding
    center = prompts.embeddings[finite].astype(np.float64).mean(axis=0)
    rates = read_pass_rates(feedback, known_ids=prompts.gc_ids, reward_max=reward_max, forget=forget)
    if not len(rates):
        raise InputError(f"{', '.join(map(str, feedback))} hold no rollouts; run `gaincurate rollout` first")
    rows = prompts.rows_of(rates.gc_ids)
    keep = finite[rows]  # a measured prompt without an embedding (an empty question) cannot be a reference
    if not keep.all():
        rates = PassRates(rates.gc_ids[keep], rates.sums[keep], rates.counts[keep], rates.last[keep])
        rows = rows[keep]
    embeddings = prepare_embeddings(prompts.embeddings, center=center)
    return Measured(prompts, embeddings, center, rates, rows)


@dataclass(frozen=True, kw_only=True)
class PredictConfig:
    """How `difficulty predict` predicts; each setting declared once (`gaincurate.settings`), its options generated
    from these fields."""

    tau_attn: float = attention_temperature()
    forget: float = setting(1.0, "Weight a measurement keeps per feedback file of age (1: never ages).")
    calibrator: Path | None = setting(None, "A calibrator from `difficulty fit`.", cli="path")

    def __post_init__(self) -> None:  # one line before any work, not an error from deep in the attention
        POSITIVE(flag("tau_attn"), self.tau_attn)
        OPEN_RATE(flag("forget"), self.forget)


def predict_scores(
    scores_dir: Path,
    feedback: Sequence[Path],
    *,
    config: PredictConfig | None = None,
    reward_max: float = 1.0,
) -> list[dict[str, Any]]:
    """One row per prompt: predicted pass rate (leave-one-out for measured prompts) and what was measured."""
    from gaincurate.difficulty.estimate import neighbour_predictions

    config = config or PredictConfig()
    measured = load_measured(scores_dir, feedback, reward_max=reward_max, forget=config.forget)
    prompts, rates = measured.prompts, measured.rates
    embeddings, calibrator = measured.embeddings, None
    if config.calibrator is not None:
        calibrator, center = load_calibrator(config.calibrator, prompts, read_manifest(scores_dir))
        embeddings = prepare_embeddings(prompts.embeddings, center=center)
    # Leave-one-out; a prompt the calibrator was fitted on is predicted by a fold model that never saw its label.
    predicted = neighbour_predictions(
        embeddings, prompts.gc_ids, rates, now=len(feedback) - 1, tau=config.tau_attn, forget=config.forget,
        calibrator=calibrator,
    )  # fmt: skip
    predicted[~prompts.has_embedding] = np.nan
    measured_rate = np.full(len(prompts.gc_ids), np.nan)
    rollouts = np.zeros(len(prompts.gc_ids))
    measured_rate[measured.rows], rollouts[measured.rows] = rates.rates, rates.counts
    return [
        {
            "gc_id": int(gc_id),
            "predicted": float(p) if np.isfinite(p) else None,
            "measured": float(m) if np.isfinite(m) else None,
            "rollouts": float(n),
        }
        for gc_id, p, m, n in zip(prompts.gc_ids, predicted, measured_rate, rollouts, strict=True)
    ]


def fit_scores(
    scores_dir: Path,
    feedback: Sequence[Path],
    out: Path,
    *,
    config: Any,
    reward_max: float = 1.0,
) -> dict[str, Any]:
    """Fit adapter + calibration on the measured prompts; save it to `out`; report leave-one-out quality."""
    from gaincurate.difficulty.predict import attention_predict
    from gaincurate.lab.difficulty.fit import fit_calibrator
    from gaincurate.metrics import pearson, spearman

    measured = load_measured(scores_dir, feedback, reward_max=reward_max)
    rates = measured.rates
    embeddings = measured.embeddings[measured.rows]
    result = fit_calibrator(embeddings, rates.rates, rates.counts, config)
    everyone = np.arange(len(rates))
    raw = attention_predict(embeddings, embeddings, rates.rates, tau=config.tau, exclude=everyone)
    metadata = {
        "center": [float(c) for c in measured.center],
        "reference_prompts": len(rates),
        "scores_dir": str(scores_dir),
        "embedded_by": embedded_by(read_manifest(scores_dir)),
        "fit": {k: v for k, v in vars(config).items()},
    }
    result.fitted(rates.gc_ids).save(out, metadata)
    observed = rates.rates
    honest = bool(np.isfinite(result.loo_predictions).all())  # folds 0: no fit left any prompt out
    return {
        "out": str(out),
        "reference_prompts": len(rates),
        "weight": result.calibrator.weight,
        "bias": result.calibrator.bias,
        "final_loss": result.losses[-1] if result.losses else None,
        "loo_fit": {
            "pearson": pearson(result.loo_predictions, observed),
            "spearman": spearman(result.loo_predictions, observed),
            "mae": float(np.mean(np.abs(result.loo_predictions - observed))),
        }
        if honest
        else None,
        "loo_attention": {
            "pearson": pearson(raw, observed),
            "spearman": spearman(raw, observed),
            "mae": float(np.mean(np.abs(raw - observed))),
        },
    }


def evaluate_scores(
    scores_dir: Path,
    feedback: Sequence[Path],
    *,
    config: Any,
    reward_max: float = 1.0,
    against: Sequence[str] = (),
) -> dict[str, Any]:
    from gaincurate.lab.difficulty.evaluate import compare_column, evaluate_predictions
    from gaincurate.shards import numeric_input_column, read_scores

    measured = load_measured(scores_dir, feedback, reward_max=reward_max)
    labels = {}
    if against:  # read (and check) the label columns before the slow part
        table = read_scores(scores_dir)  # in gc_id order
        table_rows = np.searchsorted(table.column("gc_id").to_numpy(), measured.rates.gc_ids)
        labels = {column: numeric_input_column(table, column)[table_rows] for column in against}
    rows = measured.rows
    try:
        report = evaluate_predictions(
            measured.embeddings[rows],
            measured.rates.rates,
            measured.rates.counts,
            measured.prompts.question_tokens[rows],
            measured.prompts.scores[rows],
            config,
        )
    except ValueError as error:
        raise InputError(f"{error} with `gaincurate rollout`") from None
    if labels:
        report["against"] = {column: compare_column(values, measured.rates.rates) for column, values in labels.items()}
    report["scores_dir"] = str(scores_dir)
    report["feedback"] = [str(path) for path in feedback]
    return report
