"""Rollout replay (DOTS+RR) for TRL's GRPOTrainer: generate for a fraction of each batch, replay the rest.

    from gaincurate.integrations.trl.replay import ReplayConfig, ReplayGRPOTrainer

    trainer = ReplayGRPOTrainer(..., replay_config=ReplayConfig(replay_fresh_fraction=0.5))

Modules, each with one job: `config` (ReplayConfig), `buffer` (the FIFO of rollout groups and its checkpoint
file), `batch` (TRL's padded batch layout), `loss` (advantages and the importance-weight fold; torch only) and
`trainer` (the TRL adapter, the only module that imports TRL). The names below load their module on first use,
so `import gaincurate.integrations.trl.replay.loss` or building a `ReplayConfig` needs neither TRL nor its import time.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from gaincurate.integrations.trl.replay.config import ReplayConfig

if TYPE_CHECKING:
    from gaincurate.integrations.trl.replay.buffer import REPLAY_BUFFER_FILE, ReplayBuffer, RolloutGroup
    from gaincurate.integrations.trl.replay.trainer import ReplayGRPOTrainer, ReplayMixin, ReplayRound

# Public name -> the submodule that defines it (loaded on first access).
_LAZY = {
    "REPLAY_BUFFER_FILE": "buffer",
    "ReplayBuffer": "buffer",
    "RolloutGroup": "buffer",
    "ReplayGRPOTrainer": "trainer",
    "ReplayMixin": "trainer",
    "ReplayRound": "trainer",
}

__all__ = [
    "REPLAY_BUFFER_FILE",
    "ReplayBuffer",
    "ReplayConfig",
    "ReplayGRPOTrainer",
    "ReplayMixin",
    "ReplayRound",
    "RolloutGroup",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
