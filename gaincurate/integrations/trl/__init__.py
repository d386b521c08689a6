"""TRL's GRPOTrainer with a curriculum: in process (`curriculum`, `trainer`), or one epoch per process (`epoch`).

    from gaincurate.integrations.trl import CurriculumGRPOTrainer, GainCurriculum

The public names load on first use, so that importing one module of this package (the reward recorder, the
epoch script's helpers) does not import trl and torch through this file. The known import noise of torchao and
torch's pytree is filtered here, before anything (ours or the user's script) imports trl.
"""

from __future__ import annotations

import importlib
from typing import Any

from gaincurate.model import quiet_dependency_noise

quiet_dependency_noise()

_PUBLIC = {
    "CurriculumGRPOTrainer": "trainer",
    "CurriculumMixin": "trainer",
    "GainCurriculumCallback": "trainer",
    "CurriculumSampler": "sampler",
    "GainCurriculum": "curriculum",
    "RecordingReward": "rewards",
    "record_rewards": "rewards",
    "epoch_dataset": "epoch",
    "resume_checkpoint": "epoch",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_PUBLIC[name]}"), name)
