"""Checks of a JSON or JSON-lines file before `datasets` reads it, so a broken file gets one line that says where.

* `json_syntax_error(path)`: where the file stops being JSON, its line counted from 1 (datasets says "row" from 0,
  or nothing);
* `check_json_depth_once(path)`: refuse nesting deeper than Arrow reads, before pyarrow's reader crashes on it;
* `check_not_empty(path)`: say so when a dataset file of any kind holds no row;
* `builders_quiet()`: silence datasets' file readers' own log of a failure, which our error replaces.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gaincurate.errors import InputError
from gaincurate.fileio import cache_dir


@contextlib.contextmanager
def builders_quiet() -> Iterator[None]:
    """datasets' readers (json, csv, parquet, arrow) log a failure before raising it, so the user saw it twice or
    three times, even with --quiet; our one-line error replaces them all."""
    logger = logging.getLogger("datasets.packaged_modules")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def check_not_empty(path: Path) -> None:
    """Say so when a file holds no rows: empty, blank lines only, a CSV header alone, a parquet schema alone."""
    fix, suffix = "it needs one prompt per row", path.suffix.lower()
    if path.stat().st_size == 0:
        raise InputError(f"{path} is empty (0 bytes); {fix}")
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            metadata = pq.read_metadata(path)
        except Exception:  # not parquet at all: the reader's own message says so
            return
        if metadata.num_rows == 0:
            names = ", ".join(metadata.schema.names)
            raise InputError(f"{path} has columns ({names}) but no rows; {fix}")
        return
    if suffix not in (".json", ".jsonl", ".csv"):
        return
    lines = 0
    with path.open("rb") as file:
        for line in file:
            if line.strip():
                lines += 1
                if lines > 1 or suffix != ".csv":
                    return
    if lines == 0:
        raise InputError(f"{path} holds only blank lines; {fix}")
    raise InputError(f"{path} has a header line but no rows; {fix}")


def json_syntax_error(path: Path) -> str | None:
    """Where a JSON (lines) file stops being JSON, counting lines from 1: datasets says "row" from 0, or nothing.

    Read as one document first (a `.json` array may span lines); "Extra data" after the first value means
    JSON lines, checked one line at a time. None: the syntax is fine, the failure is something else.
    """
    try:
        with open(path, encoding="utf-8") as file:
            json.load(file)
        return None
    except UnicodeDecodeError:
        return None  # the UTF-8 check names the row
    except json.JSONDecodeError as whole:
        if not whole.msg.startswith("Extra data"):
            return f"line {whole.lineno} is not valid JSON ({whole.msg}, column {whole.colno})"
    with open(path, encoding="utf-8") as file:
        for number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                json.loads(line.rstrip("\r\n"))  # the column, not "line 2 column 1" of the newline
            except json.JSONDecodeError as error:
                return f"line {number} is not valid JSON ({error.msg}, column {error.colno})"
    return None


# Arrow nests types at most 64 deep, so deeper JSON never loads; far deeper JSON (about 10,000 levels)
# crashes pyarrow's reader with a segmentation fault instead of an error, so it is refused before parsing.
MAX_JSON_DEPTH = 64
_OPEN, _CLOSE, _QUOTE, _BACKSLASH = (ord("["), ord("{")), (ord("]"), ord("}")), ord('"'), ord("\\")


def check_json_depth_once(path: Path) -> None:
    """`check_json_depth`, remembered per file version in the user cache: a large file is scanned once."""
    stat = path.stat()
    identity = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{MAX_JSON_DEPTH}"
    marker = cache_dir() / "json-depth-checked" / hashlib.sha256(identity.encode()).hexdigest()[:24]
    if marker.exists():
        return
    check_json_depth(path)
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    except OSError:
        pass  # an unwritable cache only means scanning again next time


def check_json_depth(path: Path, limit: int = MAX_JSON_DEPTH, block: int = 8 << 20) -> None:
    """Refuse a JSON (lines) file whose brackets nest deeper than `limit`, outside strings; one pass, by block."""
    import numpy as np

    step_of = np.zeros(256, dtype=np.int8)  # +1 for an opening bracket, -1 for a closing one, by byte value
    step_of[list(_OPEN)], step_of[list(_CLOSE)] = 1, -1
    depth, in_string, backslashes = 0, False, 0  # carried from block to block
    with open(path, "rb") as file:
        while chunk := file.read(block):
            data = np.frombuffer(chunk, dtype=np.uint8)
            quotes = np.flatnonzero(data == _QUOTE)
            quotes = quotes[_unescaped(data, quotes, backslashes)]
            step = step_of[data]
            brackets = np.flatnonzero(step)
            outside = (np.searchsorted(quotes, brackets) + in_string) % 2 == 0
            levels = depth + np.cumsum(step[brackets[outside]], dtype=np.int64)
            if len(levels) and levels.max() > limit:
                raise InputError(
                    f"{path} nests JSON values more than {limit} levels deep, more than Arrow can read; "
                    "flatten or drop the deeply nested fields"
                )
            depth = int(levels[-1]) if len(levels) else depth
            in_string = bool((in_string + len(quotes)) % 2)
            run = 0  # a run of backslashes at the block's end goes on in the next block
            while run < len(data) and data[len(data) - 1 - run] == _BACKSLASH:
                run += 1
            backslashes = backslashes + run if run == len(data) else run


def _unescaped(data: Any, quotes: Any, carried: int) -> Any:
    """Which quotes open or close a string: those after an even run of backslashes (`carried` end the last block)."""
    import numpy as np

    runs = np.zeros(len(quotes), dtype=np.int64)
    before = quotes - 1
    going = before >= 0
    going[going] = data[before[going]] == _BACKSLASH
    while going.any():  # as many rounds as the longest run of backslashes, not one per quote
        runs += going
        before = before - going
        going &= before >= 0
        going[going] = data[before[going]] == _BACKSLASH
    runs += np.where(before < 0, carried, 0)  # a run that reaches the block's start goes on in the previous one
    return runs % 2 == 0
