"""`schedule run` drives any trainer command: placeholders, checkpoints, failures and resume."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from gaincurate.errors import ConfigError, InputError
from gaincurate.schedule.config import ScheduleConfig
from gaincurate.schedule.loop import TrainerCommandError, fill_command, run_loop
from gaincurate.schedule.run import advance, init_run, load_run, read_history

CONFIG = ScheduleConfig(seed=5, subset_size=6, sigma=6, step_size=5, adj_max=12)

# A stand-in trainer that starts fast (no pyarrow): it writes two rollouts for every prompt of the
# 40-prompt set (the loop counts and drops those outside the epoch) and a TRL checkpoint.
# FAIL_AT=k makes it exit 3 at epoch k; NO_FEEDBACK=1 makes it skip the feedback file.
TRAINER = """
import json, os, pathlib, sys
data, checkpoint, output_dir, feedback, epoch = sys.argv[1:6]
pathlib.Path(output_dir, "calls.jsonl").open("a").write(json.dumps(sys.argv[1:6]) + "\\n")
print("training on", data)
if os.environ.get("FAIL_AT") == epoch:
    print("CUDA out of memory (pretend)")
    sys.exit(3)
ids = range(40)
if not os.environ.get("NO_FEEDBACK"):
    with open(feedback, "w") as f:
        for i in ids:
            for r in range(2):
                f.write(json.dumps({"gc_id": i, "correct": (i + r) % 3 == 0}) + "\\n")
folder = pathlib.Path(output_dir, f"checkpoint-{(int(epoch) + 1) * 10}")
folder.mkdir(parents=True)
(folder / "config.json").write_text("{}")
header = b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
(folder / "model.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + bytes(4))
(folder / "trainer_state.json").write_text("{}")
"""


@pytest.fixture()
def trainer_cmd(tmp_path) -> str:
    script = tmp_path / "trainer.py"
    script.write_text(TRAINER)
    python = shlex.quote(sys.executable)
    return (
        f"{python} {shlex.quote(str(script))} {{epoch_data}} {{checkpoint}} {{output_dir}} {{feedback_file}} {{epoch}}"
    )


def calls(run_dir: Path) -> list[list[str]]:
    path = run_dir / "trainer" / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def without_timings(history):
    return [{k: v for k, v in line.items() if k not in ("timings", "checkpoint")} for line in history]


def test_fill_command_quotes_and_keeps_other_braces():
    values = {
        "epoch_data": "/r/epoch 0.parquet",
        "checkpoint": "",
        "output_dir": "o",
        "feedback_file": "f",
        "epoch": "0",
        "run_dir": "r",
    }
    command = fill_command("train {epoch_data} --resume {checkpoint} --cfg '{lr: 1}' ${HOME}", values)
    assert command == "train '/r/epoch 0.parquet' --resume '' --cfg '{lr: 1}' ${HOME}"


def test_loop_trains_each_epoch_once(tmp_path, scores_dir, trainer_cmd):
    run_dir = tmp_path / "run"
    init_run(run_dir, scores_dir, CONFIG)
    result = run_loop(run_dir, epochs=3, trainer_cmd=trainer_cmd, initial_checkpoint="base-model")
    assert result.trained == [0, 1, 2] and result.epoch == 3
    made = calls(run_dir)
    assert [call[4] for call in made] == ["0", "1", "2"]
    assert [Path(call[0]).name for call in made] == ["epoch-0000.parquet", "epoch-0001.parquet", "epoch-0002.parquet"]
    # {checkpoint}: the initial one, then the newest complete checkpoint the previous epoch left.
    assert [Path(call[1]).name for call in made] == ["base-model", "checkpoint-10", "checkpoint-20"]
    history = read_history(run_dir)
    assert [line["epoch"] for line in history] == [0, 1, 2]
    assert history[1]["checkpoint"].endswith("checkpoint-20") and history[1]["timings"]["train_s"] > 0
    assert (run_dir / "epoch-0003.parquet").is_file() and not load_run(run_dir).trained
    assert (run_dir / "logs" / "epoch-0002.log").read_text().startswith("training on")
    # Asking again for 3 epochs does nothing; asking for 4 trains exactly one more.
    assert run_loop(run_dir, epochs=3, trainer_cmd=trainer_cmd).trained == []
    assert run_loop(run_dir, epochs=4, trainer_cmd=trainer_cmd).trained == [3]


def test_failing_trainer_stops_with_its_code_and_resumes(tmp_path, scores_dir, trainer_cmd, monkeypatch):
    straight = tmp_path / "straight"
    init_run(straight, scores_dir, CONFIG)
    run_loop(straight, epochs=3, trainer_cmd=trainer_cmd)

    run_dir = tmp_path / "run"
    init_run(run_dir, scores_dir, CONFIG)
    monkeypatch.setenv("FAIL_AT", "1")
    with pytest.raises(TrainerCommandError) as error:
        run_loop(run_dir, epochs=3, trainer_cmd=trainer_cmd)
    assert error.value.exit_code == 3
    assert "exit code 3 on epoch 1" in str(error.value) and "CUDA out of memory (pretend)" in str(error.value)
    state = load_run(run_dir)
    assert state.schedule.epoch == 1 and not state.trained

    monkeypatch.delenv("FAIL_AT")
    assert run_loop(run_dir, epochs=3, trainer_cmd=trainer_cmd).trained == [1, 2]
    assert [call[4] for call in calls(run_dir)] == ["0", "1", "1", "2"]  # the failed attempt, then the retry
    assert without_timings(read_history(run_dir)) == without_timings(read_history(straight))
    for epoch in range(4):
        name = f"epoch-{epoch:04d}.parquet"
        assert (run_dir / name).read_bytes() == (straight / name).read_bytes()


def test_missing_feedback_keeps_the_trained_epoch(tmp_path, scores_dir, trainer_cmd, monkeypatch):
    run_dir = tmp_path / "run"
    init_run(run_dir, scores_dir, CONFIG)
    monkeypatch.setenv("NO_FEEDBACK", "1")
    with pytest.raises(InputError, match="finished epoch 0 but wrote no feedback"):
        run_loop(run_dir, epochs=2, trainer_cmd=trainer_cmd)
    state = load_run(run_dir)
    assert state.trained and state.checkpoint.endswith("checkpoint-10")
    # The epoch is not trained again: the user hands the feedback over, and the loop continues.
    ids = pq.read_table(run_dir / "epoch-0000.parquet", columns=["gc_id"]).column("gc_id").to_pylist()
    feedback = tmp_path / "manual.jsonl"
    feedback.write_text("".join(json.dumps({"gc_id": i, "reward": 1.0}) + "\n" for i in ids))
    advance(run_dir, feedback=feedback)
    monkeypatch.delenv("NO_FEEDBACK")
    assert run_loop(run_dir, epochs=2, trainer_cmd=trainer_cmd).trained == [1]
    assert [call[4] for call in calls(run_dir)] == ["0", "1"]


def test_custom_feedback_file_is_archived_and_cleared(tmp_path, scores_dir, trainer_cmd):
    run_dir = tmp_path / "run"
    init_run(run_dir, scores_dir, CONFIG)
    shared = tmp_path / "rollouts.jsonl"
    shared.write_text('{"stale": true}\n')  # a leftover must not be read as this epoch's feedback
    run_loop(run_dir, epochs=2, trainer_cmd=trainer_cmd, feedback_file=str(shared))
    assert [Path(call[3]) for call in calls(run_dir)] == [shared, shared]
    assert (run_dir / "feedback-0001.jsonl").read_bytes() == shared.read_bytes()


def test_loop_rejects_a_command_without_epoch_data(tmp_path, scores_dir):
    init_run(tmp_path / "run", scores_dir, CONFIG)
    with pytest.raises(ConfigError, match="never mentions {epoch_data}"):
        run_loop(tmp_path / "run", epochs=1, trainer_cmd="true")
