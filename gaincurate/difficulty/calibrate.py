"""`gaincurate difficulty fit`: a small trained adapter plus a calibration head over attention predictions.

The adapter is a linear projection A (d x h) of the prepared embeddings; the head calibrates the
attention prediction in logit space:

    p_raw(q) = sum_{i != q} softmax_i( <A z_q, A z_i> / (sqrt(h) tau) ) y_i
    p(q)     = sigmoid( w * logit(p_raw(q)) + b )

A starts at the top-d principal directions of the reference embeddings, so before training the
prediction is the plain attention prediction restricted to those directions. Training minimises the
rollout-weighted cross-entropy between p(i) and the measured pass rate y_i over the reference set,
with an L2 pull of A towards its start, full batch, Adam, in float64, seeded.

**Leave-one-out calibration.** Every training prediction p(i) attends to the other reference prompts
only, so the fit never learns to copy a prompt's own label. The reported reference predictions are
cross-fitted: the reference set is split into `folds` (seeded, independent of the labels); the
parameters used for the prompts of one fold are trained on the other folds only. So a reference
prompt's own label reaches neither the parameters nor the attention that predict it; change it and
its own prediction stays bit-for-bit the same. The published DOTS code instead fitted calibration on
in-sample predictions in which each prompt attended to itself. With `folds = 0` there is no honest
prediction of a reference prompt, so none is reported (NaN).

The saved file (`FittedCalibrator`) keeps the fold models and which gc_ids were in which fold, so later
predictions (`difficulty predict --calibrator`, `schedule --strategy dots --calibrator`) predict a prompt
the fit saw with the fold model that never saw its label, and plain attention where no such model exists
(a `folds = 0` fit). Everything is applied with numpy alone (`predict`); only fitting needs torch.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gaincurate.difficulty.predict import attention_predict, self_index
from gaincurate.errors import InputError
from gaincurate.settings import setting

if TYPE_CHECKING:
    from gaincurate.difficulty.reference import PromptEmbeddings

EPSILON = 1e-4  # pass rates are clipped to [EPSILON, 1 - EPSILON] before logit


def attention_temperature() -> Any:
    """The attention temperature tau_attn: one setting, declared here, wherever DOTS' prediction is made
    (`FitConfig.tau`, `EvaluateConfig.tau_attn`, `jobs.PredictConfig.tau_attn`); `--tau-attn` on the command line."""
    return setting(0.1, "Attention temperature on cosine similarity.", flags=("--tau-attn",))


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
class Calibrator:
    """A fitted adapter (projection) and calibration head (weight, bias), applied with numpy."""

    projection: np.ndarray  # [d, h]
    weight: float
    bias: float
    tau: float

    def transform(self, embeddings: np.ndarray) -> np.ndarray:
        return np.asarray(embeddings, dtype=np.float64) @ self.projection.T

    def calibrate(self, probabilities: np.ndarray) -> np.ndarray:
        return _sigmoid(self.weight * _logit(probabilities) + self.bias)

    def predict(
        self,
        queries: np.ndarray,
        keys: np.ndarray,
        values: np.ndarray,
        *,
        exclude: np.ndarray | None = None,
        key_log_weights: np.ndarray | None = None,
    ) -> np.ndarray:
        raw = attention_predict(
            self.transform(queries),
            self.transform(keys),
            values,
            tau=self.tau,
            exclude=exclude,
            key_log_weights=key_log_weights,
            scale_dim=self.projection.shape[1],
        )
        return self.calibrate(raw)

    def save(self, path: Path, metadata: dict[str, Any] | None = None) -> None:
        from gaincurate.fileio import atomic_write

        header = json.dumps({"weight": self.weight, "bias": self.bias, "tau": self.tau, **(metadata or {})})

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as file:
                np.savez(file, projection=self.projection, header=np.frombuffer(header.encode(), dtype=np.uint8))

        atomic_write(Path(path), write)

    @classmethod
    def load(cls, path: Path) -> tuple[Calibrator, dict[str, Any]]:
        try:
            with np.load(Path(path)) as data:
                header = json.loads(bytes(data["header"]).decode())
                projection = np.asarray(data["projection"], dtype=np.float64)
        except (OSError, ValueError, KeyError) as error:
            raise InputError(f"{path} is not a calibrator written by `gaincurate difficulty fit` ({error})") from None
        calibrator = cls(projection, float(header.pop("weight")), float(header.pop("bias")), float(header.pop("tau")))
        return calibrator, header


@dataclass(frozen=True)
class FittedCalibrator:
    """A fit as saved by `difficulty fit`: the full model, the fold models, and which gc_ids it was fitted on."""

    full: Calibrator  # trained on every fitted prompt: for prompts it never saw
    folds: list[Calibrator]  # folds[f] was trained without fold f: for the fitted prompts of fold f
    fit_ids: np.ndarray  # int64, ascending: the gc_ids the fit saw
    fit_folds: np.ndarray  # fold of each fitted gc_id (-1: folds = 0, no model that never saw it)

    def predict(
        self,
        query_ids: np.ndarray,
        queries: np.ndarray,
        keys: np.ndarray,
        values: np.ndarray,
        *,
        exclude: np.ndarray | None = None,
        key_log_weights: np.ndarray | None = None,
    ) -> np.ndarray:
        """Calibrated predictions; a query the fit saw gets a model that never saw its label."""
        at = self_index(query_ids, self.fit_ids)
        fold = np.where(at >= 0, self.fit_folds[np.maximum(at, 0)], -2)  # -2: not fitted on
        result = np.full(len(queries), np.nan)
        models: list[tuple[int, Any]] = [(-2, self.full), (-1, None), *enumerate(self.folds)]
        for which, model in models:
            rows = np.flatnonzero(fold == which)
            if not len(rows):
                continue
            part = {"exclude": None if exclude is None else exclude[rows], "key_log_weights": key_log_weights}
            if model is None:  # fitted on, with no fold model that left it out: plain attention, uncalibrated
                result[rows] = attention_predict(queries[rows], keys, values, tau=self.full.tau, **part)
            else:
                result[rows] = model.predict(queries[rows], keys, values, **part)
        return result

    def save(self, path: Path, metadata: dict[str, Any] | None = None) -> None:
        from gaincurate.fileio import atomic_write

        header = {"weight": self.full.weight, "bias": self.full.bias, "tau": self.full.tau, **(metadata or {})}
        header["fold_heads"] = [[model.weight, model.bias] for model in self.folds]
        arrays = {
            "projection": self.full.projection,
            "fold_projections": np.stack([m.projection for m in self.folds]) if self.folds else np.zeros((0, 0, 0)),
            "fit_ids": self.fit_ids,
            "fit_folds": self.fit_folds,
            "header": np.frombuffer(json.dumps(header).encode(), dtype=np.uint8),
        }

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as file:
                np.savez(file, **arrays)

        atomic_write(Path(path), write)

    @classmethod
    def load(cls, path: Path) -> tuple[FittedCalibrator, dict[str, Any]]:
        try:
            with np.load(Path(path)) as data:
                header = json.loads(bytes(data["header"]).decode())
                arrays = {key: np.asarray(data[key]) for key in ("projection", "fold_projections", "fit_ids")}
                fit_folds = np.asarray(data["fit_folds"], dtype=np.int64)
            tau = float(header.pop("tau"))
            full = Calibrator(
                arrays["projection"].astype(np.float64), float(header.pop("weight")), float(header.pop("bias")), tau
            )
            heads = header.pop("fold_heads")
        except (OSError, ValueError, KeyError) as error:
            raise InputError(
                f"{path} is not a calibrator written by this `gaincurate difficulty fit` ({error}); fit it again"
            ) from None
        folds = [
            Calibrator(projection.astype(np.float64), float(w), float(b), tau)
            for projection, (w, b) in zip(arrays["fold_projections"], heads, strict=True)
        ]
        return cls(full, folds, arrays["fit_ids"].astype(np.int64), fit_folds), header


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


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), EPSILON, 1 - EPSILON)
    return np.log(p) - np.log1p(-p)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=np.float64)))


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
    if len(rates) < 3 or (config.folds and len(rates) < 2 * config.folds):
        raise InputError(
            f"fitting needs at least {max(3, 2 * config.folds)} reference prompts with pass rates; got {len(rates)}"
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


def load_calibrator(path: Path, prompts: PromptEmbeddings) -> tuple[FittedCalibrator, np.ndarray]:
    """A `difficulty fit` file and the centre its embeddings are prepared with (checked to fit these prompts)."""
    calibrator, header = FittedCalibrator.load(Path(path))
    center = np.asarray(header.get("center", []), dtype=np.float64)
    if center.shape != (prompts.embeddings.shape[1],):
        raise InputError(
            f"{path} was fitted on embeddings of width {center.shape[0]}, but these scores have width "
            f"{prompts.embeddings.shape[1]}; fit it on this scores directory"
        )
    return calibrator, center
