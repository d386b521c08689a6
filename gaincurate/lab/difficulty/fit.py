"""`gaincurate difficulty fit`: train the adapter and calibration head that `gaincurate.difficulty.calibrate` applies.

The model, the leave-one-out cross-fitting and the file are described there; this module is the training (torch,
CPU, float64, seeded), which a run never needs: dots' `--calibrator` only loads a saved fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gaincurate.difficulty.calibrate import EPSILON, Calibrator, FittedCalibrator, attention_temperature
from gaincurate.difficulty.predict import self_index
from gaincurate.errors import InputError
from gaincurate.errors import setting as setting_name
from gaincurate.settings import setting


@dataclass(frozen=True, kw_only=True)
class FitConfig:
    """How `difficulty fit` trains; each setting declared once (`gaincurate.settings`), its options generated
    from these fields. The checks stay in `__post_init__`: Python callers get ValueError, the CLI a ConfigError."""

    dim: int = setting(32, "Adapter output dimension.")
    steps: int = setting(200, "Adam steps (full batch).")
    learning_rate: float = setting(0.01, "Adam learning rate.")
    anchor: float = setting(1e-3, "Strength of the L2 pull of the adapter towards its initial projection.")
    folds: int = setting(5, "Cross-fitting folds for leave-one-out predictions.")
    seed: int = setting(0, "Seed of the splits and the fit.")
    tau: float = attention_temperature()

    def __post_init__(self) -> None:
        for name, value, low in [("dim", self.dim, 1), ("steps", self.steps, 0), ("folds", self.folds, 0)]:
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be a whole number {low} or more; got {value!r}")
        if self.folds == 1:
            raise ValueError("folds must be 0 (no cross-fitting) or at least 2")
        if self.tau <= 0 or self.learning_rate <= 0 or self.anchor < 0:
            raise ValueError("tau and learning_rate must be positive and anchor 0 or more")


@dataclass(frozen=True)
class FitResult:
    calibrator: Calibrator  # trained on the whole reference set: for new prompts
    loo_predictions: np.ndarray  # cross-fitted, leave-one-out predictions of the reference prompts (NaN: folds 0)
    folds: np.ndarray  # fold of each reference prompt (-1 when folds = 0)
    losses: list[float]  # training loss of the final fit, per step
    fold_calibrators: list[Calibrator] = field(default_factory=list)  # fold_calibrators[f] never saw fold f

    def fitted(self, gc_ids: np.ndarray) -> FittedCalibrator:
        """The fit as saved, for reference prompts `gc_ids` (in the order the fit was given them)."""
        gc_ids = np.asarray(gc_ids, dtype=np.int64)
        order = np.argsort(gc_ids, kind="stable")
        return FittedCalibrator(self.calibrator, list(self.fold_calibrators), gc_ids[order], self.folds[order])


def initial_projection(embeddings: np.ndarray, dim: int) -> np.ndarray:
    """The top-`dim` principal directions of the embeddings (rows), signs fixed for determinism."""
    matrix = np.asarray(embeddings, dtype=np.float64)
    _, _, right = np.linalg.svd(matrix - matrix.mean(axis=0), full_matrices=False)
    directions = right[: min(dim, right.shape[0])]
    signs = np.sign(directions[np.arange(len(directions)), np.abs(directions).argmax(axis=1)])
    return directions * np.where(signs == 0, 1.0, signs)[:, None]


def fold_assignment(count: int, folds: int, seed: int) -> np.ndarray:
    """Fold of each of `count` reference prompts: a seeded permutation cut into near-equal parts."""
    if folds == 0:
        return np.full(count, -1, dtype=np.int64)
    order = np.random.default_rng([seed, 1]).permutation(count)
    assignment = np.empty(count, dtype=np.int64)
    assignment[order] = np.arange(count) % folds
    return assignment


def _train(
    embeddings: np.ndarray, rates: np.ndarray, weights: np.ndarray, projection: np.ndarray, config: FitConfig
) -> tuple[Calibrator, list[float]]:
    """Fit adapter + head on one reference set with leave-one-out attention; deterministic."""
    import torch

    # Small full-batch problems gain nothing from threads, and on a busy shared CPU extra threads
    # spin-wait for each other (measured: 40x slower with 2 threads than with 1 on 2 shared cores).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train_steps(torch, embeddings, rates, weights, projection, config)
    finally:
        torch.set_num_threads(threads)


def _train_steps(
    torch: Any,
    embeddings: np.ndarray,
    rates: np.ndarray,
    weights: np.ndarray,
    projection: np.ndarray,
    config: FitConfig,
) -> tuple[Calibrator, list[float]]:
    torch.manual_seed(config.seed)
    z = torch.as_tensor(embeddings, dtype=torch.float64)
    y = torch.as_tensor(rates, dtype=torch.float64)
    w_rollouts = torch.as_tensor(weights / weights.sum(), dtype=torch.float64)
    start = torch.as_tensor(projection, dtype=torch.float64)
    adapter = start.clone().requires_grad_(True)
    head = torch.tensor([1.0, 0.0], dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.Adam([adapter, head], lr=config.learning_rate)
    factor = 1.0 / (math.sqrt(embeddings.shape[1]) * config.tau)
    diagonal = torch.eye(len(y), dtype=torch.bool)
    target = y.clamp(0.0, 1.0)
    losses: list[float] = []
    for _ in range(config.steps + 1):
        projected = z @ adapter.T
        logits = (projected @ projected.T * factor).masked_fill(diagonal, float("-inf"))
        raw = torch.softmax(logits, dim=1) @ y
        raw = raw.clamp(EPSILON, 1 - EPSILON)
        calibrated_logit = head[0] * torch.log(raw / (1 - raw)) + head[1]
        loss = (
            w_rollouts
            * torch.nn.functional.binary_cross_entropy_with_logits(calibrated_logit, target, reduction="none")
        ).sum()
        loss = loss + config.anchor * ((adapter - start) ** 2).sum()
        losses.append(float(loss.detach()))
        if len(losses) > config.steps:
            break
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    weight, bias = (float(v) for v in head.detach())
    return Calibrator(adapter.detach().numpy().copy(), weight, bias, config.tau), losses


def fit_calibrator(
    embeddings: np.ndarray, rates: np.ndarray, counts: np.ndarray | None = None, config: FitConfig | None = None
) -> FitResult:
    """Fit on reference prompts (prepared embeddings, measured pass rates, rollout counts as weights)."""
    config = config or FitConfig()
    embeddings = np.asarray(embeddings, dtype=np.float64)
    rates = np.asarray(rates, dtype=np.float64)
    counts = np.ones(len(rates)) if counts is None else np.asarray(counts, dtype=np.float64)
    if len(rates) < 3:
        raise InputError(f"fitting needs at least 3 reference prompts with pass rates; got {len(rates)}")
    if config.folds and len(rates) < 2 * config.folds:
        # Each fold holds out two prompts at least; the fix is fewer folds, not more measured prompts.
        most = len(rates) // 2
        fewer = f"{setting_name('folds')} {most} or fewer" if most >= 2 else setting_name("folds", 0)
        raise InputError(
            f"{setting_name('folds', config.folds)} needs {2 * config.folds} reference prompts with pass rates (two "
            f"a fold); got {len(rates)}: pass {fewer} (0: no cross-fitting)"
        )
    projection = initial_projection(embeddings, config.dim)
    calibrator, losses = _train(embeddings, rates, counts, projection, config)
    folds = fold_assignment(len(rates), config.folds, config.seed)
    loo = np.full(len(rates), np.nan)  # folds 0: no model left any prompt out, so nothing honest to report
    everyone = np.arange(len(rates))
    parts = []
    for fold in range(config.folds):
        held, kept = everyone[folds == fold], everyone[folds != fold]
        # The fold's own parameters never see its labels; its prompts attend to all others but themselves.
        part, _ = _train(embeddings[kept], rates[kept], counts[kept], projection, config)
        parts.append(part)
        loo[held] = part.predict(embeddings[held], embeddings, rates, exclude=self_index(held, everyone))
    return FitResult(calibrator, loo, folds, losses, parts)
