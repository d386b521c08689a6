"""The probe's embedding features: a measured prompt's row is its own whichever rows come with it, and the pool's
predictions, made without the pool's features, equal a float64 brute force of the standardised features' product."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from gaincurate.difficulty.reference import embeddings_from_table
from gaincurate.schedule.strategies.probe import features as probe_features
from gaincurate.schedule.strategies.probe.features import EmbeddingFeatures, project


def pool(rows: int, width: int, seed: int) -> tuple[np.ndarray, object]:
    """A float16 embedding with a few rows missing, as a matrix and as `EmbeddingRows` over a two-chunk column."""
    rng = np.random.default_rng(seed)
    raw = (rng.normal(size=(rows, width)) * rng.uniform(0.01, 4.0, size=width)).astype(np.float16)
    missing = rng.random(rows) < 0.03
    listed = [None if gone else list(map(float, row)) for gone, row in zip(missing, raw, strict=True)]
    half = rows // 2
    column = pa.chunked_array(
        [pa.array(listed[:half], pa.list_(pa.float16())), pa.array(listed[half:], pa.list_(pa.float16()))]
    )
    status = ["empty" if gone else "ok" for gone in missing]
    table = pa.table({"gc_id": np.arange(rows), "gc_score": np.ones(rows), "gc_question_tokens": np.ones(rows, int),
                      "gc_status": status, "gc_embedding": column})  # fmt: skip
    whole = embeddings_from_table(table, "t").embeddings
    return whole, embeddings_from_table(table, "t", blocks=True).embeddings


def brute_force(embeddings: np.ndarray, width: int, beta: np.ndarray, stats_rows: np.ndarray) -> np.ndarray:
    """sum_k ((x S / r - mean) / spread)_k beta_k per row, every sum by `math.fsum` over float64 values."""
    x = np.where(np.isfinite(embeddings).all(axis=1)[:, None], embeddings, 0).astype(np.float64)
    projected = project(x.astype(np.float32), width)  # exact: float16 values times signs
    sample = projected[stats_rows]
    mean = np.array([math.fsum(c) / len(c) for c in sample.T])
    spread = np.array([math.sqrt(math.fsum((c - m) ** 2) / len(c)) for c, m in zip(sample.T, mean, strict=True)])
    features = (projected - mean) / np.where(spread > 0, spread, 1.0)
    return np.array([math.fsum(row * beta) for row in features])


@pytest.mark.determinism
@pytest.mark.parametrize("columns", [40, 12])  # projected to 16 columns, and narrower than the width: as it is
def test_a_measured_row_s_features_are_its_own_whichever_rows_come_with_it(monkeypatch, columns):
    monkeypatch.setattr(probe_features, "FEATURE_BLOCK", 300)
    whole, lazy = pool(1000, columns, seed=1)
    every = EmbeddingFeatures(whole, 16).rows(np.arange(1000))
    monkeypatch.setattr(probe_features, "ROW_CELLS", 50 * columns)  # 50 rows read at a time
    rows = np.random.default_rng(2).integers(0, 1000, size=700)  # unsorted, with repeats
    assert np.array_equal(EmbeddingFeatures(lazy, 16).rows(rows), every[rows])
    assert np.array_equal(EmbeddingFeatures(whole, 16).rows(rows[:5]), every[rows[:5]])
    assert np.array_equal(lazy.take(rows, axis=0), whole[rows], equal_nan=True)


@pytest.mark.determinism
@pytest.mark.parametrize("columns", [40, 12])
def test_the_pool_s_predictions_equal_a_float64_brute_force_of_the_features_product(monkeypatch, columns):
    monkeypatch.setattr(probe_features, "FEATURE_BLOCK", 100)  # 1,000 rows: statistics from 4 spaced blocks
    whole, lazy = pool(1000, columns, seed=3)
    beta = np.random.default_rng(4).normal(size=min(16, columns)) * 0.1
    got = EmbeddingFeatures(lazy, 16).predict(beta)
    stats_rows = np.concatenate([np.arange(low, low + 100) for low in (0, 300, 600, 900)])  # 900 * k // 3
    expected = brute_force(whole, 16, beta, stats_rows)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12 * np.abs(expected).max())
    features = EmbeddingFeatures(whole, 16)
    by_features = (features.rows(np.arange(1000)).astype(np.float64) * beta).sum(axis=1)  # the fit's float32 columns
    np.testing.assert_allclose(got, by_features, rtol=0, atol=1e-6 * np.abs(expected).max())
    monkeypatch.setattr(probe_features, "ROW_CELLS", 7 * columns)
    assert np.array_equal(features.predict(beta), got)  # a row's estimate does not depend on the block it is in
