"""Read a prompt dataset into a `datasets.Dataset`, whatever form it comes in.

Accepted: a local `.json`, `.jsonl`, `.parquet`, `.arrow` or `.csv` file, a folder written by
`datasets.Dataset.save_to_disk` (or a `DatasetDict`), a Hub dataset id, or nothing (the bundled sample
math prompts). Every input column is kept; scoring reads only `--prompt-column`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gaincurate.errors import InputError

_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".arrow": "arrow", ".csv": "csv"}


@dataclass(frozen=True)
class LoadedDataset:
    rows: Any  # datasets.Dataset
    name: str
    split: str | None


def load_rows(spec: str | None, *, split: str | None, prompt_column: str, limit: int | None) -> LoadedDataset:
    """Load, check the prompt column exists, and apply `--limit` (the first N rows)."""
    import datasets

    datasets.disable_progress_bars()
    if spec is None:
        from gaincurate.sample_data import SAMPLE_PATH

        rows, name = _load_file(SAMPLE_PATH, split), "gaincurate/math_sample"
    else:
        path = Path(spec).expanduser()
        if path.is_dir():
            rows, name = _load_saved(path, split), str(path)
        elif path.suffix in _BUILDERS:
            if not path.is_file():
                raise InputError(f"dataset file {spec} does not exist; check the path")
            rows, name = _load_file(path, split), str(path)
        elif path.exists() or spec.startswith((".", "/", "~")) or spec.count("/") > 1:
            raise InputError(
                f"cannot read dataset {spec}: use a .json/.jsonl/.parquet/.arrow/.csv file, "
                "a save_to_disk folder or a Hub id"
            )
        else:
            rows, name = _load_hub(spec, split), spec
    if prompt_column not in rows.column_names:
        raise InputError(
            f"dataset {name} has no column {prompt_column!r}; available: {', '.join(rows.column_names)}. "
            "Pass --prompt-column"
        )
    if limit is not None:
        rows = rows.select(range(min(limit, len(rows))))
    return LoadedDataset(rows, name, split)


def _load_file(path: Path, split: str | None) -> Any:
    import datasets

    try:
        rows = datasets.load_dataset(_BUILDERS[path.suffix], data_files=str(path), split="train")
    except Exception as error:  # noqa: BLE001 - any parser failure means the file is unreadable
        raise InputError(
            f"cannot read {path}: {_first_line(error)}. Check that it is valid {path.suffix[1:]}"
        ) from None
    if split not in (None, "train"):
        raise InputError(f"{path} is a single file with one split; drop --split {split}")
    return rows


def _load_saved(path: Path, split: str | None) -> Any:
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as error:  # noqa: BLE001
        raise InputError(f"{path} is not a datasets save_to_disk folder ({_first_line(error)})") from None
    return _pick_split(loaded, split, str(path))


def _load_hub(spec: str, split: str | None) -> Any:
    import datasets

    try:
        loaded = datasets.load_dataset(spec, split=split)
    except Exception as error:  # noqa: BLE001
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
        raise InputError(f"dataset {name} has splits {', '.join(splits)}; pick one with --split")
    if split not in loaded:
        raise InputError(f"dataset {name} has no split {split!r}; available: {', '.join(splits)}")
    return loaded[split]


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def fingerprint(rows: Any, prompt_column: str) -> str:
    """Hash of the prompts and column names: changes whenever the scored text could change."""
    digest = hashlib.sha256(",".join(rows.column_names).encode())
    for batch in rows.select_columns([prompt_column]).iter(batch_size=10_000):
        for text in batch[prompt_column]:
            digest.update(repr(text).encode())
            digest.update(b"\x00")
    return digest.hexdigest()[:16]
