"""Fixtures shared by the trainer integration tests: one torch thread for every test (tiny CPU trainers)."""

from __future__ import annotations

from torch_threads import one_torch_thread

__all__ = ["one_torch_thread"]  # autouse for every test in this folder
