"""The format of a scores directory, and reading one: Arrow shards of scored rows plus `manifest.json`.

Shards are Arrow IPC *stream* files, the format `datasets.Dataset.from_file` reads; pyarrow reads
them with `pyarrow.ipc.open_stream`. Each is written under a temporary name and renamed when
complete, so a file named `shard-NNNNN.arrow` is always whole. A complete manifest holds the SHA-256
of every shard: `read_scores` refuses a shard that no longer matches, by name. What a run writes
into `--out`, when, and under which lock is `gaincurate.scoring.output`'s.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from gaincurate.errors import InputError
from gaincurate.fileio import atomic_write, file_sha256, read_json
from gaincurate.metrics import apply_debias

FORMAT_VERSION = 1
RESERVED_PREFIX = "gc_"
MANIFEST = "manifest.json"
DEFAULT_SHARD_ROWS = 1000
_SHARD_NAME = re.compile(r"shard-\d{5,}\.arrow")
# The kind of each field (a dotted path) that a reader uses, checked wherever it is present: another kind would stop
# the reader with a traceback.
_MANIFEST_FIELDS = {
    "shards": list, "checksums": dict, "fingerprint": dict, "config": dict, "model": dict, "dataset": dict,
    "diagnostics": dict, "timings": dict, "rows": int, "shard_rows": int, "config.prompt_column": str,
    "dataset.columns": list, "model.id": str, "site": str, "layer": int, "dtype": str, "device": str, "backend": str,
    "diagnostics.status_counts": dict, "diagnostics.truncated_rows": int,
}  # fmt: skip
_KIND_WORDS = {list: "a list", dict: "an object", str: "a string", int: "a whole number"}
_COMPLETE_FIELDS = ("shards", "config", "config.prompt_column", "rows")  # what every reader of a finished run uses
# What a scoring pass records besides, which `show` reads: a directory `schedule` wrote unscored holds none of it.
SCORED_FIELDS = ("model.id", "site", "layer", "dtype", "device", "backend", "diagnostics.status_counts",
                 "diagnostics.truncated_rows")  # fmt: skip
_ABSENT = object()

SCORE_FIELDS = [
    pa.field("gc_id", pa.int64()),
    pa.field("gc_intra", pa.float64()),
    pa.field("gc_inter", pa.float64()),
    pa.field("gc_score", pa.float64()),
    pa.field("gc_question_tokens", pa.int32()),
    pa.field("gc_context_tokens", pa.int32()),
    pa.field("gc_truncated", pa.bool_()),
    pa.field("gc_status", pa.string()),
    # Short SHA-256 of the scored prompt value and of the answer (null: no answer column, or no answer):
    # a trainer checks its rows against them. Scores written before these columns have neither.
    pa.field("gc_prompt_hash", pa.string()),
    pa.field("gc_answer_hash", pa.string()),
]
HASH_COLUMNS = ("gc_prompt_hash", "gc_answer_hash")
EMBEDDING_FIELD = pa.field("gc_embedding", pa.list_(pa.float16()))
SCORE_COLUMNS = [field.name for field in SCORE_FIELDS] + [EMBEDDING_FIELD.name]


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.arrow"


def output_schema(input_schema: pa.Schema, *, embed: bool) -> pa.Schema:
    """Input columns first, then the gc_* columns; fixed up front, never inferred from data."""
    clash = [name for name in input_schema.names if name.startswith(RESERVED_PREFIX)]
    if clash:
        raise InputError(f"input column(s) {', '.join(clash)} use the reserved gc_ prefix; rename them before scoring")
    fields = list(input_schema) + SCORE_FIELDS + ([EMBEDDING_FIELD] if embed else [])
    return pa.schema(fields)


def write_shard(path: Path, table: pa.Table) -> None:
    """Write one shard atomically as an Arrow IPC stream."""

    def write(tmp: Path) -> None:
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)

    atomic_write(path, write)


def read_shard(path: Path) -> pa.Table:
    try:
        with pa.memory_map(str(path)) as source:
            return pa.ipc.open_stream(source).read_all()
    except (pa.ArrowInvalid, OSError) as error:
        raise InputError(f"shard {path} is unreadable ({error}); re-run `gaincurate score` to rebuild it") from None


def shard_bounds(num_rows: int, shard_rows: int) -> list[tuple[int, int]]:
    """Row ranges `[low, high)` of the output shards; an empty dataset still gets one (empty) shard."""
    count = max(1, math.ceil(num_rows / shard_rows))
    return [(i * shard_rows, min(num_rows, (i + 1) * shard_rows)) for i in range(count)]


def manifest_shard_rows(manifest: dict[str, Any]) -> int:
    """Rows per shard of a directory's layout."""
    value = manifest.get("shard_rows")
    return value if isinstance(value, int) and value > 0 else DEFAULT_SHARD_ROWS


def read_manifest(scores_dir: Path, needs: tuple[str, ...] = ()) -> dict[str, Any]:
    """The manifest of a scores directory, checked to be one: an object whose shard names stay inside `scores_dir`,
    whose fields have their kinds, with the fields every reader of a complete one uses and those in `needs`."""
    path = Path(scores_dir) / MANIFEST
    if not path.is_file():
        raise InputError(f"{scores_dir} has no {MANIFEST}; point at a directory written by `gaincurate score`")
    try:
        manifest = read_json(path)
    except (ValueError, RecursionError) as error:
        raise InputError(f"{path} is not valid JSON ({error}); re-run `gaincurate score --overwrite`") from None
    _check_manifest(manifest, path, needs)
    return manifest


def _check_manifest(manifest: Any, path: Path, needs: tuple[str, ...]) -> None:
    """Refuse a manifest that is not one, before any field of it is trusted (a path, above all)."""
    broken = _rescore(path.parent)
    if not isinstance(manifest, dict):
        kind = "a list" if isinstance(manifest, list) else f"a single {type(manifest).__name__} value"
        raise InputError(f"{path} is not a gaincurate manifest: it holds {kind}, not an object; {broken}")
    for key, kind in _MANIFEST_FIELDS.items():
        value = _field(manifest, key)
        if value is not _ABSENT and (not isinstance(value, kind) or isinstance(value, bool)):
            raise InputError(f"{path} is damaged: its {key!r} is not {_KIND_WORDS[kind]}; {broken}")
    for name in manifest.get("shards", []):
        # Only plain shard names: a manifest must never make a reader open /etc/passwd or ../../x.
        if not isinstance(name, str) or not _SHARD_NAME.fullmatch(name):
            raise InputError(
                f"{path} names {json.dumps(name)[:80]} as a shard; shards are shard-NNNNN.arrow files "
                f"inside {path.parent}; {broken}"
            )
    if any(not isinstance(v, str) for v in manifest.get("checksums", {}).values()):
        raise InputError(f"{path} is damaged: its checksums are not strings; {broken}")
    required = [*(_COMPLETE_FIELDS if manifest.get("complete") else ()), *needs]
    missing = [key for key in required if _field(manifest, key) is _ABSENT]
    if missing:
        raise InputError(f"{path} is damaged: it lacks {', '.join(missing)}; {broken}")
    damage = _inconsistency(manifest)
    if damage:
        raise InputError(f"{path} is damaged: {damage}; {broken}")


def _rescore(scores_dir: Path) -> str:
    return f"re-run `gaincurate score --overwrite` into {scores_dir}, or score into a new --out"


def _field(manifest: dict[str, Any], dotted: str) -> Any:
    """The value at a dotted path (`config.prompt_column`), or `_ABSENT`."""
    value: Any = manifest
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            return _ABSENT
        value = value[key]
    return value


def _inconsistency(manifest: dict[str, Any]) -> str | None:
    """What in a manifest contradicts the rest of it: a debias that is no length fit, a prompt column that is not one
    of its columns, fewer or more shards than its rows fill (a shortened list would drop rows without a word)."""
    debias = manifest.get("debias")
    if debias is not None and not (
        isinstance(debias, dict) and all(type(debias.get(key)) in (int, float) for key in ("intercept", "slope"))
    ):
        return "its 'debias' is not a length fit (an object with a number intercept and slope)"
    column, columns = _field(manifest, "config.prompt_column"), _field(manifest, "dataset.columns")
    if column is not _ABSENT and columns is not _ABSENT and column not in columns:
        return f"its config.prompt_column {column!r} is not one of its columns ({', '.join(map(str, columns))})"
    rows, names, shard_rows = manifest.get("rows"), manifest.get("shards"), manifest_shard_rows(manifest)
    needed = len(shard_bounds(rows, shard_rows)) if rows else None
    if needed is not None and names is not None and len(names) != needed:
        return f"it lists {len(names)} shard(s), but rows {rows} at shard_rows {shard_rows} need {needed}"
    return None


def shard_intact(path: Path, checksum: str | None, low: int, high: int, schema: pa.Schema | None = None) -> bool:
    """Whether a shard on disk is what a run wrote: its SHA-256 matches or, lacking one, it reads as rows low..high."""
    if not path.is_file():
        return False
    if checksum is not None:
        return file_sha256(path) == checksum
    try:
        table = read_shard(path)
    except InputError:
        return False
    if "gc_id" not in table.column_names or table.column("gc_id").null_count:
        return False
    ids = table.column("gc_id").to_numpy()  # compared as one array: no Python int per row on the resume path
    same_schema = schema is None or table.schema.equals(schema, check_metadata=False)
    return same_schema and len(ids) == high - low and bool(np.array_equal(ids, np.arange(low, high)))


def read_scores(scores_dir: Path, columns: list[str] | None = None) -> pa.Table:
    """All shards of a complete scores directory as one table, in gc_id order; a damaged shard is refused by name."""
    manifest = read_manifest(scores_dir)
    if not manifest.get("complete"):
        parts = any(Path(scores_dir).glob("part-*-of-*.json"))  # an array job's: its parts finish, then a merge
        finish = (
            "finish every --shard-index part, then `gaincurate merge` it"
            if parts
            else "re-run the same `gaincurate score` command to finish it"
        )
        raise InputError(f"{scores_dir} is not complete; {finish}")
    checksums = manifest.get("checksums", {})
    tables = []
    for name in manifest["shards"]:
        path = Path(scores_dir) / name
        expected = checksums.get(name)
        if expected is not None and (not path.is_file() or file_sha256(path) != expected):
            state = "is damaged (its SHA-256 differs from the manifest's)" if path.is_file() else "is missing"
            raise InputError(f"shard {path} {state}; re-run the same `gaincurate score` command to rebuild it")
        table = read_shard(path)
        tables.append(table.select(columns) if columns else table)
    if not tables:
        return pa.table({})
    table = pa.concat_tables(tables)  # zero-copy: the shards stay memory-mapped, read only where a column is used
    if table.num_rows != manifest["rows"]:
        said = f"it says {manifest['rows']} rows, its shards hold {table.num_rows}"
        raise InputError(f"{Path(scores_dir) / MANIFEST} is damaged: {said}; {_rescore(scores_dir)}")
    if "gc_id" not in table.column_names or in_id_order(table.column("gc_id")):
        return table  # `score` writes gc_id order: sorting it again would copy every column (6 GB at 1M rows)
    return table.sort_by("gc_id")


def in_id_order(ids: pa.ChunkedArray) -> bool:
    """Whether gc_ids never decrease (a stable sort would leave the table as it is), tested chunk by chunk."""
    previous = None
    for chunk in ids.chunks:
        values = chunk.to_numpy(zero_copy_only=False)
        if not len(values):
            continue
        if chunk.null_count or (previous is not None and values[0] < previous) or np.any(values[1:] < values[:-1]):
            return False
        previous = values[-1]
    return True


def numeric_input_column(table: pa.Table, column: str) -> np.ndarray:
    """An input column of a scores table as float64 (None -> NaN), for `--against COLUMN`."""
    if column not in table.column_names or column.startswith(RESERVED_PREFIX):
        available = [c for c in table.column_names if not c.startswith(RESERVED_PREFIX)]
        raise InputError(f"--against {column}: no such input column; available: {', '.join(available)}")
    try:
        return np.array([np.nan if v is None else float(v) for v in table.column(column).to_pylist()])
    except (TypeError, ValueError):
        raise InputError(f"--against {column}: the column is not numeric; pick a numeric column") from None


def ranking_scores(table: pa.Table, manifest: dict[str, Any]) -> np.ndarray:
    """The score a ranking uses: gc_score, or its length residual when scored with `--debias length`."""
    score = table.column("gc_score").to_numpy(zero_copy_only=False).astype(np.float64)
    tokens = table.column("gc_question_tokens").to_numpy(zero_copy_only=False)
    return apply_debias(score, tokens, manifest.get("debias"))
