"""Drive any trainer command through the schedule, one epoch per command, resumably.

    gaincurate schedule run --run RUN --epochs 10 \\
        --trainer-cmd 'python train.py --data {epoch_data} --resume {checkpoint} --out {output_dir}'

Per epoch: run the command with the placeholders filled in (shell-quoted), wait for it, archive the
feedback it wrote, find the newest complete checkpoint in the output directory, then `advance` the
schedule (re-scoring from that checkpoint when asked). Placeholders:

    {epoch_data}     RUN/epoch-NNNN.parquet, the epoch's rows
    {checkpoint}     newest complete checkpoint in the output directory ('' or --initial-checkpoint before one exists)
    {output_dir}     where the trainer writes checkpoints (default RUN/trainer)
    {feedback_file}  where the trainer writes its rollout feedback (default RUN/feedback-NNNN.jsonl)
    {epoch}, {run_dir}

The same values are in the environment as GAINCURATE_EPOCH_DATA, GAINCURATE_CHECKPOINT, ... for
reward functions that write the feedback. A failing command stops the loop with its exit code and the
tail of its log (RUN/logs/epoch-NNNN.log); the state is untouched, so the same command resumes it.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import signal
import subprocess
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from gaincurate.errors import ConfigError, GaincurateError, InputError
from gaincurate.fileio import atomic_write_bytes
from gaincurate.schedule.checkpoints import find_checkpoint
from gaincurate.schedule.run import Progress, advance, epoch_path, feedback_path, load_run, save_run

PLACEHOLDERS = ("epoch_data", "checkpoint", "output_dir", "feedback_file", "epoch", "run_dir")
LOG_TAIL_LINES = 20


class TrainerCommandError(GaincurateError):
    """The trainer command failed; the CLI exits with the command's own exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class LoopResult:
    trained: list[int]  # epochs trained by this call
    epoch: int  # the epoch now written and waiting (== --epochs when the loop is done)
    mu: float


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
    progress: Progress | None = None,
) -> LoopResult:
    """Train epochs until `epochs` of them are done; resumes wherever a previous call stopped."""
    if epochs < 1:
        raise ConfigError(f"--epochs must be at least 1; got {epochs}")
    if "{epoch_data}" not in trainer_cmd:
        raise ConfigError("--trainer-cmd never mentions {epoch_data}; the trainer would not see the epoch's rows")
    run_dir = Path(run_dir)
    output_dir = Path(output_dir) if output_dir is not None else run_dir / "trainer"
    trained: list[int] = []
    if load_run(run_dir).schedule.epoch < 0:
        advance(run_dir, progress=progress)
    while (run := load_run(run_dir)).schedule.epoch < epochs:
        epoch = run.schedule.epoch
        if not run.trained:
            _train(run_dir, epoch, trainer_cmd, feedback_file, output_dir, initial_checkpoint, progress)
            trained.append(epoch)
        step = advance(run_dir, progress=progress)
        if progress:
            progress(f"epoch {epoch} done; epoch {step.epoch} written, mu {step.mu:.1f}")
            for notice in step.notices:
                progress(notice)
    return LoopResult(trained, run.schedule.epoch, run.schedule.mu)


def _train(
    run_dir: Path,
    epoch: int,
    trainer_cmd: str,
    feedback_file: str | None,
    output_dir: Path,
    initial_checkpoint: str,
    progress: Progress | None,
) -> None:
    archived = feedback_path(run_dir, epoch)
    target = Path(feedback_file.replace("{epoch}", f"{epoch:04d}")) if feedback_file else archived
    # A leftover from a failed attempt would be counted twice; this path belongs to the loop.
    target.unlink(missing_ok=True)
    before = find_checkpoint(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    values = {
        "epoch_data": str(epoch_path(run_dir, epoch).resolve()),
        "checkpoint": str(before.path) if before else initial_checkpoint,
        "output_dir": str(output_dir),
        "feedback_file": str(target),
        "epoch": str(epoch),
        "run_dir": str(run_dir),
    }
    log = run_dir / "logs" / f"epoch-{epoch:04d}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    if progress:
        progress(f"epoch {epoch}: training (log {log})")
    started = time.perf_counter()
    code = _run_command(fill_command(trainer_cmd, values), values, log)
    seconds = time.perf_counter() - started
    if code != 0:
        raise TrainerCommandError(
            f"trainer command failed with exit code {code} on epoch {epoch}; state is unchanged, so the same "
            f"`gaincurate schedule run` resumes at epoch {epoch}. Last lines of {log}:\n{_tail(log)}",
            exit_code=code if code > 0 else 128 - code,
        )
    if target != archived and target.is_file():
        atomic_write_bytes(archived, target.read_bytes())
    after = find_checkpoint(output_dir)
    if progress and (after is None or (before is not None and after.path == before.path)):
        progress(f"epoch {epoch}: the trainer left no new complete checkpoint in {output_dir}")
    run = load_run(run_dir)
    save_run(
        run_dir,
        dataclasses.replace(run, trained=True, checkpoint=str(after.path) if after else None, train_seconds=seconds),
    )
    if not archived.is_file():
        raise InputError(
            f"the trainer finished epoch {epoch} but wrote no feedback to {target}; make it write one JSON line "
            f"per rollout there ({{feedback_file}} or $GAINCURATE_FEEDBACK_FILE), or pass the feedback with "
            f"`gaincurate schedule next --run {run_dir} --feedback FILE`"
        )


def _run_command(command: str, values: dict[str, str], log: Path) -> int:
    environment = {**os.environ, **{f"GAINCURATE_{name.upper()}": value for name, value in values.items()}}
    with log.open("wb") as sink:
        # Its own session, so that stopping it reaches the shell's children (the actual trainer) too.
        process = subprocess.Popen(
            command, shell=True, stdout=sink, stderr=subprocess.STDOUT, env=environment, start_new_session=True
        )
        try:
            return process.wait()
        except BaseException:
            # Interrupted (Ctrl-C, SIGTERM): stop the trainer too, so a resumed run starts clean.
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
            raise


def _tail(log: Path) -> str:
    with log.open("rb") as file:
        lines = deque(file, maxlen=LOG_TAIL_LINES)
    return b"".join(lines).decode(errors="replace").rstrip() or "(the log is empty)"
