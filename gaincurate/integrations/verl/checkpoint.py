"""verl checkpoints for gaincurate: the model to re-score from, the Megatron refusal, and an on-save hook.

verl writes `global_step_N/` under `trainer.default_local_dir` and names the newest complete step in
`latest_checkpointed_iteration.txt`, written last. Where the Hugging Face weights that re-scoring loads are:

* FSDP: `global_step_N/actor/huggingface/`, with full weights when `actor.checkpoint.save_contents` has hf_model.
* Megatron, verl 0.9 layout: `global_step_N/actor/model/huggingface/`, only with hf_model and a bridge;
  otherwise the weights are Megatron shards (`actor/model/dist_ckpt/`, or `actor/dist_ckpt/` before 0.9).
  gaincurate cannot load shards: `model_merger_command` is verl's own conversion, and re-scoring from such
  a checkpoint is refused with that command rather than silently falling back.

`StepScheduleOnSave` is a verl >= 0.9.1 `trainer.checkpoint_callback_class`: at each epoch-end save it steps
the schedule (`gaincurate schedule step`) in verl's driver, so one-epoch launches need no `schedule run`:

    trainer.checkpoint_callback_class=gaincurate.integrations.verl.checkpoint.StepScheduleOnSave
    +gaincurate.run_dir=run/  [+gaincurate.feedback_file=FILE] [+gaincurate.tracker_timeout=SECONDS]

The feedback file defaults to the bundled reward's `reward.custom_reward_function.reward_kwargs.feedback_file`,
then `$GAINCURATE_FEEDBACK_FILE`. With `actor.checkpoint.async_save=True` verl calls the hook before the
checkpoint is durable (no tracker yet): when the schedule re-scores, the hook waits for the tracker up to
`tracker_timeout` seconds (default 300), and past that steps the schedule without the checkpoint (the angle
from the stored scores), saying so in the log.
"""

import logging
import os
import time
from pathlib import Path
from typing import Any

from gaincurate.errors import ConfigError
from gaincurate.integrations.verl.config import config_value
from gaincurate.schedule.run.checkpoints import VERL_TRACKER, megatron_without_model, model_merger_command
from gaincurate.schedule.run.recorder import FEEDBACK_ENV
from gaincurate.schedule.strategies.contract import update_words

logger = logging.getLogger(__name__)

DEFAULT_TRACKER_TIMEOUT = 300.0
# model_merger_command lives with the verl layouts in gaincurate.schedule.run.checkpoints; docs/verl.md names it here.
__all__ = [
    "StepScheduleOnSave",
    "model_merger_command",
    "newest_weights",
    "refuse_megatron",
    "step_at_epoch_end",
    "wait_for_tracker",
]


def refuse_megatron(step_dir: str | Path) -> None:
    """Raise, naming verl's merger command, when `step_dir` is a Megatron checkpoint without loadable weights."""
    megatron = megatron_without_model(step_dir)
    if megatron is not None:
        raise ConfigError(
            f"{megatron} and step again, or save hf_model through a bridge, or use --rescore none "
            "(gaincurate cannot re-score from Megatron shards)"
        )


def step_at_epoch_end(run: Any, checkpoint_dir: str | None) -> dict[str, Any]:
    """End an in-process curriculum's epoch in verl's driver process; returns the step's history record.

    When the schedule re-scores this epoch, the fresh scores come from the newest complete checkpoint in
    `checkpoint_dir` (verl's trainer.default_local_dir) with full Hugging Face weights; without one the angle
    comes from the stored scores, and the log says so. Megatron shards are refused with verl's merger command.
    """
    from gaincurate.schedule.run.checkpoints import find_checkpoint

    rescored, checkpoint = None, None
    if run.reads_newest_model and checkpoint_dir:
        found = find_checkpoint(Path(checkpoint_dir))
        if found is not None:
            refuse_megatron(found.path)
        if found is not None and found.model_path is not None:
            checkpoint = str(found.path)
            rescored = run.rescore(checkpoint=found.model_path)
        else:
            logger.warning(
                "no checkpoint with full weights in %s; epoch %d's angle comes from the stored scores "
                "(save actor.checkpoint.save_contents with hf_model)",
                checkpoint_dir,
                run.epoch,
            )
    record = run.step(rescored=rescored, checkpoint=checkpoint).record
    moved = update_words(run.scheduler.strategy, record)  # gain: ", ang ..., delta ..., mu 0.0 -> 410.7"
    zero = (record.get("readout") or {}).get("zero_variance")
    moved += "" if zero is None else f", zero-variance groups {zero:.0%}"  # the savings readout (docs/readout.md)
    logger.info("gaincurate: epoch %d accuracy %.3f%s", record["epoch"], record["accuracy"], moved)
    return record


def newest_weights(run: Any, checkpoint_dir: str) -> Any:
    """The weights a strategy that needs the policy measures epoch N's draw with in verl's driver: the scored model
    for epoch 0, later the newest checkpoint's.

    verl's live policy sits in its Ray workers, out of the driver's reach; a later epoch without a checkpoint
    holding full weights is refused rather than measured with a stale policy.
    """

    def weights(epoch: int) -> Path | None:
        from gaincurate.schedule.run.checkpoints import find_checkpoint, no_model_reason

        if epoch == 0:
            return None
        found = find_checkpoint(Path(checkpoint_dir))
        if found is not None:
            refuse_megatron(found.path)
        if found is None or found.model_path is None:
            why = "there is none" if found is None else no_model_reason(found)
            raise ConfigError(
                f"--strategy {run.config.strategy} needs the newest checkpoint's weights in {checkpoint_dir} "
                f"to measure epoch {epoch}'s candidates, but {why}; save actor.checkpoint.save_contents with "
                "hf_model every epoch"
            )
        return found.model_path

    return weights


def wait_for_tracker(step_dir: str | Path, step: int, timeout: float, poll: float = 1.0) -> bool:
    """Wait until verl's tracker names `step` or later; False after `timeout` seconds."""
    tracker = Path(step_dir).parent / VERL_TRACKER
    deadline = time.monotonic() + timeout
    while True:
        try:
            if int(tracker.read_text().strip()) >= step:
                return True
        except (OSError, ValueError):
            pass  # not written yet, or caught mid-write
        if time.monotonic() >= deadline:
            return False
        time.sleep(min(poll, max(0.0, deadline - time.monotonic())))


def _callback_base() -> type:
    try:
        from verl.trainer.ppo.checkpoint_callback import CheckpointCallback
    except ImportError:  # verl < 0.9.1 has no hook; the class still imports for tests and docs
        return object
    return CheckpointCallback


class StepScheduleOnSave(_callback_base()):
    """verl's `trainer.checkpoint_callback_class`: step the schedule at each epoch-end save."""

    def __init__(self, config: Any = None) -> None:
        self.config = config
        section = _section(config, "gaincurate")
        run_dir = config_value(section, "run_dir")
        if not run_dir:
            raise ConfigError(
                "StepScheduleOnSave needs +gaincurate.run_dir=RUN (a run from `gaincurate schedule init`)"
            )
        self.run_dir = Path(str(run_dir))
        reward_kwargs = _section(_section(_section(config, "reward"), "custom_reward_function"), "reward_kwargs")
        feedback = config_value(section, "feedback_file") or config_value(reward_kwargs, "feedback_file")
        feedback = feedback or os.environ.get(FEEDBACK_ENV)
        if not feedback:
            raise ConfigError(
                "StepScheduleOnSave needs +gaincurate.feedback_file=FILE (the file the reward writes feedback to)"
            )
        self.feedback_file = Path(str(feedback))
        timeout = config_value(section, "tracker_timeout")  # 0 is a setting: do not wait for an async save at all
        self.tracker_timeout = float(DEFAULT_TRACKER_TIMEOUT if timeout is None else timeout)

    def on_save(self, trainer: Any, global_step: int, checkpoint_dir: str, async_save: bool = False, **kwargs: Any):
        steps_per_epoch = _steps_per_epoch(trainer)
        if steps_per_epoch and global_step % steps_per_epoch:
            return  # a save inside the epoch: the schedule steps at the epoch's end only
        from gaincurate.schedule.run.run import Run

        # Only a step that measures prompts with the newest model loads the checkpoint: else no need to wait for it.
        run = Run.open(self.run_dir)  # read once: what its strategy asks here, its step below
        checkpoint = Path(checkpoint_dir) if run.reads_newest_model else None
        if (
            checkpoint is not None
            and async_save
            and not wait_for_tracker(checkpoint, global_step, self.tracker_timeout)
        ):
            logger.warning(
                "gaincurate: verl's asynchronous save of %s wrote no %s within %g s; stepping the schedule "
                "without it (the angle comes from the stored scores). Save the epoch-end checkpoint "
                "synchronously, or raise +gaincurate.tracker_timeout",
                checkpoint_dir,
                VERL_TRACKER,
                self.tracker_timeout,
            )
            checkpoint = None
        self.step(checkpoint, run)

    def step(self, checkpoint: Path | None, run: Any = None) -> Any:
        """`gaincurate schedule step --run RUN --feedback FILE [--checkpoint CHECKPOINT]`, in process: the run's
        `step` (`run`: the `gaincurate.schedule.run.run.Run` of RUN, already open)."""
        from gaincurate.schedule.run.run import Run

        if checkpoint is not None:
            refuse_megatron(checkpoint)
        run = run if run is not None else Run.open(self.run_dir)
        result = run.step(feedback=self.feedback_file, checkpoint=checkpoint)
        for notice in result.notices:
            logger.warning("gaincurate: %s", notice)
        logger.info("gaincurate: epoch %d written to %s", result.epoch, result.path)
        return result


def _steps_per_epoch(trainer: Any) -> int | None:
    """Training steps per epoch: verl's own count where it keeps one (its v1 trainer: prompts over the training
    batch), since the dataloader's batches are `gen_batch_size`, a single prompt in the asynchronous modes."""
    steps = getattr(trainer, "steps_per_epoch", None)
    if isinstance(steps, int) and steps > 0:
        return steps
    try:
        return len(trainer.train_dataloader)
    except (AttributeError, TypeError):
        return None


def _section(config: Any, key: str) -> Any:
    value = config_value(config, key)
    return value if value is not None else {}
