"""The pieces of a step on a run directory, which `gaincurate.schedule.run.run.Run` puts together: start or open
a run (`init_run`, `open_run`, `open_scheduler`), read a feedback file once (`check_feedback`), the work before a
file-driven draw (`consume_feedback`), and the draw committed through `gaincurate.schedule.run.rundir` (`take_step`).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gaincurate.errors import ConfigError, InputError
from gaincurate.feedback_lines import NoRolloutError
from gaincurate.schedule.config import ScheduleConfig
from gaincurate.schedule.core import EpochStep, FreshReference, Rescored, Scheduler
from gaincurate.schedule.feedback import Feedback, fingerprint, read_feedback
from gaincurate.schedule.run import rundir
from gaincurate.schedule.run.checkpoints import NO_CHECKPOINT, find_checkpoint, given_or_recorded, no_model_reason
from gaincurate.schedule.run.epochs import check_format
from gaincurate.schedule.run.fresh import measure, wants_fresh
from gaincurate.schedule.run.inputs import ScoresInput, check_unchanged, load_scores, scores_fingerprint
from gaincurate.schedule.run.reference_sets import fresh_reference
from gaincurate.schedule.run.rundir import RunState
from gaincurate.schedule.run.step_context import StepContext
from gaincurate.schedule.strategies.contract import FRESH_SCORES, POLICY, PolicyAt
from gaincurate.shards import read_manifest


@dataclass(frozen=True)
class StepResult:
    """One step as the run took it (`take_step`, `Run.step`): the scheduler's own `EpochStep` (the epoch drawn
    and the update that led to it), its history line, and what was written: the epoch file and the run's state
    (None without a run directory), plus what a step from files noticed on the way.

    The one result type of a step outside the pure core; `EpochStep` stays the core's return, which knows no
    files, timings or notices.
    """

    step: EpochStep
    record: dict[str, Any] | None  # the history line (JSON-ready, timings included); None for epoch 0
    path: Path | None  # the epoch file written; None without a run directory
    run: RunState | None  # the run's state after the step; None without a run directory
    strategy: str
    notices: list[str] = field(default_factory=list)

    @property
    def epoch(self) -> int:
        """The epoch drawn (and written) by this step."""
        return self.step.plan.epoch

    @property
    def draw(self) -> dict[str, Any]:
        """The strategy's numbers about the epoch's draw (`draw_info`; gain: mu), as its epoch file keeps them."""
        return self.step.plan.draw

    @property
    def subset_size(self) -> int:
        return len(self.step.plan.gc_ids)


def take_step(
    scheduler: Scheduler,
    scores: ScoresInput,
    *,
    run_dir: Path | None,
    run: RunState | None,
    feedback: Feedback | None = None,
    rescored: Rescored | None = None,
    ang: float | None = None,
    archive: bytes | None = None,
    checkpoint: str | None = None,
    timings: dict[str, float] | None = None,
    feedback_sha256: str | None = None,
    reference: FreshReference | None = None,
    stale: str | None = None,
) -> StepResult:
    """Draw the next epoch (epoch 0 without feedback) and, given a run directory, write the step into it.

    The files go in commit order: the consumed feedback (`archive`, when it is not archived yet), the
    epoch file, the history line, and last the state, so a step killed half-way is simply done again.
    `feedback_sha256` (default: the hash of `archive`) goes into the history line, and so does `stale`, when given:
    why the strategy could not re-measure with the newest model after this epoch (`schedule run --allow-stale`).
    """
    timings = {} if timings is None else timings
    if run_dir is not None and run is not None:
        # Scores swapped while the epoch trained (a long `schedule run`, a trainer in process) are refused before the
        # draw, with nothing written.
        check_unchanged(run.scores_fingerprint, read_manifest(scores.directory), run.scores_dir)
    step = scheduler.step(feedback=feedback, rescored=rescored, ang=ang, reference=reference)
    if feedback_sha256 is None and archive is not None:
        feedback_sha256 = fingerprint(archive)
    record = None
    if step.record is not None:
        record = step.record.to_json() | {"checkpoint": checkpoint, "feedback_sha256": feedback_sha256}
        record |= {"stale": stale} if stale else {}
    if run_dir is None or run is None:
        record = None if record is None else record | {"timings": timings}
        return StepResult(step, record, None, None, scheduler.config.strategy)
    started = time.perf_counter()
    rundir.clear_leftovers(run_dir)
    if record is not None and archive is not None:
        rundir.archive_feedback(run_dir, record["epoch"], archive)
    path = rundir.write_epoch_file(run_dir, scores, scheduler.config, step.plan)
    timings["write_s"] = time.perf_counter() - started
    if record is not None:
        record = record | {"timings": timings}
        rundir.write_history(run_dir, record)
    run = dataclasses.replace(run, schedule=scheduler.state, trained=False, checkpoint=None, train_seconds=None)
    rundir.save_run(run_dir, run)
    return StepResult(step, record, path, run, scheduler.config.strategy)


def init_run(run_dir: Path, scores_dir: Path, config: ScheduleConfig) -> tuple[RunState, Scheduler]:
    """Create a run directory for `scores_dir`; nothing is written when any check fails."""
    run_dir = Path(run_dir)
    rundir.check_new(run_dir)
    scores = load_scores(scores_dir)
    check_format(scores, config.format)
    scheduler = Scheduler(config, scores.prompts, scores=scores)
    run = RunState(
        config=scheduler.config,  # resolved from the scores (`ScheduleConfig.resolved`)
        scores_dir=str(Path(scores_dir).resolve()),
        n_prompts=len(scores.prompts),
        dataset_fingerprint=scores.manifest.get("dataset", {}).get("fingerprint"),
        schedule=scheduler.state,
        scores_fingerprint=scores_fingerprint(scores.manifest),
    )
    rundir.create(run_dir, run)
    return run, scheduler


def _written_since_drawn(run_dir: Path, epoch: int, source: Path) -> bool:
    """Whether `source` was written after this epoch's file: an earlier epoch's bytes written again then are this
    epoch's own (a policy that answered every prompt as before), not that epoch's file handed over twice."""
    drawn = rundir.epoch_path(run_dir, epoch)
    return drawn.is_file() and source.stat().st_mtime_ns > drawn.stat().st_mtime_ns


def check_feedback(
    run_dir: Path, source: Path, *, run: RunState | None = None, unseen: bool = False
) -> tuple[Feedback, str, bytes]:
    """The current epoch's feedback in `source`, validated, its content hash and its bytes (the file is read once).

    Refused, each with one line: bad lines (`read_feedback`), and feedback for another epoch: all its prompts
    lie in one earlier epoch's file and some lie outside this one. `unseen`: a file whose content an earlier epoch
    consumed, last written before this epoch was drawn (the same file handed over twice), is refused too.
    """
    run_dir, source = Path(run_dir), Path(source)
    run = run if run is not None else rundir.load_run(run_dir)
    epoch = run.schedule.epoch
    data = source.read_bytes() if source.is_file() else None  # the one read: hashed, parsed and archived from here
    consumed = rundir.consumed_by(run_dir, epoch, data) if unseen and data is not None else None
    if consumed is not None and not _written_since_drawn(run_dir, epoch, source):
        raise InputError(
            f"{source} is the feedback epoch {consumed} already consumed (same content); {_wanted(run_dir, epoch)}"
        )
    try:
        summary = read_feedback(
            source,
            epoch_ids=run.schedule.subset_ids,
            known_ids=run.schedule.ranking,
            reward_max=run.config.reward_max,
            reward_min=run.config.reward_min,
            data=data,
        )
    except NoRolloutError as error:  # not one rollout of this epoch: named as an earlier epoch's when it is one
        _refuse_stale(run_dir, source, epoch, set(error.outside_ids), "all")
        raise
    if summary.outside_epoch:
        prompts = summary.outside_ids | set(summary.per_prompt or {})
        _refuse_stale(run_dir, source, epoch, prompts, summary.outside_epoch)
    return summary, fingerprint(data or b""), data or b""


def _wanted(run_dir: Path, epoch: int) -> str:
    return f"pass the rollouts written while training on {rundir.epoch_path(run_dir, epoch).name}"


def _refuse_stale(run_dir: Path, source: Path, epoch: int, prompts: set[int], outside: int | str) -> None:
    """Refuse, in one line, feedback whose prompts all lie in one earlier epoch's file: that epoch's rollouts."""
    older = rundir.epoch_holding(run_dir, epoch, prompts) if prompts else None
    if older is not None:
        raise InputError(
            f"{source} holds the rollouts of epoch {older}: all its {len(prompts)} prompts are in "
            f"{rundir.epoch_path(run_dir, older).name}, {outside} of its rollouts are outside epoch {epoch}; "
            f"{_wanted(run_dir, epoch)}"
        ) from None


def open_scheduler(run: RunState) -> tuple[Scheduler, ScoresInput]:
    """The scheduler of a run, over its scores directory, checked to be the one it started with."""
    scores = load_scores(Path(run.scores_dir), recorded=True)
    fingerprint = scores.manifest.get("dataset", {}).get("fingerprint")
    if len(scores.prompts) != run.n_prompts or (run.dataset_fingerprint and fingerprint != run.dataset_fingerprint):
        changed = (
            f"hold {len(scores.prompts)} rows, the run started with {run.n_prompts}"
            if len(scores.prompts) != run.n_prompts
            else f"hold other prompts than when the run started (the same {run.n_prompts} rows, but their text "
            "or columns differ)"
        )
        raise InputError(
            f"the scores in {run.scores_dir} {changed}, so the run's prompt ids no longer name the prompts it "
            f"drew; score the run's own dataset into {run.scores_dir} again, or start a new run on these scores "
            f"in another directory (`gaincurate schedule init --scores {run.scores_dir} --run NEW_RUN`)"
        )
    check_unchanged(run.scores_fingerprint, scores.manifest, run.scores_dir)
    try:
        return Scheduler(run.config, scores.prompts, run.schedule, scores=scores), scores
    except ValueError as error:
        raise InputError(f"the scores in {run.scores_dir} do not match this run ({error}); start a new run") from None


def consume_feedback(
    context: StepContext, feedback: Path | None, kept: tuple[Feedback, str, float] | None = None
) -> dict[str, Any]:
    """The work of a file-driven step before its draw, as `take_step`'s keywords: the epoch's feedback read and
    checked once (`feedback`, else the archived file, or `kept`: that file already checked, its hash and the seconds
    that took), re-scoring, a fresh reference set, and the policy handed to a strategy that needs it."""
    run_dir, run, timings = context.run_dir, context.run, context.timings
    current = run.schedule.epoch
    started = time.perf_counter()
    archived = rundir.feedback_path(run_dir, current)
    source = Path(feedback) if feedback is not None else archived
    if feedback is None and not archived.is_file():
        raise InputError(
            f"epoch {current} is waiting for its feedback; pass --feedback FILE.jsonl with the trainer's "
            f"rollouts of {rundir.epoch_path(run_dir, current).name}"
        )
    if feedback is None and kept is not None:
        (summary, digest, seconds), data = kept, b""
    else:
        # A file handed over by the user must not be one an earlier epoch consumed; the archived copy is the
        # loop's own (`schedule run` deletes it before each attempt), so only its epoch is checked.
        summary, digest, data = check_feedback(run_dir, source, run=run, unseen=feedback is not None)
        seconds = time.perf_counter() - started
    timings["feedback_s"] = seconds
    rescored, used = rescore_from_checkpoint(context, summary)
    fresh = fresh_reference(context)
    measured_with = hand_policy(context)
    scheduler = context.scheduler
    if context.checkpoint is not None and not wants_fresh(scheduler.strategy) and not fresh and not measured_with:
        context.notices.append(unused_checkpoint(scheduler))
    if run.train_seconds is not None:
        timings["train_s"] = run.train_seconds
    archive = data if source.resolve() != archived.resolve() else None
    return {"feedback": summary, "reference": fresh, "rescored": rescored, "archive": archive,
            "checkpoint": measured_with or used, "timings": timings, "feedback_sha256": digest}  # fmt: skip


def step_notices(result: StepResult, summary: Feedback, epoch: int, run_dir: Path) -> list[str]:
    """What a file-driven step noticed of the feedback of `epoch` and the readout it wrote, one line each."""
    readout = (result.record or {}).get("readout") or {}
    notices = [f"warning: {warning}" for warning in readout.get("warnings", [])]
    if summary.outside_epoch:
        left_out = f"{summary.outside_epoch} rollout(s) of prompts outside epoch {epoch} were left out"
        older = rundir.epoch_holding(run_dir, epoch, set(summary.outside_ids))
        if older is not None:  # a file that also holds an earlier epoch's rollouts (one appended to every epoch)
            left_out += (
                f": stale rollouts of epoch {older}, whose file {rundir.epoch_path(run_dir, older).name} holds all "
                f"their {len(summary.outside_ids)} prompts; write each epoch's rollouts to a file of its own"
            )
        notices.append(left_out)
    if summary.missing_prompts:
        notices.append(f"{summary.missing_prompts} prompt(s) of epoch {epoch} had no rollout in the feedback")
    return notices


def check_given_checkpoint(checkpoint: Path) -> None:
    """Refuse, before any work, a checkpoint path that does not exist or is a file, naming what to pass instead.

    Such a path is a wrong path, not a checkpoint the trainer is still writing (that one is waited for).
    """
    what = "pass a folder the trainer saved (checkpoint-N, global_step_N, a model folder) or its output folder"
    if not checkpoint.exists():
        parent = checkpoint.parent
        newest = find_checkpoint(parent) if parent.is_dir() else None
        hint = f" (the newest complete checkpoint in {parent} is {newest.path})" if newest is not None else ""
        raise InputError(f"checkpoint {checkpoint} does not exist; {what}{hint}")
    if not checkpoint.is_dir():
        raise InputError(f"checkpoint {checkpoint} is a file, not a folder; {what}")


def hand_policy(context: StepContext) -> str | None:
    """Give a strategy that needs the policy being trained the one to measure the next epoch's draw with: the
    newest checkpoint's weights.

    Epoch 0 measures with the checkpoint given (`--initial-checkpoint`), or else the model the prompts were
    scored with; a later epoch without a checkpoint holding full weights is refused, since measuring with a
    stale policy would give the wrong pass rates. Returns the checkpoint it measures with (None: none, or a
    strategy that needs no policy).
    """
    strategy = context.scheduler.strategy
    if POLICY not in strategy.about.needs:
        return None
    found = given_or_recorded(context.checkpoint, context.run.checkpoint)
    epoch = context.run.schedule.epoch
    if epoch >= 0 and (found is None or found.model_path is None):
        why = NO_CHECKPOINT if found is None else no_model_reason(found)
        raise InputError(
            f"--strategy {strategy.name} measures epoch {epoch + 1}'s candidates with the policy that trained epoch "
            f"{epoch}, but {why}; pass --checkpoint PATH (a folder with full weights or a LoRA adapter)"
        )
    weights = None if found is None else found.model_path
    at = PolicyAt(scores_dir=context.scores.directory, seed=context.scheduler.config.seed, run_dir=context.run_dir,
                  weights=lambda _: weights, progress=context.progress)  # fmt: skip
    context.scheduler.hand_policy(at)
    return None if found is None else str(found.path)


def rescore_from_checkpoint(context: StepContext, feedback: Feedback) -> tuple[Rescored | None, str | None]:
    """Fresh scores or answer likelihoods from the newest checkpoint when the strategy asks for them after the epoch
    whose `feedback` this is."""
    scheduler, run, checkpoint = context.scheduler, context.run, context.checkpoint
    if not wants_fresh(scheduler.strategy):
        return None, run.checkpoint
    found = None
    if checkpoint is not None:
        found = find_checkpoint(checkpoint)
        if found is None:
            raise InputError(
                f"--checkpoint {checkpoint} holds no complete checkpoint yet; wait for the trainer to finish it"
            )
    elif run.checkpoint:
        found = find_checkpoint(Path(run.checkpoint))
    used = str(found.path) if found else None
    ids = scheduler.rescore_ids(feedback)
    if ids is None:
        return None, used
    if found is None and run.checkpoint:
        # Falling back to the stored scores here would quietly change where mu goes.
        raise InputError(
            f"state.json names {run.checkpoint} as the checkpoint of epoch {run.schedule.epoch}, but it is gone or "
            f"incomplete; restore it, or name another with `gaincurate schedule step --run RUN --checkpoint PATH`"
        )
    rescores = FRESH_SCORES in scheduler.strategy.about.needs  # else the answers' likelihood alone (probe's)
    if found is None or found.model_path is None:
        why = NO_CHECKPOINT if found is None else no_model_reason(found)
        lost = "ang comes from the stored scores" if rescores else "the fit keeps the likelihoods it had"
        context.notices.append(f"not re-scored: {why}; {lost}")
        return None, used
    doing = "re-scoring" if rescores else "measuring the answer's likelihood of"
    context.progress.stage(f"{doing} {len(ids)} prompts with {found.model_path}")
    started = time.perf_counter()
    rescored = measure(scheduler.strategy, context.scores.directory, ids, checkpoint=found.model_path,
                       nproc=scheduler.config.rescore_nproc)  # fmt: skip
    context.timings["rescore_s"] = time.perf_counter() - started
    return rescored, used


def unused_checkpoint(scheduler: Scheduler) -> str:
    """The notice for a checkpoint that nothing this step read."""
    return f"the checkpoint is not used: the {scheduler.config.strategy} strategy, as configured, reads nothing from it"


def starts_anew(run_dir: Path | None, config: ScheduleConfig | None) -> bool:
    """Whether opening `run_dir` writes it: it holds no run yet, or an untrained one that `config` changes."""
    if run_dir is None:
        return False
    if not rundir.holds_run(run_dir):
        return True
    return config is not None and rundir.untrained(run_dir) and rundir.load_run(run_dir).config != config


def open_run(
    run_dir: Path | None, scores_dir: str | Path | None, config: ScheduleConfig | None, *, write: bool
) -> RunState | None:
    """The run an in-process `Run` continues or starts in `run_dir`; None when it keeps no run directory."""
    if run_dir is not None and rundir.holds_run(run_dir):
        run = rundir.load_run(run_dir)
        if (
            config is not None
            and config != run.config
            and config.resolved(read_manifest(Path(run.scores_dir))) == run.config
        ):
            config = run.config  # its unset options decided from the scores as the stored ones were
        if config is not None and config != run.config and write and rundir.untrained(run_dir):
            rundir.clear_untrained(run_dir)  # never trained on: started again with this config
            return open_run(run_dir, scores_dir, config, write=write)
        if config is not None and config != run.config:
            started, given = run.config.to_dict(), config.to_dict()
            key = next(k for k in sorted(started.keys() | given.keys()) if started.get(k) != given.get(k))
            raise ConfigError(
                f"{run_dir} was started and trained with {key}={started.get(key)!r}, not {key}={given.get(key)!r}; "
                "drop config= to continue it, or pick a new run_dir"
            )
        if scores_dir is not None and Path(scores_dir).resolve() != Path(run.scores_dir):
            raise ConfigError(
                f"{run_dir} schedules {run.scores_dir}, not {scores_dir}; drop scores_dir= or pick a new run_dir"
            )
        return run
    if run_dir is not None and write:
        if scores_dir is None:
            raise ConfigError(f"{run_dir} holds no schedule yet; pass scores_dir= to start one there")
        return init_run(run_dir, Path(scores_dir), config or ScheduleConfig())[0]
    if scores_dir is None:
        raise ConfigError("a curriculum needs scores_dir= (a `gaincurate score` output) or an existing run_dir=")
    return None
