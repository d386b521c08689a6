"""The glue every trainer path shares has one definition: an epoch's dataset rows, and the map gc_id -> row.

TRL in process and verl's two paths (its sampler, its one launch) read their own datasets' gc_ids their own way,
then call `gaincurate.schedule.run.rows`; a second definition would be a copy that can drift.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from gaincurate.errors import ConfigError
from gaincurate.schedule.run.rows import epoch_rows, rows_by_gc_id

PACKAGE = Path(__file__).resolve().parents[2] / "gaincurate"


def definitions(name: str) -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name:
                found.append(str(path.relative_to(PACKAGE)))
    return found


@pytest.mark.parametrize("name", ["epoch_rows", "rows_by_gc_id"])
def test_each_piece_of_trainer_glue_is_defined_once(name):
    assert definitions(name) == ["schedule/run/rows.py"]


class Plan:
    epoch, gc_ids = 3, np.array([7, 2, 5])


def test_an_epochs_rows_follow_its_plan_in_rank_order_or_a_seeded_shuffle():
    row_of = rows_by_gc_id([2, 5, 9, 7], fix="fix it")
    assert row_of == {2: 0, 5: 1, 9: 2, 7: 3}
    assert epoch_rows(Plan, row_of, seed=0) == [3, 0, 1]
    shuffled = epoch_rows(Plan, row_of, seed=0, shuffle=True)
    assert sorted(shuffled) == [0, 1, 3] and shuffled == epoch_rows(Plan, row_of, seed=0, shuffle=True)


def test_a_row_without_a_gc_id_or_a_prompt_without_a_row_is_refused_with_the_fix():
    with pytest.raises(ConfigError, match=r"carry no gc_id \(extra_info\.gc_id\); export it"):
        rows_by_gc_id([1, None], fix="export it", where=" (extra_info.gc_id)")
    with pytest.raises(ConfigError, match=r"lacks 1 scored prompt\(s\) \(gc_id 4, \.\.\.\); pass the dataset"):
        rows_by_gc_id([1, 2], expected=[1, 4], fix="pass the dataset")


def test_feedback_lines_are_appended_in_one_place():
    """Out of process, TRL's `record_rewards` and verl's reward functions write through one recorder
    (`gaincurate.schedule.run.recorder`); no other module of the trainer paths appends feedback lines itself."""
    writers = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", getattr(node.func, "attr", "")) == "append_rollouts"
            ):
                writers.append(str(path.relative_to(PACKAGE)))
    assert [path for path in writers if path.startswith(("integrations/", "schedule/run/"))] == [
        "schedule/run/recorder.py"
    ]


def test_trl_and_verl_record_the_same_lines_to_the_feedback_file(tmp_path, monkeypatch):
    from gaincurate.integrations.trl.rewards import record_rewards
    from gaincurate.integrations.verl.reward import record_feedback

    monkeypatch.setenv("GAINCURATE_FEEDBACK_FILE", str(tmp_path / "env" / "feedback.jsonl"))
    recorded = record_rewards(lambda completions, **kwargs: [1.0, 0.0])
    assert recorded(["a", "b"], gc_id=[4, 7]) == [1.0, 0.0]
    assert record_feedback({"gc_id": 4}, 1.0) and record_feedback({"gc_id": 7}, {"score": 0.0})
    lines = (tmp_path / "env" / "feedback.jsonl").read_text().splitlines()
    assert lines[:2] == lines[2:] and len(lines) == 4


def test_the_scores_folder_has_one_owner():
    """The scores folder's lock and manifest writes live in `gaincurate.scoring.output`: no other module names
    `OutputLock` or writes a file under the manifest's name itself (they call `write_manifest`)."""
    owner = PACKAGE / "scoring" / "output.py"
    others = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == owner:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            named = getattr(node, "id", getattr(node, "attr", None))
            writes = (
                isinstance(node, ast.Call) and "MANIFEST" in ast.unparse(node) and "write" in ast.unparse(node.func)
            )
            if named == "OutputLock" or writes:
                others.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert others == []
