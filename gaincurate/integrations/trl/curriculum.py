"""GAIN-RL curricula for TRL's GRPOTrainer: in process (a trainer class plus a callback), or one epoch per process.

In process, the trainer class takes the curriculum, and every epoch trains on the scheduler's subset:

    curriculum = GainCurriculum(scores_dir="scores/", config=ScheduleConfig(subset_size=64), run_dir="run/")
    trainer = CurriculumGRPOTrainer(model=..., args=GRPOConfig(..., save_strategy="epoch"),
                                    reward_funcs=[accuracy_reward, format_reward], curriculum=curriculum)
    trainer.train()

How it works (trl 1.x, transformers 5.x):

* `CurriculumGRPOTrainer` (`CurriculumMixin` in your own subclass; `trl_trainer.py`) overrides
  `_get_train_sampler`. Its sampler keeps TRL's RepeatSampler structure (each prompt `num_generations` times in
  a row, grouped into generation batches, each batch repeated `num_iterations * steps_per_generation` times)
  over the epoch's subset instead of a random permutation of the whole set. The subset has the same size every
  epoch, so the epoch length is fixed. `curriculum.attach(trainer)` gives a trainer built elsewhere that class.
* The wrapped reward function records each rollout's reward with its `gc_id` (TRL passes every dataset
  column to reward functions). Evaluation rollouts are not recorded.
* At `on_epoch_end` the callback re-scores the prompts the config asks for with the live model (when
  `rescore` is not "none"), feeds accuracy and angle to the scheduler and draws the next epoch. That is
  before the Trainer writes the epoch's checkpoint, so `trainer_state.json` carries the stepped curriculum
  (the callback is an `ExportableState`) and `resume_from_checkpoint` continues it exactly. The live model
  at `on_epoch_end` holds the same weights the checkpoint saves.

Out of process, one epoch per command: `epoch_dataset`, `resume_checkpoint` and `record_rewards` (from
`trl_epoch.py` and `rewards.py`); `gaincurate example trl-epoch` is a complete script. Importing this module
imports trl, after filtering torchao's and pytree's import noise (`quiet_dependency_noise`).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from gaincurate.errors import ConfigError
from gaincurate.integrations.trl.epoch import epoch_dataset, resume_checkpoint
from gaincurate.integrations.trl.rewards import RecordingReward, record_rewards
from gaincurate.integrations.trl.sampler import CurriculumSampler, rows_by_gc_id
from gaincurate.model import quiet_dependency_noise
from gaincurate.schedule.config import ScheduleConfig
from gaincurate.schedule.figures import logged_figures
from gaincurate.schedule.readout import logged as logged_readout
from gaincurate.schedule.run.curriculum import CurriculumDriver

quiet_dependency_noise()  # before trl (imported next, and by the user's script) pulls torchao in

from gaincurate.integrations.trl.trainer import (  # noqa: E402
    NOT_ATTACHED,
    CurriculumGRPOTrainer,
    CurriculumMixin,
    GainCurriculumCallback,
    check_setup,
)

__all__ = [
    "CurriculumGRPOTrainer",
    "CurriculumMixin",
    "CurriculumSampler",
    "GainCurriculum",
    "GainCurriculumCallback",
    "RecordingReward",
    "epoch_dataset",
    "record_rewards",
    "resume_checkpoint",
]

logger = logging.getLogger(__name__)


class GainCurriculum:
    """A GAIN-RL (or uniform, length, ...) curriculum driving one GRPOTrainer in process (`CurriculumGRPOTrainer`).

    `scores_dir` is a `gaincurate score` output; `config` the schedule (`ScheduleConfig`); `run_dir`, optional,
    keeps the schedule on disk in the layout of `gaincurate schedule` (history.jsonl, epoch files, feedback),
    and an existing one is continued. `shuffle=True` shuffles each epoch's subset (seeded by the schedule's
    seed and the epoch) instead of training it in rank order. `args`, the trainer's `GRPOConfig`, rounds a
    default (or percentage) subset size to whole generation batches (`subset_multiple`) and logs what it chose.
    `screener`, for `strategy="screen"` or `"pilot"` only, replaces the default measurement (the attached trainer's
    live model, sampled and checked as `gaincurate rollout` does) with your own
    `gaincurate.schedule.strategies.screen.Screener`.
    """

    def __init__(
        self,
        scores_dir: str | Path | None = None,
        config: ScheduleConfig | None = None,
        *,
        run_dir: str | Path | None = None,
        shuffle: bool = False,
        args: Any = None,
        screener: Any = None,
    ) -> None:
        if args is not None and (config is not None or run_dir is None or not Path(run_dir, "state.json").is_file()):
            config = _whole_batches(config or ScheduleConfig(), args)
        # A new run directory (or an untrained one started again with another config) is written only once a
        # trainer's set-up was accepted (`check_setup`): until then the curriculum lives in memory.
        self._pending_run_dir = _pending(run_dir, config) if _is_main_process() else None
        if self._pending_run_dir is not None:
            scores_dir = scores_dir if scores_dir is not None else _scores_of(self._pending_run_dir)
            run_dir = None
        # Only the main process writes the run directory; the others follow its state.
        self.driver = CurriculumDriver(scores_dir, config, run_dir=run_dir, write=_is_main_process())
        if args is not None:
            from gaincurate.schedule.sizes import subset_choice

            driver = self.driver
            chosen = subset_choice(
                driver.config.subset_size, driver.scheduler.n_prompts, driver.config.subset_multiple, driver.subset_size
            )
            logger.info("gaincurate: %s", chosen)
        if screener is not None and not self.driver.screens:
            raise ConfigError(
                f"screener= measures candidates for strategy='screen' or 'pilot'; this curriculum's strategy is "
                f"{self.driver.config.strategy!r}: drop screener= or use ScheduleConfig(strategy='screen')"
            )
        self.shuffle = shuffle
        self.screener = screener
        self.trainer: Any = None
        self.callback = GainCurriculumCallback(curriculum=self)

    @property
    def config(self) -> ScheduleConfig:
        return self.driver.config

    @property
    def history(self) -> list[dict[str, Any]]:
        """One record per epoch this curriculum finished: subset, accuracy, ang, delta, mu, ..."""
        return self.driver.history

    @property
    def strategy(self) -> Any:
        """The strategy drawing the epochs; its `columns` and `update_words` say what its history numbers mean."""
        return self.driver.scheduler.strategy

    @property
    def screen_spent(self):
        """What screening has cost so far (`Spent`: rollouts, tokens, seconds), a snapshot; zeros unless screen."""
        return self.driver.screen_spent

    def use_strategy(self, strategy: Any) -> None:
        """Draw the epochs with `strategy` (an object with the scheduler's strategy hooks: `rank`, `select`, ...)
        instead of the one `config.strategy` names; epoch 0 is drawn again by it. Only before training, and
        without `run_dir` (state.json names the config's strategy). The bench's `oracle` arm plugs in this way."""
        if self.trainer is not None or self.driver.run_dir is not None or self._pending_run_dir is not None:
            raise ConfigError(
                "use_strategy() replaces the strategy before anything is trained or written: call it before "
                "building the trainer, on a GainCurriculum without run_dir="
            )
        self.driver.use_strategy(strategy)

    def train_dataset(self):
        """Every scored prompt as a `datasets.Dataset` for TRL, in gc_id order.

        Columns: `prompt` (your own TRL `prompt` column as it is; for a raw question column, the chat messages
        scoring built from it: `gaincurate.prompts.training_prompt`), the input columns, and `gc_id`.
        """
        import datasets

        from gaincurate.schedule.run.epochs import epoch_table

        scores = self.driver.scores
        table = epoch_table(scores, scores.prompts.gc_ids, data_format="trl", metadata={})
        return datasets.Dataset(table.replace_schema_metadata(None))

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
        funcs[feedback] = record_rewards(
            funcs[feedback], sink=self._record, when=self._recording, check=self._check_call
        )
        return funcs

    def attach(self, trainer: Any) -> Any:
        """Make a GRPOTrainer built elsewhere train on this curriculum; returns it (a thin convenience).

        The trainer becomes what `CurriculumGRPOTrainer(..., curriculum=self)` builds: its class gains
        `CurriculumMixin` (`Curriculum<ItsClass>`). Unlike the class, `attach` fills in nothing: the trainer must
        already have `train_dataset=curriculum.train_dataset()`, `reward_funcs=curriculum.wrap_rewards([...])`
        and `callbacks=[curriculum.callback]`. Every check runs before anything changes.
        """
        from trl import GRPOTrainer

        from gaincurate.integrations.trl.trainer import with_curriculum

        if isinstance(trainer, CurriculumMixin):
            if trainer.curriculum is not self:
                raise ConfigError("this trainer already trains on another curriculum; build a new trainer")
            return trainer
        if not isinstance(trainer, GRPOTrainer):
            raise ConfigError(f"attach() takes a trl GRPOTrainer, not a {type(trainer).__name__}")
        self._bind_trainer(trainer)
        trainer.__class__ = with_curriculum(type(trainer))
        trainer.curriculum = self
        return trainer

    def _records_feedback(self, reward_funcs: Any) -> bool:
        """Whether one of `reward_funcs` records its rewards for this curriculum (`wrap_rewards`)."""
        funcs = reward_funcs if isinstance(reward_funcs, list | tuple) else [reward_funcs]
        return any(getattr(f, "sink", None) == self._record for f in funcs)

    def _bind_trainer(self, trainer: Any) -> None:
        """Check the trainer's set-up (`check_setup`), then make this curriculum its own; nothing is written
        before every check passed (`CurriculumMixin` calls this once the trainer is built, `attach` first)."""
        check_setup(self, trainer)
        # Every check passed: only now is a new run directory written.
        if self._pending_run_dir is not None:
            driver = self.driver
            self.driver = CurriculumDriver(driver.scores_dir, driver.config, run_dir=self._pending_run_dir)
            self._pending_run_dir = None
        if not any(isinstance(c, GainCurriculumCallback) for c in trainer.callback_handler.callbacks):
            trainer.add_callback(self.callback)
        self.trainer = trainer
        if self.driver.screens:
            from gaincurate.integrations.trl.reuse import keeping_pilots, pilot_sampling, reuse_pilots
            from gaincurate.schedule.run.screeners import live_screener

            tokenizer = getattr(trainer.processing_class, "tokenizer", trainer.processing_class)
            store = reuse_pilots(trainer, self.strategy)  # None: the pilot's completions are not reused
            # When they are, the live pilot samples as the trainer does and keeps what it sampled.
            keep = {} if store is None else {"keep": pilot_sampling(trainer)}
            screener = self.screener or live_screener(
                self.driver.scores_dir, trainer.model, tokenizer, seed=self.driver.config.seed, **keep
            )
            self.driver.use_screener(screener if store is None else keeping_pilots(screener, store, trainer))

    def sampler(self, dataset: Any) -> CurriculumSampler:
        """The epoch sampler over `dataset` (its gc_id column), shaped like the attached trainer's RepeatSampler."""
        trainer = self.trainer
        if trainer is None:
            raise ConfigError(NOT_ATTACHED)
        args = trainer.args
        return CurriculumSampler(
            self,
            rows_by_gc_id(dataset, self.driver.scores.prompts.gc_ids),
            mini_repeat_count=trainer.num_generations,
            batch_size=args.generation_batch_size // trainer.num_generations,
            repeat_count=trainer.num_iterations * args.steps_per_generation,
        )

    # -- what the callback and the reward wrapper call ------------------------------------------------

    def _recording(self) -> bool:
        """Rollouts count as feedback only while training (TRL also scores evaluation rollouts)."""
        trainer = self.trainer
        return trainer is None or bool(trainer.model.training)

    def _check_call(self, columns: dict[str, Any]) -> None:
        """A trainer calls the recorded reward (it passes `trainer_state`): it must be the attached one."""
        if self.trainer is None and columns.get("trainer_state") is not None:
            raise ConfigError(NOT_ATTACHED)

    def _record(self, gc_ids: Sequence[Any], rewards: Sequence[Any]) -> None:
        self.driver.record(gc_ids, rewards)

    def _end_epoch(self) -> dict[str, Any] | None:
        """Step the scheduler with the epoch's rollouts (from every process) and the live model's scores."""
        trainer = self.trainer
        if trainer is None:
            raise ConfigError(NOT_ATTACHED)
        accelerator = trainer.accelerator
        multi = accelerator.num_processes > 1
        if multi:
            from accelerate.utils import broadcast_object_list, gather_object

            self.driver.replace_records(gather_object(self.driver.state_dict()["records"]))
        record = None
        if not multi or accelerator.is_main_process:
            tokenizer = getattr(trainer.processing_class, "tokenizer", trainer.processing_class)
            record = self.driver.step(rescored=self.driver.rescore(model=trainer.model, tokenizer=tokenizer))
        if multi:
            shared = broadcast_object_list([self.driver.state_dict() if accelerator.is_main_process else None])
            if not accelerator.is_main_process:
                self.driver.load_state_dict(shared[0])
        if record is not None:
            logged = {"curriculum/accuracy": record["accuracy"]}
            # The numbers the strategy declares for its log (gain: ang, delta, mu), under the names it gives them.
            logged |= logged_figures(self.strategy.columns, record)
            # The savings readout and the strategy's own figures, as every path names them (docs/readout.md).
            logged |= logged_readout(record.get("readout") or {})
            logged |= logged_readout(record.get("selection") or {}, "curriculum/draw/")
            trainer.log(logged)
        return record

    def _first_epoch(self) -> None:
        """Draw epoch 0 where it waits for the policy (screen): on the main process, then shared with the others."""
        accelerator = getattr(self.trainer, "accelerator", None)
        if accelerator is None or accelerator.num_processes == 1:
            self.driver.plan  # noqa: B018 - draws it
            return
        from accelerate.utils import broadcast_object_list

        if accelerator.is_main_process:
            self.driver.plan  # noqa: B018 - draws it
        shared = broadcast_object_list([self.driver.state_dict() if accelerator.is_main_process else None])
        if not accelerator.is_main_process:
            self.driver.load_state_dict(shared[0])

    def _begin_training(self, state: Any) -> None:
        """Restore the curriculum a resumed trainer's checkpoint carries, and finish an epoch it left open."""
        if state.global_step > 0:
            stored = (state.stateful_callbacks or {}).get(GainCurriculumCallback.__name__)
            if isinstance(stored, list):
                stored = stored[0]
            saved = (stored or {}).get("attributes", {}).get(GainCurriculumCallback.STATE_KEY)
            if saved is None:
                logger.warning("the checkpoint carries no gaincurate curriculum; continuing from %s", self._where())
            else:
                self.driver.load_state_dict(saved)
                accelerator = getattr(self.trainer, "accelerator", None)
                if accelerator is not None and not accelerator.is_main_process:
                    # The checkpoint holds the main process's rollouts only; at the epoch's end every process's
                    # are gathered, so the others must not bring a second copy of them.
                    self.driver.replace_records([])
        if self.driver.epoch < 0:
            self._first_epoch()
        # A checkpoint written at an epoch's last step, before on_epoch_end, holds the finished epoch unstepped.
        trainer_epoch = math.floor((state.epoch or 0.0) + 1e-6)
        if self.driver.epoch == trainer_epoch - 1 and self.driver.records:
            self._end_epoch()

    def _where(self) -> str:
        run_dir = self.driver.run_dir
        return f"{run_dir} (epoch {self.driver.epoch})" if run_dir else f"epoch {self.driver.epoch}"


# -- helpers ----------------------------------------------------------------------------------------------


def _pending(run_dir: str | Path | None, config: ScheduleConfig | None) -> Path | None:
    """The run directory `attach` creates: a new one, or an untrained one given another config (else None)."""
    from gaincurate.schedule.run import rundir

    if run_dir is None:
        return None
    if not rundir.holds_run(run_dir):
        return Path(run_dir)
    if config is not None and rundir.untrained(run_dir) and rundir.load_run(run_dir).config != config:
        return Path(run_dir)
    return None


def _scores_of(run_dir: Path) -> str | None:
    """The scores directory an untrained run directory was started on (None: a new one)."""
    from gaincurate.schedule.run import rundir

    return rundir.load_run(run_dir).scores_dir if rundir.holds_run(run_dir) else None


def _whole_batches(config: ScheduleConfig, args: Any) -> ScheduleConfig:
    """`config` with subset_multiple set to the prompts per generation batch of the trainer's `args`."""
    import dataclasses

    prompts_per_batch = max(1, args.generation_batch_size // args.num_generations)
    if config.subset_multiple != 1 or prompts_per_batch == 1:
        return config
    return dataclasses.replace(config, subset_multiple=prompts_per_batch)


def _is_main_process() -> bool:
    """Rank 0 of a launched job (torchrun/accelerate set RANK), or the only process."""
    return int(os.environ.get("RANK", "0")) == 0
