"""Fixtures for the rollout-replay tests: one torch thread for every test (tiny CPU trainers)."""

from __future__ import annotations

# Test modules import `replay_helpers` from this folder, and the replay-with-curriculum test the TRL test
from torch_threads import one_torch_thread

__all__ = ["one_torch_thread"]  # autouse for every test in this folder
