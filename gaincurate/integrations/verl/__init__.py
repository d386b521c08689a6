"""verl with a curriculum: `one_launch` (verl 0.9: dataset and replay-buffer hooks), `sampler` (verl 0.5-0.7.1),
`reward` (reward functions that write feedback, any verl) and `checkpoint` (re-scoring from verl's checkpoints).

`pkg://gaincurate.integrations.verl` with `GainCurriculumSampler` (the path before issue 42) still loads the sampler,
with a deprecation warning; launch lines name `gaincurate.integrations.verl.sampler` now.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

_MOVED_TO_SAMPLER = ("GainCurriculumSampler", "SamplerSettings", "batch_rollouts", "export_prompts", "recording_score")


def __getattr__(name: str) -> Any:
    if name not in _MOVED_TO_SAMPLER:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(f"{__name__}.{name} moved to {__name__}.sampler.{name}", DeprecationWarning, 2)
    return getattr(importlib.import_module(f"{__name__}.sampler"), name)
