"""A damaged run directory: state.json or history.jsonl changed from outside gives one line, not a traceback."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from gaincurate.errors import ConfigError, InputError
from gaincurate.schedule.config import ScheduleConfig
from gaincurate.schedule.run.run import Run
from gaincurate.schedule.run.rundir import load_run, read_history
from gaincurate.schedule.run.status import run_status
from gaincurate.schedule.run.steps import init_run

CONFIG = ScheduleConfig(strategy="gain", seed=3, subset_size=8, sigma=6)
GAINCURATE = Path(sys.executable).parent / "gaincurate"


@pytest.fixture()
def run_dir(tmp_path, scores_dir) -> Path:
    init_run(tmp_path / "run", scores_dir, CONFIG)
    Run.open(tmp_path / "run").step()
    return tmp_path / "run"


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda text: text[: len(text) // 2], "Unterminated string|Expecting"),  # cut off
        (lambda text: "[]", "a JSON list, not an object"),
        (lambda text: json.dumps({k: v for k, v in json.loads(text).items() if k != "ranking"}), "no 'ranking' entry"),
        (lambda text: text.replace('"epoch": 0', '"epoch": "zero"'), "invalid literal"),
        (lambda text: "\udcff", "utf-8"),
    ],
    ids=["truncated", "list", "missing-key", "wrong-type", "not-utf8"],
)
def test_damaged_state_is_one_line(run_dir, damage, reason):
    path = run_dir / "state.json"
    path.write_bytes(damage(path.read_text()).encode(errors="surrogateescape"))
    with pytest.raises(InputError, match=rf"state.json is damaged \(.*({reason})") as error:
        load_run(run_dir)
    assert "\n" not in str(error.value) and "restore it from a backup" in str(error.value)


@pytest.mark.parametrize(
    ("line", "reason"),
    [('{"epoch": 0, "mu"', "Expecting"), ("[1, 2]", "not an object with an integer epoch")],
    ids=["truncated", "not-an-object"],
)
def test_damaged_history_names_the_line(run_dir, line, reason):
    feedback = run_dir.parent / "f.jsonl"
    feedback.write_text(
        "".join(json.dumps({"gc_id": int(i), "reward": 1.0}) + "\n" for i in load_run(run_dir).schedule.subset_ids)
    )
    Run.open(run_dir).step(feedback=feedback)
    path = run_dir / "history.jsonl"
    path.write_text(path.read_text() + line + "\n")
    with pytest.raises(InputError, match=rf"history.jsonl: line 2 is damaged \({reason}") as error:
        read_history(run_dir)
    assert "\n" not in str(error.value) and "repair or delete" in str(error.value)
    with pytest.raises(InputError, match="history.jsonl: line 2"):
        run_status(run_dir)


def test_a_run_directory_of_another_version_is_refused_through_the_console_script(run_dir):
    """0.1.0 reads only its own run directories: one line saying how to start again, and nothing written."""
    state = json.loads((run_dir / "state.json").read_text())
    old = json.dumps({**state, "version": 1})
    (run_dir / "state.json").write_text(old)
    before = sorted(path.name for path in run_dir.iterdir())
    result = subprocess.run(
        [str(GAINCURATE), "schedule", "step", "--run", str(run_dir)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "state version 1" in line and "gaincurate schedule init --scores" in line
    assert sorted(path.name for path in run_dir.iterdir()) == before and (run_dir / "state.json").read_text() == old


def test_damaged_state_through_the_console_script(run_dir):
    (run_dir / "state.json").write_text('{"version": 1, "config": ')
    result = subprocess.run(
        [str(GAINCURATE), "schedule", "status", "--run", str(run_dir)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "state.json is damaged" in line


def _leave_leftover(path: Path) -> None:
    """What an atomic write killed before its rename leaves beside `path`."""
    (path.parent / f".{path.name}.k1ll3d.tmp").write_bytes(b"half")


def test_init_killed_before_its_state_is_started_again_by_the_same_init(tmp_path, scores_dir, monkeypatch):
    import os

    real = os.replace

    def killed_at_state(src, dst):
        if Path(dst).name == "state.json":
            raise SystemExit("killed")
        real(src, dst)

    monkeypatch.setattr(os, "replace", killed_at_state)
    with pytest.raises(SystemExit):
        init_run(tmp_path / "run", scores_dir, CONFIG)
    monkeypatch.undo()
    _leave_leftover(tmp_path / "run" / "state.json")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [".state.json.k1ll3d.tmp", "history.jsonl"]
    init_run(tmp_path / "run", scores_dir, CONFIG)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["history.jsonl", "state.json"]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "history.jsonl").write_text('{"epoch": 0}\n')  # a history with lines is not init's
    with pytest.raises(ConfigError, match="not an empty directory"):
        init_run(tmp_path / "other", scores_dir, CONFIG)


def test_leftovers_are_no_sign_of_training_and_a_step_clears_them(tmp_path, scores_dir):
    from gaincurate.schedule.run.steps import open_run

    run_dir = tmp_path / "run"
    init_run(run_dir, scores_dir, CONFIG)
    Run.open(run_dir).step()  # epoch 0 drawn, not trained on
    _leave_leftover(run_dir / "epoch-0000.parquet")
    other = dataclasses.replace(CONFIG, seed=4)
    assert open_run(run_dir, scores_dir, other, write=True).config.seed == 4  # started again with the new config
    for name in ("state.json", "history.jsonl", "epoch-0000.parquet"):
        _leave_leftover(run_dir / name)
    Run.open(run_dir).step()
    assert not list(run_dir.glob(".*.tmp"))
