"""The probe's embedding features: the question embedding projected to `width` columns and standardised over the pool.

The fit needs the features of the measured prompts only (`EmbeddingFeatures.rows`); the pool's predictions never
build the pool's features. A linear fit on standardised projected columns is linear in the raw embedding, so
`EmbeddingFeatures.predict` folds the coefficients back through the standardisation and the projection into one weight
per embedding column and makes one pass of products and fixed-order sums over the embedding: at a million prompts,
576 products per prompt instead of a 576 x 256 projection, in numpy's fixed-order sums, not BLAS: the estimates
reach the draw, so their bits must not depend on the CPU (DESIGN §8).

    features = EmbeddingFeatures(embeddings, width=256)   # a matrix, or `EmbeddingRows` read a block at a time
    design = features.rows(measured_rows)                 # float32 [rows, 256], the fit's columns
    embedding_part = features.predict(beta_of_those_columns)  # float64 [pool], sum_k feature_ik * beta_k
"""

from __future__ import annotations

import math
from functools import cached_property
from typing import Any

import numpy as np

PROJECTION_SEED = 20_506  # the sign matrix of a wide embedding: fixed, so every run of a pool sees the same features
# Rows projected, standardised or predicted at a time: a million prompts never hold a float64 copy. numpy adds a
# block's rows one after another and the blocks' sums in order, so the column sums' bits depend on this constant, not
# the CPU. A larger pool's mean and spread come from STATS_BLOCKS evenly spaced blocks (65,536 rows: a spread off by
# ~0.3%, below what the fit resolves).
FEATURE_BLOCK, STATS_BLOCKS = 16_384, 4
# Embedding cells read, projected or predicted at a time (rows of any width): float64 temporaries of 8 MiB. A row's
# projection and prediction are its own, so this bounds memory without moving a bit.
ROW_CELLS = 1 << 20


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
    return (_projection_input(embeddings) @ matrix) / math.sqrt(embeddings.shape[1] / 2)


def _projection_input(embeddings: np.ndarray) -> np.ndarray:
    return np.asarray(embeddings, dtype=np.float16).astype(np.float64)


def _finite(chunk: Any) -> np.ndarray:
    """A float32 copy of embedding rows (the caller's stay as they are), a row without an embedding (NaN) as zeros."""
    chunk = np.array(chunk, dtype=np.float32)
    chunk[~np.isfinite(chunk).all(axis=1)] = 0.0
    return chunk


class EmbeddingFeatures:
    """The standardised projected embedding of a pool, read from `embeddings` (a matrix, or `EmbeddingRows` read when
    sliced or taken) when asked for: never copied whole (as float32, a million rows of width 576 take 2.3 GB). Its
    mean and spread are measured when first needed (init never needs them)."""

    def __init__(self, embeddings: Any, width: int) -> None:
        self.embeddings, self.requested = embeddings, width
        self.columns = embeddings.shape[1]
        self.width = min(width, self.columns)

    @cached_property
    def scale(self) -> tuple[np.ndarray, np.ndarray]:
        """The projected columns' mean and spread (1 where a column is constant) over the pool's rows, or over
        STATS_BLOCKS evenly spaced blocks of FEATURE_BLOCK rows in a larger pool; sums added block by block."""
        rows = len(self.embeddings)
        starts = range(0, rows, FEATURE_BLOCK)
        if len(starts) > STATS_BLOCKS:
            starts = [(rows - FEATURE_BLOCK) * k // (STATS_BLOCKS - 1) for k in range(STATS_BLOCKS)]
        kept = []
        for start in starts:
            block = np.empty((min(FEATURE_BLOCK, rows - start), self.width))
            for low, high in self._spans(len(block)):
                block[low:high] = self._projected(self.embeddings[start + low : start + high])
            kept.append(block)
        counted = max(sum(map(len, kept)), 1)
        mean = sum((b.sum(axis=0) for b in kept), np.zeros(self.width)) / counted
        squares = sum((np.square(b - mean).sum(axis=0) for b in kept), np.zeros(self.width))  # the same on every CPU
        spread = np.sqrt(squares / counted)
        return mean, np.where(spread > 0, spread, 1.0)

    def _projected(self, chunk: Any) -> np.ndarray:
        return project(_finite(chunk), self.requested)

    def _spans(self, rows: int) -> list[tuple[int, int]]:
        """`rows` rows as spans of at most ROW_CELLS embedding cells."""
        step = max(1, ROW_CELLS // max(self.columns, 1))
        return [(low, min(low + step, rows)) for low in range(0, rows, step)]

    def rows(self, rows: np.ndarray) -> np.ndarray:
        """The standardised features of pool rows `rows` (any order, repeats allowed), float32 [len(rows), width]:
        each row's bits are its own, whichever rows come with it."""
        unique, inverse = np.unique(np.asarray(rows, dtype=np.int64), return_inverse=True)
        mean, spread = self.scale
        out = np.empty((len(unique), self.width), dtype=np.float32)
        for low, high in self._spans(len(unique)):
            out[low:high] = (self._projected(self.embeddings.take(unique[low:high], axis=0)) - mean) / spread
        return out[inverse]

    def matrix(self) -> np.ndarray:
        """Every row's features, float32 (the lab's diagnoses and the tests: a step never builds it)."""
        return self.rows(np.arange(len(self.embeddings)))

    def predict(self, beta: np.ndarray) -> np.ndarray:
        """sum_k feature_ik * beta_k for every pool row i, float64, without the features: the coefficients folded into
        a weight per embedding column, w = S (beta / spread) / sqrt(columns / 2), and an offset, mean . beta / spread,
        then per row x_i . w - offset in fixed-order products and sums. It equals the features' product up to their
        float32 rounding (about 1e-7 of an estimate)."""
        mean, spread = self.scale
        per_column = np.asarray(beta, dtype=np.float64) / spread
        matrix = signs(self.columns, self.requested)  # None: the columns as they are
        weights = per_column if matrix is None else (matrix * per_column).sum(axis=1) / math.sqrt(self.columns / 2)
        offset = (mean * per_column).sum()
        out = np.empty(len(self.embeddings))
        for low, high in self._spans(len(out)):
            chunk = self.embeddings[low:high]
            values = np.asarray(chunk, dtype=np.float64) if matrix is None else _projection_input(chunk)
            sums = (values * weights).sum(axis=1)
            sums[~np.isfinite(sums)] = 0.0  # a row without an embedding (NaN) counts as zeros, as in `rows`
            out[low:high] = sums - offset
        return out


def standardised_features(embeddings: Any, width: int) -> np.ndarray:
    """The projected embedding's columns centred and scaled to unit spread over the pool (`EmbeddingFeatures`), every
    row, float32: what the probe's fit sees, for the lab's diagnoses."""
    return EmbeddingFeatures(embeddings, width).matrix()
