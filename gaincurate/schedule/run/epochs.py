"""Epoch data files: the rows of one epoch, in rank order, as the trainer reads them.

`RUN/epoch-NNNN.parquet` holds every input column, `gc_id`, and a `prompt` column built exactly as for
scoring (`gaincurate.prompts.training_prompt`): TRL's own `prompt` column (text or chat messages) as it
is, or, for a column of raw questions, the system prompt, few-shot turns and the question (as the plain text scored
with `--no-chat-template`, which TRL takes as it is; verl renders chat messages only). With `--format verl` it
also carries verl's columns (`gaincurate.schedule.run.verl_rows`): the user's `data_source`, `ability`,
`reward_model` and `extra_info` as they were, ours where they had none, and `extra_info.gc_id`. The schema is
fixed up front, and the same rows give the same bytes.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from gaincurate.columns import column_values, has_column
from gaincurate.errors import ConfigError
from gaincurate.fileio import atomic_write
from gaincurate.schedule.config import VERL_DATA_SOURCE
from gaincurate.schedule.run.inputs import ScoresInput
from gaincurate.schedule.run.verl_rows import verl_arrays, verl_fields

MESSAGES = pa.list_(pa.struct([pa.field("role", pa.string()), pa.field("content", pa.string())]))
GC_ID = pa.field("gc_id", pa.int64())


def epoch_name(epoch: int) -> str:
    return f"epoch-{epoch:04d}.parquet"


def check_format(scores: ScoresInput, data_format: str) -> None:
    """Refuse a format the scores directory cannot fill, before anything is written."""
    config = scores.prompt_config
    if config.get("prompt_column") not in scores.table.column_names:
        raise ConfigError(f"{scores.directory} has no prompt column {config.get('prompt_column')!r}; re-score it")
    if data_format == "verl" and _text_prompts(scores) and prompt_format(scores).as_is:
        raise ConfigError(
            "--format verl needs chat messages, but the scores were made from TRL's text `prompt` column; "
            "use --format trl, or score a column of questions or chat messages"
        )
    if data_format == "verl" and _text_prompts(scores):
        raise ConfigError(
            "--format verl needs chat messages (verl renders every prompt with the chat template), but the scores "
            "rendered plain 'Question:/Answer:' text (--no-chat-template); use --format trl, or score again without "
            "--no-chat-template"
        )
    if data_format == "verl" and not config.get("answer_column"):
        raise ConfigError(
            "--format verl needs a ground truth, but the scores were made without an answer column; "
            "re-score with --answer-column NAME or use --format trl"
        )
    if data_format == "verl" and not has_column(scores.table, config["answer_column"]):
        raise ConfigError(f"{scores.directory} has no answer column {config['answer_column']!r}; re-score it")


def prompt_format(scores: ScoresInput):
    """How the scores rendered their prompts (`gaincurate.prompts.training_prompt` builds TRL's from it)."""
    from gaincurate.prompts import PromptFormat, for_column

    config = scores.prompt_config
    fmt = PromptFormat(
        system_prompt=config.get("system_prompt"),
        few_shot=tuple(config.get("few_shot") or ()),
        chat_template=bool(config.get("chat_template", True)),
    )
    # Scores without the `as_is` mark wrapped even TRL's `prompt` column in the question format: train them as scored.
    as_is = for_column(fmt, str(config.get("prompt_column"))).as_is and scores.manifest.get("prompt_format") == "as_is"
    return dataclasses.replace(fmt, as_is=as_is)


def _text_prompts(scores: ScoresInput) -> bool:
    """The epoch's prompt is text: TRL's `prompt` column of text as it is, or questions scored as plain text
    (`--no-chat-template`); a column of chat messages is rendered with the chat template either way."""
    column = scores.prompt_config.get("prompt_column")
    kind = scores.table.schema.field(column).type if column in scores.table.column_names else None
    fmt = prompt_format(scores)
    listed = kind is not None and (pa.types.is_list(kind) or pa.types.is_large_list(kind))
    return (fmt.as_is or not fmt.chat_template) and kind is not None and not listed


def _prompt_kept(scores: ScoresInput) -> bool:
    """The scores read chat messages from a column named `prompt` (TRL's and verl's): it is exported untouched,
    every key of every message included."""
    column = scores.prompt_config.get("prompt_column")
    if column != "prompt" or column not in scores.table.column_names:
        return False
    kind = scores.table.schema.field(column).type
    return pa.types.is_list(kind) or pa.types.is_large_list(kind)


def epoch_schema(scores: ScoresInput, data_format: str) -> pa.Schema:
    inputs = [field for field in scores.table.schema if not field.name.startswith("gc_")]
    if _prompt_kept(scores):
        prompt = scores.table.schema.field("prompt")
    else:
        prompt = pa.field("prompt", pa.string() if _text_prompts(scores) else MESSAGES)
    if data_format == "verl":
        data_source, ability, reward_model, extra_info = verl_fields(scores.table.schema)
        fields = [data_source, prompt, ability, reward_model, extra_info]
        ours = {field.name for field in fields}
        return pa.schema([*fields, *(f for f in inputs if f.name not in ours), GC_ID])
    return pa.schema([prompt, *(f for f in inputs if f.name != "prompt"), GC_ID])


def epoch_table(
    scores: ScoresInput,
    gc_ids: np.ndarray,
    *,
    data_format: str,
    metadata: dict[str, Any],
    data_source: str | None = None,
) -> pa.Table:
    """The epoch's rows, in the order of `gc_ids`, under the fixed schema for `data_format`.

    verl rows carry the user's `data_source` or, in rows without one, `data_source` (default VERL_DATA_SOURCE,
    which verl's default_compute_score scores 1/0 on boxed answers); `gaincurate.schedule.run.verl_rows` fills the rest.
    """
    schema = epoch_schema(scores, data_format)
    rows = take_rows(scores.table, scores.rows_of(gc_ids))
    config = scores.prompt_config
    questions = rows.column(config["prompt_column"]).to_pylist()
    from gaincurate.prompts import training_prompt

    fmt = prompt_format(scores)
    columns: dict[str, Any] = {"gc_id": rows.column("gc_id")}
    if not _prompt_kept(scores):
        columns["prompt"] = [training_prompt(q, fmt) for q in questions]
    if data_format == "verl":
        answers = column_values(rows, config["answer_column"])
        dataset = str(scores.manifest.get("dataset", {}).get("name") or "gaincurate")
        columns |= verl_arrays(rows, answers, dataset=dataset, data_source=data_source or VERL_DATA_SOURCE)
    arrays = []
    for field in schema:
        if field.name not in columns:
            arrays.append(rows.column(field.name))
        elif isinstance(columns[field.name], pa.ChunkedArray | pa.Array):
            arrays.append(columns[field.name])
        else:
            arrays.append(pa.array(columns[field.name], field.type))
    encoded = json.dumps(metadata, sort_keys=True).encode()
    return pa.Table.from_arrays(arrays, schema=schema.with_metadata({b"gaincurate": encoded}))


def take_rows(table: pa.Table, rows: np.ndarray) -> pa.Table:
    """The input columns and gc_id of `rows` (in that order) of a scores table, shard by shard: `Table.take` over a
    million memory-mapped rows would first join every column, embeddings too, into one (2.5 KB a prompt)."""
    kept = table.select([name for name in table.column_names if name == "gc_id" or not name.startswith("gc_")])
    batches = kept.to_batches()
    if not batches:
        return kept.take(pa.array(rows, pa.int64()))
    starts = np.cumsum([0] + [batch.num_rows for batch in batches])
    which = np.searchsorted(starts, rows, side="right") - 1
    order = np.argsort(which, kind="stable")  # rows grouped by batch, each group in the order asked
    parts = [
        batches[batch].take(pa.array(rows[order][which[order] == batch] - starts[batch], pa.int64()))
        for batch in np.unique(which)
    ]
    grouped = pa.Table.from_batches(parts, schema=kept.schema) if parts else kept.slice(0, 0)
    return grouped.take(pa.array(np.argsort(order, kind="stable"), pa.int64()))  # back to the order asked


def write_epoch(path: Path, table: pa.Table) -> None:
    atomic_write(Path(path), lambda tmp: pq.write_table(table, tmp))
