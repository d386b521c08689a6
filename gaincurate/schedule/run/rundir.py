"""The run directory on disk: the one module that writes (and reads) it.

    RUN/state.json            config, scores directory and fingerprint, scheduler state; rewritten atomically each step
    RUN/history.jsonl         one line per finished epoch: subset, acc, ang, delta, mu, timings
    RUN/epoch-NNNN.parquet    the rows of epoch NNNN, in the trainer's format
    RUN/feedback-NNNN.jsonl   the feedback that epoch NNNN's update consumed (a copy)
    RUN/reference-NNNN.jsonl  dots --reference-every: a fresh reference set rolled after epoch NNNN
    RUN/...                   what a plug-in strategy's own measurements write, named and documented by it

`state.json` is the commit point: every other file of a step is written first, and deterministically,
so a step killed half-way is simply done again and yields the same bytes. `gaincurate.schedule.run.steps`
decides what a step writes; this module only knows the layout. `schedule run` also names RUN/logs/ (the
trainer command's output) and RUN/trainer/ (its default checkpoint folder) here; the trainer fills them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gaincurate.errors import ConfigError, InputError
from gaincurate.fileio import atomic_write_bytes, atomic_write_json, read_json, remove_leftovers
from gaincurate.progress import NULL_PROGRESS, Progress
from gaincurate.schedule.config import ScheduleConfig
from gaincurate.schedule.core import EpochPlan
from gaincurate.schedule.feedback import fingerprint
from gaincurate.schedule.run.epochs import epoch_name, epoch_table, write_epoch
from gaincurate.schedule.run.inputs import ScoresInput
from gaincurate.schedule.state import ScheduleState
from gaincurate.shards import MANIFEST

# 2: the config keeps the common settings and its strategy's options only, and mu lives in gain's memory. Another
# version is refused: the package is unreleased, and a run is started again with `schedule init`, not migrated.
STATE_VERSION = 2
STATE = "state.json"
HISTORY = "history.jsonl"


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
    # With `trained`: what the trainer failed to leave for a strategy that reads the newest model, when
    # `schedule run --allow-stale` carried on without it. Kept with the trained mark, so that a step killed after the
    # training and done again still says in the history line that its estimates are stale.
    stale: str | None = None
    # The trainer driving the run ended with this epoch drawn and untrained (`Run.mark_finished`); None: it did not.
    finished: int | None = None
    # What identifies the scores the run started on (`inputs.scores_fingerprint`); None: a run started before runs
    # kept it, or scores that carry none. Each step checks the scores directory against it (`inputs.check_unchanged`).
    scores_fingerprint: dict[str, Any] | None = None

    @property
    def is_finished(self) -> bool:
        """The run is finished: its trainer ended (`schedule run --epochs N` reached N, or TRL's `train()`
        returned) and nothing has moved since. Training on (more epochs) makes it unfinished again."""
        return self.finished is not None and self.finished == self.schedule.epoch and not self.trained

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
            **({"stale": self.stale} if self.trained and self.stale else {}),  # absent: not stale, or not trained
            **self.schedule.to_json(),
            **({"finished": self.finished} if self.finished is not None else {}),  # absent: every run before it
            **({"scores_fingerprint": self.scores_fingerprint} if self.scores_fingerprint is not None else {}),
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
            stale=data.get("stale") if data.get("trained") else None,
            finished=data.get("finished"),
            scores_fingerprint=data.get("scores_fingerprint"),
        )


# -- reading -------------------------------------------------------------------------------------------


def epoch_path(run_dir: Path, epoch: int) -> Path:
    return Path(run_dir) / epoch_name(epoch)


def feedback_path(run_dir: Path, epoch: int) -> Path:
    return Path(run_dir) / f"feedback-{epoch:04d}.jsonl"


def reference_path(run_dir: Path, epoch: int) -> Path:
    """RUN/reference-NNNN.jsonl: a fresh reference set (dots `--reference-every`) rolled after epoch NNNN.

    `gaincurate rollout` writes it, resumably; the step that rolled it reads it into the pass rates.
    """
    return Path(run_dir) / f"reference-{epoch:04d}.jsonl"


def trainer_dir(run_dir: Path) -> Path:
    """The default `{output_dir}` of `schedule run`: the trainer's checkpoints, written by the trainer."""
    return Path(run_dir) / "trainer"


def trainer_log(run_dir: Path, epoch: int) -> Path:
    """RUN/logs/epoch-NNNN.log, where `schedule run` streams the trainer command's output (its folder made)."""
    path = Path(run_dir) / "logs" / f"epoch-{epoch:04d}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def holds_run(run_dir: Path) -> bool:
    return (Path(run_dir) / STATE).is_file()


def _not_a_run(run_dir: Path) -> str:
    """Why `run_dir` holds no run, and the fix that works there: `init` takes only a new or empty directory."""

    def start(scores: object, run: object) -> str:
        return f"`gaincurate schedule init --scores {scores} --run {run}`"

    if (run_dir / MANIFEST).is_file():
        return (
            f"--run {run_dir} is a scores directory (written by `gaincurate score`), not a run; pass the run "
            f"directory, or start a run on these scores: {start(run_dir, 'NEW_RUN')}"
        )
    if not run_dir.exists():
        return f"--run {run_dir} does not exist; check the path, or start a run there: {start('SCORES', run_dir)}"
    if run_dir.is_dir() and not any(run_dir.iterdir()):
        return f"--run {run_dir} is empty: no run was started there; start one: {start('SCORES', run_dir)}"
    return (
        f"--run {run_dir} holds no {STATE}, so it is not a run directory; pass the directory given to "
        f"`schedule init --run`, or start a run in a new one: {start('SCORES', 'NEW_RUN')}"
    )


def load_run(run_dir: Path) -> RunState:
    path = Path(run_dir) / STATE
    if not path.is_file():
        raise InputError(_not_a_run(Path(run_dir)))
    try:
        data = read_json(path)
        if not isinstance(data, dict):
            raise ValueError(f"a JSON {type(data).__name__}, not an object")
        if data.get("version") != STATE_VERSION:
            raise InputError(
                f"{path} has state version {data.get('version')}; this gaincurate reads version {STATE_VERSION} only: "
                f"start the run again: `gaincurate schedule init --scores {data.get('scores_dir')} --run NEW_RUN`"
            )
        return RunState.from_json(data)
    except (ValueError, KeyError, TypeError, AttributeError, ConfigError) as error:
        # Written atomically by gaincurate only, so damage came from outside; nothing here can rebuild it.
        raise InputError(
            f"{path} is damaged ({_problem(error)}); restore it from a backup, or start a new run with "
            "`gaincurate schedule init`"
        ) from None


@contextlib.contextmanager
def run_lock(run_dir: Path, *, wait_s: float = 0.0, progress: Progress = NULL_PROGRESS) -> Iterator[int]:
    """The run's lock, an exclusive `flock` on the directory itself (a lock that writes no file): one command writes
    a run at a time. `schedule run` holds it for its loop and, through the descriptor each trainer inherits, so does
    its trainer; `schedule step` and `init` hold it while they write. A step beside a training epoch would move the
    run on under it, and of two steps or inits at once one would replace the other's work: so a second command,
    after waiting up to `wait_s`, is refused in one line and changes nothing."""
    import fcntl

    if not Path(run_dir).is_dir():
        load_run(run_dir)  # the one line that says there is no run there, and how to start one
    handle = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        deadline, said = time.monotonic() + wait_s, False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise InputError(
                        f"{run_dir} is in use by another gaincurate command (a `schedule run` training it, or its "
                        "trainer still stopping, or a `schedule step` or `init` on it); wait for it to end, then run "
                        "this command again"
                    ) from None
                if not said:
                    progress.stage(f"waiting for the trainer of an earlier `schedule run` on {run_dir} to stop")
                    said = True
                time.sleep(0.2)
        yield handle
    finally:
        os.close(handle)


def read_history(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / HISTORY
    if not path.is_file():
        return []
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise _damaged_history(path, "the file", "not UTF-8 text") from None
    lines = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except ValueError as error:
            raise _damaged_history(path, f"line {number}", _problem(error)) from None
        if not isinstance(line, dict) or isinstance(line.get("epoch"), bool) or not isinstance(line.get("epoch"), int):
            raise _damaged_history(path, f"line {number}", "not an object with an integer epoch")
        lines.append(line)
    return lines


def _damaged_history(path: Path, where: str, problem: str) -> InputError:
    return InputError(
        f"{path}: {where} is damaged ({problem}); it is a log of finished epochs (the run itself is in {STATE}): "
        "repair or delete the damaged line(s) and rerun; `schedule status` then shows a gap there"
    )


def _problem(error: BaseException) -> str:
    """A one-line reason for a damaged file."""
    if isinstance(error, KeyError):
        return f"no {error} entry"
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__


# -- writing -------------------------------------------------------------------------------------------


def check_new(run_dir: Path) -> None:
    """Refuse a run directory that already holds something, before anything is read or written."""
    run_dir = Path(run_dir)
    if (run_dir / STATE).exists():
        raise ConfigError(
            f"--run {run_dir} already holds a schedule; continue it with `schedule step`, or pick a new --run"
        )
    if run_dir.exists() and (not run_dir.is_dir() or not all(map(_left_by_init, run_dir.iterdir()))):
        raise ConfigError(f"--run {run_dir} exists and is not an empty directory; pick a new --run")


def _left_by_init(path: Path) -> bool:
    """What an `init` killed before its state leaves, which `create` writes again: an empty history, leftovers."""
    return is_leftover(path) or (path.name == HISTORY and path.is_file() and not path.stat().st_size)


def is_leftover(path: Path) -> bool:
    """A temporary file of a killed atomic write (`.NAME.XXXX.tmp`): never a whole file, and no sign of training."""
    return path.name.startswith(".") and path.name.endswith(".tmp") and path.is_file()


def clear_leftovers(run_dir: Path) -> None:  # where a step starts writing: no other write runs then
    remove_leftovers(run_dir, "*")


# What a run directory holds before its first epoch is trained: a fresh `init` and epoch 0's draw.
_UNTRAINED_FILES = {STATE, HISTORY, epoch_name(0)}


def untrained(run_dir: Path) -> bool:
    """Whether `run_dir` holds a run whose config was never trained on: epoch 0 drawn at most, no feedback, no
    history, no trainer output. Such a run may be re-initialised with another config (nothing is lost)."""
    run_dir = Path(run_dir)
    if not holds_run(run_dir) or any(p.name not in _UNTRAINED_FILES and not is_leftover(p) for p in run_dir.iterdir()):
        return False
    try:
        run = load_run(run_dir)
    except InputError:
        return False
    return not run.trained and run.schedule.epoch <= 0 and not read_history(run_dir)


def clear_untrained(run_dir: Path) -> None:
    """Remove an untrained run (`untrained`) so that it can be created again; the state goes first."""
    if not untrained(run_dir):
        raise ConfigError(f"{run_dir} holds a run that was trained on; pick a new run directory")
    for name in (STATE, epoch_name(0), HISTORY):
        (Path(run_dir) / name).unlink(missing_ok=True)


def create(run_dir: Path, run: RunState) -> None:
    """A new run directory: an empty history, then the state. Under the run's lock, checked new again there: of two
    inits at once, the second is refused instead of replacing the first one's state."""
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    with run_lock(run_dir):
        check_new(run_dir)
        clear_leftovers(run_dir)
        atomic_write_bytes(Path(run_dir) / HISTORY, b"")
        save_run(run_dir, run)


def save_run(run_dir: Path, run: RunState) -> None:
    atomic_write_json(Path(run_dir) / STATE, run.to_json())


def mark_trained(
    run_dir: Path, epoch: int, *, checkpoint: str | None, train_seconds: float, stale: str | None = None
) -> None:
    """The trainer finished `epoch`, the current one (its feedback is archived); the next step may use `checkpoint`.

    The checkpoint is stored absolute: the step that uses it may run from another working directory. `stale`: what
    the trainer failed to leave when the run carried on without it (`RunState.stale`). A run that another command
    moved on meanwhile is refused: marking its new epoch would count an epoch nobody trained.
    """
    run = load_run(run_dir)
    if run.schedule.epoch != epoch:
        raise InputError(
            f"{run_dir} moved on to epoch {run.schedule.epoch} while epoch {epoch} was training (another command "
            f"stepped it), so epoch {epoch} is not marked trained; see `gaincurate schedule status --run {run_dir}`"
        )
    checkpoint = str(Path(checkpoint).resolve()) if checkpoint else None
    marked = dataclasses.replace(run, trained=True, checkpoint=checkpoint, train_seconds=train_seconds, stale=stale)
    save_run(run_dir, marked)


def write_epoch_file(run_dir: Path, scores: ScoresInput, config: ScheduleConfig, plan: EpochPlan) -> Path:
    """RUN/epoch-NNNN.parquet: the plan's rows in the run's format, with the draw in the file's metadata."""
    metadata = {"epoch": plan.epoch, **plan.draw, "strategy": config.strategy, "seed": config.seed}
    path = epoch_path(run_dir, plan.epoch)
    table = epoch_table(
        scores, plan.gc_ids, data_format=config.format, metadata=metadata, data_source=config.verl_data_source
    )
    write_epoch(path, table)
    return path


def consumed_by(run_dir: Path, before: int, data: bytes) -> int | None:
    """The epoch before `before` whose archived feedback holds exactly `data` (the same file handed over twice), or
    None. Archives of another size are not read, so a step reads next to nothing but the file it was given."""
    digest = fingerprint(data)
    for epoch in range(before):
        archived = feedback_path(run_dir, epoch)
        same_size = archived.is_file() and archived.stat().st_size == len(data)
        if same_size and fingerprint(archived.read_bytes()) == digest:
            return epoch
    return None


def epoch_holding(run_dir: Path, before: int, gc_ids: set[int]) -> int | None:
    """The newest epoch before `before` whose epoch file holds all of `gc_ids` (feedback of an older epoch)."""
    import pyarrow.parquet as pq

    for epoch in reversed(range(before)):
        path = epoch_path(run_dir, epoch)
        if path.is_file() and gc_ids <= set(pq.read_table(path, columns=["gc_id"]).column("gc_id").to_pylist()):
            return epoch
    return None


def archive_feedback(run_dir: Path, epoch: int, data: bytes) -> None:
    """RUN/feedback-NNNN.jsonl: the feedback lines epoch NNNN's update consumed."""
    atomic_write_bytes(feedback_path(run_dir, epoch), data)


def write_history(run_dir: Path, record: dict[str, Any]) -> None:
    """Append `record` to history.jsonl, dropping the lines of its epoch and later ones.

    A step done again (after a kill, or a trainer resumed from an older checkpoint) keeps one line per epoch.
    """
    kept = [line for line in read_history(run_dir) if line["epoch"] < record["epoch"]]
    text = "".join(json.dumps(line, sort_keys=True) + "\n" for line in [*kept, record])
    atomic_write_bytes(Path(run_dir) / HISTORY, text.encode())
