"""The one way a curriculum hooks TRL's GRPOTrainer: `CurriculumGRPOTrainer`, or `CurriculumMixin` in your subclass.

    curriculum = GainCurriculum(scores_dir="scores/", config=ScheduleConfig(subset_size=64), run_dir="run/")
    trainer = CurriculumGRPOTrainer(
        model=model, args=GRPOConfig(..., save_strategy="epoch"),
        reward_funcs=[accuracy_reward, format_reward],  # reward_funcs[0] says whether an answer is right
        curriculum=curriculum,
    )
    trainer.train()

What TRL calls (trl 1.16): `GRPOTrainer.get_train_dataloader` builds the training DataLoader once per `train()`
with `sampler_fn=self._get_train_sampler`, and the DataLoader iterates that sampler once per epoch. The mixin
overrides `_get_train_sampler` to return the curriculum's sampler (`CurriculumSampler`: TRL's RepeatSampler
structure over the epoch's subset), and `_load_callback_state` so that a curriculum callback the Trainer rebuilds
from a checkpoint (`restore_callback_states_from_checkpoint=True`) is bound to this trainer's curriculum again.
`bind` checks a trainer's set-up (`check_setup`) and makes the curriculum its own. `GainCurriculumCallback` owns
the epoch events, as TRL's own callbacks do: at `on_train_begin` it restores the curriculum a checkpoint carries
and draws epoch 0, at `on_epoch_end` it steps the curriculum's run (`Run`), and it carries the run's state in every
checkpoint. Everything else is the trainer's own. `GainCurriculum.attach(trainer)` gives an already-built trainer
this same class (its class gains the mixin), for scripts that build the trainer elsewhere.

Put the mixin first in the bases of your own subclass, e.g. with rollout replay:
`class MyTrainer(CurriculumMixin, ReplayMixin, GRPOTrainer)`.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from typing import Any

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState
from trl import GRPOTrainer

from gaincurate.errors import ConfigError
from gaincurate.integrations.trl.sampler import TRAIN_DATASET, check_same_prompts, dataset_gc_ids
from gaincurate.schedule.figures import logged_figures
from gaincurate.schedule.readout import logged as logged_readout

logger = logging.getLogger(__name__)

# GRPOTrainer's leading parameters, in its order: positional arguments are read under these names.
_POSITIONAL = ("model", "reward_funcs", "args", "train_dataset")

NOT_ATTACHED = (
    "the curriculum is not attached to this trainer, so it would train on every prompt; build the trainer as "
    "CurriculumGRPOTrainer(..., curriculum=curriculum), or call curriculum.attach(trainer) before trainer.train()"
)


class CurriculumMixin:
    """Trains a TRL `GRPOTrainer` subclass on a `GainCurriculum`'s epochs; put it first in the bases.

    Takes the trainer's own arguments plus `curriculum` and `feedback_reward` (default 0: the index in
    `reward_funcs` of the function whose reward says whether an answer is right; it is recorded as the
    curriculum's feedback unless you already passed `curriculum.wrap_rewards(...)`). `train_dataset` defaults
    to `curriculum.train_dataset()`, and `curriculum.callback` joins the callbacks. The set-up is checked
    (`check_setup`) before anything is written.
    """

    curriculum: Any

    def __init__(self, *args: Any, curriculum: Any, feedback_reward: int = 0, **kwargs: Any) -> None:
        if len(args) > len(_POSITIONAL):
            raise ConfigError(f"pass the trainer's arguments after {_POSITIONAL[-1]} by name")
        kwargs.update(zip(_POSITIONAL, args, strict=False))
        if kwargs.get("train_dataset") is None:
            kwargs["train_dataset"] = curriculum.train_dataset()
        funcs = kwargs.get("reward_funcs")
        if funcs is not None and not curriculum.records_feedback(funcs):
            kwargs["reward_funcs"] = curriculum.wrap_rewards(funcs, feedback=feedback_reward)
        callbacks = list(kwargs.get("callbacks") or [])
        if curriculum.callback not in callbacks:
            callbacks.append(curriculum.callback)
        kwargs["callbacks"] = callbacks
        super().__init__(**kwargs)
        bind(curriculum, self)
        self.curriculum = curriculum

    def _get_train_sampler(self, dataset: Any = None) -> Any:
        return self.curriculum.sampler(dataset if dataset is not None else self.train_dataset)

    def _load_callback_state(self) -> None:
        super()._load_callback_state()
        for callback in self.callback_handler.callbacks:
            if isinstance(callback, GainCurriculumCallback):
                callback.use_curriculum(self.curriculum)

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        # Every process saves, but only the main one writes trainer_state.json: it must hold the rollouts of all.
        _gather_records(self, self.curriculum.run)
        super()._save_checkpoint(model, trial)


class CurriculumGRPOTrainer(CurriculumMixin, GRPOTrainer):
    """TRL's `GRPOTrainer` training on a `GainCurriculum`; takes GRPOTrainer's arguments plus `curriculum`."""


@functools.cache
def with_curriculum(trainer_class: type) -> type:
    """`trainer_class` with `CurriculumMixin` first in its bases (CurriculumGRPOTrainer for GRPOTrainer itself)."""
    if trainer_class is GRPOTrainer:
        return CurriculumGRPOTrainer
    return type(f"Curriculum{trainer_class.__name__}", (CurriculumMixin, trainer_class), {})


def bind(curriculum: Any, trainer: Any) -> None:
    """Check the trainer's set-up (`check_setup`), then make `curriculum` its own; nothing is written before every
    check passed (`CurriculumMixin` calls this once the trainer is built, `GainCurriculum.attach` first)."""
    check_setup(curriculum, trainer)
    run = curriculum.run
    run.start_run_dir()  # every check passed: only now is a new run directory written
    if not any(isinstance(c, GainCurriculumCallback) for c in trainer.callback_handler.callbacks):
        trainer.add_callback(curriculum.callback)
    curriculum.trainer = trainer
    if run.needs_policy:  # the live model, as it stands at each draw
        run.hand_policy(model=trainer.model, tokenizer=tokenizer_of(trainer), trainer=trainer,
                        given=curriculum.policy_measure)  # fmt: skip


class GainCurriculumCallback(TrainerCallback, ExportableState):
    """Owns the curriculum's epoch events: draws epoch 0 when training begins (restoring the curriculum a resumed
    checkpoint carries), steps the curriculum's run at each epoch's end, and carries its state in every
    checkpoint's trainer_state.json.

    It refuses, at `on_train_begin`, a curriculum no trainer was given to; and it marks the run directory
    finished when `train()` returns (`gaincurate schedule status` says so), unfinished when training starts again.
    """

    STATE_KEY = "gaincurate_state"

    def __init__(self, curriculum: Any = None) -> None:
        self._curriculum = curriculum

    @property
    def curriculum(self) -> Any:
        if self._curriculum is None:
            raise ConfigError(NOT_ATTACHED)
        return self._curriculum

    def use_curriculum(self, curriculum: Any) -> None:
        """Bind a copy the Trainer rebuilt from a checkpoint (`restore_callback_states_from_checkpoint=True`)."""
        if self._curriculum is None:
            self._curriculum = curriculum

    def state(self) -> dict[str, Any]:
        return {"args": {}, "attributes": {self.STATE_KEY: self.curriculum.run.state_dict()}}

    def on_train_begin(self, args, state, control, **kwargs):
        """Restore the curriculum a resumed trainer's checkpoint carries, draw epoch 0 if it waits for the policy,
        and finish an epoch the checkpoint left open."""
        curriculum = self.curriculum
        trainer, run = curriculum.trainer, curriculum.run
        if trainer is None:  # before the first step: else TRL trains a whole epoch on every prompt
            raise ConfigError(NOT_ATTACHED)
        if state.global_step > 0:
            check_resume_step(trainer, run.subset_size, state.global_step)
            self._restore(state)
        if run.epoch < 0:
            _on_main_then_shared(trainer, run, lambda: run.plan)  # drawn with the live model, for one that needs it
        # A checkpoint written at an epoch's last step, before on_epoch_end, holds the finished epoch unstepped.
        # Every process loaded the same checkpoint, so all of them take this decision alike (the step gathers).
        trainer_epoch = math.floor((state.epoch or 0.0) + 1e-6)
        unstepped = run.epoch == trainer_epoch - 1 and bool(run.records)
        _keep_on_main(trainer, run)
        if unstepped:
            self._step()
        run.mark_finished(False)

    def on_epoch_end(self, args, state, control, **kwargs):
        # The Trainer also ends an epoch it cut short (max_steps, should_training_stop): that epoch stays open, its
        # rollouts so far in the checkpoint, so that a resume finishes it rather than stepping on half its feedback.
        run = self.curriculum.run
        if math.floor(state.epoch + 1e-6) > run.epoch:
            self._step()
        elif resume_offset(self.curriculum.trainer, run.subset_size, state.global_step):
            logger.warning("training stopped inside epoch %d, inside a generation batch: it stays open, and only a "
                           "checkpoint saved at a batch's start can resume it", run.epoch)  # fmt: skip
        else:
            logger.warning("training stopped inside epoch %d; it stays open: resuming from the last checkpoint "
                           "finishes it", run.epoch)  # fmt: skip

    def on_train_end(self, args, state, control, **kwargs):
        self.curriculum.run.mark_finished(True)

    def _restore(self, state: Any) -> None:
        """Load the curriculum state a resumed checkpoint's trainer_state.json carries (a warning when none)."""
        run = self.curriculum.run
        stored = (state.stateful_callbacks or {}).get(type(self).__name__)
        if isinstance(stored, list):
            stored = stored[0]
        saved = (stored or {}).get("attributes", {}).get(self.STATE_KEY)
        if saved is None:
            where = f"epoch {run.epoch}" if run.run_dir is None else f"{run.run_dir} (epoch {run.epoch})"
            logger.warning("the checkpoint carries no gaincurate curriculum; continuing from %s", where)
            return
        run.load_state_dict(saved)

    def _step(self) -> dict[str, Any] | None:
        """Step the run with the epoch's rollouts (from every process) and the live model's scores; log it."""
        curriculum = self.curriculum
        trainer, run = curriculum.trainer, curriculum.run
        if trainer is None:
            raise ConfigError(NOT_ATTACHED)
        _gather_records(trainer, run)

        def step() -> dict[str, Any] | None:
            return run.step(rescored=run.rescore(model=trainer.model, tokenizer=tokenizer_of(trainer))).record

        record = _on_main_then_shared(trainer, run, step)
        if record is not None:
            logged = {"curriculum/accuracy": record["accuracy"]}
            # The numbers the strategy declares for its log (gain: ang, delta, mu), under the names it gives them.
            logged |= logged_figures(run.scheduler.strategy.about.columns, record)
            # The savings readout and the strategy's own figures, as every path names them (docs/readout.md).
            logged |= logged_readout(record.get("readout") or {})
            logged |= logged_readout(record.get("selection") or {}, "curriculum/draw/")
            trainer.log(logged)
        return record


def _gather_records(trainer: Any, run: Any) -> None:
    """Move the epoch's rollouts of every process to the main process; the others keep none.

    Every process calls it at once (a collective). The main process alone writes checkpoints and steps the run, so
    it holds the epoch's rollouts so far, in process order per gather, and the others only those taken since.
    """
    accelerator = getattr(trainer, "accelerator", None)
    if accelerator is None or accelerator.num_processes == 1:
        return
    from accelerate.utils import gather_object

    gathered = gather_object([(line["gc_id"], line["reward"]) for line in run.records])
    run.replace_records(gathered if accelerator.is_main_process else [])


def _keep_on_main(trainer: Any, run: Any) -> None:
    """Drop the epoch's rollouts on every process but the main one (each loaded the checkpoint's, which the
    main process gathered from all before saving): the epoch's end gathers them, so none may count twice."""
    accelerator = getattr(trainer, "accelerator", None)
    if accelerator is not None and not accelerator.is_main_process:
        run.replace_records([])


def _on_main_then_shared(trainer: Any, run: Any, work: Callable[[], Any]) -> Any:
    """`work()` on the main process only, then the run's state it left shared with the other processes."""
    accelerator = getattr(trainer, "accelerator", None)
    if accelerator is None or accelerator.num_processes == 1:
        return work()
    from accelerate.utils import broadcast_object_list

    result = work() if accelerator.is_main_process else None
    shared = broadcast_object_list([run.state_dict() if accelerator.is_main_process else None])
    if not accelerator.is_main_process:
        run.load_state_dict(shared[0])
    return result


def tokenizer_of(trainer: Any) -> Any:
    return getattr(trainer.processing_class, "tokenizer", trainer.processing_class)


def check_setup(curriculum: Any, trainer: Any) -> None:
    """Refuse a trainer whose set-up would train the wrong prompts or record nothing, each in one line naming the fix.

    `remove_unused_columns=True` (drops gc_id), a train_dataset without gc_id, no reward function recording
    feedback, a subset that is not whole generation batches (TRL would drop the rest), training rows that are not
    the scored ones (`check_same_prompts`).
    """
    args = trainer.args
    if getattr(args, "remove_unused_columns", False):
        raise ConfigError(
            "GRPOConfig(remove_unused_columns=True) drops the gc_id column that feedback needs; set it to False"
        )
    dataset = trainer.train_dataset
    if dataset is None or not hasattr(dataset, "__getitem__") or "gc_id" not in (dataset.column_names or []):
        raise ConfigError(
            "the trainer's train_dataset has no gc_id column; pass train_dataset=curriculum.train_dataset()"
        )
    if not curriculum.records_feedback(trainer.reward_funcs):
        raise ConfigError(
            "no reward function records feedback for this curriculum; "
            "pass reward_funcs=curriculum.wrap_rewards([...]) to GRPOTrainer"
        )
    prompts_per_batch = args.generation_batch_size // trainer.num_generations
    subset = curriculum.run.subset_size
    if subset % prompts_per_batch:
        low = subset - subset % prompts_per_batch
        raise ConfigError(
            f"subset_size {subset} is not a multiple of the {prompts_per_batch} prompts per generation batch "
            f"(generation_batch_size / num_generations); TRL would drop {subset % prompts_per_batch} prompts "
            f"each epoch. Use subset_size={low or prompts_per_batch} or {low + prompts_per_batch}, or leave it out "
            f"and pass GainCurriculum(..., args=training_args) to round the default to whole batches"
        )
    every, per_epoch = _generation_cadence(trainer, subset)
    ga, save_steps = args.gradient_accumulation_steps, int(args.save_steps)
    # A fraction of the run is known at train() only: on resume, check_resume_step checks the checkpoint itself.
    # The save points' offsets into a generation batch repeat with each epoch's steps.
    saves = range(1, per_epoch + 1) if args.save_strategy == "steps" and args.save_steps >= 1 else ()
    if any(resume_offset(trainer, subset, k * save_steps) for k in saves):
        works = every // math.gcd(ga, every) if per_epoch * ga % every == 0 else per_epoch
        raise ConfigError(
            f"save_steps={save_steps} saves inside a generation batch: TRL generates every steps_per_generation x "
            f"num_iterations = {every} micro-steps, an optimizer step is gradient_accumulation_steps={ga} of them, "
            f"and a resume from there would record that batch's rewards twice and train other prompts. Use "
            f'save_steps={works} (or a multiple of it), or save_strategy="epoch"'
        )
    row_of = curriculum.run.row_map(dataset_gc_ids(dataset), fix=TRAIN_DATASET)
    check_same_prompts(dataset, curriculum.run.scores, row_of)


def _generation_cadence(trainer: Any, subset: int) -> tuple[int, int]:
    """TRL's micro-steps per generation batch (`steps_per_generation * num_iterations`) and the Trainer's optimizer
    steps per epoch (the last one may take fewer micro-steps), for an epoch of `subset` prompts."""
    args = trainer.args
    every = args.steps_per_generation * trainer.num_iterations
    micro_steps = subset // (args.generation_batch_size // trainer.num_generations) * every
    return every, -(-micro_steps // args.gradient_accumulation_steps)


def resume_offset(trainer: Any, subset: int, global_step: int) -> int:
    """How many micro-steps into a generation batch a trainer resumed at `global_step` starts (0: at its start).

    A resumed Trainer skips `(global_step % steps per epoch) * gradient_accumulation_steps` micro-batches of the
    epoch, while TRL counts micro-steps from 0 again and generates afresh at once: only at a generation batch's
    start are the two in phase (an epoch is whole generation batches, so each epoch starts one)."""
    every, per_epoch = _generation_cadence(trainer, subset)
    return global_step % per_epoch * trainer.args.gradient_accumulation_steps % every


def check_resume_step(trainer: Any, subset: int, global_step: int) -> None:
    """Refuse, before anything is restored, a checkpoint saved inside a generation batch (`resume_offset`)."""
    offset = resume_offset(trainer, subset, global_step)
    if offset:
        every, _ = _generation_cadence(trainer, subset)
        raise ConfigError(
            f"the checkpoint at step {global_step} was saved {offset} micro-steps into a generation batch of {every} "
            f"(steps_per_generation x num_iterations, gradient_accumulation_steps="
            f"{trainer.args.gradient_accumulation_steps}): TRL would generate that batch again, recording its rewards "
            "twice and training other prompts. Resume from a checkpoint saved at a generation batch's start (an "
            "epoch's end, or a save_steps the set-up accepts), or with the settings that wrote this one if others did"
        )
