"""A calibrator from `gaincurate difficulty fit`: a small trained adapter plus a calibration head over attention
predictions, loaded and applied with numpy (dots' `--calibrator`). The training is the lab's (`gaincurate
difficulty fit`): a run only loads a saved fit.

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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gaincurate.errors import InputError
from gaincurate.settings import setting

if TYPE_CHECKING:
    from gaincurate.difficulty.reference import PromptEmbeddings

EPSILON = 1e-4  # pass rates are clipped to [EPSILON, 1 - EPSILON] before logit


def attention_temperature() -> Any:
    """The attention temperature tau_attn: one setting, declared here, wherever DOTS' prediction is made
    (`FitConfig.tau`, `EvaluateConfig.tau_attn`, `jobs.PredictConfig.tau_attn`); `--tau-attn` on the command line."""
    return setting(0.1, "Attention temperature on cosine similarity.", flags=("--tau-attn",))


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
        from gaincurate.difficulty.predict import attention_predict  # loaded when a prediction is made

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

    def header(self, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        """What a calibrator file keeps of it besides the projection, then `metadata`."""
        return {"weight": self.weight, "bias": self.bias, "tau": self.tau, **(metadata or {})}

    def save(self, path: Path, metadata: dict[str, Any] | None = None) -> None:
        _save_npz(path, self.header(metadata), projection=self.projection)

    @classmethod
    def load(cls, path: Path) -> tuple[Calibrator, dict[str, Any]]:
        try:
            with _open_npz(path) as data:
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
        from gaincurate.difficulty.predict import attention_predict, self_index  # loaded when a prediction is made

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
        header = {**self.full.header(metadata), "fold_heads": [[model.weight, model.bias] for model in self.folds]}
        _save_npz(
            path, header, projection=self.full.projection,
            fold_projections=np.stack([m.projection for m in self.folds]) if self.folds else np.zeros((0, 0, 0)),
            fit_ids=self.fit_ids, fit_folds=self.fit_folds,
        )  # fmt: skip

    @classmethod
    def load(cls, path: Path) -> tuple[FittedCalibrator, dict[str, Any]]:
        if not Path(path).is_file():
            raise InputError(f"calibrator {path} does not exist; check the path")
        try:
            with _open_npz(path) as data:
                header = json.loads(bytes(data["header"]).decode())
                arrays = {key: np.asarray(data[key]) for key in ("projection", "fold_projections", "fit_ids")}
                fit_folds = np.asarray(data["fit_folds"], dtype=np.int64)
            tau = float(header.pop("tau"))
            full = Calibrator(
                arrays["projection"].astype(np.float64), float(header.pop("weight")), float(header.pop("bias")), tau
            )
            folds = [
                Calibrator(projection.astype(np.float64), float(w), float(b), tau)
                for projection, (w, b) in zip(arrays["fold_projections"], header.pop("fold_heads"), strict=True)
            ]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise InputError(
                f"{path} is not a calibrator written by this `gaincurate difficulty fit` ({error}); fit it again"
            ) from None
        return cls(full, folds, arrays["fit_ids"].astype(np.int64), fit_folds), header


def _open_npz(path: Path) -> Any:
    """The arrays of the .npz file at `path`. `np.load` returns a bare array for a .npy file, which holds no
    calibrator: ValueError, so the loaders refuse it in their one line as they refuse any other file."""
    data = np.load(Path(path))
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError(f"it holds one {data.dtype} array of shape {data.shape}, not a .npz archive")
    return data


def _save_npz(path: Path, header: dict[str, Any], **arrays: np.ndarray) -> None:
    """`arrays`, then the JSON `header`, as one .npz written atomically: a calibrator file."""
    from gaincurate.fileio import atomic_write

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as file:
            np.savez(file, **arrays, header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8))

    atomic_write(Path(path), write)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), EPSILON, 1 - EPSILON)
    return np.log(p) - np.log1p(-p)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=np.float64)))


def embedded_by(manifest: dict[str, Any]) -> dict[str, Any]:
    """What a scores directory's embeddings depend on, from its manifest: a calibrator fitted on other embeddings of
    the same width (another pool, model or layer) would apply that fit, and its fitted gc_ids, to these prompts."""
    return {
        "dataset": (manifest.get("dataset") or {}).get("fingerprint"),
        "model": (manifest.get("model") or {}).get("fingerprint"),
        "embed_layer": (manifest.get("config") or {}).get("embed_layer"),
    }


def load_calibrator(
    path: Path, prompts: PromptEmbeddings, manifest: dict[str, Any]
) -> tuple[FittedCalibrator, np.ndarray]:
    """A `difficulty fit` file and the centre its embeddings are prepared with, checked to be whole (shapes that
    agree, finite numbers) and fitted on these scores' embeddings (`manifest`'s)."""
    calibrator, header = FittedCalibrator.load(Path(path))
    center = np.asarray(header.get("center", []), dtype=np.float64)
    width = prompts.embeddings.shape[1]
    if center.shape != (width,):
        raise InputError(
            f"{path} was fitted on embeddings of width {center.shape[0]}, but these scores have width {width}; fit "
            "it on this scores directory"
        )
    if header.get("embedded_by") != embedded_by(manifest):
        raise InputError(
            f"{path} was fitted on the embeddings of other scores ({header.get('scores_dir')}: another dataset, "
            "model or layer); fit it on these with `gaincurate difficulty fit`"
        )
    models = [calibrator.full, *calibrator.folds]
    numbers = [center, *(m.projection for m in models), np.array([(m.weight, m.bias, m.tau) for m in models])]
    if any(m.projection.shape[1:] != (width,) for m in models) or not all(np.isfinite(a).all() for a in numbers):
        raise InputError(f"{path} is damaged (its shapes disagree, or it holds non-finite numbers); fit it again")
    return calibrator, center
