"""verl with a curriculum: `one_launch` (verl 0.9: dataset and replay-buffer hooks), `sampler` (verl 0.5-0.7.1),
`reward` (reward functions that write feedback, any verl) and `checkpoint` (re-scoring from verl's checkpoints).

`pkg://gaincurate.integrations.verl` with `GainCurriculumSampler` (the path before issue 42) still loads the sampler,
with a deprecation warning; launch lines name `gaincurate.integrations.verl.sampler` now.
"""

from __future__ import annotations

from gaincurate.moved import moved_names

_MOVED_TO_SAMPLER = ("GainCurriculumSampler", "SamplerSettings", "batch_rollouts", "export_prompts", "recording_score")
__getattr__ = moved_names(__name__, _MOVED_TO_SAMPLER, f"{__name__}.sampler")
