"""A complete scores directory written directly from made-up scores, as `gaincurate score` lays it out.

The one writer behind the scheduler's, the difficulty tests' and the simulation's builders, so a change to
the shards or the manifest is made here once. No model is involved.

    columns = score_columns(scores, question_tokens)          # the gc_* columns, gc_id 0..N-1
    write_scores_dir(folder, inputs, columns, dataset={"name": "toy", "fingerprint": "toy-40"})
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from gaincurate import shards
from gaincurate.fileio import atomic_write_json


def score_columns(
    score: np.ndarray, question_tokens: Sequence[int], *, intra: Any = None, inter: Any = None
) -> dict[str, pa.Array]:
    """The gc_* columns of `len(score)` rows: intra and inter are halves of the score unless given; NaN: no score."""
    n = len(score)
    return {
        "gc_id": pa.array(np.arange(n), pa.int64()),
        "gc_intra": pa.array(score / 2 if intra is None else intra),
        "gc_inter": pa.array(score / 2 if inter is None else inter),
        "gc_score": pa.array(score, from_pandas=True),
        "gc_question_tokens": pa.array(question_tokens, pa.int32()),
        "gc_context_tokens": pa.array(np.full(n, 20), pa.int32()),
        "gc_truncated": pa.array(np.zeros(n, dtype=bool)),
        "gc_status": pa.array(["ok"] * n),
    }


def write_scores_dir(
    directory: Path,
    inputs: pa.Table,
    columns: dict[str, pa.Array],
    *,
    dataset: dict[str, str],
    shard_rows: int | None = None,
    system_prompt: str = "Solve it.",
    few_shot: Sequence[dict[str, str]] = (),
    answer_column: str | None = "answer",
    debias: dict | None = None,
    hashes: bool = True,
    prompt_column: str = "problem",
) -> Path:
    """`inputs` and their gc_* `columns` (with `gc_embedding`: an embedded run) in shards, then the manifest.

    The prompt and answer hash columns are computed from `inputs` as `gaincurate score` does; `hashes=False`
    leaves them out, as scores written before they existed.
    """
    from gaincurate.columns import column_values, has_column
    from gaincurate.prompts import answer_text, prompt_digest

    schema = shards.output_schema(inputs.schema, embed="gc_embedding" in columns)
    columns = {name: array for name, array in columns.items() if name not in shards.HASH_COLUMNS}
    if hashes:
        answers = column_values(inputs, answer_column) if answer_column and has_column(inputs, answer_column) else None
        columns["gc_prompt_hash"] = pa.array([prompt_digest(v) for v in inputs.column(prompt_column).to_pylist()])
        columns["gc_answer_hash"] = pa.array(
            [prompt_digest(answer_text(a)) for a in answers] if answers else [None] * inputs.num_rows, pa.string()
        )
    else:
        schema = pa.schema([field for field in schema if field.name not in shards.HASH_COLUMNS])
    embedding = columns.pop("gc_embedding", None)  # the schema's order: score fields, hashes, then the embedding
    if embedding is not None:
        columns["gc_embedding"] = embedding
    table = pa.Table.from_arrays([*inputs.columns, *columns.values()], schema=schema)
    directory.mkdir(parents=True, exist_ok=True)
    size = shard_rows or max(table.num_rows, 1)
    names = [shards.shard_name(index) for index in range(-(-table.num_rows // size))]
    for index, name in enumerate(names):
        shards.write_shard(directory / name, table.slice(index * size, size))
    manifest = {
        "format_version": shards.FORMAT_VERSION,
        "complete": True,
        "rows": table.num_rows,
        "shard_rows": size,
        "shards": names,
        "config": {
            "prompt_column": prompt_column,
            "answer_column": answer_column,
            "system_prompt": system_prompt,
            "few_shot": list(few_shot),
            "chat_template": True,
        },
        "dataset": dataset,
        "debias": debias,
    }
    atomic_write_json(directory / shards.MANIFEST, manifest)
    return directory
