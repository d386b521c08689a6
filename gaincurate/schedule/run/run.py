"""The run: the one object every trainer path holds, from `gaincurate schedule step` to TRL and verl in process.

A `Run` reads and checks its inputs once, commits each step atomically (`gaincurate.schedule.run.steps`: feedback,
epoch file, history line, then state), draws the next epoch and hands a trainer what it needs: the epoch's dataset
rows (`row_map`, `rows`), the reward recorder (`recorder`) and its state. TRL's callback, verl's sampler, one launch
and on-save hook, and the `--trainer-cmd` loop only translate their events into its methods. From files:

    run = Run.open("run/")
    run.step(feedback="rollouts.jsonl", checkpoint="ckpt/")   # epoch 0 first, then one step per feedback file

In process (a trainer that stays up for the whole run; with or without a run directory):

    run = Run(scores_dir="scores/", config=ScheduleConfig(subset_size=64), run_dir="run/")
    run.rows(row_of)                      # the epoch's dataset rows, in training order
    run.record(gc_ids, rewards)           # any number of times during the epoch
    record = run.step(rescored=run.rescore(model=model, tokenizer=tokenizer)).record   # at the epoch's end

`step` is the one verb either way, and the run directory is the same, byte for byte, so `gaincurate schedule
status` reads any run.
"""

from __future__ import annotations

import dataclasses
import logging
import numbers
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from gaincurate.errors import ConfigError, InputError
from gaincurate.feedback_lines import check_reward, format_line, not_applicable
from gaincurate.progress import NULL_PROGRESS, Progress
from gaincurate.schedule.config import ScheduleConfig
from gaincurate.schedule.core import EpochPlan, Rescored, Scheduler
from gaincurate.schedule.feedback import Feedback
from gaincurate.schedule.run import rundir, steps
from gaincurate.schedule.run.inputs import load_scores
from gaincurate.schedule.run.recorder import feedback_file
from gaincurate.schedule.run.rows import epoch_rows, rows_by_gc_id
from gaincurate.schedule.run.step_context import StepContext
from gaincurate.schedule.state import ScheduleState
from gaincurate.schedule.strategies.contract import POLICY, PolicyAt

logger = logging.getLogger(__name__)

STATE_DICT_VERSION = 2  # raised with every change of the trainer-checkpoint state's format


class Run:
    """A `Scheduler`, its scores and its run directory, with the rollout bookkeeping every trainer path needs.

    `Run.open(run_dir)`: a run directory driven from files (`step` reads each epoch's feedback file).
    `Run(scores_dir, config, run_dir=...)`: a trainer's run in process (`step` takes what `record` collected). Give
    `scores_dir` (and `config`) for a new schedule; give `run_dir` too to keep it on disk. An existing `run_dir` is
    continued from its state.json; a `config` or `scores_dir` passed with it must match the ones it was started
    with. `write=False` (the other ranks of a multi-process job) reads an existing run directory but never writes
    one. `start_later=True` (a trainer that checks its set-up first) holds a run directory it would write in memory
    until `start_run_dir()`. `state_dict()` / `load_state_dict()` carry what a trainer checkpoint needs to resume
    exactly: the scheduler state and the current epoch's rollouts so far.
    """

    def __init__(
        self,
        scores_dir: str | Path | None = None,
        config: ScheduleConfig | None = None,
        *,
        run_dir: str | Path | None = None,
        write: bool = True,
        start_later: bool = False,
    ) -> None:
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.in_process = True  # rewards arrive through `record`, not a feedback file
        # A trainer checks its set-up before anything is written: until `start_run_dir()` a new run directory
        # (or an untrained one given another config) is kept in memory only.
        self._waiting = start_later and write and steps.starts_anew(self.run_dir, config)
        if self._waiting and scores_dir is None and rundir.holds_run(self.run_dir):
            scores_dir = rundir.load_run(self.run_dir).scores_dir  # the untrained run's scores
        self._open(None if self._waiting else self.run_dir, scores_dir, config, write=write and not self._waiting)

    @classmethod
    def open(cls, run_dir: str | Path) -> Run:
        """The run kept in `run_dir`, driven from files: nothing is drawn until `step` (epoch 0 included)."""
        run = cls.__new__(cls)
        run.run_dir, run.in_process, run._waiting = Path(run_dir), False, False
        run._open(run.run_dir, None, None, write=True, state=rundir.load_run(run.run_dir))
        return run

    def start_run_dir(self) -> None:
        """Keep the schedule in `run_dir` from now on, for a run built with `start_later=True`: the run
        directory is written (or an untrained one started again) with this run's scores and config, and
        epoch 0 drawn there. Nothing happens when the run already keeps it, or keeps none."""
        if self._waiting:
            self._waiting = False
            self._open(self.run_dir, self.scores_dir, self.config, write=True)

    def _open(
        self,
        run_dir: Path | None,
        scores_dir: str | Path | None,
        config: ScheduleConfig | None,
        *,
        write: bool,
        state: rundir.RunState | None = None,
    ) -> None:
        """Continue or start the run in `run_dir` (None: in memory); in process, draw epoch 0 unless it waits."""
        self._run = state if state is not None else steps.open_run(run_dir, scores_dir, config, write=write)
        if self._run is not None:
            self.scheduler, self.scores = steps.open_scheduler(self._run)
            self.scores_dir = Path(self._run.scores_dir)
        else:
            self.scores_dir = Path(scores_dir)
            self.scores = load_scores(self.scores_dir)
            self.scheduler = Scheduler(config or ScheduleConfig(), self.scores.prompts, scores=self.scores)
        self.write = write and run_dir is not None
        self.config = self.scheduler.config
        self.subset_size = self.scheduler.subset_size  # prompts per epoch, resolved for this prompt set
        self.history: list[dict[str, Any]] = []  # the records of the steps taken by this object
        self._records: list[tuple[int, float]] = []
        self._feedback: tuple[int, Feedback, str, float] | None = None  # take_feedback's epoch, feedback, hash, s
        self._epoch_started = time.perf_counter()
        # A strategy that needs the policy draws epoch 0 by measuring with it, which a trainer hands over later
        # (`hand_policy`); every other strategy draws it now.
        if self.in_process and self.scheduler.state.epoch < 0 and not self.needs_policy:
            self._take()

    @property
    def needs_policy(self) -> bool:
        """Whether the strategy measures candidates with the policy being trained before each draw."""
        return POLICY in self.scheduler.strategy.about.needs

    @property
    def reads_newest_model(self) -> bool:
        """Whether the step after the current epoch measures prompts with the newest model (fresh scores, answer
        likelihoods), so a trainer must leave one it can load. Asked once the epoch's feedback is in (taken or
        recorded), the answer is the step's own; before, it is what the strategy would ask without feedback."""
        from gaincurate.schedule.run.fresh import wants_fresh

        return wants_fresh(self.scheduler.strategy) and self.scheduler.rescore_ids(self._epoch_feedback()) is not None

    def _epoch_feedback(self) -> Feedback | None:
        """The current epoch's feedback as the next step will read it: taken from its file, or the records handed
        in; None while there is neither."""
        if self._feedback is not None and self._feedback[0] == self.epoch:
            return self._feedback[1]
        return self.scheduler.summarize(self._records, checked=True) if self._records else None

    def hand_policy(self, **where: Any) -> None:
        """Hand a strategy that needs the policy being trained where the integration has it (`PolicyAt`'s fields
        but this run's own: its scores, seed and directory); any other strategy takes nothing."""
        at = PolicyAt(scores_dir=self.scores_dir, seed=self.config.seed, run_dir=self.run_dir, **where)
        self.scheduler.hand_policy(at)

    def use_strategy(self, strategy: Any) -> None:
        """Draw with `strategy` from epoch 0 on, instead of the config's (before training; no run directory)."""
        if self.run_dir is not None or self.history or self._records:
            raise ConfigError("a strategy object replaces the config's only before training, without a run directory")
        self.scheduler = Scheduler(self.config, self.scores.prompts, strategy=strategy)
        if not self.needs_policy:
            self._take()

    def subset_choice(self) -> str:
        """One line on how the subset size was chosen, for the trainer's log."""
        from gaincurate.schedule.sizes import subset_choice

        config = self.config
        return subset_choice(config.subset_size, self.scheduler.n_prompts, config.subset_multiple, self.subset_size)

    def prompt_table(self, data_format: str):
        """Every scored prompt, in gc_id order, as an epoch file's table in `data_format` (a trainer's dataset)."""
        from gaincurate.schedule.run.epochs import epoch_table

        return epoch_table(self.scores, self.scores.prompts.gc_ids, data_format=data_format, metadata={})

    def mark_finished(self, ended: bool) -> None:
        """The trainer ended (`gaincurate schedule status` then says the run is finished), or trains again."""
        if self.write:
            finished = self.epoch if ended else None
            if self._run.finished != finished:
                self._run = dataclasses.replace(self._run, finished=finished)
                rundir.save_run(self.run_dir, self._run)

    @property
    def plan(self) -> EpochPlan:
        """The epoch being trained: its prompts' gc_ids in rank order (a strategy that needs the policy draws epoch 0
        on first use)."""
        if self.scheduler.state.epoch < 0:
            self._take()
        plan = self.scheduler.current
        assert plan is not None
        return plan

    @property
    def epoch(self) -> int:
        return self.scheduler.state.epoch

    @property
    def records(self) -> list[dict[str, Any]]:
        """The current epoch's rollouts so far, as feedback lines."""
        return [{"gc_id": gc_id, "reward": reward} for gc_id, reward in self._records]

    def record(self, gc_ids: Iterable[Any], rewards: Iterable[Any]) -> int:
        """Add rollouts of the current epoch; a reward of None or NaN (not applicable) is skipped."""
        added = []
        for gc_id, reward in zip(gc_ids, rewards, strict=True):
            if not_applicable(reward):
                continue
            try:  # a one-element tensor too; what float() cannot take, check_reward names
                number = reward if isinstance(reward, numbers.Real) else float(reward)
            except (TypeError, ValueError):
                number = reward
            try:  # checked here, once: the step reads these pairs as checked (`Scheduler.summarize(checked=True)`)
                value = check_reward(number, self.config.reward_max, self.config.reward_min)
            except ValueError as problem:
                raise ConfigError(f"gc_id {int(gc_id)}: {problem}") from None
            added.append((int(gc_id), value))
        self._records.extend(added)
        return len(added)

    def replace_records(self, records: Iterable[Any]) -> None:
        """Set the current epoch's rollouts to `records` (`(gc_id, reward)` pairs), e.g. gathered from all ranks."""
        self._records = [(int(gc_id), float(reward)) for gc_id, reward in records]

    def rescore(self, *, model: Any = None, tokenizer: Any = None, checkpoint: str | Path | None = None):
        """What the newest model says of the prompts the strategy asks about now (fresh scores, answer
        likelihoods: `gaincurate.schedule.run.fresh`), or None when none are due.

        Pass the live model and its tokenizer (in-process trainers), or a checkpoint folder.
        """
        ids = self.scheduler.rescore_ids(self._epoch_feedback())
        if ids is None:
            return None
        from gaincurate.schedule.run.fresh import measure

        started = time.perf_counter()
        rescored = measure(self.scheduler.strategy, self.scores_dir, ids, checkpoint=checkpoint, model=model,
                           tokenizer=tokenizer)  # fmt: skip
        self._rescore_seconds = time.perf_counter() - started
        return rescored

    def step(
        self, *, feedback: str | Path | None = None, checkpoint: str | Path | None = None,
        rescored: Rescored | None = None, ang: float | None = None, progress: Progress = NULL_PROGRESS,
        stale: str | None = None,
    ) -> steps.StepResult:  # fmt: skip
        """End the current epoch and draw the next. In process (`Run(...)`): with the rewards `record` collected and
        what `rescore` measured. From files (`Run.open`): epoch 0 first, then the epoch's feedback file (`feedback`,
        else the one taken by `take_feedback`), re-scoring from `checkpoint`; `stale`: why no model was left."""
        if self.in_process:
            if feedback is not None or stale is not None:
                raise ConfigError(
                    "a run in process steps with what record() took; use Run.open(RUN).step(feedback=FILE)"
                )
            return self._step_recorded(rescored, ang, None if checkpoint is None else str(checkpoint))
        if rescored is not None or ang is not None:
            raise ConfigError("a run stepped from files measures its own re-scoring from checkpoint=")
        return self._step_from_file(feedback, checkpoint, progress, stale)

    def _step_recorded(self, rescored: Rescored | None, ang: float | None, checkpoint: str | None):
        if not self._records:
            raise ConfigError(
                f"no rollout reward was recorded for epoch {self.epoch}; record the rewards of the reward "
                "function that says whether an answer is right (see gaincurate.integrations.trl.GainCurriculum."
                "wrap_rewards, or the verl sampler's update)"
            )
        train_seconds = time.perf_counter() - self._epoch_started
        started = time.perf_counter()
        summary = self.scheduler.summarize(self._records, checked=True)
        timings = {"feedback_s": time.perf_counter() - started, "train_s": train_seconds}
        if rescored is not None:
            timings["rescore_s"] = getattr(self, "_rescore_seconds", 0.0)
        archive = "".join(format_line(gc_id, reward) for gc_id, reward in self._records).encode()
        result = self._take(
            summary, rescored=rescored, ang=ang, archive=archive, checkpoint=checkpoint, timings=timings
        )
        self._records = []
        self._epoch_started = time.perf_counter()
        return result

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume mid-run: the scheduler state and this epoch's rollouts so far."""
        return {
            "version": STATE_DICT_VERSION,
            "schedule": self.scheduler.state.to_json(),
            "records": [[gc_id, reward] for gc_id, reward in self._records],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Return to a saved point (a trainer resuming from a checkpoint); the run directory follows."""
        if state.get("version") != STATE_DICT_VERSION:
            raise ConfigError(
                f"the checkpoint's curriculum state has version {state.get('version')}; this gaincurate reads "
                f"{STATE_DICT_VERSION} only: train from the start, or resume with the gaincurate that wrote it"
            )
        schedule, policy = ScheduleState.from_json(state["schedule"]), self.scheduler.policy
        self.scheduler = Scheduler(self.config, self.scores.prompts, schedule, strategy=self.scheduler.strategy,
                                   filters=self.scheduler.filters)  # fmt: skip
        self.scheduler.policy = policy  # what a trainer handed over before resuming (`hand_policy`)
        self._records = [(int(gc_id), float(reward)) for gc_id, reward in state["records"]]
        self._epoch_started = time.perf_counter()
        if self.write:
            self._run = dataclasses.replace(self._run, schedule=self.scheduler.state)
            rundir.save_run(self.run_dir, self._run)

    def _step_from_file(
        self, feedback: str | Path | None, checkpoint: str | Path | None, progress: Progress, stale: str | None
    ) -> steps.StepResult:
        if not self.write:
            raise ConfigError("step() from files steps a run directory this process writes; open it with Run.open(RUN)")
        if checkpoint is not None:
            steps.check_given_checkpoint(Path(checkpoint))
        checkpoint = Path(checkpoint).resolve() if checkpoint is not None else None  # history names it absolute
        context = StepContext(run_dir=self.run_dir, run=self._run, scheduler=self.scheduler, scores=self.scores,
                              checkpoint=checkpoint, progress=progress)  # fmt: skip
        current = self.epoch
        if current < 0:
            if feedback is not None:
                raise InputError(
                    f"no epoch has been written yet, so --feedback {feedback} has nothing to update; "
                    f"run `gaincurate schedule step --run {self.run_dir}` without --feedback first"
                )
            steps.hand_policy(context)
            return dataclasses.replace(self._take(), notices=context.notices)
        kept = self._feedback[1:] if self._feedback is not None and self._feedback[0] == current else None
        taken = steps.consume_feedback(context, None if feedback is None else Path(feedback), kept)
        result = self._take(**taken, stale=stale)
        self._feedback = None
        reported = self.scheduler.reported
        said = [reported.note] if reported is not None and reported.note else []  # the strategy's word on its draw
        noticed = steps.step_notices(result, taken["feedback"], current, self.run_dir)
        return dataclasses.replace(result, notices=context.notices + noticed + said)

    def take_feedback(self, source: str | Path) -> bytes:
        """Read and check the current epoch's feedback file once, archive it in the run directory, and keep it for
        the next `step`; returns its bytes. Bad feedback is refused here, before the epoch counts as trained."""
        source, archived = Path(source), rundir.feedback_path(self.run_dir, self.epoch)
        started = time.perf_counter()
        summary, digest, data = steps.check_feedback(self.run_dir, source, run=self._run)
        seconds = time.perf_counter() - started  # the step's feedback_s, as when the step reads the file itself
        if source != archived:
            rundir.archive_feedback(self.run_dir, self.epoch, data)
        self._feedback = (self.epoch, summary, digest, seconds)
        return data

    def mark_trained(self, *, checkpoint: str | None, train_seconds: float, stale: str | None = None) -> None:
        """The trainer finished the current epoch (its feedback taken); the next step may use `checkpoint`. `stale`:
        what the trainer failed to leave when the run carried on without it, kept until the step."""
        rundir.mark_trained(self.run_dir, self.epoch, checkpoint=checkpoint, train_seconds=train_seconds, stale=stale)
        self._run = rundir.load_run(self.run_dir)

    @property
    def trained(self) -> bool:
        """Whether the current epoch was trained and its feedback taken, waiting for `step`."""
        return self._run is not None and self._run.trained

    @property
    def stale(self) -> str | None:
        """What the trainer of the current, trained epoch failed to leave (`mark_trained`); None: nothing, or the
        epoch is not trained yet."""
        return self._run.stale if self.trained else None

    def row_map(self, ids: Sequence[Any], *, fix: str, where: str = "", every_prompt: bool = True) -> dict[int, int]:
        """gc_id -> row of a trainer's dataset, from each row's gc_id (`rows.rows_by_gc_id`); `every_prompt`: a
        scored prompt without a row is refused too. Each refusal is one line ending with `fix`."""
        expected = self.scores.prompts.gc_ids if every_prompt else None
        return rows_by_gc_id(ids, fix=fix, expected=expected, where=where)

    def rows(self, row_of: dict[int, int], *, shuffle: bool = False) -> list[int]:
        """The current epoch's dataset rows in training order (`rows.epoch_rows`): rank order, or with `shuffle` a
        permutation seeded by this run's seed and the epoch."""
        return epoch_rows(self.plan, row_of, seed=self.config.seed, shuffle=shuffle)

    def recorder(self, path: str | Path | None = None) -> Callable[[Sequence[Any], Sequence[Any]], int] | None:
        """Where a trainer hands its rollouts' rewards, `(gc_ids, rewards)` at a time: in process this run's own
        `record`; out of process, or given `path`, the feedback file there, else at $GAINCURATE_FEEDBACK_FILE
        (`rewards.FeedbackFile`; None when neither is set)."""
        if path is None and self.in_process:
            return self.record
        return feedback_file(path)

    def _take(self, feedback: Feedback | None = None, **taken: Any) -> steps.StepResult:
        """One `take_step`, written to the run directory when this run writes one; in process, the readout's
        warnings and a pause or resumption of aiming go to the trainer's log (a file-driven step returns them as
        notices)."""
        result = steps.take_step(
            self.scheduler, self.scores, run_dir=self.run_dir if self.write else None, run=self._run, feedback=feedback,
            **taken,
        )  # fmt: skip
        if result.run is not None:
            self._run = result.run
        if result.record is not None:
            self.history.append(result.record)
            readout = result.record.get("readout") or {}
            for warning in readout.get("warnings", []) if self.in_process else ():
                logger.warning("gaincurate: epoch %d: %s", result.record["epoch"], warning)
            if readout.get("aim_change") and self.in_process:  # the run stopped, or started again, paying to aim
                logger.warning("gaincurate: epoch %d: %s", result.record["epoch"], readout["aim_change"])
        return result
