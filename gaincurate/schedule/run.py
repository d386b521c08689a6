"""The run directory: the scheduler's state and outputs on disk, one step at a time.

    RUN/state.json            config, scores directory, scheduler state; rewritten atomically each step
    RUN/history.jsonl         one line per finished epoch: subset, acc, ang, delta, mu, timings
    RUN/epoch-NNNN.parquet    the rows of epoch NNNN, in the trainer's format
    RUN/feedback-NNNN.jsonl   the feedback that epoch NNNN's update consumed (a copy)

`init_run` creates it; `advance` consumes the latest epoch's feedback (re-scoring from a checkpoint
when asked), moves mu and writes the next epoch (the first call writes epoch 0); `run_status` reads
it back. `state.json` is the commit point: every other file of a step is written first, and
deterministically, so a step killed half-way is simply done again and yields the same bytes; no
epoch is repeated or skipped.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gaincurate.errors import ConfigError, InputError
from gaincurate.fileio import atomic_write_bytes, atomic_write_json, read_json
from gaincurate.schedule.checkpoints import find_checkpoint
from gaincurate.schedule.config import ScheduleConfig, ScheduleParams
from gaincurate.schedule.core import EpochStep, Rescored, Scheduler
from gaincurate.schedule.epochs import check_format, epoch_name, epoch_table, write_epoch
from gaincurate.schedule.feedback import read_feedback
from gaincurate.schedule.inputs import ScoresInput, load_scores
from gaincurate.schedule.state import ScheduleState
from gaincurate.schedule.strategies import Strategy

STATE_VERSION = 1
STATE = "state.json"
HISTORY = "history.jsonl"

Progress = Callable[[str], None]


@dataclass(frozen=True, kw_only=True)
class RunState:
    """Everything in state.json. `trained`/`checkpoint` are set by `schedule run` between steps."""

    config: ScheduleConfig
    scores_dir: str
    n_prompts: int
    dataset_fingerprint: str | None
    schedule: ScheduleState
    trained: bool = False  # the trainer finished the current epoch; its feedback is archived
    checkpoint: str | None = None  # newest complete checkpoint after that training
    train_seconds: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "config": self.config.to_dict(),
            "scores_dir": self.scores_dir,
            "n_prompts": self.n_prompts,
            "dataset_fingerprint": self.dataset_fingerprint,
            "trained": self.trained,
            "checkpoint": self.checkpoint,
            "train_seconds": self.train_seconds,
            **self.schedule.to_json(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunState:
        return cls(
            config=ScheduleConfig.from_dict(data["config"]),
            scores_dir=data["scores_dir"],
            n_prompts=int(data["n_prompts"]),
            dataset_fingerprint=data.get("dataset_fingerprint"),
            schedule=ScheduleState.from_json(data),
            trained=bool(data.get("trained", False)),
            checkpoint=data.get("checkpoint"),
            train_seconds=data.get("train_seconds"),
        )


@dataclass(frozen=True)
class StepResult:
    """What one `advance` did: the epoch written and, after epoch 0, the update that led to it."""

    epoch: int
    mu: float
    path: Path
    subset_size: int
    record: dict[str, Any] | None
    notices: list[str]
    strategy: str


def epoch_path(run_dir: Path, epoch: int) -> Path:
    return Path(run_dir) / epoch_name(epoch)


def feedback_path(run_dir: Path, epoch: int) -> Path:
    return Path(run_dir) / f"feedback-{epoch:04d}.jsonl"


def load_run(run_dir: Path) -> RunState:
    path = Path(run_dir) / STATE
    if not path.is_file():
        raise InputError(f"{run_dir} holds no {STATE}; create it with `gaincurate schedule init --run {run_dir}`")
    data = read_json(path)
    if data.get("version") != STATE_VERSION:
        raise InputError(f"{path} has state version {data.get('version')}; this gaincurate reads {STATE_VERSION}")
    return RunState.from_json(data)


def save_run(run_dir: Path, run: RunState) -> None:
    atomic_write_json(Path(run_dir) / STATE, run.to_json())


def read_history(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / HISTORY
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def init_run(run_dir: Path, scores_dir: Path, config: ScheduleConfig) -> tuple[RunState, ScheduleParams]:
    """Create a run directory for `scores_dir`; nothing is written when any check fails."""
    run_dir = Path(run_dir)
    if (run_dir / STATE).exists():
        raise ConfigError(
            f"--run {run_dir} already holds a schedule; continue it with `schedule next`, or pick a new --run"
        )
    if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        raise ConfigError(f"--run {run_dir} exists and is not an empty directory; pick a new --run")
    scores = load_scores(scores_dir)
    check_format(scores, config.format)
    scheduler = Scheduler(config, scores.prompts, strategy=strategy_for(scores, config, initial=True))
    run = RunState(
        config=config,
        scores_dir=str(Path(scores_dir).resolve()),
        n_prompts=len(scores.prompts),
        dataset_fingerprint=scores.manifest.get("dataset", {}).get("fingerprint"),
        schedule=scheduler.state,
    )
    atomic_write_bytes(run_dir / HISTORY, b"")
    save_run(run_dir, run)
    return run, scheduler.params


def strategy_for(scores: ScoresInput, config: ScheduleConfig, *, initial: bool) -> Strategy | None:
    """A strategy that needs the scores table (dots: embeddings, and at init its --reference file)."""
    if config.strategy != "dots":
        return None
    from gaincurate.schedule.dots import DotsStrategy

    return DotsStrategy.from_scores(scores, config, read_reference=initial)


def open_scheduler(run: RunState) -> tuple[Scheduler, ScoresInput]:
    """The scheduler of a run, over its scores directory, checked to be the one it started with."""
    scores = load_scores(Path(run.scores_dir))
    fingerprint = scores.manifest.get("dataset", {}).get("fingerprint")
    if len(scores.prompts) != run.n_prompts or (run.dataset_fingerprint and fingerprint != run.dataset_fingerprint):
        raise InputError(
            f"the scores in {run.scores_dir} changed since this run started ({len(scores.prompts)} rows, "
            f"run has {run.n_prompts}); restore them or start a new run with `schedule init`"
        )
    try:
        strategy = strategy_for(scores, run.config, initial=False)
        return Scheduler(run.config, scores.prompts, run.schedule, strategy=strategy), scores
    except ValueError as error:
        raise InputError(f"the scores in {run.scores_dir} do not match this run ({error}); start a new run") from None


def advance(
    run_dir: Path,
    *,
    feedback: Path | None = None,
    checkpoint: Path | None = None,
    progress: Progress | None = None,
) -> StepResult:
    """One scheduler step on disk: write epoch 0, or consume feedback and write the next epoch."""
    run_dir = Path(run_dir)
    run = load_run(run_dir)
    scheduler, scores = open_scheduler(run)
    current = run.schedule.epoch
    notices: list[str] = []
    timings: dict[str, float] = {}
    used_checkpoint = None
    started = time.perf_counter()
    if current < 0:
        if feedback is not None:
            raise InputError(
                f"no epoch has been written yet, so --feedback {feedback} has nothing to update; "
                f"run `gaincurate schedule next --run {run_dir}` without --feedback first"
            )
        step = scheduler.next_epoch()
    else:
        archived = feedback_path(run_dir, current)
        source = Path(feedback) if feedback is not None else archived
        if feedback is None and not archived.is_file():
            raise InputError(
                f"epoch {current} is waiting for its feedback; pass --feedback FILE.jsonl with the trainer's "
                f"rollouts of {epoch_path(run_dir, current).name}"
            )
        summary = read_feedback(
            source,
            epoch_ids=run.schedule.subset_ids,
            known_ids=run.schedule.ranking,
            reward_max=scheduler.params.reward_max,
        )
        timings["feedback_s"] = time.perf_counter() - started
        rescored, used_checkpoint = _rescore(scheduler, scores, run, checkpoint, notices, timings, progress)
        step = scheduler.next_epoch(feedback=summary, rescored=rescored)
        if source.resolve() != archived.resolve():
            atomic_write_bytes(archived, source.read_bytes())
        if summary.outside_epoch:
            notices.append(f"{summary.outside_epoch} rollout(s) of prompts outside epoch {current} were left out")
        if summary.missing_prompts:
            notices.append(f"{summary.missing_prompts} prompt(s) of epoch {current} had no rollout in the feedback")
    write_started = time.perf_counter()
    path = _write_epoch(run_dir, scores, scheduler, step)
    timings["write_s"] = time.perf_counter() - write_started
    record = None
    if step.record is not None:
        record = step.record.to_json()
        record["checkpoint"] = used_checkpoint
        record["timings"] = {**timings, **({"train_s": run.train_seconds} if run.train_seconds is not None else {})}
        history = [line for line in read_history(run_dir) if line["epoch"] < step.record.epoch]
        text = "".join(json.dumps(line, sort_keys=True) + "\n" for line in [*history, record])
        atomic_write_bytes(run_dir / HISTORY, text.encode())
    save_run(
        run_dir, dataclasses.replace(run, schedule=scheduler.state, trained=False, checkpoint=None, train_seconds=None)
    )
    return StepResult(
        step.plan.epoch, step.plan.mu, path, len(step.plan.gc_ids), record, notices, scheduler.config.strategy
    )


def _rescore(
    scheduler: Scheduler,
    scores: ScoresInput,
    run: RunState,
    checkpoint: Path | None,
    notices: list[str],
    timings: dict[str, float],
    progress: Progress | None,
) -> tuple[Rescored | None, str | None]:
    """Fresh scores from the newest checkpoint when the config asks for them this epoch."""
    if scheduler.params.rescore == "none":
        if checkpoint is not None:
            notices.append("--rescore none: the checkpoint is not used; ang comes from the stored scores")
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
    ids = scheduler.rescore_ids()
    if ids is None:
        return None, used
    if found is None or found.model_path is None:
        why = "no checkpoint was given" if found is None else f"{found.path} has no full model (verl: save hf_model)"
        notices.append(f"not re-scored: {why}; ang comes from the stored scores")
        return None, used
    from gaincurate import scoring

    if progress:
        progress(f"re-scoring {len(ids)} prompts with {found.model_path}")
    started = time.perf_counter()
    fresh = scoring.rescore(
        scores.directory, [int(i) for i in ids], checkpoint=found.model_path, nproc=scheduler.params.rescore_nproc
    )
    timings["rescore_s"] = time.perf_counter() - started
    return Rescored(ids, fresh), used


def _write_epoch(run_dir: Path, scores: ScoresInput, scheduler: Scheduler, step: EpochStep) -> Path:
    plan, params = step.plan, scheduler.params
    metadata = {"epoch": plan.epoch, "mu": plan.mu, "strategy": params.strategy, "seed": params.seed}
    path = epoch_path(run_dir, plan.epoch)
    write_epoch(path, epoch_table(scores, plan.gc_ids, data_format=params.format, metadata=metadata))
    return path


def run_status(run_dir: Path) -> dict[str, Any]:
    """Where the run stands, as JSON-ready data: the current epoch, mu, and the per-epoch history."""
    run_dir = Path(run_dir)
    run = load_run(run_dir)
    params = run.config.resolve(run.n_prompts)
    history = [
        {
            key: line.get(key)
            for key in (
                "epoch",
                "mu",
                "accuracy",
                "ang",
                "ang_source",
                "signal",
                "delta",
                "mu_next",
                "rollouts",
                "reranked",
                "timings",
            )
        }
        | {"subset_size": len(line.get("subset_ids", []))}
        for line in read_history(run_dir)
    ]
    return {
        "run": str(run_dir),
        "epoch": run.schedule.epoch,
        "mu": run.schedule.mu,
        "trained": run.trained,
        "epoch_file": str(epoch_path(run_dir, run.schedule.epoch)) if run.schedule.epoch >= 0 else None,
        "n_prompts": run.n_prompts,
        "scores_dir": run.scores_dir,
        "params": params.to_dict(),
        "history": history,
    }
