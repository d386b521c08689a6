"""Every documented dataset form loads with all its columns; bad rows are kept and flagged."""

from __future__ import annotations

import datasets
import pytest
from helpers import PROBLEMS

from gaincurate.data import fingerprint, load_rows
from gaincurate.errors import InputError
from gaincurate.scoring import score
from gaincurate.scoring.config import RunOptions, ScoreConfig
from gaincurate.shards import read_manifest, read_scores


@pytest.mark.parametrize("form", ["json", "jsonl", "parquet", "csv", "arrow", "save_to_disk", "dataset_dict"])
def test_every_local_form_loads_with_all_columns(form, tmp_path):
    rows = datasets.Dataset.from_list(PROBLEMS)
    path = tmp_path / f"data.{form}"
    if form == "json":
        rows.to_json(path, lines=False)
    elif form == "jsonl":
        rows.to_json(path, lines=True)
    elif form == "parquet":
        rows.to_parquet(path)
    elif form == "csv":
        rows.to_csv(path, index=False)
    elif form == "arrow":
        path = tmp_path / "data.arrow"
        rows.save_to_disk(tmp_path / "saved")
        path.write_bytes(next((tmp_path / "saved").glob("*.arrow")).read_bytes())
    elif form == "save_to_disk":
        rows.save_to_disk(path)
    else:
        datasets.DatasetDict({"train": rows, "test": rows.select(range(2))}).save_to_disk(path)
    loaded = load_rows(str(path), split="test" if form == "dataset_dict" else None, prompt_column="problem", limit=None)
    expected = PROBLEMS[:2] if form == "dataset_dict" else PROBLEMS
    assert loaded.rows["problem"] == [p["problem"] for p in expected]
    assert set(loaded.rows.column_names) == {"problem", "answer", "difficulty"}


def test_dataset_dict_needs_a_split(tmp_path):
    rows = datasets.Dataset.from_list(PROBLEMS)
    datasets.DatasetDict({"train": rows, "test": rows}).save_to_disk(tmp_path / "dd")
    with pytest.raises(InputError, match="pick one with --split"):
        load_rows(str(tmp_path / "dd"), split=None, prompt_column="problem", limit=None)


def test_limit_and_fingerprint(tmp_path):
    rows = datasets.Dataset.from_list(PROBLEMS)
    rows.to_json(tmp_path / "d.jsonl", lines=True)
    first = load_rows(str(tmp_path / "d.jsonl"), split=None, prompt_column="problem", limit=3).rows
    assert len(first) == 3
    assert fingerprint(first, "problem") != fingerprint(rows, "problem")
    assert fingerprint(first, "problem") == fingerprint(rows.select(range(3)), "problem")


def test_empty_and_missing_questions_are_kept_and_flagged(tiny_llama, tmp_path):
    rows = [*PROBLEMS[:3], {"problem": "", "answer": "0", "difficulty": 1},
            {"problem": None, "answer": "0", "difficulty": 1}]  # fmt: skip
    datasets.Dataset.from_list(rows).to_json(tmp_path / "d.jsonl", lines=True)
    config = ScoreConfig(dataset=str(tmp_path / "d.jsonl"), model=str(tiny_llama), dtype="float32", device="cpu")
    manifest = score(config, RunOptions(out=str(tmp_path / "s")))
    table = read_scores(tmp_path / "s")
    assert table.num_rows == 5 and table["gc_status"].to_pylist()[3:] == ["empty_question", "empty_question"]
    assert manifest["diagnostics"]["status_counts"]["empty_question"] == 2
    assert read_manifest(tmp_path / "s")["diagnostics"]["unscored_rows"] == 2
