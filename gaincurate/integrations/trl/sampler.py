"""The epoch sampler of the in-process TRL curriculum, which `CurriculumMixin._get_train_sampler` returns.

It keeps TRL's RepeatSampler structure (each prompt `num_generations` times in a row, grouped into generation
batches, each batch repeated `num_iterations * steps_per_generation` times) over the epoch's subset instead of a
random permutation of the whole set.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from torch.utils.data import Sampler

from gaincurate.columns import column_values, has_column
from gaincurate.errors import ConfigError

TRAIN_DATASET = "pass train_dataset=curriculum.train_dataset()"


class CurriculumSampler(Sampler[int]):
    """Dataset row indices for the curriculum's current epoch, with TRL's RepeatSampler structure.

    Built once per `train()`; each `__iter__` (one per epoch) reads the epoch the scheduler holds then.
    """

    def __init__(
        self,
        curriculum: Any,
        row_of: dict[int, int],
        *,
        mini_repeat_count: int,
        batch_size: int,
        repeat_count: int,
    ) -> None:
        self.curriculum = curriculum
        self.row_of = row_of
        self.mini_repeat_count = mini_repeat_count
        self.batch_size = batch_size
        self.repeat_count = repeat_count
        self.trainer_epoch: int | None = None

    def set_epoch(self, epoch: int) -> None:
        """The Trainer announces its epoch (through accelerate) before iterating; used as a consistency check."""
        self.trainer_epoch = int(epoch)

    def current_rows(self) -> list[int]:
        """The current epoch's dataset rows, in training order (rank order, or seeded shuffle)."""
        run = self.curriculum.run
        plan = run.plan
        if self.trainer_epoch is not None and self.trainer_epoch != plan.epoch:
            raise ConfigError(
                f"the trainer is at epoch {self.trainer_epoch} but the curriculum at epoch {plan.epoch}; resume the "
                "trainer from a checkpoint this curriculum wrote (its trainer_state.json carries it), or start "
                "from a new run_dir"
            )
        return run.rows(self.row_of, shuffle=self.curriculum.shuffle)

    def __iter__(self) -> Iterator[int]:
        from trl.trainer.utils import RepeatSampler

        rows = self.current_rows()
        structure = RepeatSampler(
            rows,
            mini_repeat_count=self.mini_repeat_count,
            batch_size=self.batch_size,
            repeat_count=self.repeat_count,
            shuffle=False,
        )
        return (rows[index] for index in structure)

    def __len__(self) -> int:
        subset = self.curriculum.run.subset_size
        return (subset // self.batch_size) * self.batch_size * self.mini_repeat_count * self.repeat_count


def dataset_gc_ids(dataset: Any) -> Any:
    """The gc_id of each row of a TRL training dataset (its gc_id column), for the run's `row_map`."""
    if "gc_id" not in (getattr(dataset, "column_names", None) or []):
        raise ConfigError(f"the training dataset has no gc_id column; {TRAIN_DATASET}")
    return dataset["gc_id"]


_UNCHECKED: set[str] = set()  # scores directories already reported as predating prompt hashes


def check_same_prompts(dataset: Any, scores: Any, row_of: dict[int, int]) -> None:
    """Refuse training rows whose prompt (or answer) is not the one scored under their gc_id, naming the first.

    `scores` is the curriculum's `ScoresInput`; its `gc_prompt_hash` and `gc_answer_hash` columns hold what was
    scored. Scores written before those columns existed are not checked, and that is said once.
    """
    import logging

    from gaincurate.prompts import answer_text, prompt_digest

    table, where = scores.table, scores.directory
    if "gc_prompt_hash" not in table.column_names:
        if str(where) not in _UNCHECKED:
            _UNCHECKED.add(str(where))
            logging.getLogger(__name__).warning(
                "gaincurate: %s predates prompt hashes, so the training rows are not checked against it; "
                "re-score it to have them checked",
                where,
            )
        return
    config = scores.prompt_config
    column, answer_column = config.get("prompt_column"), config.get("answer_column")
    if column not in (getattr(dataset, "column_names", None) or []):
        raise ConfigError(
            f"the training dataset has no {column!r} column, the prompts {where} scored, so its rows cannot be "
            "checked against the scores; pass train_dataset=curriculum.train_dataset()"
        )
    gc_ids = np.asarray(scores.prompts.gc_ids, dtype=np.int64)  # every one is in `row_of` (`Run.row_map`)
    rows = [row_of[int(g)] for g in gc_ids]
    positions = scores.rows_of(gc_ids)
    checks = [(column, "gc_prompt_hash", prompt_digest, "prompt")]
    if answer_column and has_column(dataset, answer_column) and "gc_answer_hash" in table.column_names:
        checks.append((answer_column, "gc_answer_hash", lambda v: prompt_digest(answer_text(v)), "answer"))
    for name, hash_column, digest, what in checks:
        expected = table.column(hash_column).take(positions).to_pylist()
        values = column_values(dataset.select(rows), name)
        for gc_id, row, value, want in zip(gc_ids.tolist(), rows, values, expected, strict=True):
            if want is not None and digest(value) != want:
                shown = repr(value)
                shown = shown if len(shown) <= 60 else shown[:57] + "..."
                raise ConfigError(
                    f"training row {row} (gc_id {gc_id}) has the {what} {shown}, not the one {where} scored as "
                    f"gc_id {gc_id}; train on curriculum.train_dataset(), or score this dataset"
                )
