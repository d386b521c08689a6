"""Pass-rate estimates that follow a policy that keeps improving: measurements age.

A pass rate measured k epochs ago is evidence about the policy of k epochs ago. So the estimate of a
measured prompt q blends its own rollouts with the attention prediction of its neighbours (`neighbour`,
leave-one-out, so q's own label never reaches it), and the blend moves toward the neighbours as the
measurement ages:

    w_q   = forget ** age_q                         (age: epochs since q was last measured)
    p_q   = (w_q * sums_q + K * m_q) / (w_q * counts_q + K)
    m_q   = sum_{i != q} softmax_i( <z_q, z_i> / (sqrt(h) tau) + age_i log(forget) ) y_i

`sums_q` and `counts_q` are q's correctness and rollout counts (older rollouts of q already discounted by
forget per epoch, `PassRates.add`), and K = `NEIGHBOUR_ROLLOUTS`: the neighbours' prediction weighs as
much as K fresh rollouts of q's own. A fresh 4-rollout measurement therefore dominates; four epochs
later (forget 0.4: w = 0.026) it weighs a tenth of a rollout and the estimate is the neighbours'. The
attention's recency term shifts weight, among similar prompts, to the recently measured ones. An
unmeasured prompt's estimate is m_q itself. With forget 1 nothing ages: a stale 0 or 1 then bars a prompt
for ever under a sharp selection temperature, which is why forget 1 is only right when a fresh reference
set is rolled every step (the published DOTS).

With a calibrator from `gaincurate difficulty fit`, m_q is the calibrated prediction. A prompt the
calibrator was fitted on is predicted by the fold model that never saw its label (see
`gaincurate.difficulty.calibrate.FittedCalibrator`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from gaincurate.difficulty.predict import (
    PreparedEmbeddings,
    others_mean,
    predict_pass_rates,
    recency_log_weights,
    self_index,
)
from gaincurate.difficulty.reference import PassRates
from gaincurate.numerics import int_powers

if TYPE_CHECKING:
    from gaincurate.difficulty.calibrate import FittedCalibrator

NEIGHBOUR_ROLLOUTS = 3.0  # K: how many of a prompt's own fresh rollouts its neighbours' prediction weighs


@dataclass(frozen=True)
class Estimates:
    """Per prompt (gc_id order): the neighbours' prediction and the aged estimate selection uses."""

    neighbour: np.ndarray  # m_q, leave-one-out: a prompt's own label never reaches it
    estimate: np.ndarray  # p_q: own rollouts blended with m_q by age; m_q for unmeasured prompts


def neighbour_predictions(
    embeddings: np.ndarray | PreparedEmbeddings,
    gc_ids: np.ndarray,
    rates: PassRates,
    *,
    now: int,
    tau: float,
    forget: float,
    calibrator: FittedCalibrator | None = None,
) -> np.ndarray:
    """m_q for every prompt, leave-one-out, with recency weights forget ** age on the reference prompts.

    `embeddings` are prepared (`prepare_embeddings`) rows in `gc_ids` order; with a calibrator they must be
    prepared with the calibrator's centre.
    """
    log_weights = recency_log_weights(rates.last, now, forget)
    if calibrator is None:
        return predict_pass_rates(
            embeddings, gc_ids, rates.gc_ids, rates.rates, tau=tau, reference_log_weights=log_weights
        )
    if isinstance(embeddings, PreparedEmbeddings):
        embeddings = embeddings.rows(slice(None))  # a calibrator takes the whole matrix
    rows = self_index(rates.gc_ids, gc_ids)
    embedded = np.isfinite(embeddings).all(axis=1)
    usable = embedded[rows]
    keys, values = embeddings[rows[usable]], rates.rates[usable]
    weights = None if log_weights is None else log_weights[usable]
    predicted = np.full(len(gc_ids), np.nan)
    predicted[embedded] = calibrator.predict(
        gc_ids[embedded],
        embeddings[embedded],
        keys,
        values,
        exclude=self_index(gc_ids[embedded], rates.gc_ids[usable]),
        key_log_weights=weights,
    )
    return np.where(np.isfinite(predicted), predicted, others_mean(gc_ids, rates.gc_ids, rates.rates))


def aged_blend(
    neighbour: np.ndarray,
    gc_ids: np.ndarray,
    rates: PassRates,
    *,
    now: int,
    forget: float,
    prior: float = NEIGHBOUR_ROLLOUTS,
) -> np.ndarray:
    """p_q: each measured prompt's own rollouts, weighed forget ** age, blended with `neighbour` as K rollouts."""
    estimate = np.asarray(neighbour, dtype=np.float64).copy()
    if not len(rates):
        return estimate
    rows = self_index(rates.gc_ids, gc_ids)
    weight = int_powers(float(forget), np.maximum(now - rates.last, 0))  # the same bits on every CPU (numerics)
    estimate[rows] = (weight * rates.sums + prior * estimate[rows]) / (weight * rates.counts + prior)
    return estimate


def estimate_pass_rates(
    embeddings: np.ndarray | PreparedEmbeddings,
    gc_ids: np.ndarray,
    rates: PassRates,
    *,
    now: int,
    tau: float,
    forget: float,
    calibrator: FittedCalibrator | None = None,
    prior: float = NEIGHBOUR_ROLLOUTS,
    limit: int = 0,
) -> Estimates:
    """Both the leave-one-out neighbour prediction and the aged estimate of every prompt at time `now`.

    `limit` bounds the reference set the neighbours' prediction attends to: a sample of that many measured prompts
    weighted by forget ** age (`PassRates.sample`; 0: every measured prompt). Each prompt's own rollouts always count.
    """
    keys = rates.sample(limit, now=now, forget=forget)
    neighbour = neighbour_predictions(embeddings, gc_ids, keys, now=now, tau=tau, forget=forget, calibrator=calibrator)
    return Estimates(neighbour, aged_blend(neighbour, gc_ids, rates, now=now, forget=forget, prior=prior))
