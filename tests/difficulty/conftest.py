"""Fixtures for the difficulty and dots tests: scores directories with made-up embeddings, no model."""

from __future__ import annotations

from pathlib import Path

import pytest
from difficulty_helpers import write_embedded_scores


@pytest.fixture()
def embedded_scores(tmp_path) -> Path:
    return write_embedded_scores(tmp_path / "scores")
