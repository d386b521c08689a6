"""Angle concentration from per-segment unit-vector sums, plus the ranking diagnostics.

With u_i = h_i / ||h_i||, S = sum of u_i over a segment and n its token count:

    intra = (||S_q||^2 - n_q) / (n_q (n_q - 1))      mean cosine over ordered pairs i != j in the question
    inter = (S_q . S_c) / (n_q n_c)                 mean cosine between question and context tokens
    score = intra + w * inter                        (score = intra when there is no context)

This is exact, O(T D) instead of the O(T^2 D) cosine matrix, and excludes the diagonal (cos = 1) that
the published code kept. The arithmetic runs in float64 on the float32 sums.
"""

from __future__ import annotations

import numpy as np

from gaincurate.numerics import log_by_value


def concentration(
    sums: np.ndarray, counts: np.ndarray, inter_weight: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`sums` [B, 2, D] and `counts` [B, 2] (question, context) -> (intra, inter, score), each [B]."""
    sums = np.asarray(sums, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.float64)
    question, context = sums[:, 0], sums[:, 1]
    n_question, n_context = counts[:, 0], counts[:, 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        intra = (np.einsum("bd,bd->b", question, question) - n_question) / (n_question * (n_question - 1))
        inter = np.einsum("bd,bd->b", question, context) / (n_question * n_context)
    intra = np.where(n_question >= 2, intra, np.nan)
    inter = np.where((n_context > 0) & (n_question > 0), inter, np.nan)
    score = np.where(np.isnan(inter), intra, intra + inter_weight * inter)
    return intra, inter, score


def rankdata(values: np.ndarray) -> np.ndarray:
    """Ranks starting at 1 with ties given their average rank (as scipy.stats.rankdata does)."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    # Boundaries of runs of equal values.
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(values)]
    average = (starts + ends + 1) / 2.0
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat(average, ends - starts)
    return ranks


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman correlation over the pairs where both values are finite; NaN with fewer than 3."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    if keep.sum() < 3:
        return float("nan")
    return pearson(rankdata(x[keep]), rankdata(y[keep]))


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep] - x[keep].mean(), y[keep] - y[keep].mean()
    denominator = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / denominator) if denominator > 0 else float("nan")


def fit_length_debias(score: np.ndarray, question_tokens: np.ndarray) -> dict[str, float]:
    """Least-squares fit score ~ a + b log(question tokens) over the finite scores."""
    score = np.asarray(score, dtype=np.float64)
    log_tokens = log_by_value(np.maximum(np.asarray(question_tokens, dtype=np.float64), 1.0))  # not np.log: numerics
    keep = np.isfinite(score)
    if keep.sum() < 2:
        return {"method": "length", "intercept": 0.0, "slope": 0.0}
    design = np.stack([np.ones(keep.sum()), log_tokens[keep]], axis=1)
    (intercept, slope), *_ = np.linalg.lstsq(design, score[keep], rcond=None)
    return {"method": "length", "intercept": float(intercept), "slope": float(slope)}


def apply_debias(score: np.ndarray, question_tokens: np.ndarray, debias: dict[str, float] | None) -> np.ndarray:
    """The score to rank by: the residual after the length fit, or the score itself."""
    score = np.asarray(score, dtype=np.float64)
    if not debias:
        return score
    # The residual ranks prompts (state.json's ranking): the C library's log, the same on every SIMD path (numerics).
    log_tokens = log_by_value(np.maximum(np.asarray(question_tokens, dtype=np.float64), 1.0))
    return score - (debias["intercept"] + debias["slope"] * log_tokens)
