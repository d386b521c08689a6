"""The pass-rate measurements of a dots run: fresh reference sets, and every measurement file with its time.

`--reference-every K --reference-size M` rolls, after every K-th epoch, a fresh reference set of M prompts
with the newest checkpoint (`gaincurate rollout`), as the published DOTS does every step. Its rollouts join
the pass rates at the epoch's time, beside the trainer's own, and the epoch's history line records what
they cost (`reference`: prompts, rollouts, seconds): they are spent on top of training. The rollouts use
`gaincurate rollout`'s defaults (4 samples, 256 new tokens, temperature 0.7, boxed answers) and a seeded
sample that changes every epoch, written to RUN/reference-NNNN.jsonl, so a killed step resumes the file.

`measurements(run_dir)` lists what a run measured, for `difficulty evaluate --online`: the `--reference` file
(time -1), each epoch's archived feedback (time = epoch), and the fresh reference sets (time = epoch).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from gaincurate.difficulty.reference import read_measurements
from gaincurate.progress import NULL_PROGRESS, Progress
from gaincurate.schedule.core import FreshReference
from gaincurate.schedule.run import rundir
from gaincurate.schedule.run.inputs import ScoresInput
from gaincurate.schedule.run.rundir import RunState
from gaincurate.schedule.run.step_context import StepContext

SEED_STREAM = 1_000_003  # the rollout seed of epoch t's reference set: seed * SEED_STREAM + t


def roll_reference(
    run_dir: Path,
    scores: ScoresInput,
    *,
    size: int,
    seed: int,
    epoch: int,
    model_path: Path,
    progress: Progress = NULL_PROGRESS,
) -> FreshReference:
    """Roll epoch `epoch`'s fresh reference set with the checkpoint at `model_path`; resumes a killed roll."""
    from gaincurate.rollout.config import RolloutConfig
    from gaincurate.rollout.job import run_rollouts

    path = rundir.reference_path(run_dir, epoch)
    config = RolloutConfig(
        scores=str(scores.directory),
        out=str(path),
        model=str(model_path),
        reference_size=size,
        seed=seed * SEED_STREAM + epoch,
    )
    progress.stage(f"rolling a fresh reference set of {config.reference_size} prompts with {model_path}")
    started = time.perf_counter()
    run_rollouts(config, progress=progress)
    seconds = time.perf_counter() - started
    # `gaincurate rollout` writes 1 for a right answer and 0 for a wrong one, whatever the trainer's reward range.
    per_prompt = read_measurements(path, scores.prompts.gc_ids)
    rollouts = sum(count for _, count in per_prompt.values())
    info = {
        "file": path.name,
        "checkpoint": str(model_path),
        "prompts": len(per_prompt),
        "rollouts": int(rollouts),
        "seconds": seconds,
    }
    return FreshReference(per_prompt, info)


@dataclass(frozen=True)
class Measurements:
    """A run's measurement files: each trained epoch's feedback, and the other sets with their times."""

    feedback: dict[int, Path]
    references: list[tuple[int, Path]]


def measurements(run_dir: Path, run: RunState) -> Measurements:
    """Every pass-rate measurement a run has on disk, in the times its scheduler used."""
    run_dir = Path(run_dir)
    feedback = {}
    for epoch in range(run.schedule.epoch + 1):
        path = rundir.feedback_path(run_dir, epoch)
        if path.is_file():
            feedback[epoch] = path
    before = run.config.strategy_class.about.measured_before  # dots': its --reference file
    given = getattr(run.config.options, before) if before else None
    references = [] if given is None else [(-1, Path(given))]
    for epoch in range(run.schedule.epoch):  # a set rolled after the current epoch is not committed yet
        path = rundir.reference_path(run_dir, epoch)
        if path.is_file():
            references.append((epoch, path))
    return Measurements(feedback, references)


def fresh_reference(context: StepContext) -> FreshReference | None:
    """The fresh reference set `schedule step` / `schedule run` rolls after the current epoch, when it is due."""
    from gaincurate.schedule.run.checkpoints import NO_CHECKPOINT, given_or_recorded, no_model_reason

    epoch = context.run.schedule.epoch
    size = context.scheduler.wants().reference
    if not size:
        return None
    found = given_or_recorded(context.checkpoint, context.run.checkpoint)
    if found is None or found.model_path is None:
        why = NO_CHECKPOINT if found is None else no_model_reason(found)
        context.notices.append(f"no fresh reference set after epoch {epoch}: {why}")
        return None
    fresh = roll_reference(
        context.run_dir, context.scores, size=size, seed=context.scheduler.config.seed, epoch=epoch,
        model_path=found.model_path, progress=context.progress,
    )  # fmt: skip
    context.timings["reference_s"] = fresh.info["seconds"]
    context.notices.append(
        f"fresh reference set after epoch {epoch}: {fresh.info['prompts']} prompts, {fresh.info['rollouts']} "
        f"rollouts with {found.model_path} in {fresh.info['seconds']:.0f} s (extra cost, beside training's)"
    )
    return fresh
