"""verl 0.9 in one launch: the curriculum steps inside verl's own training loop, fed by its rewards.

    gaincurate schedule init --scores scores/ --run run/ --format verl --subset-size 512
    gaincurate verl export --scores scores/ --out all_prompts.parquet
    python -m verl.trainer.main_ppo data.train_files=all_prompts.parquet data.dataloader_num_workers=0 \\
        data.custom_cls.path=pkg://gaincurate.integrations.verl.one_launch data.custom_cls.name=GainCurriculumDataset \\
        trainer.v1.sampler.custom_sampler.path=pkg://gaincurate.integrations.verl.one_launch \\
        trainer.v1.sampler.custom_sampler.name=GainReplayBuffer \\
        +trainer.v1.sampler.sampler_kwargs.run_dir=run/ +trainer.v1.sampler.sampler_kwargs.checkpoint_dir=ckpt/ \\
        trainer.default_local_dir=ckpt/ trainer.total_epochs=10 trainer.save_freq=STEPS_PER_EPOCH ...

verl 0.9.1's v1 trainer (`trainer.use_v1=True`, its default; verl/trainer/ppo/v1/trainer_base.py) has no
sampler hook: `create_rl_sampler` builds a sequential or random sampler, nothing else. What it does load:

* **Prompts: the dataset class** (`data.custom_cls`). The trainer fetches every prompt from its dataloader
  (`_fetch_one_gen_batch`), re-iterating it when a pass ends; the replay buffer's `refill_fn` fetches from the
  same dataloader and cannot choose prompts. `GainCurriculumDataset` reads the full export, has `subset_size`
  rows, and maps row i to the current epoch's i-th prompt, so verl's steps per epoch (`len(dataset) //
  train_batch_size`) are the schedule's.
* **Rewards: the replay buffer** (`trainer.v1.sampler.custom_sampler`). Its `sample` returns each step's
  finished rollout groups; `GainReplayBuffer` reads their rewards (`rm_scores`) and gc_ids (`gc_id`) from
  verl's TransferQueue and records them in the curriculum, in process.
* **Stepping.** In sync mode one step fetches its prompts, samples, trains and saves, in that order, so when the
  dataset is asked for the next epoch's first row, every group of the epoch has been recorded and the epoch-end
  checkpoint is on disk. Then the schedule steps (`gaincurate.schedule.run.run.Run`, the run object every
  trainer path holds), re-scoring from the newest checkpoint in `checkpoint_dir` when due. This
  runs where verl's trainer runs (its TaskRunner, a Ray actor); the live actor's weights sit in other Ray
  workers, out of reach, so the newest checkpoint is the newest policy it can load.
* **Resume.** The dataset's `state_dict` rides in verl's `global_step_N/data.pt`: the schedule state, the rows of
  the epoch handed out and their rewards. The checkpoint wins over state.json, since its weights trained that
  curriculum: a resume continues the checkpoint's epoch at its row. One exception saves a second re-score: an
  epoch-end checkpoint whose epoch state.json has already stepped starts the drawn epoch.

Keys under `trainer.v1.sampler.sampler_kwargs` (add them with `+...=VALUE`; unknown keys are an error):
`run_dir` (required), `checkpoint_dir` (trainer.default_local_dir: re-scoring, and measuring the policy), `index_key`
(default "gc_id", the export's column) and `reward_key` (default "rm_scores"). Async trainer modes are refused:
they fetch the next epoch's prompts before the last groups of this one are scored. docs/verl.md has the recipe
and its checks.
"""

# No `from __future__ import annotations`: verl's file-path loader runs this module outside sys.modules, where
# @dataclass cannot resolve string annotations.
import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from gaincurate.config_file import check_keys
from gaincurate.errors import ConfigError
from gaincurate.integrations.verl.checkpoint import step_at_epoch_end
from gaincurate.integrations.verl.config import config_keys, config_value
from gaincurate.integrations.verl.sampler import open_run
from gaincurate.schedule.figures import Column, logged_figures
from gaincurate.schedule.readout import logged
from gaincurate.schedule.run.run import Run

__all__ = ["GainCurriculumDataset", "GainReplayBuffer", "OneLaunchSettings", "group_rewards"]

logger = logging.getLogger(__name__)

STATE_VERSION = 2  # 1: the first draft (2367206), which kept no schedule state in data.pt
SAMPLER_KWARGS = "trainer.v1.sampler.sampler_kwargs"
DATASET_HOOK = (
    "data.custom_cls.path=pkg://gaincurate.integrations.verl.one_launch data.custom_cls.name=GainCurriculumDataset"
)
BUFFER_HOOK = (
    "trainer.v1.sampler.custom_sampler.path=pkg://gaincurate.integrations.verl.one_launch "
    "trainer.v1.sampler.custom_sampler.name=GainReplayBuffer"
)
_BUFFERS: list[Any] = []  # replay buffers built in this process and not yet paired (see _claim_buffer)


def _replay_buffer_base() -> type:
    try:
        from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer
    except ImportError:  # no verl 0.9 (or no transfer_queue): the module still imports, for docs and tests
        return object
    return ReplayBuffer


def _dataset_base() -> type:
    try:
        from verl.utils.dataset.rl_dataset import RLHFDataset
    except ImportError:
        from torch.utils.data import Dataset

        return Dataset
    return RLHFDataset


@dataclass(frozen=True, kw_only=True)
class OneLaunchSettings:
    """The gaincurate keys of `trainer.v1.sampler.sampler_kwargs`."""

    run_dir: str
    checkpoint_dir: str | None = None
    index_key: str = "gc_id"
    reward_key: str = "rm_scores"

    @classmethod
    def from_sampler_kwargs(cls, kwargs: Any) -> Self:
        if config_value(kwargs, "run_dir") is None:
            raise ConfigError(
                f"GainReplayBuffer needs +{SAMPLER_KWARGS}.run_dir=RUN (a run from `gaincurate schedule init`)"
            )
        known = {field.name for field in dataclasses.fields(cls)}
        check_keys(SAMPLER_KWARGS, config_keys(kwargs), known)
        values = {key: config_value(kwargs, key) for key in known}
        return cls(**{key: str(value) for key, value in values.items() if value is not None})


def unreported_readout(
    history: list[dict[str, Any]], reported: int, columns: tuple[Column, ...] = ()
) -> tuple[dict[str, float], int]:
    """The savings readout of the newest epoch finished since `reported` epochs were logged, as verl metrics
    (`curriculum/...`, docs/readout.md), with the numbers the strategy's `columns` declare logged (gain: ang,
    delta, mu), as TRL's callback logs them; and how many epochs are reported after it."""
    if len(history) <= reported:
        return {}, reported
    line = history[-1]
    metrics = {"curriculum/accuracy": float(line["accuracy"]), **logged_figures(columns, line)}
    return metrics | logged(line.get("readout") or {}), len(history)


class GainReplayBuffer(_replay_buffer_base()):
    """verl 0.9.1's replay buffer, recording the rewards of every group it hands to training."""

    def __init__(self, trainer_mode: str, *args: Any, sampler_kwargs: Any = None, **kwargs: Any) -> None:
        self.settings = OneLaunchSettings.from_sampler_kwargs(sampler_kwargs)
        if trainer_mode != "sync":
            raise ConfigError(
                f"trainer.v1.trainer_mode={trainer_mode} fetches the next epoch's prompts before this epoch's last "
                "groups are scored, so the curriculum could not step on them; set trainer.v1.trainer_mode=sync"
            )
        super().__init__(trainer_mode, *args, sampler_kwargs=sampler_kwargs, **kwargs)
        self.run: Run | None = None  # set by GainCurriculumDataset
        self.reported = 0  # epochs of the curriculum's history whose readout verl's logger has had
        _buffers().append(self)

    def sample(self, global_steps: int, partition_id: str, batch_size: int) -> tuple[Any, dict]:
        batch, metrics = super().sample(global_steps=global_steps, partition_id=partition_id, batch_size=batch_size)
        if partition_id == "train":
            self.record(batch)
            # verl's trainer logs these metrics with the step's own: the readout of an epoch that just ended goes too.
            history = self.run.history if self.run is not None else []
            columns = self.run.scheduler.strategy.about.columns if self.run is not None else ()
            readout, self.reported = unreported_readout(history, self.reported, columns)
            metrics = {**metrics, **readout}
        return batch, metrics

    def record(self, batch: Any) -> int:
        """Record one reward per trajectory of `batch` (a KVBatchMeta) under its gc_id; returns how many."""
        if self.run is None:
            raise ConfigError(f"GainReplayBuffer records rewards for GainCurriculumDataset; set {DATASET_HOOK}")
        if not batch.keys:
            return 0
        import transfer_queue as tq

        fields = [self.settings.index_key, self.settings.reward_key]
        data = tq.kv_batch_get(keys=list(batch.keys), partition_id=batch.partition_id, select_fields=fields)
        present = set(data.keys())
        missing = [field for field in fields if field not in present]
        if missing:
            raise ConfigError(
                f"the sampled trajectories carry no {missing[0]!r}; verl scores them only after sampling with a "
                "colocated reward model: set reward.reward_model.enable_resource_pool=True, or "
                f"+{SAMPLER_KWARGS}.index_key/reward_key to the trajectories' fields"
            )
        gc_ids, rewards = group_rewards(data, self.settings.index_key, self.settings.reward_key)
        return self.run.record(gc_ids, rewards)


class GainCurriculumDataset(_dataset_base()):
    """verl's RLHFDataset over the full export whose rows are, each epoch, the schedule's subset in rank order.

    Validation files (anything but `data.train_files`) read as plain RLHFDataset.
    """

    def __init__(self, data_files: Any, tokenizer: Any, config: Any, processor: Any = None, **kwargs: Any) -> None:
        super().__init__(data_files=data_files, tokenizer=tokenizer, config=config, processor=processor, **kwargs)
        self.run: Run | None = None
        if _paths(data_files) != _paths(config_value(config, "train_files")):
            return
        buffer = _claim_buffer()
        if buffer is None:
            raise ConfigError(
                f"GainCurriculumDataset takes its rewards from GainReplayBuffer; set trainer.use_v1=True {BUFFER_HOOK}"
            )
        if _paths(config_value(config, "val_files")) == _paths(data_files):
            raise ConfigError("data.val_files names data.train_files; validate on another file (a held-out split)")
        workers = config_value(config, "dataloader_num_workers")
        if workers:
            raise ConfigError(
                f"data.dataloader_num_workers={workers} copies the dataset into worker processes, where the "
                "curriculum cannot step; set data.dataloader_num_workers=0"
            )
        self.settings = buffer.settings
        run, self.row_of = open_run(self, self.settings, config, keys=SAMPLER_KWARGS)
        gen_batch = config_value(config, "gen_batch_size")
        if gen_batch and run.subset_size % int(gen_batch):
            raise ConfigError(
                f"subset_size {run.subset_size} is not a multiple of data.gen_batch_size {gen_batch}; "
                "drop data.gen_batch_size or re-init the run with a multiple of it"
            )
        if run.needs_policy:
            logger.warning(
                "gaincurate: --strategy %s cannot measure with verl's live policy (it lives in the Ray workers); it "
                "measures each epoch with the newest checkpoint's Hugging Face weights in %s",
                run.config.strategy,
                self.settings.checkpoint_dir,
            )
        buffer.run = self.run = run
        self._served = 0  # rows of the current epoch handed out
        self._rows: tuple[int, list[int]] | None = None  # (epoch, its dataset rows), cached

    def __len__(self) -> int:
        if self.run is None:
            return super().__len__()
        return self.run.subset_size

    def __getitem__(self, item: int) -> dict:
        if self.run is None:
            return super().__getitem__(item)
        if self._served >= len(self):  # the first row of the next pass: the epoch is trained and recorded
            step_at_epoch_end(self.run, self.settings.checkpoint_dir)
            self._served = 0
        row = self.current_rows()[int(item)]
        self._served += 1
        return super().__getitem__(row)

    def current_rows(self) -> list[int]:
        """The current epoch's dataset rows, in rank order (kept for the epoch: verl asks for one row at a time)."""
        plan = self.run.plan
        if self._rows is None or self._rows[0] != plan.epoch:
            self._rows = (plan.epoch, self.run.rows(self.row_of))
        return self._rows[1]

    def state_dict(self) -> dict[str, Any]:
        if self.run is None:
            return {}
        return {
            "version": STATE_VERSION,
            "run": _run_identity(self.run),
            "epoch": self.run.epoch,
            "served": self._served,
            "curriculum": self.run.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from verl's data.pt: the checkpoint's epoch, row and rewards, as its weights were trained."""
        if self.run is None or not state:
            return
        if state.get("version") != STATE_VERSION:
            raise ConfigError(
                f"verl's data.pt holds curriculum state version {state.get('version')}, not {STATE_VERSION}; resume "
                "with the gaincurate that saved it, or start afresh with trainer.resume_mode=disable"
            )
        where = Path(self.settings.run_dir) / "state.json"
        saved, ours = state["run"], _run_identity(self.run)
        if saved != ours:
            key = next(key for key in sorted(ours) if saved.get(key) != ours[key])
            raise ConfigError(
                f"verl's checkpoint trained a curriculum with {key}={saved.get(key)!r}, but {where} has "
                f"{key}={ours[key]!r}; point +{SAMPLER_KWARGS}.run_dir at that checkpoint's run, or set "
                "trainer.resume_mode=disable"
            )
        epoch, served, current = int(state["epoch"]), int(state["served"]), self.run.epoch
        if epoch == current - 1 and served >= len(self):
            # An epoch-end checkpoint whose epoch the schedule already stepped on exactly these rewards (the step
            # comes at the next fetch, before any later save): start the drawn epoch, without stepping twice.
            self._served = 0
            self.run.replace_records([])
            return
        if epoch != current:
            logger.warning(
                "gaincurate: %s is at epoch %d, but verl's checkpoint trained %d row(s) of epoch %d; the curriculum "
                "goes back to the checkpoint, whose weights these are (history from epoch %d on is rewritten)",
                where, current, served, epoch, epoch,
            )  # fmt: skip
        self.run.load_state_dict(state["curriculum"])
        self._served = served
        self._rows = None


def _run_identity(run: Run) -> dict[str, Any]:
    """What a checkpoint's curriculum must share with the run directory it resumes into."""
    return {
        "strategy": run.config.strategy,
        "seed": int(run.config.seed),
        "n_prompts": int(run.scheduler.n_prompts),
        "subset_size": int(run.subset_size),
    }


def group_rewards(data: Any, index_key: str = "gc_id", reward_key: str = "rm_scores") -> tuple[list[int], list[float]]:
    """(gc_ids, rewards) of trajectories read from verl's TransferQueue (or any mapping of the two fields).

    A reward is a trajectory's token-level scores summed (verl puts the score on the last response token).
    """
    ids, scores = data[index_key], data[reward_key]
    gc_ids = [int(_scalar(value)) for value in _items(ids)]
    rewards = [float(value.sum()) if hasattr(value, "sum") else float(value) for value in _items(scores)]
    if len(gc_ids) != len(rewards):
        raise ConfigError(f"{len(gc_ids)} {index_key!r} values for {len(rewards)} {reward_key!r} rows")
    return gc_ids, rewards


def _items(values: Any) -> list[Any]:
    if hasattr(values, "unbind") and getattr(values, "is_nested", False):
        return list(values.unbind())
    if hasattr(values, "tolist") and not hasattr(values, "unbind"):
        return list(values.tolist())
    return list(values)


def _scalar(value: Any) -> Any:
    value = getattr(value, "data", value)  # NonTensorData
    return value.item() if hasattr(value, "item") else value


def _paths(files: Any) -> list[str]:
    if files is None:
        return []
    return [str(files)] if isinstance(files, str) else [str(item) for item in files]


def _buffers() -> list[Any]:
    # verl's file-path loader runs a fresh copy of this module per load; the buffers live in the imported one.
    import gaincurate.integrations.verl.one_launch as imported

    return imported._BUFFERS


def _claim_buffer() -> Any:
    """The newest replay buffer not yet paired with a training dataset (verl builds the buffer first), or None."""
    buffers = _buffers()
    return buffers.pop() if buffers else None
