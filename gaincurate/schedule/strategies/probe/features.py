"""The probe's embedding features: the question embedding projected to `width` columns, standardised over the pool.

Only the measured prompts' features are built (`rows`, the fit's columns). The fit is linear in them, so `predict`
folds its coefficients back through the standardisation and the projection into a weight per embedding column: a
prompt's estimate is 576 products and a fixed-order sum (not BLAS: estimates reach the draw, which is the same on
every CPU), where building its features took a 576 x 256 projection.
"""

from __future__ import annotations

import math
from functools import cached_property
from typing import Any

import numpy as np

PROJECTION_SEED = 20_506  # the sign matrix of a wide embedding: fixed, so every run of a pool sees the same features
# A larger pool's mean and spread come from STATS_BLOCKS evenly spaced blocks of FEATURE_BLOCK rows (65,536 rows: a
# spread off by ~0.3%, below what the fit resolves); numpy adds a block's rows in order, so the sums' bits depend on
# these constants, not the CPU.
FEATURE_BLOCK, STATS_BLOCKS = 16_384, 4
ROW_CELLS = 1 << 20  # embedding cells read at a time (8 MiB float64 temporaries); a row's values are its own


def signs(columns: int, width: int) -> np.ndarray | None:
    """The seeded sign matrix (-1, 0, +1) that projects `columns` embedding columns to `width`; None when they fit."""
    if columns <= width:
        return None
    return np.random.default_rng(PROJECTION_SEED).choice([-1.0, 0.0, 0.0, 1.0], size=(columns, width))


def project(embeddings: np.ndarray, width: int) -> np.ndarray:
    """`embeddings` (float16 values) as at most `width` columns, float64: as they are, or times a seeded sign matrix
    over sqrt(its density) - exact in any summation order, since float16 values times signs sum exactly in float64."""
    matrix = signs(embeddings.shape[1], width)
    if matrix is None:
        return np.asarray(embeddings, dtype=np.float64)
    return (np.asarray(embeddings, dtype=np.float16).astype(np.float64) @ matrix) / math.sqrt(len(matrix) / 2)


class EmbeddingFeatures:
    """The standardised projected embedding of a pool, read from `embeddings` (a matrix, or `EmbeddingRows` read when
    sliced or taken) a block at a time, never copied whole; a row without an embedding (NaN) counts as zeros."""

    def __init__(self, embeddings: Any, width: int) -> None:
        self.embeddings, self.requested = embeddings, width
        self.columns = embeddings.shape[1]
        self.width = min(width, self.columns)

    @cached_property
    def scale(self) -> tuple[np.ndarray, np.ndarray]:
        """The projected columns' mean and spread (1 where a column is constant), measured when first needed."""
        rows = len(self.embeddings)
        starts = range(0, rows, FEATURE_BLOCK)
        if len(starts) > STATS_BLOCKS:
            starts = [(rows - FEATURE_BLOCK) * k // (STATS_BLOCKS - 1) for k in range(STATS_BLOCKS)]
        kept = [np.concatenate([self._projected(self.embeddings[start + low : start + high]) for low, high in
                                self._spans(min(FEATURE_BLOCK, rows - start))]) for start in starts]  # fmt: skip
        counted = max(sum(map(len, kept)), 1)
        mean = sum((b.sum(axis=0) for b in kept), np.zeros(self.width)) / counted
        spread = np.sqrt(sum((np.square(b - mean).sum(axis=0) for b in kept), np.zeros(self.width)) / counted)
        return mean, np.where(spread > 0, spread, 1.0)

    def _projected(self, chunk: Any) -> np.ndarray:
        chunk = np.array(chunk, dtype=np.float32)  # a copy: the caller's rows stay as they are
        chunk[~np.isfinite(chunk).all(axis=1)] = 0.0
        return project(chunk, self.requested)

    def _spans(self, rows: int) -> list[tuple[int, int]]:
        step = max(1, ROW_CELLS // max(self.columns, 1))
        return [(low, min(low + step, rows)) for low in range(0, rows, step)]

    def rows(self, rows: np.ndarray) -> np.ndarray:
        """The features of pool rows `rows` (any order, repeats allowed), float32: a row's bits are its own."""
        unique, inverse = np.unique(np.asarray(rows, dtype=np.int64), return_inverse=True)
        mean, spread = self.scale
        out = np.empty((len(unique), self.width), dtype=np.float32)
        for low, high in self._spans(len(unique)):
            out[low:high] = (self._projected(self.embeddings.take(unique[low:high], axis=0)) - mean) / spread
        return out[inverse]

    def predict(self, beta: np.ndarray) -> np.ndarray:
        """sum_k feature_ik beta_k for every pool row i, float64, as x_i . w - mean . (beta / spread) with
        w = S (beta / spread) / sqrt(columns / 2): the features' product but for their float32 rounding (~1e-7)."""
        mean, spread = self.scale
        per_column = np.asarray(beta, dtype=np.float64) / spread
        matrix = signs(self.columns, self.requested)  # None: the columns as they are
        weights = per_column if matrix is None else (matrix * per_column).sum(axis=1) / math.sqrt(self.columns / 2)
        out = np.empty(len(self.embeddings))
        for low, high in self._spans(len(out)):
            chunk = self.embeddings[low:high]
            values = np.asarray(chunk, dtype=np.float64 if matrix is None else np.float16).astype(np.float64)
            sums = (values * weights).sum(axis=1)
            out[low:high] = np.where(np.isfinite(sums), sums, 0.0)  # no embedding: zeros, as in `rows`
        return out - (mean * per_column).sum()
