"""The scores directory: Arrow shards of scored rows plus `manifest.json`.

Layout of `--out DIR`:

    manifest.json        what was scored, how, with which model; diagnostics and timings
    shard-00000.arrow    rows 0 .. shard_size-1: every input column plus the gc_* columns
    shard-00001.arrow    ...

Shards are Arrow IPC *stream* files, the format `datasets.Dataset.from_file` reads; pyarrow reads
them with `pyarrow.ipc.open_stream`. Each is written under a temporary name and renamed when
complete, so a file named `shard-NNNNN.arrow` is always whole. The manifest is written at the start
(`complete: false`, with the config fingerprint that a resumed run must match) and again at the end.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from gaincurate.errors import ConfigError, InputError
from gaincurate.fileio import atomic_write, read_json
from gaincurate.metrics import apply_debias

FORMAT_VERSION = 1
RESERVED_PREFIX = "gc_"
MANIFEST = "manifest.json"

SCORE_FIELDS = [
    pa.field("gc_id", pa.int64()),
    pa.field("gc_intra", pa.float64()),
    pa.field("gc_inter", pa.float64()),
    pa.field("gc_score", pa.float64()),
    pa.field("gc_question_tokens", pa.int32()),
    pa.field("gc_context_tokens", pa.int32()),
    pa.field("gc_truncated", pa.bool_()),
    pa.field("gc_status", pa.string()),
]
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


def read_manifest(scores_dir: Path) -> dict[str, Any]:
    path = Path(scores_dir) / MANIFEST
    if not path.is_file():
        raise InputError(f"{scores_dir} has no {MANIFEST}; point at a directory written by `gaincurate score`")
    try:
        return read_json(path)
    except ValueError as error:
        raise InputError(f"{path} is not valid JSON ({error}); re-run `gaincurate score --overwrite`") from None


def read_scores(scores_dir: Path, columns: list[str] | None = None) -> pa.Table:
    """All shards of a complete scores directory as one table, in gc_id order."""
    manifest = read_manifest(scores_dir)
    if not manifest.get("complete"):
        raise InputError(f"{scores_dir} is not complete; re-run the same `gaincurate score` command to finish it")
    tables = []
    for name in manifest["shards"]:
        table = read_shard(Path(scores_dir) / name)
        tables.append(table.select(columns) if columns else table)
    if not tables:
        return pa.table({})
    table = pa.concat_tables(tables)
    return table.sort_by("gc_id") if "gc_id" in table.column_names else table


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


def plan_output(out: Path, fingerprint: dict[str, Any], overwrite: bool) -> list[Path]:
    """Check that `--out` can be used; return the files `--overwrite` will delete.

    A directory written with the same fingerprint is resumed; one written with another config is
    refused unless `overwrite`; a non-empty directory that is not ours is always refused. Nothing is
    changed here, so a refusal leaves the directory byte-for-byte untouched.
    """
    if not out.exists():
        return []
    if not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a directory; choose another --out")
    ours = sorted(p for p in out.iterdir() if p.name == MANIFEST or p.name.startswith(("shard-", ".shard-", "part-")))
    if not (out / MANIFEST).exists():
        # Another array part may be writing the manifest right now: its temporary file is not foreign.
        if any(not p.name.startswith((".shard-", f".{MANIFEST}.")) for p in out.iterdir()):
            raise ConfigError(f"--out {out} is not empty and holds no {MANIFEST}; choose an empty or new directory")
        return []
    if overwrite:
        return ours
    previous = read_manifest(out).get("fingerprint", {})
    differing = sorted(k for k in set(previous) | set(fingerprint) if previous.get(k) != fingerprint.get(k))
    if differing:
        key, more = differing[0], differing[1:]
        raise ConfigError(
            f"--out {out} was scored with {key}={previous.get(key)!r}, this run has {key}={fingerprint.get(key)!r}"
            f"{' (also ' + ', '.join(more) + ' differ)' if more else ''}; "
            "use another --out, or --overwrite to replace it"
        )
    # Leftovers of a killed writer are never whole shards; they are cleared before resuming.
    return sorted(out.glob(".shard-*.tmp"))
