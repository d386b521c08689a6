"""The trainer-command adapter (`schedule run`) drives any trainer: placeholders, checkpoints, failures and resume."""

from __future__ import annotations

import io
import json
import shlex
import shutil
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from schedule_helpers import write_hf_model, write_scores

from gaincurate.errors import ConfigError, InputError
from gaincurate.integrations.command import TrainerCommandError, fill_command, run_loop
from gaincurate.schedule.config import ScheduleConfig
from gaincurate.schedule.run.run import Run
from gaincurate.schedule.run.rundir import load_run, read_history
from gaincurate.schedule.run.status import run_status
from gaincurate.schedule.run.steps import init_run
from gaincurate.supervisor import ECHO_BYTES, ECHO_LINE_CHARS, BoundedEcho

CONFIG = ScheduleConfig(strategy="gain", seed=5, subset_size=6, sigma=6, step_size=5, adj_max=12, rescore="none")

# A stand-in trainer that starts fast (no pyarrow): it writes two rollouts for every prompt of the
# 40-prompt set (the loop counts and drops those outside the epoch) and a TRL checkpoint.
# FAIL_AT=k makes it exit 3 at epoch k; NO_FEEDBACK=1 makes it skip the feedback file, BAD_FEEDBACK=1 write
# a bad line; FLOOD=1 makes it print a 10 MB line and 100,000 short ones to stderr first.
TRAINER = """
import json, os, pathlib, sys
data, checkpoint, output_dir, feedback, epoch = sys.argv[1:6]
pathlib.Path(output_dir, "calls.jsonl").open("a").write(json.dumps(sys.argv[1:6]) + "\\n")
print("training on", data, flush=True)
if os.environ.get("FLOOD"):
    sys.stderr.write("x" * 10_000_000 + "\\n" + "".join(f"step {i}\\n" for i in range(100_000)))
if os.environ.get("FAIL_AT") == epoch:
    print("CUDA out of memory (pretend)")
    sys.exit(3)
ids = range(40)
if not os.environ.get("NO_FEEDBACK"):
    with open(feedback, "w") as f:
        for i in ids:
            for r in range(2):
                f.write(json.dumps({"gc_id": i, "correct": (i + r) % 3 == 0}) + "\\n")
        if os.environ.get("BAD_FEEDBACK"):
            f.write("{not json\\n")
folder = pathlib.Path(output_dir, f"checkpoint-{(int(epoch) + 1) * 10}")
folder.mkdir(parents=True, exist_ok=True)
(folder / "config.json").write_text("{}")
header = b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
(folder / "model.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + bytes(4))
(folder / "trainer_state.json").write_text("{}")
"""


@pytest.fixture()
def scores_dir(tmp_path) -> Path:
    return write_scores(tmp_path / "scores")


@pytest.fixture()
def trainer_cmd(tmp_path) -> str:
    script = tmp_path / "trainer.py"
    script.write_text(TRAINER)
    python = shlex.quote(sys.executable)
    return (
        f"{python} {shlex.quote(str(script))} {{epoch_data}} {{checkpoint}} {{output_dir}} {{feedback_file}} {{epoch}}"
    )


def calls(run_dir: Path, output_dir: Path | None = None) -> list[list[str]]:
    path = (output_dir or run_dir / "trainer") / "calls.jsonl"
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


def test_trainer_without_feedback_leaves_the_epoch_untrained(tmp_path, scores_dir, trainer_cmd, monkeypatch):
    """Exit 0 without feedback: one line, and the epoch is not marked trained (no "waiting for feedback" limbo)."""
    run_dir = tmp_path / "run"
    init_run(run_dir, scores_dir, CONFIG)
    monkeypatch.setenv("NO_FEEDBACK", "1")
    with pytest.raises(InputError, match="exited 0 on epoch 0 but wrote no feedback") as error:
        run_loop(run_dir, epochs=2, trainer_cmd=trainer_cmd)
    assert "\n" not in str(error.value) and "--checkpoint " in str(error.value)
    state = load_run(run_dir)
    assert not state.trained and state.schedule.epoch == 0
    assert run_status(run_dir)["trained"] is False  # `status` says "waiting for training", which is true
    # Fixed trainer, same command: epoch 0 is trained again, then epoch 1.
    monkeypatch.delenv("NO_FEEDBACK")
    assert run_loop(run_dir, epochs=2, trainer_cmd=trainer_cmd).trained == [0, 1]
    assert [call[4] for call in calls(run_dir)] == ["0", "0", "1"]


def test_rollouts_handed_over_by_hand_continue_the_loop(tmp_path, scores_dir, trainer_cmd, monkeypatch):
    run_dir = tmp_path / "run"
    init_run(run_dir, scores_dir, CONFIG)
    monkeypatch.setenv("NO_FEEDBACK", "1")
    with pytest.raises(InputError):
        run_loop(run_dir, epochs=2, trainer_cmd=trainer_cmd)
    ids = pq.read_table(run_dir / "epoch-0000.parquet", columns=["gc_id"]).column("gc_id").to_pylist()
    feedback = tmp_path / "manual.jsonl"
    feedback.write_text("".join(json.dumps({"gc_id": i, "reward": 1.0}) + "\n" for i in ids))
    assert Run.open(run_dir).step(feedback=feedback, checkpoint=run_dir / "trainer").epoch == 1
    monkeypatch.delenv("NO_FEEDBACK")
    assert run_loop(run_dir, epochs=2, trainer_cmd=trainer_cmd).trained == [1]
    assert [call[4] for call in calls(run_dir)] == ["0", "1"]


def test_bad_feedback_from_the_trainer_is_not_marked_trained(tmp_path, scores_dir, trainer_cmd, monkeypatch):
    run_dir = tmp_path / "run"
    init_run(run_dir, scores_dir, CONFIG)
    monkeypatch.setenv("BAD_FEEDBACK", "1")
    with pytest.raises(InputError, match=r"feedback-0000.jsonl line 81: not valid JSON") as error:
        run_loop(run_dir, epochs=1, trainer_cmd=trainer_cmd)
    assert "\n" not in str(error.value)
    assert not load_run(run_dir).trained
    monkeypatch.delenv("BAD_FEEDBACK")
    assert run_loop(run_dir, epochs=1, trainer_cmd=trainer_cmd).trained == [0]


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


def test_paths_are_absolute_from_a_relative_run(tmp_path, scores_dir, trainer_cmd, monkeypatch):
    """{output_dir}, {feedback_file}, {run_dir} and the stored checkpoint are absolute, like {epoch_data}."""
    monkeypatch.chdir(tmp_path)
    init_run(Path("run"), scores_dir, CONFIG)
    run_loop(Path("run"), epochs=1, trainer_cmd=trainer_cmd, output_dir=Path("out"), feedback_file="fb-{epoch}.jsonl")
    ((data, checkpoint, output_dir, feedback, _),) = [
        json.loads(line) for line in Path("out/calls.jsonl").read_text().splitlines()
    ]
    assert output_dir == str(tmp_path / "out") and feedback == str(tmp_path / "fb-0000.jsonl")
    assert Path(data).is_absolute() and checkpoint == ""
    assert read_history(tmp_path / "run")[0]["checkpoint"] == str(tmp_path / "out" / "checkpoint-10")


@pytest.fixture()
def fake_rescore(monkeypatch) -> list[list[int]]:
    """Model re-scoring replaced: gc_id i scores 3 - i / 100; the calls are recorded."""
    from gaincurate import scoring

    asked: list[list[int]] = []

    def rescore(scores_dir, ids, *, checkpoint=None, nproc=1, **kwargs):
        assert Path(checkpoint).is_dir()
        asked.append([int(i) for i in ids])
        return 3.0 - np.asarray(ids, dtype=np.float64) / 100

    monkeypatch.setattr(scoring, "rescore", rescore)
    return asked


def test_resumed_from_another_directory_still_rescores(tmp_path, scores_dir, trainer_cmd, monkeypatch, fake_rescore):
    """Killed between training and the update, resumed elsewhere: the recorded checkpoint is still found."""
    from gaincurate.schedule.run.run import Run

    (tmp_path / "first").mkdir()
    monkeypatch.chdir(tmp_path / "first")
    init_run(Path("run"), scores_dir, ScheduleConfig(**{**CONFIG.to_dict(), "rescore": "subset"}))
    real_step = Run.step

    def killed_after_training(run, **kwargs):
        if run.trained:
            raise KeyboardInterrupt
        return real_step(run, **kwargs)

    monkeypatch.setattr(Run, "step", killed_after_training)
    with pytest.raises(KeyboardInterrupt):
        run_loop(Path("run"), epochs=1, trainer_cmd=trainer_cmd)
    assert load_run(Path("run")).checkpoint == str(tmp_path / "first" / "run" / "trainer" / "checkpoint-10")
    monkeypatch.setattr(Run, "step", real_step)
    monkeypatch.chdir(tmp_path)
    assert run_loop(tmp_path / "first" / "run", epochs=1, trainer_cmd=trainer_cmd).trained == []
    (record,) = read_history(tmp_path / "first" / "run")
    assert record["ang_source"] == "rescored" and len(fake_rescore) == 1


def test_recorded_checkpoint_that_is_gone_is_an_error(tmp_path, scores_dir, trainer_cmd, monkeypatch, fake_rescore):
    from gaincurate.schedule.run.run import Run

    run_dir = tmp_path / "run"
    init_run(run_dir, scores_dir, ScheduleConfig(**{**CONFIG.to_dict(), "rescore": "subset"}))
    Run.open(run_dir).step()
    real_step = Run.step
    monkeypatch.setattr(Run, "step", lambda run, **kwargs: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        run_loop(run_dir, epochs=1, trainer_cmd=trainer_cmd)
    monkeypatch.setattr(Run, "step", real_step)
    shutil.rmtree(run_dir / "trainer" / "checkpoint-10")
    with pytest.raises(InputError, match="names .*checkpoint-10 as the checkpoint of epoch 0, but it is gone"):
        Run.open(run_dir).step()
    assert not fake_rescore and load_run(run_dir).schedule.epoch == 0


def test_trainer_output_is_logged_whole_and_echoed_bounded(tmp_path, scores_dir, trainer_cmd, monkeypatch):
    """A 10 MB single line and 100,000 more: all in the log, at most about 1 MB on the terminal."""
    run_dir = tmp_path / "run"
    init_run(run_dir, scores_dir, CONFIG)
    monkeypatch.setenv("FLOOD", "1")
    echo = io.StringIO()
    run_loop(run_dir, epochs=1, trainer_cmd=trainer_cmd, echo=echo)
    log = run_dir / "logs" / "epoch-0000.log"
    assert log.stat().st_size > 10_000_000
    shown = echo.getvalue().splitlines()
    assert shown[0].startswith("training on")
    assert (
        shown[1]
        == "x" * ECHO_LINE_CHARS + f" [gaincurate: {10_000_000 - ECHO_LINE_CHARS} more bytes of this line are in {log}]"
    )
    assert shown[2] == "step 0" and len(echo.getvalue()) <= ECHO_BYTES + 1000
    assert shown[-1] == f"[gaincurate: the trainer's output is no longer echoed here; the full log is {log}]"


def test_failure_tail_of_a_flooded_log_is_bounded(tmp_path, scores_dir):
    """The error shows the log's last lines, each cut: a 10 MB last line does not end up in the message."""
    run_dir = tmp_path / "run"
    init_run(run_dir, scores_dir, CONFIG)
    flood = "import sys; sys.stderr.write('y' * 10_000_000); sys.exit(1)"
    command = f"{shlex.quote(sys.executable)} -c {shlex.quote(flood)} {{epoch_data}}"
    with pytest.raises(TrainerCommandError, match="exit code 1 on epoch 0") as error:
        run_loop(run_dir, epochs=1, trainer_cmd=command)
    assert len(str(error.value)) < 5_000 and str(error.value).endswith("y [...]")


def test_echo_shows_a_progress_bar_once_in_its_last_state():
    echo = io.StringIO()
    copy = BoundedEcho(echo, Path("x.log"), line_chars=20, total_bytes=90)
    copy.feed(b"a\r\n 10%\r 50%")
    copy.feed(b"\r100%\nlong line that goes on and on\n")
    copy.feed(b"one\ntwo\nthree\nfour\nfive")
    copy.close()
    assert echo.getvalue().splitlines() == [
        "a",
        "100%",
        "long line that goes  [gaincurate: 9 more bytes of this line are in x.log]",
        "one",
        "two",
        "[gaincurate: the trainer's output is no longer echoed here; the full log is x.log]",
    ]


def test_screen_run_screens_each_epoch_with_the_checkpoint_that_trained_the_last(
    tmp_path, scores_dir, trainer_cmd, monkeypatch
):
    """`schedule run --strategy screen`: epoch 0 screens with the initial weights, epoch k with checkpoint k-1's."""
    from gaincurate.lab.strategies.screening import Screening

    used: list[tuple[int, str | None, int]] = []

    def factory(run_dir, scores, *, seed, model_path, progress=None):
        def screen(gc_ids, epoch, rollouts):
            used.append((epoch, None if model_path is None else Path(model_path).name, len(gc_ids)))
            rates = (np.asarray(gc_ids) % 4) / 4.0  # 0, 1/4, 1/2, 3/4: the 0s are screened out
            return Screening(rates * rollouts, np.full(len(gc_ids), rollouts), 0)

        return screen

    monkeypatch.setattr("gaincurate.lab.strategies.screening.checkpoint_screener", factory)
    run_dir = tmp_path / "run"
    init_run(run_dir, scores_dir, ScheduleConfig(strategy="screen", subset_size=6, seed=2))
    base = write_hf_model(tmp_path / "base-model")
    run_loop(run_dir, epochs=3, trainer_cmd=trainer_cmd, initial_checkpoint=str(base))
    assert used == [(0, "base-model", 12), (1, "checkpoint-10", 12), (2, "checkpoint-20", 12), (3, "checkpoint-30", 12)]
    history = read_history(run_dir)
    assert [line["selection"]["screen_rollouts"] for line in history] == [48, 48, 48]
    for line in history:  # every kept prompt was measured in the band: never a 0 here (gc_id % 4 == 0)
        assert all(gc_id % 4 for gc_id in line["subset_ids"]) and line["selection"]["in_band"] >= 6


# Feedback for every prompt and no checkpoint at all: a strategy that reads the newest model finds none.
FEEDBACK_ONLY = (
    'for i in $(seq 0 39); do echo "{\\"gc_id\\": $i, \\"reward\\": $((i % 2))}"; done > {feedback_file} # {epoch_data}'
)


def test_a_stale_epoch_killed_in_its_step_is_still_stale_when_the_step_is_done_again(tmp_path, scores_dir):
    """`--allow-stale`: why the epoch is stale is kept with the trained mark, so a run killed after the training, in
    the step, writes on resume the history line a run never stopped writes (`stale` included), training nothing."""
    config = ScheduleConfig(strategy="gain", seed=5, subset_size=6, sigma=6, step_size=5, adj_max=12, rescore="subset")
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    for run_dir in (straight, killed):
        init_run(run_dir, scores_dir, config)
    run_loop(straight, epochs=1, trainer_cmd=FEEDBACK_ONLY, allow_stale=True)

    real_step, steps = Run.step, []

    def killed_in_the_step_after_training(self, **options):
        steps.append(options)
        if len(steps) == 2:  # the first draws epoch 0; the second follows its training
            raise KeyboardInterrupt
        return real_step(self, **options)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Run, "step", killed_in_the_step_after_training)
        with pytest.raises(KeyboardInterrupt):
            run_loop(killed, epochs=1, trainer_cmd=FEEDBACK_ONLY, allow_stale=True)
    assert load_run(killed).trained and read_history(killed) == []
    resumed = run_loop(killed, epochs=1, trainer_cmd=FEEDBACK_ONLY, allow_stale=True)
    assert resumed.trained == []  # the step was done again; the trainer was not run again
    (line,), (expected,) = read_history(killed), read_history(straight)
    assert line.pop("stale") == f"the trainer wrote nothing to {killed / 'trainer'}"
    assert expected.pop("stale") == f"the trainer wrote nothing to {straight / 'trainer'}"
    assert without_timings([line]) == without_timings([expected])
    assert "stale" not in json.loads((killed / "state.json").read_text())  # the mark goes with the step
