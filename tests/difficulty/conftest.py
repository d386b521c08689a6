"""Fixtures for the difficulty and dots tests: scores directories with made-up embeddings, no model."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# Test modules import `difficulty_helpers` from this folder (importlib import mode does not add it).
sys.path.insert(0, str(Path(__file__).parent))

from difficulty_helpers import write_embedded_scores  # noqa: E402


@pytest.fixture()
def embedded_scores(tmp_path) -> Path:
    return write_embedded_scores(tmp_path / "scores")
