"""The reference set: measured pass rates per prompt, and the embeddings of a scores directory.

`PassRates` keeps, per gc_id, a recency-weighted sum of correctness, the matching weighted rollout
count, and when the prompt was last measured. Adding a new measurement at time t first discounts
what is stored by decay ** (t - last), so with decay < 1 the pass rate is a mean over recent
rollouts (an exponential window) and with decay = 1 a plain mean over all of them. Time is an
epoch number in the scheduler, and a feedback file's position when several files are read.

    rates = read_pass_rates([Path("epoch0.jsonl"), Path("epoch1.jsonl")], known_ids=ids, decay=0.5)
    rates.gc_ids, rates.rates, rates.counts

`load_embeddings(scores_dir)` returns the `gc_embedding` column as a float matrix (NaN rows where a
prompt has none) with the columns the baselines need.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gaincurate.errors import InputError
from gaincurate.feedback import no_rollout_error, read_rollouts, tally
from gaincurate.numerics import int_powers

RESCORE_HINT = "rescore with `gaincurate score --embed` (same dataset and model) to store question embeddings"


@dataclass(frozen=True)
class PassRates:
    """Measured pass rates: per gc_id (ascending), decayed sums and counts and the last measurement time."""

    gc_ids: np.ndarray  # int64, ascending, unique
    sums: np.ndarray  # float64 weighted sum of correctness in [0, 1]
    counts: np.ndarray  # float64 weighted rollout count (> 0)
    last: np.ndarray  # int64 time of the latest measurement

    def __post_init__(self) -> None:
        if not len(self.gc_ids) == len(self.sums) == len(self.counts) == len(self.last):
            raise ValueError("PassRates arrays differ in length")

    @classmethod
    def empty(cls) -> PassRates:
        return cls(np.zeros(0, np.int64), np.zeros(0), np.zeros(0), np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.gc_ids)

    @property
    def rates(self) -> np.ndarray:
        return self.sums / self.counts

    def add(self, measured: Mapping[int, tuple[float, float]], *, time: int, decay: float) -> PassRates:
        """Fold in {gc_id: (sum, count)} measured at `time`; what was stored counts decay ** age."""
        if not measured:
            return self
        new_ids = np.asarray(sorted(int(i) for i in measured), dtype=np.int64)
        new_sums = np.asarray([measured[int(i)][0] for i in new_ids], dtype=np.float64)
        new_counts = np.asarray([measured[int(i)][1] for i in new_ids], dtype=np.float64)
        ids = np.union1d(self.gc_ids, new_ids)
        sums, counts = np.zeros(len(ids)), np.zeros(len(ids))
        last = np.full(len(ids), time, dtype=np.int64)
        old = np.searchsorted(ids, self.gc_ids)
        sums[old], counts[old], last[old] = self.sums, self.counts, self.last
        fresh = np.searchsorted(ids, new_ids)
        # Products in a fixed order, not np.power: its AVX-512 loop rounds 0.4 ** 2 otherwise (numerics).
        discount = int_powers(float(decay), np.maximum(time - last[fresh], 0))
        sums[fresh] = sums[fresh] * discount + new_sums
        counts[fresh] = counts[fresh] * discount + new_counts
        last[fresh] = time
        return PassRates(ids, sums, counts, last)

    def to_json(self) -> dict[str, Any]:
        return {
            "gc_ids": [int(i) for i in self.gc_ids],
            "sums": [float(s) for s in self.sums],
            "counts": [float(c) for c in self.counts],
            "last": [int(t) for t in self.last],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PassRates:
        return cls(
            np.asarray(data["gc_ids"], dtype=np.int64),
            np.asarray(data["sums"], dtype=np.float64),
            np.asarray(data["counts"], dtype=np.float64),
            np.asarray(data["last"], dtype=np.int64),
        )


def read_pass_rates(
    paths: Sequence[Path],
    *,
    known_ids: Iterable[int],
    reward_max: float = 1.0,
    decay: float = 1.0,
    first_time: int = 0,
    reward_min: float = 0.0,
) -> PassRates:
    """Pass rates from feedback files in time order (file k is measured at time first_time + k).

    Every line is validated as the scheduler validates feedback; a gc_id that is not a known prompt is
    an error, since it means the feedback belongs to another dataset.
    """
    known = np.asarray(sorted({int(i) for i in known_ids}), dtype=np.int64)
    rates = PassRates.empty()
    for time, path in enumerate(paths, start=first_time):
        path = Path(path)
        rates = rates.add(
            read_measurements(path, known, reward_max=reward_max, reward_min=reward_min), time=time, decay=decay
        )
    return rates


def read_measurements(
    path: Path, known_ids: Iterable[int], *, reward_max: float = 1.0, reward_min: float = 0.0
) -> dict[int, tuple[float, int]]:
    """{gc_id: (sum of correctness, rollouts)} of one feedback file; a file without rollouts is an error."""
    known = np.asarray(sorted({int(i) for i in known_ids}), dtype=np.int64)
    per_prompt = tally(read_rollouts(Path(path), known_ids=known, reward_max=reward_max, reward_min=reward_min))
    if not per_prompt:
        raise no_rollout_error(str(path), len(known))
    return per_prompt


@dataclass(frozen=True)
class PromptEmbeddings:
    """A scores directory's prompts in gc_id order, with the columns difficulty prediction uses."""

    gc_ids: np.ndarray  # int64 ascending
    embeddings: np.ndarray  # float32 [N, h]; NaN rows where a prompt has no embedding
    question_tokens: np.ndarray  # int64
    scores: np.ndarray  # float64 gc_score (NaN where unscorable)

    @property
    def has_embedding(self) -> np.ndarray:
        return np.isfinite(self.embeddings).all(axis=1)

    def rows_of(self, gc_ids: np.ndarray) -> np.ndarray:
        """Row indices of `gc_ids`; every id must be present."""
        gc_ids = np.asarray(gc_ids, dtype=np.int64)
        rows = np.clip(np.searchsorted(self.gc_ids, gc_ids), 0, max(len(self.gc_ids) - 1, 0))
        missing = gc_ids[self.gc_ids[rows] != gc_ids] if len(self.gc_ids) else gc_ids
        if len(missing):
            raise InputError(f"gc_id {int(missing[0])} is not in the scores directory")
        return rows


def embeddings_from_table(table: Any, source: str) -> PromptEmbeddings:
    """The embeddings of a scores table (pyarrow, gc_id order); a one-line error when there are none."""
    if "gc_embedding" not in table.column_names:
        raise InputError(f"{source} has no gc_embedding column; {RESCORE_HINT}")
    column = table.column("gc_embedding").to_pylist()
    width = next((len(v) for v in column if v is not None), 0)
    if width == 0:
        raise InputError(f"{source} has no question embedding in any row; {RESCORE_HINT}")
    matrix = np.full((len(column), width), np.nan, dtype=np.float32)
    for row, vector in enumerate(column):
        if vector is not None:
            matrix[row] = np.asarray(vector, dtype=np.float32)
    statuses = table.column("gc_status").to_pylist() if "gc_status" in table.column_names else ["ok"] * len(column)
    missing = [i for i, (v, s) in enumerate(zip(column, statuses, strict=True)) if v is None and s == "ok"]
    if missing:
        gc_id = table.column("gc_id")[missing[0]].as_py()
        raise InputError(f"{source}: {len(missing)} scored prompt(s) have no embedding (gc_id {gc_id}); {RESCORE_HINT}")
    scores = table.column("gc_score").to_pylist()
    return PromptEmbeddings(
        gc_ids=table.column("gc_id").to_numpy(zero_copy_only=False).astype(np.int64),
        embeddings=matrix,
        question_tokens=table.column("gc_question_tokens").to_numpy(zero_copy_only=False).astype(np.int64),
        scores=np.asarray([np.nan if s is None else s for s in scores], dtype=np.float64),
    )


def load_embeddings(scores_dir: Path) -> PromptEmbeddings:
    from gaincurate.shards import read_scores

    columns = ["gc_id", "gc_score", "gc_question_tokens", "gc_status"]
    table = read_scores(Path(scores_dir))
    if "gc_embedding" not in table.column_names:
        raise InputError(f"{scores_dir} has no gc_embedding column; {RESCORE_HINT}")
    return embeddings_from_table(table.select([*columns, "gc_embedding"]), str(scores_dir))
