"""Read a prompt dataset into a `datasets.Dataset`, whatever form it comes in.

Accepted: a local `.json`, `.jsonl`, `.parquet`, `.arrow` or `.csv` file, a folder written by
`datasets.Dataset.save_to_disk` (or a `DatasetDict`), a Hub dataset id, or nothing (the bundled sample
math prompts). Every input column is kept; scoring reads only `--prompt-column` (and the answers). A file laid
out as verl's preprocessing writes it (`gaincurate.columns.verl_columns`) is read with verl's columns when the
default ones are absent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gaincurate.columns import (
    VERL_ANSWER_PATH,
    VERL_PROMPT_COLUMN,
    check_ground_truths,
    column_values,
    has_column,
    missing_answers,
    verl_columns,
)
from gaincurate.errors import InputError, MissingColumnError
from gaincurate.hub import hub_offline, hub_unreachable
from gaincurate.json_files import builders_quiet, check_json_depth_once, check_not_empty, json_syntax_error

_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".arrow": "arrow", ".csv": "csv"}

# The bundled sample: 320 generated math problems with exact answers (generator: tests/sample_set/generate.py).
SAMPLE_PATH = Path(__file__).parent / "assets" / "math_sample.jsonl"


# The columns a run reads unless told otherwise (`--prompt-column`, `--answer-column`).
DEFAULT_PROMPT_COLUMN = "problem"
DEFAULT_ANSWER_COLUMN = "answer"
ID_COLUMN = "id"  # a dataset's own row ids, when it has them: each must be unique (`prompt_scan.check_repeats`)


@dataclass(frozen=True)
class LoadedDataset:
    rows: Any  # datasets.Dataset
    name: str
    split: str | None
    prompt_column: str = DEFAULT_PROMPT_COLUMN  # the columns to read: as asked, or verl's (`default_columns`)
    answer_column: str | None = DEFAULT_ANSWER_COLUMN
    repeats: Repeats | None = None  # prompts whose text an earlier row has (`check_repeats`)
    # From `prompt_scan.check_repeats`' one pass over the prompt text: the hash of the prompts and column names, and
    # the characters of prompt text per row (chat messages: their contents), the shards' balancing weight.
    fingerprint: str | None = None
    weights: Any = None  # numpy int64 [rows]


class SplitsError(InputError):
    """A dataset of several splits, none chosen: `splits` names them, for a fix that fits the command."""

    def __init__(self, message: str, splits: list[str]) -> None:
        super().__init__(message)
        self.splits = splits


@dataclass(frozen=True)
class Repeats:
    """Rows whose prompt text an earlier row of the dataset has: each copy would be scored and drawn on its own."""

    count: int
    first: tuple[int, int]  # (a repeating row, the earlier row it repeats), counting from 0
    rows: int  # of the dataset, repeats included
    dropped: bool  # kept only the first of each (`--drop-duplicates`)

    def line(self, name: str) -> str:
        """The one line that tells the user."""
        row, earlier = self.first
        found = f"{self.count} of {self.rows} prompts of {name} repeat an earlier row's text (first: row {row} "
        if self.dropped:
            return f"note: {found}repeats row {earlier}); --drop-duplicates kept the first of each"
        return (
            f"warning: {found}repeats row {earlier}); each copy is scored and drawn on its own: pass "
            "--drop-duplicates to keep the first of each"
        )


def load_rows(
    spec: str | None,
    *,
    split: str | None,
    prompt_column: str,
    limit: int | None,
    answer_column: str | None = DEFAULT_ANSWER_COLUMN,
) -> LoadedDataset:
    """Load, pick the columns (`default_columns`), check the prompt column exists, apply `--limit` (the first N)."""
    text_columns = [column for column in (prompt_column, answer_column) if column]  # a CSV's, read as written
    if spec is None:
        rows, name = _load_file(SAMPLE_PATH, split, text_columns), "gaincurate/math_sample"
    else:
        path = Path(spec).expanduser()
        if path.is_dir():
            rows, name = _load_saved(path, split), str(path)
        elif path.suffix.lower() in _BUILDERS:
            if not path.is_file():
                raise InputError(f"dataset file {spec} does not exist; check the path")
            rows, name = _load_file(path, split, text_columns), str(path)
        elif path.exists() or spec.startswith((".", "/", "~")) or spec.count("/") > 1:
            raise InputError(
                f"cannot read dataset {spec}: use a .json/.jsonl/.parquet/.arrow/.csv file, "
                "a save_to_disk folder or a Hub id"
            )
        else:
            rows, name = _load_hub(spec, split), spec
    prompt_column, answer_column = default_columns(rows, prompt_column, answer_column)
    if prompt_column not in rows.column_names and has_column(rows, prompt_column):
        # A field of a struct column: copied to a column of that name, which every later step reads as any other.
        rows = rows.add_column(prompt_column, column_values(rows, prompt_column))
    if prompt_column not in rows.column_names:
        raise MissingColumnError(
            f"dataset {name} has no column {prompt_column!r}; available: {', '.join(rows.column_names)}. "
            "Pass --prompt-column",
            column=prompt_column,
            available=rows.column_names,
        )
    if limit is not None:
        rows = rows.select(range(min(limit, len(rows))))
    if not len(rows):
        columns = ", ".join(rows.column_names)
        raise InputError(f"{name} has columns ({columns}) but no rows; it needs one prompt per row")
    _check_prompt_column(rows, prompt_column, name)
    _check_utf8(rows, name)
    return LoadedDataset(rows, name, split, prompt_column, answer_column)


def default_columns(rows: Any, prompt_column: str, answer_column: str | None) -> tuple[str, str | None]:
    """verl's own layout needs no flags: where a default column is absent, its verl counterpart is read."""
    if not verl_columns(rows):
        return prompt_column, answer_column
    if prompt_column == DEFAULT_PROMPT_COLUMN and prompt_column not in rows.column_names:
        prompt_column = VERL_PROMPT_COLUMN
    if answer_column == DEFAULT_ANSWER_COLUMN and answer_column not in rows.column_names:
        answer_column = VERL_ANSWER_PATH
    return prompt_column, answer_column


def check_answers(rows: Any, column: str | None, name: str, *, allow_missing: bool) -> dict[str, Any]:
    """Refuse a dataset that lacks the answer column it is told to use (by default `answer`; a dotted path
    reads a struct's field), has rows without an answer in it, or answers that are objects: a trainer's
    answer-checking reward would fail at its first step, or give those rows reward 0.

    Returns the manifest's `answers`: the column, whether it is there, and how many rows lack an answer.
    `allow_missing` scores such rows instead and counts them (every row, when the column is absent).
    """
    if column is None:
        return {"column": None, "present": False, "missing": None}
    if not has_column(rows, column):
        if not allow_missing:
            named = "" if column != DEFAULT_ANSWER_COLUMN else " (the default)"
            raise InputError(
                f"dataset {name} has no answer column {column!r}{named}; available: {', '.join(rows.column_names)}. "
                "Pass --answer-column naming it, or --allow-missing-answers to score without answers"
            )
        return {"column": column, "present": False, "missing": len(rows)}
    values = column_values(rows, column)
    check_ground_truths(values, column, name)
    missing = missing_answers(values)
    if missing and not allow_missing:
        raise InputError(
            f"{len(missing)} of {len(rows)} rows of {name} have no {column!r} answer (first: row {missing[0]}, "
            "counting from 0); fill them in, or pass --allow-missing-answers to score them anyway (counted)"
        )
    return {"column": column, "present": True, "missing": len(missing)}


def load_sample(path: Path = SAMPLE_PATH) -> list[dict]:
    """Rows of the bundled sample (or of another JSON-lines file in the same format), as plain dicts."""
    with open(path, encoding="utf-8") as file:
        return [json.loads(line) for line in file if line.strip()]


def _datasets() -> Any:
    """The `datasets` module, imported only once a file has passed the checks that need none of it: its import
    (pandas included) would be most of what refusing an empty or missing file takes."""
    import datasets

    datasets.disable_progress_bars()
    return datasets


def _load_file(path: Path, split: str | None, text_columns: list[str]) -> Any:
    builder = _BUILDERS[path.suffix.lower()]
    check_not_empty(path)
    if builder == "json":
        check_json_depth_once(path)
    # CSV has no types: pandas' guesses would read the answer 02139 as 2139.0 and the prompt "NA" as missing, so the
    # prompts and answers are read as written and only an empty cell is missing.
    csv = {"keep_default_na": False, "na_values": [""], "converters": dict.fromkeys(text_columns, str)}
    try:
        with builders_quiet():
            rows = _datasets().load_dataset(
                builder, data_files=str(path), split="train", **(csv if builder == "csv" else {})
            )
    except Exception as error:  # any parser failure means the file is unreadable
        if "corresponds to no data" in str(error):  # datasets' words for a file it read no row from (`[]`)
            raise InputError(f"{path} holds no rows; it needs one prompt per row") from None
        where = json_syntax_error(path) if builder == "json" else None
        if where is not None:
            raise InputError(
                f"cannot read {path}: {where}; fix or remove it, then run the same command again"
            ) from None
        if isinstance(error.__cause__ or error, UnicodeDecodeError):
            raise InputError(f"{path} is not UTF-8 text ({_first_line(error)}); re-save the file as UTF-8") from None
        raise InputError(
            f"cannot read {path}: {_first_line(error).rstrip('.')}. Check that it is valid {builder}"
        ) from None
    if split not in (None, "train"):
        raise InputError(f"{path} is a single file with one split; drop --split {split}")
    return rows


def _load_saved(path: Path, split: str | None) -> Any:
    try:
        loaded = _datasets().load_from_disk(str(path))
    except Exception as error:  # whatever `load_from_disk` trips on, the folder is not one it wrote
        raise InputError(f"{path} is not a datasets save_to_disk folder ({_first_line(error)})") from None
    own = str(loaded.split or "train") if isinstance(loaded, _datasets().Dataset) else None  # the split saved
    if own is not None and split not in (None, own):  # as for a single file: one dataset has no other split to pick
        raise InputError(f"{path} is a save_to_disk folder of one dataset (split {own}); drop --split {split}")
    return _pick_split(loaded, split, str(path))


def _load_hub(spec: str, split: str | None) -> Any:
    unreachable = None if hub_offline() else hub_unreachable()
    if unreachable:  # datasets would retry for a minute first
        raise InputError(
            f"cannot load dataset {spec}: the Hugging Face Hub is unreachable ({unreachable}); connect, set "
            "HF_HUB_OFFLINE=1 to use a cached copy, or pass a local .json/.jsonl/.parquet/.arrow/.csv file"
        )
    try:
        loaded = _datasets().load_dataset(spec, split=split)
    except Exception as error:  # the Hub client and the builders raise many types; all mean "cannot load"
        raise InputError(
            f"cannot load dataset {spec} from the Hub ({_first_line(error)}); check the id and network"
        ) from None
    return _pick_split(loaded, split, spec)


def _pick_split(loaded: Any, split: str | None, name: str) -> Any:
    import datasets

    if isinstance(loaded, datasets.Dataset):
        return loaded
    splits = list(loaded.keys())
    if split is None:
        if len(splits) == 1:
            return loaded[splits[0]]
        raise SplitsError(f"dataset {name} has splits {', '.join(splits)}; pick one with --split", splits)
    if split not in loaded:
        raise InputError(f"dataset {name} has no split {split!r}; available: {', '.join(splits)}")
    return loaded[split]


def _first_line(error: BaseException) -> str:
    if type(error).__name__ == "DatasetGenerationError" and error.__cause__ is not None:
        error = error.__cause__  # "An error occurred while generating the dataset" says nothing; its cause does
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _check_prompt_column(rows: Any, column: str, name: str) -> None:
    """Prompts must be text: refuse lists, numbers, and JSON columns that mix strings with other values."""
    import pyarrow as pa

    kind = rows.data.table.schema.field(column).type
    if _is_text(kind):
        return
    if pa.types.is_null(kind):
        return  # every prompt empty: each row is flagged `empty_question`, none is dropped
    if _is_messages_type(kind):
        return _check_conversations(rows, column, name, kind)  # TRL's conversational prompts, scored as they are
    if getattr(kind, "extension_name", None) == "arrow.json":  # what datasets makes of a mixed-type JSON column
        values = rows[column]
        bad = [(i, _json_kind(v)) for i, v in enumerate(values) if v is not None and not isinstance(v, str)]
        shown = ", ".join(f"{i} ({what})" for i, what in bad[:5]) + (
            f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        )
        raise InputError(
            f"column {column!r} of {name} mixes text with other JSON values: row(s) {shown} (counting from 0) "
            "hold no string; make every prompt a string"
        )
    raise InputError(
        f"column {column!r} of {name} holds {kind} values, not text; pass --prompt-column naming a text column"
    )


def _is_messages_type(kind: Any) -> bool:
    """A list of {role, content} structs: a column of chat conversations (TRL's conversational format)."""
    import pyarrow as pa

    if not (pa.types.is_list(kind) or pa.types.is_large_list(kind)) or not pa.types.is_struct(kind.value_type):
        return False
    names = {kind.value_type.field(i).name for i in range(kind.value_type.num_fields)}
    return {"role", "content"} <= names


def _is_text(kind: Any) -> bool:
    import pyarrow as pa

    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)


def _check_conversations(rows: Any, column: str, name: str, kind: Any) -> None:
    """Refuse, naming the first such row, a conversation that a chat template cannot render as TRL renders it (with
    every message's role and text content): the checks are vectorised; Python reads the rows only to name one."""
    import pyarrow.compute as pc

    def whole(chunk: Any) -> bool:  # no empty conversation, no message without a role or text
        messages = chunk.flatten()
        empty = pc.any(pc.equal(pc.list_value_length(chunk), 0)).as_py()
        return not (empty or messages.null_count or any(messages.field(key).null_count for key in ("role", "content")))

    text = all(_is_text(kind.value_type.field(key).type) for key in ("role", "content"))
    if text and all(whole(chunk) for chunk in rows.with_format("arrow")[column].chunks):
        return
    for row, value in enumerate(rows[column]):
        problem = _conversation_problem(value)
        if problem:
            raise InputError(f"row {row} (counting from 0) of column {column!r} of {name} {problem}")


def _conversation_problem(value: Any) -> str | None:
    """Why a conversation cannot be rendered, in words that follow its name; None when it can (or is none)."""
    if not isinstance(value, list | tuple):
        return None
    if not value:
        return "is an empty conversation (no message); give it at least one user message, or remove the row"
    for index, message in enumerate(value):
        role, content = (message.get("role"), message.get("content")) if isinstance(message, dict) else (None, None)
        if not isinstance(role, str):
            return f"has message {index} without a role; give every message a 'role' and a 'content' string"
        if content is None:
            return f"has message {index} ({role}) with no content (null); give it text, or remove the message"
        if isinstance(content, list | tuple):
            return f"has message {index} ({role}) with content parts, not text; join the parts' text into one string"
        if not isinstance(content, str):
            return f"has message {index} ({role}) whose content is not text; make every message's content a string"
    return None


def _json_kind(value: Any) -> str:
    kinds = {bool: "boolean", int: "number", float: "number", dict: "object", list: "array"}
    return kinds.get(type(value), type(value).__name__)


def _check_utf8(rows: Any, name: str) -> None:
    """Refuse text that is not UTF-8: the JSON reader passes such bytes through, and reading them fails later."""
    import pyarrow as pa

    table = rows.data.table
    try:
        table.validate(full=True)
    except pa.ArrowInvalid:
        for column_name in table.column_names:
            for offset, chunk in _chunks(table.column(column_name)):
                try:
                    chunk.validate(full=True)
                except pa.ArrowInvalid:
                    row = offset + _first_undecodable(chunk)
                    raise InputError(
                        f"{name} is not UTF-8 text: column {column_name!r}, row {row} (counting from 0) holds "
                        "bytes that are not UTF-8; re-save the file as UTF-8"
                    ) from None
        raise


def _chunks(column: Any) -> Any:
    offset = 0
    for chunk in column.chunks:
        yield offset, chunk
        offset += len(chunk)


def _first_undecodable(chunk: Any) -> int:
    for index in range(len(chunk)):
        try:
            chunk[index].as_py()
        except UnicodeDecodeError:
            return index
    return 0
