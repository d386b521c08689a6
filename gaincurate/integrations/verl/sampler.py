"""GAIN-RL curricula for verl: a curriculum sampler (verl 0.5-0.7.1) and reward-side feedback (any verl).

verl 0.5-0.7.1 lets a sampler class choose the training rows and see every step's batch. Point it here:

    gaincurate schedule init --scores scores/ --run run/ --format verl --subset-size 256
    gaincurate verl export --scores scores/ --out all_prompts.parquet
    python -m verl.trainer.main_ppo data.train_files=all_prompts.parquet \\
        data.sampler.class_path=pkg://gaincurate.integrations.verl.sampler \\
        data.sampler.class_name=GainCurriculumSampler \\
        data.dataloader_num_workers=0 +data.gaincurate.run_dir=run/ ...

(verl versions whose `load_extern_type` takes only a file path: `data.sampler.class_path=$(python -c "import
gaincurate.integrations.verl.sampler as m; print(m.__file__)")`; both routes are tested.) Each epoch the sampler hands
out the schedule's subset; `update(batch)` records every rollout's reward under its `gc_id` (the export's
`gc_id` column, which verl passes into each batch; verl's own `index` repeats across concatenated files);
when an epoch's last row has been handed out and trained, the next `__iter__` steps the schedule and draws
the next epoch. The run directory stays in the layout of `gaincurate schedule`. The sampler's `state_dict()`
rides in verl's `data.pt`, so resuming a verl checkpoint resumes the curriculum at the same row.

Keys under `data.gaincurate` (add them with `+data.gaincurate.KEY=VALUE`):

    run_dir         a run directory from `gaincurate schedule init` (required)
    index_key       the batch's gc_id column (default "gc_id"; "index" for a dataset that keeps only verl's keys
                    and was exported before gaincurate wrote extra_info.gc_id)
    reward_key      the batch tensor of rewards (default "token_level_scores", summed over tokens)
    checkpoint_dir  verl's trainer.default_local_dir; re-score from its newest checkpoint when the schedule's
                    --rescore asks (needs actor.checkpoint.save_contents with hf_model; a Megatron checkpoint
                    without Hugging Face weights is refused with verl's model-merger command)
    shuffle         shuffle each epoch's subset, seeded by the schedule (default false: rank order)

`data.filter_overlong_prompts=True` is refused when it dropped scored prompts (the schedule may pick them).

verl 0.8 and later have no sampler hook. verl 0.9.1 runs the curriculum in one launch through its dataset class
and replay buffer hooks (`gaincurate.integrations.verl.one_launch`); otherwise `gaincurate schedule run` relaunches verl
once per epoch with `--format verl` epoch files. docs/verl.md has every recipe.

verl itself is imported only when it is installed: verl calls `update` only on subclasses of its
`AbstractCurriculumSampler`, so the sampler derives from it there, and from torch's `Sampler` elsewhere
(tests, and processes that merely import this module).
"""

# No `from __future__ import annotations` here: verl's file-path loader executes this module under a name
# that is not in sys.modules, and @dataclass cannot resolve string annotations there.
import dataclasses
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import numpy as np
from torch.utils.data import Sampler

from gaincurate.config_file import check_keys
from gaincurate.errors import ConfigError
from gaincurate.integrations.verl.checkpoint import newest_weights, step_at_epoch_end
from gaincurate.integrations.verl.config import config_keys, config_value
from gaincurate.integrations.verl.reward import recording_score
from gaincurate.schedule.run.run import Run

__all__ = [
    "GainCurriculumSampler",
    "SamplerSettings",
    "batch_rollouts",
    "export_prompts",
    "recording_score",  # lives in verl_reward with the bundled reward function; kept importable here
]

logger = logging.getLogger(__name__)

EXPORT = "train on `gaincurate verl export --scores SCORES --out FILE.parquet`"


def _curriculum_base() -> type:
    """verl's AbstractCurriculumSampler where verl 0.5-0.7.1 is installed, else torch's Sampler."""
    try:
        from verl.experimental.dataset.sampler import AbstractCurriculumSampler
    except ImportError:  # no verl, or verl 0.8+, which dropped the sampler hook
        return Sampler
    return AbstractCurriculumSampler


@dataclass(frozen=True, kw_only=True)
class SamplerSettings:
    """The `data.gaincurate` keys of verl's data config."""

    run_dir: str
    index_key: str = "gc_id"
    reward_key: str = "token_level_scores"
    checkpoint_dir: str | None = None
    shuffle: bool = False

    @classmethod
    def from_data_config(cls, data_config: Any) -> Self:
        section = config_value(data_config, "gaincurate")
        if section is None or config_value(section, "run_dir") is None:
            raise ConfigError(
                "the gaincurate sampler needs +data.gaincurate.run_dir=RUN (a run from `gaincurate schedule init`)"
            )
        known = {field.name for field in dataclasses.fields(cls)}
        values = {key: config_value(section, key) for key in known}
        check_keys("data.gaincurate", config_keys(section), known)
        return cls(**{key: value for key, value in values.items() if value is not None})


class GainCurriculumSampler(_curriculum_base()):
    """verl 0.5-0.7.1 curriculum sampler: yields the schedule's rows each epoch, learns from every batch.

    `data_source` is verl's training dataset (the full prompt set from `export`); `data_config` is verl's
    `data` config, with the `data.gaincurate` keys in this module's docstring.
    """

    def __init__(self, data_source: Any, data_config: Any) -> None:
        self.settings = SamplerSettings.from_data_config(data_config)
        self.run, self.row_of = open_run(data_source, self.settings, data_config, keys="data.gaincurate")
        self._yielded = 0  # rows of the current epoch handed out so far
        self._resume_at: int | None = None  # set by load_state_dict: rows to skip on the next iteration

    def __len__(self) -> int:
        return self.run.subset_size

    def __iter__(self) -> Iterator[int]:
        # A generator: nothing happens until the first row is asked for, so the throwaway iterators that
        # torchdata creates while restoring a checkpoint change nothing.
        if self._resume_at is not None:
            self._yielded, self._resume_at = self._resume_at, None
        else:
            self._yielded = self._yielded if self._yielded >= len(self) else 0
        if self._yielded >= len(self):
            self._end_epoch()
            self._yielded = 0
        rows = self.run.rows(self.row_of, shuffle=self.settings.shuffle)
        while self._yielded < len(rows):
            row = rows[self._yielded]
            self._yielded += 1
            yield row

    def update(self, batch: Any) -> None:
        """Record the step's rollouts: one reward per row, under the row's gc_id."""
        gc_ids, rewards = batch_rollouts(batch, self.settings.index_key, self.settings.reward_key)
        self.run.record(gc_ids, rewards)

    def state_dict(self) -> dict[str, Any]:
        return {"curriculum": self.run.state_dict(), "yielded": self._yielded}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.run.load_state_dict(state["curriculum"])
        self._resume_at = int(state["yielded"])

    def _end_epoch(self) -> None:
        step_at_epoch_end(self.run, self.settings.checkpoint_dir)


def check_rows(run: Run, row_of: Mapping[int, int], data_config: Any) -> None:
    """Refuse, in one line, training rows the schedule cannot draw from, or a subset verl would cut short."""
    missing = [int(g) for g in run.scores.prompts.gc_ids if int(g) not in row_of]
    if missing and config_value(data_config, "filter_overlong_prompts"):
        raise ConfigError(
            f"data.filter_overlong_prompts dropped {len(missing)} scored prompt(s) (gc_id {missing[0]}, ...) "
            "that the schedule may pick; set data.filter_overlong_prompts=False and data.truncation=left "
            "(or a data.max_prompt_length that fits every prompt)"
        )
    if missing:
        raise ConfigError(
            f"data.train_files lacks {len(missing)} scored prompt(s) (gc_id {missing[0]}, ...); train on "
            "`gaincurate verl export --scores SCORES --out FILE.parquet`"
        )
    batch = config_value(data_config, "train_batch_size")
    subset = run.subset_size
    if batch and subset % int(batch):
        raise ConfigError(
            f"subset_size {subset} is not a multiple of data.train_batch_size {batch}; verl would drop "
            f"{subset % int(batch)} prompts each epoch. Re-init the run with a multiple of {batch}"
        )


def batch_rollouts(batch: Any, index_key: str = "gc_id", reward_key: str = "token_level_scores"):
    """(gc_ids, rewards) of a verl batch: a DataProto, or a plain mapping holding both keys.

    Token-level rewards ([rows, tokens], nonzero at the last response token) are summed to one per row.
    """
    tensors = getattr(batch, "batch", None)
    others = getattr(batch, "non_tensor_batch", None)
    if tensors is None and others is None and isinstance(batch, Mapping):
        tensors = others = batch
    ids = _first(_lookup(others, index_key), _lookup(tensors, index_key))
    scores = _first(_lookup(tensors, reward_key), _lookup(others, reward_key))
    if ids is None or scores is None:
        raise ConfigError(
            f"the verl batch has no {index_key!r} (gc_id) or no {reward_key!r} (reward); set "
            "+data.gaincurate.index_key / reward_key to the batch's keys"
        )
    scores = scores.detach().float().cpu().numpy() if hasattr(scores, "detach") else np.asarray(scores, dtype=float)
    if scores.ndim == 2:
        scores = scores.sum(axis=1)
    ids = ids.detach().cpu().numpy() if hasattr(ids, "detach") else np.asarray(ids)
    return [int(i) for i in ids.reshape(-1)], [float(r) for r in scores.reshape(-1)]


# -- the full prompt set for the sampler ---------------------------------------------------------------


def export_prompts(scores_dir: str | Path, out: str | Path, data_source: str | None = None) -> Path:
    """Write every scored prompt in verl's format (gc_id order) to a parquet file for data.train_files.

    `gaincurate verl export` runs it.

    `data_source` is verl's reward key of rows without their own (default lighteval/MATH, scored 1/0 on boxed
    answers).
    """
    from gaincurate.schedule.run.epochs import check_format, epoch_table, write_epoch
    from gaincurate.schedule.run.inputs import load_scores

    scores = load_scores(Path(scores_dir))
    check_format(scores, "verl")
    gc_ids = scores.prompts.gc_ids
    table = epoch_table(scores, gc_ids, data_format="verl", metadata={"epoch": None}, data_source=data_source)
    write_epoch(Path(out), table)
    return Path(out)


# -- helpers -------------------------------------------------------------------------------------------


def open_run(data_source: Any, settings: Any, data_config: Any, *, keys: str) -> tuple[Run, dict[int, int]]:
    """The run a verl adapter holds (its sampler, its one launch) and the dataset's row of each gc_id, checked
    against verl's `data` config; a strategy that needs the policy measures with the newest checkpoint, which
    `settings` (keys under `keys` in verl's config) must name."""
    run = Run(run_dir=settings.run_dir)
    ids = data_source_ids(data_source, settings.index_key)
    row_of = run.row_map(ids, fix=EXPORT, where=" (extra_info.gc_id)", every_prompt=False)
    check_rows(run, row_of, data_config)
    if run.needs_policy:
        if not settings.checkpoint_dir:
            raise ConfigError(
                f"--strategy {run.config.strategy} measures each epoch's candidates with the newest policy; set "
                f"+{keys}.checkpoint_dir to trainer.default_local_dir and save hf_model every epoch"
            )
        run.hand_policy(weights=newest_weights(run, settings.checkpoint_dir))
    return run, row_of


def data_source_ids(data_source: Any, index_key: str) -> list[Any]:
    """The gc_id of each dataset row, from the dataset's columns when it has them (verl's RLHFDataset.dataframe):
    the export's `gc_id` column, else `extra_info.gc_id`, else (exports before it) `extra_info.index`."""
    frame = getattr(data_source, "dataframe", data_source)
    columns = getattr(frame, "column_names", None) or []
    if "gc_id" in columns:
        return list(frame["gc_id"])
    if "extra_info" in columns:
        return [(info or {}).get("gc_id", (info or {}).get("index")) for info in frame["extra_info"]]
    # Slow path: verl's __getitem__ prepares each row, but it keeps the row's columns.
    logger.warning("the dataset has no gc_id/extra_info column; reading %d rows one by one", len(data_source))
    return [data_source[row].get(index_key) for row in range(len(data_source))]


def _lookup(container: Any, key: str) -> Any:
    if container is None:
        return None
    try:
        return container[key]
    except (KeyError, TypeError, IndexError):
        return None


def _first(*values: Any) -> Any:
    return next((value for value in values if value is not None), None)
