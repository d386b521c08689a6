"""The reward recorder: where every trainer path hands its rollouts' rewards, `(gc_ids, rewards)` at a time.

In process (TRL's `GainCurriculum.wrap_rewards`, verl's sampler and its one launch) the rewards go to the run
object's own `Run.record` (`Run.recorder()`). Out of process (a `schedule run --trainer-cmd` epoch: TRL's
`record_rewards`, verl's bundled `compute_score` and `recording_score`) they go to the feedback file the loop reads
after the epoch: `feedback_file(path)` is that file's recorder, at `path` or else `$GAINCURATE_FEEDBACK_FILE`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gaincurate.feedback_lines import append_rollouts

FEEDBACK_ENV = "GAINCURATE_FEEDBACK_FILE"  # `schedule run` sets it for the trainer command


class FeedbackFile:
    """Appends `{"gc_id": int, "reward": float}` lines to a file, one per rollout (None rewards skipped)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def __call__(self, gc_ids: Sequence[Any], rewards: Sequence[Any]) -> int:
        return append_rollouts(self.path, gc_ids, rewards)


def feedback_file(path: str | Path | None = None) -> FeedbackFile | None:
    """The recorder of the feedback file at `path`, else at `$GAINCURATE_FEEDBACK_FILE`; None when neither."""
    target = path or os.environ.get(FEEDBACK_ENV)
    return FeedbackFile(target) if target else None
