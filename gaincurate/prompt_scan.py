"""One pass over a dataset's prompt text, for everything scoring needs from the whole column before it starts:
repeated ids and texts (`check_repeats`), the data's fingerprint and each row's characters, the shards' weights."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from gaincurate.columns import column_values
from gaincurate.data import ID_COLUMN, LoadedDataset, Repeats
from gaincurate.errors import InputError


def check_repeats(loaded: LoadedDataset, *, drop: bool) -> LoadedDataset:
    """Refuse repeated ids (the `id` column, when there is one); count the prompts whose text repeats an earlier
    row's (`repeats`), and with `drop` keep only the first row of each. The same pass over the text
    (`scan_prompts`) gives the kept rows' `weights` and, with their other columns (`other_columns`), their
    `fingerprint`, so no later step reads the whole prompt column."""
    rows, name = loaded.rows, loaded.name
    if ID_COLUMN in rows.column_names:
        seen: dict[Any, int] = {}
        for row, value in enumerate(column_values(rows, ID_COLUMN)):
            key = json.dumps(value, sort_keys=True, default=str)
            if key in seen:
                raise InputError(
                    f"{name} repeats ids: rows {seen[key]} and {row} (counting from 0) both have {ID_COLUMN} "
                    f"{value!r}; give every row its own id, or rename the column if it holds no ids"
                )
            seen[key] = row
    scan = scan_prompts(rows, loaded.prompt_column)
    found = Repeats(len(scan.repeats), scan.repeats[0], len(rows), drop) if scan.repeats else None
    dropping = drop and found is not None
    rows = rows.select(scan.keep) if dropping else rows
    prompts, weights = (scan.kept, scan.lengths[scan.keep]) if dropping else (scan.every, scan.lengths)
    fingerprint = hashlib.sha256(f"{prompts}:{other_columns(rows, loaded.prompt_column)}".encode()).hexdigest()[:16]
    return dataclasses.replace(loaded, rows=rows, repeats=found, fingerprint=fingerprint, weights=weights)


def other_columns(rows: Any, prompt_column: str) -> str:
    """A hash of every column but the prompts' (answers, ids, whatever the shards carry on to training), by value:
    each batch of rows as one Arrow IPC stream of one chunk, so the file's own chunking does not enter it."""
    import pyarrow as pa

    digest = hashlib.sha256()
    names = [name for name in rows.column_names if name != prompt_column]
    if names:
        for batch in rows.select_columns(names).with_format("arrow").iter(batch_size=10_000):
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, batch.schema) as writer:
                writer.write_table(batch.combine_chunks())
            digest.update(sink.getvalue().to_pybytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class PromptScan:
    """The rows to keep (the first of each text), the repeats (row, earlier row), the fingerprint of every row and
    of the kept rows, and each row's characters."""

    keep: list[int]
    repeats: list[tuple[int, int]]
    every: str
    kept: str
    lengths: Any  # numpy int64 [rows]


def scan_prompts(rows: Any, prompt_column: str) -> PromptScan:
    """Read each prompt's text once: repeats, the fingerprint (prompts and column names: it changes whenever the
    scored text could) of the rows and of those `--drop-duplicates` keeps, characters per row (chats: contents)."""
    names = ",".join(rows.column_names).encode()
    every, kept = hashlib.sha256(names), hashlib.sha256(names)
    first: dict[bytes, int] = {}
    keep, repeats, lengths = [], [], []
    for batch in rows.select_columns([prompt_column]).iter(batch_size=10_000):
        for text in batch[prompt_column]:
            row, shown = len(lengths), repr(text).encode()
            digest = hashlib.sha256(shown).digest()
            every.update(shown + b"\x00")
            if digest in first:
                repeats.append((row, first[digest]))
            else:
                first[digest] = row
                keep.append(row)
                kept.update(shown + b"\x00")
            lengths.append(_text_length(text))
    return PromptScan(keep, repeats, every.hexdigest()[:16], kept.hexdigest()[:16], np.array(lengths, dtype=np.int64))


def _text_length(value: Any) -> int:
    """Characters of a prompt: its text, or its chat messages' contents; 0 for none."""
    if isinstance(value, list):
        return sum(len(message["content"] or "") for message in value)
    return len(value) if isinstance(value, str) else 0
