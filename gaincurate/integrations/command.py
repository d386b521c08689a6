"""The trainer-command adapter: drive any trainer through the schedule, one epoch per command, resumably.

    gaincurate schedule run --run RUN --epochs 10 \\
        --trainer-cmd 'python train.py --data {epoch_data} --resume {checkpoint} --out {output_dir}'

Per epoch: run the command with the placeholders filled in (shell-quoted, paths absolute), wait for it,
check and archive the feedback it wrote, find the newest complete checkpoint in the output directory, then
step the schedule (re-scoring from that checkpoint when asked). A checkpoint is any folder `from_pretrained`
loads: a TRL/accelerate `checkpoint-N/`, your own script's `model.save_pretrained` into `{output_dir}/checkpoint-N/`
(or into `{output_dir}` itself), verl's `global_step_N/actor/huggingface/` (`gaincurate.schedule.run.checkpoints`).
When the strategy reads the newest model after the epoch (probe --likelihood, gain) and the trainer left no new one
it can load, the loop stops with one line naming what is missing, the epoch not marked trained; `allow_stale`
carries on instead, and the epoch's history line says its estimates are stale. Placeholders:

    {epoch_data}     RUN/epoch-NNNN.parquet, the epoch's rows
    {checkpoint}     newest complete checkpoint in the output directory ('' or --initial-checkpoint before one exists)
    {output_dir}     where the trainer writes checkpoints (default RUN/trainer)
    {feedback_file}  where the trainer writes its rollout feedback (default RUN/feedback-NNNN.jsonl)
    {epoch}, {run_dir}

The same values are in the environment as GAINCURATE_EPOCH_DATA, GAINCURATE_CHECKPOINT, ... for
reward functions that write the feedback. The command runs under `gaincurate.supervisor`: its
own process group, which a signal to us stops too. Its output goes to RUN/logs/epoch-NNNN.log, with a bounded
copy to `echo`. A failing or stopped command stops the loop with its exit code and the tail of its log; an
epoch counts as trained only once its feedback is in and valid, so the same command resumes it.

The loop holds one `gaincurate.schedule.run.run.Run`: it takes each epoch's feedback (read and checked once) and
steps with its `step`, the step `schedule step` takes. A trainer command's reward
function appends its feedback lines to the file this loop reads after the epoch (`gaincurate.schedule.run.recorder`).
"""

from __future__ import annotations

import os
import shlex
import signal
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from gaincurate.errors import ConfigError, GaincurateError, InputError, InterruptedCommand, setting
from gaincurate.progress import NULL_PROGRESS, Progress, users_environment
from gaincurate.schedule.figures import drawn_figures, figure_words
from gaincurate.schedule.readout_words import epoch_words
from gaincurate.schedule.run import rundir
from gaincurate.schedule.run.checkpoints import find_checkpoint, missing_model
from gaincurate.schedule.run.recorder import FeedbackFile  # noqa: F401  (re-exported: callers import it from here)
from gaincurate.schedule.run.run import Run
from gaincurate.schedule.run.timings import seconds_words
from gaincurate.settings import at_least
from gaincurate.supervisor import ECHO_LINE_CHARS, GRACE_S, BoundedEcho, Stopped, supervise

PLACEHOLDERS = ("epoch_data", "checkpoint", "output_dir", "feedback_file", "epoch", "run_dir")
LOG_TAIL_LINES = 20
_TAIL_BYTES = 64 * 1024  # the tail is read from the end of the log, however long it is


class TrainerCommandError(GaincurateError):
    """The trainer command failed; the CLI exits with the command's own exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class LoopResult:
    trained: list[int]  # epochs trained by this call
    epoch: int  # the epoch now written and waiting (== --epochs when the loop is done)
    draw: dict[str, Any]  # the strategy's numbers that drew `epoch` (its `columns` declared `drawn`; gain: mu)


@dataclass(frozen=True)
class _Trainer:
    """How each epoch's command is run: what `run_loop` was given, paths made absolute."""

    command: str
    feedback_file: str | None
    output_dir: Path
    initial_checkpoint: str
    echo: TextIO | None
    grace_s: float
    allow_stale: bool
    lock: int  # the run lock's descriptor, which the trainer inherits (`run_lock`)


def fill_command(template: str, values: dict[str, str]) -> str:
    """Replace the known `{name}` placeholders with shell-quoted values; other braces are left alone."""
    command = template
    for name in PLACEHOLDERS:
        command = command.replace("{" + name + "}", shlex.quote(values[name]))
    return command


def run_loop(
    run_dir: Path,
    *,
    epochs: int,
    trainer_cmd: str,
    feedback_file: str | None = None,
    output_dir: Path | None = None,
    initial_checkpoint: str = "",
    progress: Progress = NULL_PROGRESS,
    echo: TextIO | None = None,
    grace_s: float = GRACE_S,
    allow_stale: bool = False,
) -> LoopResult:
    """Train epochs until `epochs` of them are done; resumes wherever a previous call stopped.

    `echo`: where a bounded copy of the trainer's output goes (the CLI passes stderr). `grace_s`: how long a
    stopped trainer gets between the forwarded signal and SIGKILL. `allow_stale`: carry on when the strategy reads
    the newest model and the trainer left none it can load (the epoch is marked stale) instead of stopping.
    """
    at_least(1)(setting("epochs"), epochs)
    if "{epoch_data}" not in trainer_cmd:
        raise ConfigError("--trainer-cmd never mentions {epoch_data}; the trainer would not see the epoch's rows")
    # Absolute, so that the state and the placeholders mean the same from any working directory.
    run_dir = Path(run_dir).resolve()
    output = Path(output_dir).resolve() if output_dir is not None else rundir.trainer_dir(run_dir)
    # A rerun after this process was killed waits for a trainer still stopping (the supervisor's watchdog gives it
    # its grace), instead of training the epoch beside it and counting its rollouts twice.
    with rundir.run_lock(run_dir, wait_s=grace_s + 10, progress=progress) as lock:
        trainer = _Trainer(trainer_cmd, feedback_file, output, initial_checkpoint, echo, grace_s, allow_stale, lock)
        return _loop(run_dir, epochs, trainer, initial_checkpoint, progress)


def _loop(run_dir: Path, epochs: int, trainer: _Trainer, initial_checkpoint: str, progress: Progress) -> LoopResult:
    """`run_loop`'s epochs, under the run's lock."""
    trained: list[int] = []
    run = Run.open(run_dir)  # the one run object of this loop: it takes each epoch's feedback and steps
    if run.epoch < epochs:
        run.mark_finished(False)  # training on: a run finished by an earlier call is not any more
    if run.epoch < 0:
        # A strategy that needs the policy measures epoch 0 with the trainer's starting weights, when they are a folder.
        first = Path(initial_checkpoint) if initial_checkpoint and Path(initial_checkpoint).is_dir() else None
        run.step(checkpoint=first, progress=progress)
    while run.epoch < epochs:
        epoch = run.epoch
        if not run.trained:
            _train(run, trainer, progress)
            trained.append(epoch)
        # Read from the trained mark, not from `_train`: a step killed after the training is done again from here.
        step = run.step(progress=progress, stale=run.stale)
        words = figure_words(run.config.strategy_class.about.columns, step.draw)  # gain: "mu 410.7"
        written = f"epoch {epoch} done; epoch {step.epoch} written" + (f", {words}" if words else "")
        progress.stage(f"{written}; {epoch_words(step.record)}")  # the epoch's savings readout, in one line
        progress.stage(f"epoch {epoch} cost: {seconds_words(step.record.get('timings'))}")  # what the epoch cost
        for notice in step.notices:
            progress.stage(notice)
    run.mark_finished(True)  # `schedule status` says so, not "waiting for training"
    draw = drawn_figures(run.config.strategy_class.about.columns, run.scheduler.state.memory)
    return LoopResult(trained, run.epoch, draw)


def _train(run: Run, trainer: _Trainer, progress: Progress) -> None:
    """Run the command for the run's current epoch; mark it trained only once its feedback is in and valid, with
    what the trainer failed to leave when `allow_stale` carried on without it (`Run.stale`)."""
    run_dir, epoch = run.run_dir, run.epoch
    archived = rundir.feedback_path(run_dir, epoch)
    template = trainer.feedback_file
    target = Path(template.replace("{epoch}", f"{epoch:04d}")).resolve() if template else archived
    # A leftover from a failed attempt would be counted twice; this path belongs to the loop.
    target.unlink(missing_ok=True)
    before = find_checkpoint(trainer.output_dir)
    stamp = before.stamp() if before is not None else None  # now: the trainer may save over the same folder
    # Made before the command starts, as its output folder is: a trainer writes its feedback only after training.
    for folder in (trainer.output_dir, target.parent):
        folder.mkdir(parents=True, exist_ok=True)
    values = {
        "epoch_data": str(rundir.epoch_path(run_dir, epoch)),
        "checkpoint": str(before.path) if before else trainer.initial_checkpoint,
        "output_dir": str(trainer.output_dir),
        "feedback_file": str(target),
        "epoch": str(epoch),
        "run_dir": str(run_dir),
    }
    log = rundir.trainer_log(run_dir, epoch)
    progress.stage(f"epoch {epoch}: training (log {log})")
    started = time.perf_counter()
    environment = {**users_environment(), **{f"GAINCURATE_{name.upper()}": value for name, value in values.items()}}
    copy = BoundedEcho(trainer.echo, log) if trainer.echo is not None else None
    try:
        code = supervise(fill_command(trainer.command, values), env=environment, log=log, echo=copy,
                         grace_s=trainer.grace_s, keep_fds=(trainer.lock,))  # fmt: skip
    except Stopped as stopped:
        after = (
            f"the trainer was stopped too and nothing was recorded, so the same `gaincurate schedule run` trains "
            f"epoch {epoch} again (log: {log})"
        )
        if stopped.signum == signal.SIGINT:  # Ctrl-C is the user's own stop: worded as every command words it
            raise InterruptedCommand(f"interrupted; epoch {epoch} was training: {after}") from None
        stop = f"stopped by {stopped} while training epoch {epoch}; {after}"
        raise TrainerCommandError(stop, exit_code=128 + stopped.signum) from None
    seconds = time.perf_counter() - started
    if code != 0:
        name = f" ({signal.Signals(-code).name})" if code < 0 and -code in signal.valid_signals() else ""
        # The echo has just shown the end of the log, unless it had stopped: then the tail is repeated here.
        if copy is not None and not copy.done:
            shown = f"Its output is above; the full log is {log}"
        else:
            shown = f"Last lines of {log}:\n{_tail(log)}"
        raise TrainerCommandError(
            f"trainer command failed with exit code {code}{name} on epoch {epoch}; state is unchanged, so the same "
            f"`gaincurate schedule run` resumes at epoch {epoch}. {shown}",
            exit_code=code if code > 0 else 128 - code,
        )
    after = find_checkpoint(trainer.output_dir)
    if not target.is_file():
        kept = f" --checkpoint {after.path}" if after else ""
        raise InputError(
            f"the trainer exited 0 on epoch {epoch} but wrote no feedback to {target}, so epoch {epoch} is not "
            f"marked trained: make it write one JSON line per rollout there ({{feedback_file}} or "
            f"$GAINCURATE_FEEDBACK_FILE) and rerun, or hand its rollouts over with "
            f"`gaincurate schedule step --run {run_dir} --feedback FILE{kept}`"
        )
    run.take_feedback(target)  # read and checked once, archived: bad feedback is an error now, not a trained epoch
    new = after is not None and after.stamp() != stamp
    if run.reads_newest_model and not (new and after.model_path is not None):
        missing = missing_model(trainer.output_dir, after if new else None)
        reads = f"--strategy {run.config.strategy} reads the newest model after every epoch"
        if not trainer.allow_stale:
            raise InputError(
                f"epoch {epoch}: {reads}, but {missing}; make the trainer save its model there "
                f"(`model.save_pretrained(f'{{output_dir}}/checkpoint-{{step}}')`, tokenizer too) and run the same "
                f"command: epoch {epoch} is trained again (or pass --allow-stale to carry on without it)"
            )
        progress.stage(f"warning: epoch {epoch}: {reads}, but {missing}; carrying on (--allow-stale): stale")
        # The step keeps what it had; the history line says why.
        run.mark_trained(checkpoint=None, train_seconds=seconds, stale=missing)
        return
    if not new:
        progress.stage(f"epoch {epoch}: the trainer left no new complete checkpoint in {trainer.output_dir}")
    run.mark_trained(checkpoint=str(after.path) if after else None, train_seconds=seconds)


def _tail(log: Path) -> str:
    """The log's last lines, each cut to a terminal-friendly length."""
    with log.open("rb") as file:
        file.seek(max(0, file.seek(0, os.SEEK_END) - _TAIL_BYTES))
        lines = deque(file.read().splitlines(), maxlen=LOG_TAIL_LINES)
    cut = [line.decode(errors="replace") for line in lines]
    cut = [line if len(line) <= ECHO_LINE_CHARS else f"{line[:ECHO_LINE_CHARS]} [...]" for line in cut]
    return "\n".join(cut).rstrip() or "(the log is empty)"
