"""What one step from files (`Run.step`) hands, once, to the work before its draw: re-scoring, a fresh reference set
(`gaincurate.schedule.run.reference_sets`) and handing over the policy (`gaincurate.schedule.run.steps.hand_policy`).

Each of those reads the same run, scheduler, scores and checkpoint, and adds to the same notices and timings;
`StepContext` carries them together so that a new piece of per-step work does not widen three signatures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from gaincurate.progress import NULL_PROGRESS, Progress
from gaincurate.schedule.core import Scheduler
from gaincurate.schedule.run.inputs import ScoresInput
from gaincurate.schedule.run.rundir import RunState


@dataclass(frozen=True, kw_only=True)
class StepContext:
    """One step on disk before its draw. Frozen: the fields stay the step's; notices and timings fill up."""

    run_dir: Path
    run: RunState  # as it stood before the step
    scheduler: Scheduler
    scores: ScoresInput
    checkpoint: Path | None  # the one given (absolute); None: the run's recorded one, if any
    progress: Progress = NULL_PROGRESS
    notices: list[str] = field(default_factory=list)  # one line each, shown after the step
    timings: dict[str, float] = field(default_factory=dict)  # seconds by stage, for the history line
