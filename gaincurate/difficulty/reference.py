"""The reference set: measured pass rates per prompt, and the embeddings of a scores directory.

`PassRates` keeps, per gc_id, a recency-weighted sum of correctness, the matching weighted rollout
count, and when the prompt was last measured. Adding a new measurement at time t first discounts
what is stored by forget ** (t - last), so with forget < 1 the pass rate is a mean over recent
rollouts (an exponential window) and with forget = 1 a plain mean over all of them. Time is an
epoch number in the scheduler, and a feedback file's position when several files are read.

    rates = read_pass_rates([Path("epoch0.jsonl"), Path("epoch1.jsonl")], known_ids=ids, forget=0.5)
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

from gaincurate.errors import ConfigError, InputError, setting, settings_as_flags_now
from gaincurate.feedback_lines import FORMAT_HINT, read_rollouts, tally
from gaincurate.numerics import int_powers, log_by_value

RESCORE_HINT = "rescore with `gaincurate score --embed` (same dataset and model) to store question embeddings"


@dataclass(frozen=True)
class PassRates:
    """Measured pass rates: per gc_id (ascending), aged sums and counts and the last measurement time."""

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

    def add(self, measured: Mapping[int, tuple[float, float]], *, time: int, forget: float) -> PassRates:
        """Fold in {gc_id: (sum, count)} measured at `time`; what was stored counts forget ** age."""
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
        discount = int_powers(float(forget), np.maximum(time - last[fresh], 0))
        sums[fresh] = sums[fresh] * discount + new_sums
        counts[fresh] = counts[fresh] * discount + new_counts
        last[fresh] = time
        return PassRates(ids, sums, counts, last)

    def sample(self, limit: int, *, now: int, forget: float) -> PassRates:
        """At most `limit` of the measured prompts (0: all), drawn in proportion to their weight forget ** age at
        `now`, the weight the attention gives them: a bounded reference set in which fresh measurements dominate
        and older ones keep their share (docs/dots.md, "A bounded reference set").

        Weighted sampling without replacement (Efraimidis and Spirakis): keep the smallest E_i / w_i, E_i an
        exponential from a fixed scramble of the gc_id, so the same measurements always keep the same prompts,
        with logs and powers that give the same bits on every CPU (`numerics`).
        """
        if limit <= 0 or len(self) <= limit:
            return self
        scramble = (self.gc_ids.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(11)
        uniform = (scramble.astype(np.float64) + 0.5) / 2.0**53  # in (0, 1), exactly
        keys = -log_by_value(uniform) / int_powers(float(forget), np.maximum(now - self.last, 0))
        kept = np.sort(np.lexsort((self.gc_ids, keys))[:limit])  # gc_id order kept
        return PassRates(self.gc_ids[kept], self.sums[kept], self.counts[kept], self.last[kept])

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


def check_reward_range(reward_min: float, reward_max: float) -> None:
    """Refuse a reward range that cannot read a rollout. A reward becomes the correctness (reward - reward_min) /
    (reward_max - reward_min), so the reward of a right answer (reward_max) must be a finite number above the reward
    of a wrong one (reward_min). Every reader of rewards checks it: `ScheduleConfig` and the difficulty readers here.
    """
    for name, value in (("reward_min", reward_min), ("reward_max", reward_max)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
            raise ConfigError(f"{setting(name)} must be a finite number; got {value!r}")
    if reward_min == 0 and reward_max <= 0:
        raise ConfigError(
            f"{setting('reward_max')} must be positive (the reward of a correct answer); got {reward_max}"
        )
    if reward_min >= reward_max:
        wanted = (
            "--reward-range LO,HI needs LO (a wrong answer) below HI (a right one)"
            if settings_as_flags_now()
            else "reward_min (a wrong answer) must be below reward_max (a right one)"
        )
        raise ConfigError(f"{wanted}; got {reward_min:g},{reward_max:g}")


def read_pass_rates(
    paths: Sequence[Path],
    *,
    known_ids: Iterable[int],
    reward_max: float = 1.0,
    forget: float = 1.0,
    first_time: int = 0,
    reward_min: float = 0.0,
) -> PassRates:
    """Pass rates from feedback files in time order (file k is measured at time first_time + k).

    Every line is validated as the scheduler validates feedback; a gc_id that is not a known prompt is
    an error, since it means the feedback belongs to another dataset.
    """
    check_reward_range(reward_min, reward_max)
    known = np.asarray(sorted({int(i) for i in known_ids}), dtype=np.int64)
    rates = PassRates.empty()
    for time, path in enumerate(paths, start=first_time):
        path = Path(path)
        rates = rates.add(
            read_measurements(path, known, reward_max=reward_max, reward_min=reward_min), time=time, forget=forget
        )
    return rates


def read_measurements(
    path: Path, known_ids: Iterable[int], *, reward_max: float = 1.0, reward_min: float = 0.0
) -> dict[int, tuple[float, int]]:
    """{gc_id: (sum of correctness, rollouts)} of one feedback file; a file without rollouts is an error."""
    check_reward_range(reward_min, reward_max)
    known = np.asarray(sorted({int(i) for i in known_ids}), dtype=np.int64)
    per_prompt = tally(read_rollouts(Path(path), known_ids=known, reward_max=reward_max, reward_min=reward_min))
    if not per_prompt:
        raise InputError(f"{path} holds no rollout; {FORMAT_HINT}")
    return per_prompt


@dataclass(frozen=True)
class PromptEmbeddings:
    """A scores directory's prompts in gc_id order, with the columns difficulty prediction uses."""

    gc_ids: np.ndarray  # int64 ascending
    embeddings: np.ndarray  # [N, h] as stored (float16 from `score`), NaN rows for none; or `EmbeddingRows`
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


def embeddings_from_table(table: Any, source: str, *, blocks: bool = False) -> PromptEmbeddings:
    """The embeddings of a scores table (pyarrow, gc_id order); a one-line error when there are none.

    Read column-wise, never row by row: one matrix in the stored dtype (float16 from `gaincurate score`; the same
    numbers as float32 or float64), NaN rows where a prompt has none. With `blocks`, `EmbeddingRows` instead: the
    same rows read a block at a time when sliced, for a caller that passes over them (the matrix is 1.1 GB at a
    million prompts of width 576).
    """
    if "gc_embedding" not in table.column_names:
        raise InputError(f"{source} has no gc_embedding column; {RESCORE_HINT}")
    import pyarrow.compute as pc

    column = table.column("gc_embedding")
    matrix = EmbeddingRows.of(column, source) if blocks else embedding_matrix(column, source)
    if matrix is None:
        raise InputError(f"{source} has no question embedding in any row; {RESCORE_HINT}")
    missing = column.is_null().to_numpy(zero_copy_only=False)
    if "gc_status" in table.column_names:
        missing &= pc.equal(table.column("gc_status"), "ok").fill_null(False).to_numpy(zero_copy_only=False)
    if missing.any():
        first = int(np.flatnonzero(missing)[0])
        gc_id = table.column("gc_id")[first].as_py()
        raise InputError(
            f"{source}: {int(missing.sum())} scored prompt(s) have no embedding (gc_id {gc_id}); {RESCORE_HINT}"
        )
    scores = table.column("gc_score")
    return PromptEmbeddings(
        gc_ids=table.column("gc_id").to_numpy(zero_copy_only=False).astype(np.int64),
        embeddings=matrix,
        question_tokens=table.column("gc_question_tokens").to_numpy(zero_copy_only=False).astype(np.int64),
        scores=scores.fill_null(np.nan).to_numpy(zero_copy_only=False).astype(np.float64),
    )


def embedding_matrix(column: Any, source: str) -> np.ndarray | None:
    """A list column as one [rows, width] matrix (NaN rows for nulls), chunk by chunk; None when every row is null."""
    form = embedding_form(column, source)
    return None if form is None else fill_matrix(column, *form)


def embedding_form(column: Any, source: str) -> tuple[int, Any] | None:
    """The width and dtype of a list column's rows; None when every row is null."""
    import pyarrow as pa
    import pyarrow.compute as pc

    lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
    present = ~column.is_null().to_numpy(zero_copy_only=False)
    widths = np.unique(lengths[present].astype(np.int64))
    if not len(widths) or widths[-1] == 0:
        return None
    if len(widths) > 1:
        raise InputError(
            f"{source}: gc_embedding rows have different widths ({widths[0]}, {widths[-1]}); {RESCORE_HINT}"
        )
    return int(widths[0]), (np.float16 if pa.types.is_float16(column.type.value_type) else np.float32)


def fill_matrix(column: Any, width: int, dtype: Any) -> np.ndarray:
    """The rows of a list column of one width as a matrix of `dtype`, NaN rows for nulls."""
    present = ~column.is_null().to_numpy(zero_copy_only=False)
    matrix = np.full((len(column), width), np.nan, dtype=dtype)
    low = 0
    for chunk in column.chunks:
        rows = np.flatnonzero(present[low : low + len(chunk)]) + low
        matrix[rows] = chunk.flatten().to_numpy(zero_copy_only=False).astype(dtype, copy=False).reshape(-1, width)
        low += len(chunk)
    return matrix


class EmbeddingRows:
    """A gc_embedding column whose rows are read when sliced (`rows[low:high]`, the `embedding_matrix` of those rows),
    so that a pass over a pool holds one block, not the whole matrix."""

    def __init__(self, column: Any, width: int, dtype: Any) -> None:
        self.column, self.dtype = column, dtype
        self.shape = (len(column), width)

    @classmethod
    def of(cls, column: Any, source: str) -> EmbeddingRows | None:
        form = embedding_form(column, source)
        return None if form is None else cls(column, *form)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows: slice) -> np.ndarray:
        low, high, step = rows.indices(len(self))
        if step != 1:
            raise IndexError("EmbeddingRows reads a contiguous block of rows")
        return fill_matrix(self.column.slice(low, max(high - low, 0)), self.shape[1], self.dtype)

    def take(self, indices: np.ndarray, axis: int = 0) -> np.ndarray:
        """Rows `indices`, in their order (a matrix's `take` along its rows), taken chunk by chunk: a chunked column's
        own `take` first joins every chunk (a million prompts' embeddings copied for a few thousand rows)."""
        import pyarrow as pa

        if axis != 0:
            raise IndexError("EmbeddingRows takes rows")
        indices = np.asarray(indices, dtype=np.int64)
        order = np.argsort(indices, kind="stable")
        ascending = indices[order]
        bounds = np.cumsum([0, *(len(chunk) for chunk in self.column.chunks)])
        cuts = np.searchsorted(ascending, bounds)
        spans = zip(self.column.chunks, bounds[:-1], cuts[:-1], cuts[1:], strict=True)
        parts = [chunk.take(ascending[a:b] - low) for chunk, low, a, b in spans if b > a]
        out = np.empty((len(indices), self.shape[1]), dtype=self.dtype)
        out[order] = fill_matrix(pa.chunked_array(parts, type=self.column.type), self.shape[1], self.dtype)
        return out


def load_embeddings(scores_dir: Path) -> PromptEmbeddings:
    from gaincurate.shards import read_scores

    columns = ["gc_id", "gc_score", "gc_question_tokens", "gc_status"]
    table = read_scores(Path(scores_dir))
    if "gc_embedding" not in table.column_names:
        raise InputError(f"{scores_dir} has no gc_embedding column; {RESCORE_HINT}")
    return embeddings_from_table(table.select([*columns, "gc_embedding"]), str(scores_dir))
