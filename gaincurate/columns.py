"""Columns as users name them: a top-level column, or a dotted path into a struct column.

verl's own data (its `examples/data_preprocess` scripts) keeps the ground truth at `reward_model.ground_truth`,
so `--answer-column reward_model.ground_truth` reads that field of the `reward_model` column. A name that is a
column as it stands always means that column. `verl_columns` recognises verl's layout, so such a file needs no
column flags at all; `check_ground_truths` refuses answers that are objects or lists, naming the field to use.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from gaincurate.errors import InputError, interrupts_held

# verl's layout: chat messages in `prompt`, the answer under `reward_model` (verl's examples/data_preprocess).
VERL_PROMPT_COLUMN = "prompt"
VERL_ANSWER_PATH = "reward_model.ground_truth"


def schema_of(rows: Any) -> Any:
    """The pyarrow schema of a `datasets.Dataset` or a `pyarrow.Table`."""
    features = getattr(rows, "features", None)
    return features.arrow_schema if features is not None else rows.schema


def resolve(schema: Any, name: str) -> tuple[str, tuple[str, ...]] | None:
    """(top-level column, struct fields under it) that `name` names in `schema`, or None when nothing matches."""
    if name in schema.names:
        return name, ()
    head, *fields = name.split(".")
    if not fields or head not in schema.names:
        return None
    kind = schema.field(head).type
    for field in fields:
        if not hasattr(kind, "get_field_index") or kind.get_field_index(field) < 0:
            return None
        kind = kind.field(field).type
    return head, tuple(fields)


def has_column(rows: Any, name: str) -> bool:
    return resolve(schema_of(rows), name) is not None


def column_values(rows: Any, name: str) -> list[Any]:
    """The values `name` names, one per row, as Python objects (a missing struct row gives None).

    `rows` is a `datasets.Dataset`, a `pyarrow.Table`, or a batch of a dataset (a dict of lists); the caller
    has checked that the column exists (`has_column`)."""
    if isinstance(rows, Mapping):
        if name in rows:
            return list(rows[name])
        head, *fields = name.split(".")
        return [pick(value, tuple(fields)) for value in rows[head]]
    head, fields = resolve(schema_of(rows), name) or (name, ())
    if hasattr(rows, "schema"):
        column = rows.column(head)
    else:  # a Dataset: one Arrow read, not datasets' formatting row by row (90x slower). Its fingerprinting of the
        # format change swallows a Ctrl-C (a bare `except`), so one is acted on after the read.
        with interrupts_held():
            column = rows.with_format("arrow")[head]
    values = column.to_pylist()
    values = [pick(value, fields) for value in values] if fields else values
    # pyarrow gives an `arrow.json` value (datasets' type for a JSON column mixing numbers and strings) as its JSON
    # text ('"10\\%"'), which no answer matches: decoded, as datasets decodes it.
    kind = column.type
    for field in fields:
        kind = kind.field(field).type
    if getattr(kind, "extension_name", None) == "arrow.json":
        values = [None if value is None else json.loads(value) for value in values]
    return values


def pick(value: Any, fields: tuple[str, ...]) -> Any:
    for field in fields:
        value = value.get(field) if isinstance(value, Mapping) else None
    return value


def verl_columns(rows: Any) -> bool:
    """Whether `rows` are laid out as verl's preprocessing writes them: chat messages in `prompt` and a
    `reward_model` struct holding `ground_truth`."""
    import pyarrow as pa

    schema = schema_of(rows)
    if resolve(schema, VERL_ANSWER_PATH) is None or VERL_PROMPT_COLUMN not in schema.names:
        return False
    kind = schema.field(VERL_PROMPT_COLUMN).type
    return (pa.types.is_list(kind) or pa.types.is_large_list(kind)) and pa.types.is_struct(kind.value_type)


def missing_answers(values: list[Any]) -> list[int]:
    """The positions of the answers that are not there: None, or blank text."""
    return [i for i, value in enumerate(values) if value is None or (isinstance(value, str) and not value.strip())]


def check_ground_truths(values: list[Any], column: str, name: str) -> None:
    """Refuse answers that are not text or numbers: a trainer would compare the object's text with the answer
    and give a correct completion reward 0. The error names the field that holds the answer when there is one."""
    for row, value in enumerate(values):
        if value is None or (isinstance(value, str | int | float) and not isinstance(value, bool)):
            continue
        if isinstance(value, Mapping):
            fix = _field_hint(column, value)
            what = "an object"
        else:
            fix = "name a column that holds one answer per row as text or a number"
            what = "a list" if isinstance(value, list | tuple) else f"a {type(value).__name__}"
        raise InputError(
            f"column {column!r} of {name} holds {what} in row {row} (counting from 0), not an answer text or "
            f"number; {fix}"
        )


def _field_hint(column: str, value: Mapping) -> str:
    plain = [key for key, item in value.items() if isinstance(item, str | int | float) and not isinstance(item, bool)]
    if "ground_truth" in value:  # verl's reward_model {"style", "ground_truth"}
        plain = ["ground_truth"]
    fields = [key for key in plain if key != "style"] or list(value)
    if not fields:
        return "name a column that holds one answer per row as text or a number"
    return f"name the field that holds the answer: --answer-column {column}.{fields[0]}"
