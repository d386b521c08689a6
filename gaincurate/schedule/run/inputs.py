"""Read a scores directory (written by `gaincurate score`) into what the scheduler needs.

`load_scores(DIR)` returns the manifest, the full table (every input column plus gc_*, in gc_id order)
and a `PromptSet` of numpy arrays for the pure scheduler. The reading itself is
`gaincurate.shards`'s; this module only checks that the directory is usable for a schedule.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from gaincurate.errors import InputError
from gaincurate.schedule.strategies.plugin import PromptSet


@dataclass(frozen=True)
class ScoresInput:
    directory: Path
    manifest: dict[str, Any]
    table: pa.Table
    prompts: PromptSet

    @property
    def prompt_config(self) -> dict[str, Any]:
        return self.manifest.get("config", {})

    def rows_of(self, gc_ids: np.ndarray) -> np.ndarray:
        """Table row indices of `gc_ids` (the table is sorted by gc_id)."""
        return np.searchsorted(self.prompts.gc_ids, np.asarray(gc_ids, dtype=np.int64))


def load_scores(scores_dir: Path) -> ScoresInput:
    from gaincurate import shards

    scores_dir = Path(scores_dir)
    manifest = shards.read_manifest(scores_dir)
    table = shards.read_scores(scores_dir)
    expected = manifest.get("rows")
    if expected is not None and table.num_rows != expected:
        raise InputError(
            f"{scores_dir} holds {table.num_rows} scored rows but its manifest says {expected}; "
            "re-run the same `gaincurate score` command to finish it"
        )
    if table.num_rows == 0:
        raise InputError(f"{scores_dir} holds no scored rows; score a non-empty dataset first")
    gc_ids = table.column("gc_id").to_numpy(zero_copy_only=False).astype(np.int64)
    if np.any(np.diff(gc_ids) <= 0):
        raise InputError(f"{scores_dir} has repeated gc_id values; re-score it into an empty --out directory")
    scores = _floats(table, "gc_score")
    prompts = PromptSet(
        gc_ids=gc_ids,
        scores=scores,
        ranking_scores=np.asarray(shards.ranking_scores(table, manifest), dtype=np.float64),
        question_tokens=table.column("gc_question_tokens").to_numpy(zero_copy_only=False).astype(np.int64),
        debias=manifest.get("debias"),
    )
    return ScoresInput(scores_dir, manifest, table, prompts)


def _floats(table: pa.Table, name: str) -> np.ndarray:
    column = table.column(name)
    return np.asarray(column.to_pylist() if column.null_count else column.to_numpy(), dtype=np.float64)
