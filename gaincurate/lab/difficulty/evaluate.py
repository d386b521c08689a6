"""How well pass rates are predicted: held-out correlation against simple baselines.

`evaluate_predictions` repeats a seeded split of the measured prompts: a `holdout` fraction is hidden,
predicted from the rest, and compared with what was measured. Per method it reports the Pearson and
Spearman correlations and the mean absolute error (mean and standard deviation over the repeats):

* `attention`: the DOTS predictor, attention over the training prompts (tau_attn);
* `attention_fit`: the same with an adapter and calibration head fitted on the training prompts;
* `global_mean`: the mean training pass rate for everyone (its correlation is undefined: null);
* `length`: least squares on log(question tokens);
* `angle`: least squares on the angle score `gc_score` alone.

Beside the averages, `attention_vs` counts, split by split, how often attention beats each baseline
(higher Pearson, lower MAE): a paired comparison, tighter than comparing two means with their spreads.
`measured` counts the prompts never, sometimes and always solved.

`noise_ceiling` bounds what any predictor can reach against noisy measurements: with n rollouts per
prompt, the measured rate is the true one plus binomial noise of variance p(1-p)/n, estimated without
bias by y(1-y)/(n-1). The Pearson correlation of even a perfect predictor with the measured rates is
then at most sqrt(1 - mean noise variance / variance of the measured rates).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from gaincurate.difficulty.calibrate import attention_temperature
from gaincurate.difficulty.predict import attention_predict
from gaincurate.lab.difficulty.fit import FitConfig
from gaincurate.metrics import pearson, spearman
from gaincurate.settings import setting

METHODS = ("attention", "attention_fit", "global_mean", "length", "angle")


@dataclass(frozen=True, kw_only=True)
class EvaluateConfig:
    """How `difficulty evaluate` splits and predicts; each setting declared once (`gaincurate.settings`)."""

    holdout: float = setting(0.2, "Fraction of measured prompts held out per repeat.")
    repeats: int = setting(5, "Seeded splits to average over.")
    seed: int = setting(0, "Seed of the splits and the fit.")
    tau_attn: float = attention_temperature()
    fit: bool = setting(True, "Also score a fitted adapter; --no-fit skips it (no torch needed).", flags=("--no-fit",))
    # The fitted method's adapter, as `difficulty fit` trains it by default (no options of their own).
    fit_dim: int = setting(FitConfig.dim, "Adapter output dimension of the fitted method.")
    fit_steps: int = setting(FitConfig.steps, "Adam steps of the fitted method.")

    def __post_init__(self) -> None:
        if not 0 < self.holdout < 1:
            raise ValueError(f"holdout must lie in (0, 1); got {self.holdout}")
        if self.repeats < 1:
            raise ValueError(f"repeats must be 1 or more; got {self.repeats}")


def least_squares_predict(feature_train: np.ndarray, y_train: np.ndarray, feature_test: np.ndarray) -> np.ndarray:
    """y ~ a + b x fitted on the training pairs; NaN features are replaced by the training mean."""
    x_train = np.asarray(feature_train, dtype=np.float64)
    x_test = np.asarray(feature_test, dtype=np.float64)
    finite = np.isfinite(x_train)
    fill = float(x_train[finite].mean()) if finite.any() else 0.0
    x_train, x_test = np.where(finite, x_train, fill), np.where(np.isfinite(x_test), x_test, fill)
    design = np.stack([np.ones(len(x_train)), x_train], axis=1)
    (intercept, slope), *_ = np.linalg.lstsq(design, np.asarray(y_train, dtype=np.float64), rcond=None)
    return intercept + slope * x_test


def noise_ceiling(rates: np.ndarray, counts: np.ndarray) -> float | None:
    """Largest expected Pearson correlation of any predictor with rates measured from `counts` rollouts."""
    rates, counts = np.asarray(rates, dtype=np.float64), np.asarray(counts, dtype=np.float64)
    usable = counts > 1
    if usable.sum() < 3:
        return None
    variance = rates[usable].var(ddof=1)
    if variance <= 0:
        return None
    noise = float(np.mean(rates[usable] * (1 - rates[usable]) / (counts[usable] - 1)))
    return float(np.sqrt(max(0.0, 1.0 - noise / variance)))


def solved_counts(rates: np.ndarray) -> dict[str, int]:
    """How many prompts were never, sometimes and always solved (rates in [0, 1])."""
    rates = np.asarray(rates, dtype=np.float64)
    never, always = int((rates <= 0).sum()), int((rates >= 1).sum())
    return {"never": never, "sometimes": len(rates) - never - always, "always": always}


def paired_wins(per_repeat: list[dict[str, dict[str, float | None]]]) -> dict[str, dict[str, int | None]]:
    """Per baseline: in how many splits attention had the higher Pearson and the lower MAE.

    A count is None where the baseline never has that metric (the global mean has no correlation).
    """
    wins: dict[str, dict[str, int | None]] = {}
    for name in METHODS[1:]:
        pairs = [(repeat["attention"], repeat[name]) for repeat in per_repeat if name in repeat]
        if not pairs:
            continue
        wins[name] = {"splits": len(pairs)}
        for metric, key, sign in (("pearson", "pearson_higher", 1), ("mae", "mae_lower", -1)):
            both = [(ours[metric], theirs[metric]) for ours, theirs in pairs]
            both = [(a, b) for a, b in both if a is not None and b is not None]
            wins[name][key] = sum(sign * (a - b) > 0 for a, b in both) if both else None
    return wins


def compare_column(values: np.ndarray, rates: np.ndarray, *, max_levels: int = 20) -> dict[str, Any]:
    """A known per-prompt label (a dataset's difficulty level, say) against the measured pass rates.

    Not a predictor (it is not held out or fitted): a yardstick for the methods' correlations. A column
    with at most `max_levels` distinct values also gets its mean pass rate per value.
    """
    values, rates = np.asarray(values, dtype=np.float64), np.asarray(rates, dtype=np.float64)
    finite = np.isfinite(values)
    values, rates = values[finite], rates[finite]
    report: dict[str, Any] = {"prompts": int(len(values)), "pearson": None, "spearman": None, "by_value": None}
    if len(values) > 2 and values.std() > 0 and rates.std() > 0:
        report["pearson"], report["spearman"] = float(pearson(values, rates)), float(spearman(values, rates))
    levels = np.unique(values)
    if len(levels) <= max_levels:
        report["by_value"] = [
            {"value": float(v), "prompts": int((values == v).sum()), "mean_pass_rate": float(rates[values == v].mean())}
            for v in levels
        ]
    return report


def _metrics(predicted: np.ndarray, observed: np.ndarray) -> dict[str, float | None]:
    def clean(value: float) -> float | None:
        return float(value) if np.isfinite(value) else None

    constant = np.ptp(predicted) == 0
    return {
        "pearson": None if constant else clean(pearson(predicted, observed)),
        "spearman": None if constant else clean(spearman(predicted, observed)),
        "mae": float(np.mean(np.abs(predicted - observed))),
    }


def predict_split(
    embeddings: np.ndarray,
    rates: np.ndarray,
    counts: np.ndarray,
    question_tokens: np.ndarray,
    scores: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    config: EvaluateConfig,
) -> dict[str, np.ndarray]:
    """Every method's predictions for the `test` rows, from the `train` rows only."""
    y_train = rates[train]
    log_tokens = np.log(np.maximum(question_tokens, 1))
    predictions = {
        "attention": attention_predict(embeddings[test], embeddings[train], y_train, tau=config.tau_attn),
        "global_mean": np.full(len(test), float(y_train.mean())),
        "length": least_squares_predict(log_tokens[train], y_train, log_tokens[test]),
        "angle": least_squares_predict(scores[train], y_train, scores[test]),
    }
    if config.fit:
        from gaincurate.lab.difficulty.fit import fit_calibrator

        fit_config = FitConfig(
            dim=config.fit_dim, steps=config.fit_steps, folds=0, seed=config.seed, tau=config.tau_attn
        )
        calibrator = fit_calibrator(embeddings[train], y_train, counts[train], fit_config).calibrator
        predictions["attention_fit"] = calibrator.predict(embeddings[test], embeddings[train], y_train)
    return predictions


def evaluate_predictions(
    embeddings: np.ndarray,
    rates: np.ndarray,
    counts: np.ndarray,
    question_tokens: np.ndarray,
    scores: np.ndarray,
    config: EvaluateConfig,
) -> dict[str, Any]:
    """Held-out metrics of every method over `config.repeats` seeded splits (rows: measured prompts)."""
    rates = np.asarray(rates, dtype=np.float64)
    count = len(rates)
    held = max(1, round(config.holdout * count))
    if count - held < 2 or held < 3:  # a correlation needs 3 held out, a fit 2 left
        from gaincurate.errors import setting as spelled

        fits = f"pass {spelled('holdout')} from {3 / count:.3g} to {(count - 2) / count:.3g}, or " if count >= 5 else ""
        raise ValueError(f"{count} measured prompts are too few to hold out {config.holdout:g} of them (a split needs "
                         f"3 held out and 2 left); {fits}measure more prompts")  # fmt: skip
    per_repeat: list[dict[str, dict[str, float | None]]] = []
    for repeat in range(config.repeats):
        order = np.random.default_rng([config.seed, repeat]).permutation(count)
        test, train = np.sort(order[:held]), np.sort(order[held:])
        predictions = predict_split(embeddings, rates, counts, question_tokens, scores, train, test, config)
        per_repeat.append({name: _metrics(values, rates[test]) for name, values in predictions.items()})
    methods = {}
    for name in METHODS:
        runs = [repeat[name] for repeat in per_repeat if name in repeat]
        if not runs:
            continue
        summary: dict[str, float | None] = {}
        for metric in ("pearson", "spearman", "mae"):
            values = [run[metric] for run in runs if run[metric] is not None]
            summary[metric] = float(np.mean(values)) if values else None
            summary[f"{metric}_std"] = float(np.std(values)) if len(values) > 1 else None
        methods[name] = summary
    return {
        "prompts": count,
        "held_out": held,
        "repeats": config.repeats,
        "holdout": config.holdout,
        "seed": config.seed,
        "tau_attn": config.tau_attn,
        "mean_pass_rate": float(rates.mean()),
        "noise_ceiling": noise_ceiling(rates, counts),
        "measured": solved_counts(rates),
        "methods": methods,
        "attention_vs": paired_wins(per_repeat),
        "per_repeat": per_repeat,
    }
