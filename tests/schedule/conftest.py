"""Fixtures for the scheduler tests. No model is loaded: scores directories are written from made-up
scores, and re-scoring is replaced by a deterministic fake where a test asks for it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from schedule_helpers import write_scores


@pytest.fixture()
def scores_dir(tmp_path) -> Path:
    return write_scores(tmp_path / "scores")


@pytest.fixture()
def make_scores(tmp_path) -> Callable[..., Path]:
    def make(name: str = "scores", **options) -> Path:
        return write_scores(tmp_path / name, **options)

    return make


@pytest.fixture()
def fake_rescore(monkeypatch) -> list[list[int]]:
    """Replace model re-scoring: the fresh score of gc_id i is 3 - i / 100 (a reversed ranking)."""
    from gaincurate import scoring

    calls: list[list[int]] = []

    def rescore(scores_dir, ids, *, checkpoint=None, model=None, tokenizer=None, progress=None, nproc=1):
        assert checkpoint is not None and Path(checkpoint).is_dir()
        calls.append([int(i) for i in ids])
        return 3.0 - np.asarray(ids, dtype=np.float64) / 100

    monkeypatch.setattr(scoring, "rescore", rescore)
    return calls
