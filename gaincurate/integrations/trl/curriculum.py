"""GAIN-RL curricula for TRL's GRPOTrainer: in process (a trainer class plus a callback), or one epoch per process.

In process, the trainer class takes the curriculum, and every epoch trains on the scheduler's subset:

    curriculum = GainCurriculum(scores_dir="scores/", config=ScheduleConfig(subset_size=64), run_dir="run/")
    trainer = CurriculumGRPOTrainer(model=..., args=GRPOConfig(..., save_strategy="epoch"),
                                    reward_funcs=[accuracy_reward, format_reward], curriculum=curriculum)
    trainer.train()

How it works (trl 1.x, transformers 5.x):

* `CurriculumGRPOTrainer` (`CurriculumMixin` in your own subclass; `trainer.py`) overrides
  `_get_train_sampler`. Its sampler keeps TRL's RepeatSampler structure (each prompt `num_generations` times in
  a row, grouped into generation batches, each batch repeated `num_iterations * steps_per_generation` times)
  over the epoch's subset instead of a random permutation of the whole set. The subset has the same size every
  epoch, so the epoch length is fixed. `curriculum.attach(trainer)` gives a trainer built elsewhere that class.
* The wrapped reward function records each rollout's reward with its `gc_id` (TRL passes every dataset
  column to reward functions). Evaluation rollouts are not recorded.
* The callback (`GainCurriculumCallback`, `trainer.py`) owns the epoch events. At `on_epoch_end` it re-scores
  the prompts the config asks for with the live model (when `rescore` is not "none"), feeds accuracy and angle
  to the scheduler and draws the next epoch. That is before the Trainer writes the epoch's checkpoint, so
  `trainer_state.json` carries the stepped curriculum (the callback is an `ExportableState`) and
  `resume_from_checkpoint` continues it exactly. The live model at `on_epoch_end` holds the same weights the
  checkpoint saves.

`GainCurriculum` itself is the front end a script holds over the run (`run`, a `gaincurate.schedule.run.run.Run`:
the schedule, the run directory, the epoch's rows and the reward recorder), and the trainer it is attached to.

Out of process, one epoch per command: `epoch_dataset`, `resume_checkpoint` and `record_rewards` (from
`epoch.py` and `rewards.py`); `gaincurate example trl-epoch` is a complete script. Importing this module
imports trl; the package (`__init__`) filtered torchao's and pytree's import noise before it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

import torch
from trl import GRPOTrainer

from gaincurate.errors import ConfigError
from gaincurate.integrations.trl.rewards import record_rewards
from gaincurate.integrations.trl.sampler import TRAIN_DATASET, CurriculumSampler, dataset_gc_ids
from gaincurate.integrations.trl.trainer import (
    NOT_ATTACHED,
    CurriculumMixin,
    GainCurriculumCallback,
    bind,
    with_curriculum,
)
from gaincurate.schedule.config import ScheduleConfig
from gaincurate.schedule.run.run import Run
from gaincurate.schedule.strategies.contract import Strategy

__all__ = ["GainCurriculum"]  # the package (`gaincurate.integrations.trl`) lists every public name

logger = logging.getLogger(__name__)


class GainCurriculum:
    """A GAIN-RL (or uniform, length, ...) curriculum driving one GRPOTrainer in process (`CurriculumGRPOTrainer`).

    `scores_dir` is a `gaincurate score` output; `config` the schedule (`ScheduleConfig`); `run_dir`, optional,
    keeps the schedule on disk in the layout of `gaincurate schedule` (history.jsonl, epoch files, feedback),
    and an existing one is continued. `shuffle=True` shuffles each epoch's subset (seeded by the schedule's
    seed and the epoch) instead of training it in rank order. `args`, the trainer's `GRPOConfig`, rounds a
    default (or percentage) subset size to whole generation batches (`subset_multiple`) and logs what it chose.
    `policy_measure`, for a strategy that needs the policy being trained (`about.needs`) only, replaces what it
    would make of the attached trainer's live model (`About.measure`) with your own measurement.
    """

    def __init__(
        self,
        scores_dir: str | Path | None = None,
        config: ScheduleConfig | None = None,
        *,
        run_dir: str | Path | None = None,
        shuffle: bool = False,
        args: Any = None,
        policy_measure: Any = None,
    ) -> None:
        if args is not None and (config is not None or run_dir is None or not Path(run_dir, "state.json").is_file()):
            config = _whole_batches(config or ScheduleConfig(), args)
        # Only the main process writes the run directory; the others follow its state. A new run directory (or
        # an untrained one started again with another config) is written only once a trainer's set-up was
        # accepted (`bind`): until then the curriculum lives in memory.
        self.run = Run(scores_dir, config, run_dir=run_dir, write=_is_main_process(), start_later=True)
        if args is not None:
            logger.info("gaincurate: %s", self.run.subset_choice())
        if policy_measure is not None and not self.run.needs_policy:
            raise ConfigError(
                f"policy_measure= replaces the policy measurement of a strategy that needs one; this curriculum's "
                f"strategy {self.run.config.strategy!r} measures none: drop policy_measure="
            )
        self.shuffle = shuffle
        self.policy_measure = policy_measure
        self.trainer: GRPOTrainer | None = None  # the trainer it trains, once attached (`bind`)
        self.callback = GainCurriculumCallback(curriculum=self)

    @property
    def config(self) -> ScheduleConfig:
        return self.run.config

    @property
    def history(self) -> list[dict[str, Any]]:
        """One record per epoch this curriculum finished: subset, accuracy, ang, delta, mu, ..."""
        return self.run.history

    @property
    def strategy(self) -> Strategy:
        """The strategy drawing the epochs; its `about.columns` and `about.update_words` say what its history
        numbers mean."""
        return self.run.scheduler.strategy

    def use_strategy(self, strategy: Strategy) -> None:
        """Draw the epochs with `strategy` (an object with the scheduler's strategy hooks: `rank`, `select`, ...)
        instead of the one `config.strategy` names; epoch 0 is drawn again by it. Only before training, and
        without `run_dir` (state.json names the config's strategy). The bench's `oracle` arm plugs in this way."""
        if self.trainer is not None or self.run.run_dir is not None:
            raise ConfigError(
                "use_strategy() replaces the strategy before anything is trained or written: call it before "
                "building the trainer, on a GainCurriculum without run_dir="
            )
        self.run.use_strategy(strategy)

    def train_dataset(self):
        """Every scored prompt as a `datasets.Dataset` for TRL, in gc_id order.

        Columns: `prompt` (your own TRL `prompt` column as it is; for a raw question column, the chat messages
        scoring built from it, or the plain text it scored without a chat template: `gaincurate.prompts.
        training_prompt`), the input columns, and `gc_id`.
        """
        import datasets

        return datasets.Dataset(self.run.prompt_table("trl").replace_schema_metadata(None))

    def wrap_rewards(self, reward_funcs: Any, *, feedback: int = 0) -> list[Any]:
        """The reward functions, with `reward_funcs[feedback]` also recording each rollout as feedback.

        The recorded function must say whether an answer is right: 0 for wrong, `config.reward_max` for right
        (values in between count proportionally). The others are returned unchanged.
        """
        funcs = list(reward_funcs) if isinstance(reward_funcs, list | tuple) else [reward_funcs]
        if not -len(funcs) <= feedback < len(funcs):
            raise ConfigError(f"feedback={feedback} is not an index into the {len(funcs)} reward function(s)")
        if isinstance(funcs[feedback], torch.nn.Module | str):
            raise ConfigError(
                "the feedback reward must be a Python function (a reward model cannot be recorded); "
                "pass feedback=INDEX of your correctness function"
            )
        sink = self.run.recorder()  # the run's own `record`: in process, no feedback file
        funcs[feedback] = record_rewards(funcs[feedback], sink=sink, when=self._recording, check=self._check_call)
        return funcs

    def records_feedback(self, reward_funcs: Any) -> bool:
        """Whether one of `reward_funcs` records its rewards for this curriculum (`wrap_rewards`)."""
        funcs = reward_funcs if isinstance(reward_funcs, list | tuple) else [reward_funcs]
        return any(getattr(f, "sink", None) == self.run.recorder() for f in funcs)

    def attach(self, trainer: GRPOTrainer) -> GRPOTrainer:
        """Make a GRPOTrainer built elsewhere train on this curriculum; returns it (a thin convenience).

        The trainer becomes what `CurriculumGRPOTrainer(..., curriculum=self)` builds: its class gains
        `CurriculumMixin` (`Curriculum<ItsClass>`). Unlike the class, `attach` fills in nothing: the trainer must
        already have `train_dataset=curriculum.train_dataset()`, `reward_funcs=curriculum.wrap_rewards([...])`
        and `callbacks=[curriculum.callback]`. Every check runs before anything changes.
        """
        if isinstance(trainer, CurriculumMixin):
            if trainer.curriculum is not self:
                raise ConfigError("this trainer already trains on another curriculum; build a new trainer")
            return trainer
        if not isinstance(trainer, GRPOTrainer):
            raise ConfigError(f"attach() takes a trl GRPOTrainer, not a {type(trainer).__name__}")
        bind(self, trainer)
        trainer.__class__ = with_curriculum(type(trainer))
        trainer.curriculum = self
        return trainer

    def sampler(self, dataset: Any) -> CurriculumSampler:
        """The epoch sampler over `dataset` (its gc_id column), shaped like the attached trainer's RepeatSampler."""
        trainer = self.trainer
        if trainer is None:
            raise ConfigError(NOT_ATTACHED)
        args = trainer.args
        return CurriculumSampler(
            self,
            self.run.row_map(dataset_gc_ids(dataset), fix=TRAIN_DATASET),
            mini_repeat_count=trainer.num_generations,
            batch_size=args.generation_batch_size // trainer.num_generations,
            repeat_count=trainer.num_iterations * args.steps_per_generation,
        )

    # -- what the reward wrapper calls ----------------------------------------------------------------

    def _recording(self) -> bool:
        """Rollouts count as feedback only while training (TRL also scores evaluation rollouts)."""
        trainer = self.trainer
        return trainer is None or bool(trainer.model.training)

    def _check_call(self, columns: dict[str, Any]) -> None:
        """A trainer calls the recorded reward (it passes `trainer_state`): it must be the attached one."""
        if self.trainer is None and columns.get("trainer_state") is not None:
            raise ConfigError(NOT_ATTACHED)


# -- helpers ----------------------------------------------------------------------------------------------


def _whole_batches(config: ScheduleConfig, args: Any) -> ScheduleConfig:
    """`config` with subset_multiple set to the prompts per generation batch of the trainer's `args`."""
    prompts_per_batch = max(1, args.generation_batch_size // args.num_generations)
    if config.subset_multiple != 1 or prompts_per_batch == 1:
        return config
    return dataclasses.replace(config, subset_multiple=prompts_per_batch)


def _is_main_process() -> bool:
    """Rank 0 of a launched job (torchrun/accelerate set RANK), or the only process."""
    return int(os.environ.get("RANK", "0")) == 0
