"""Fixtures for the rollout-replay tests: one torch thread for every test (tiny CPU trainers)."""

from __future__ import annotations

import sys
from pathlib import Path

# Test modules import `replay_helpers` from this folder, and the replay-with-curriculum test the TRL test
# builders from ../integrations (importlib import mode adds neither to sys.path).
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(1, str(Path(__file__).parents[1] / "integrations"))

from torch_threads import one_torch_thread

__all__ = ["one_torch_thread"]  # autouse for every test in this folder
