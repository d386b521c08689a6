"""The one error path, seen through the real console script: one line naming the bad value and the fix.

Usage errors exit 2, other user errors 1, Ctrl-C 130; a traceback only with GAINCURATE_DEBUG=1.
"""

from __future__ import annotations

import json
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import PROBLEMS, score_in_process, write_jsonl

from gaincurate.cli import INTERRUPTED

# (arguments, words the one line must hold: the bad value, and the help to run)
USAGE_ERRORS = {
    "unknown-flag": (["show", "scores", "--bogus"], ["--bogus", "`gaincurate show --help`"]),
    "misspelt-flag": (["show", "scores", "--tpo", "3"], ["--tpo", "--top"]),
    "unknown-command": (["scroe"], ["scroe", "`gaincurate --help`"]),
    "missing-option": (["schedule", "step"], ["--run", "`gaincurate schedule step --help`"]),
    "missing-argument": (["show"], ["scores_dir", "`gaincurate show --help`"]),
    "bad-choice": (
        ["schedule", "init", "--scores", "s", "--run", "r", "--strategy", "gian"],
        ["gian", "did you mean gain"],
    ),
    "bad-choice-score": (["score", "--site", "attention"], ["--site attention", "'mlp-input', 'residual'"]),
    "wrong-type": (["score", "--limit", "ten"], ["--limit ten", "integer"]),
    "wrong-type-float": (
        ["schedule", "init", "--strategy", "gain", "--scores", "s", "--run", "r", "--sigma", "wide"],
        ["--sigma wide"],
    ),
    "three-number-range": (
        ["schedule", "init", "--strategy", "gain", "--scores", "s", "--run", "r", "--reward-range", "1,2,3"],
        ["--reward-range 1,2,3", "LO,HI", "`gaincurate schedule init --help`"],
    ),
    "one-number-prior": (
        ["schedule", "init", "--strategy", "gain", "--scores", "s", "--run", "r", "--prior", "2"],
        ["--prior 2", "A,B"],
    ),
    "negative-top": (["show", "scores", "--top", "-1"], ["--top -1", "greater than or equal to 0"]),
    "zero-limit": (["score", "--limit", "0"], ["--limit 0", "greater than or equal to 1"]),
    "zero-seeds": (["bench", "curriculum", "--bench", "cpu-arith", "--out", "b", "--seeds", "0"], ["--seeds 0"]),
    "option-for-example": (["example", "--json"], ["--json is not an option", "NAME comes first", "example --help"]),
}


@pytest.mark.parametrize("case", USAGE_ERRORS)
def test_usage_errors_are_one_line_exit_2(case, gaincurate, error_line, tmp_path):
    args, words = USAGE_ERRORS[case]
    result = gaincurate(*args)
    line = error_line(result)
    assert result.returncode == 2, result.stderr
    for word in words:
        assert word in line
    assert sorted(path.name for path in tmp_path.iterdir()) == [], "a refused command writes nothing"


# A bad option value, whichever check finds it (Typer's type, choice or minimum, a setting's own check, the config
# file's type check): (the command, the key, the value). From a flag or from `--config FILE` alike, it exits 2.
BAD_VALUES = {
    "rollout-threads": (["rollout", "s", "--out", "r.jsonl"], "threads", 0),
    "rollout-temperature": (["rollout", "s", "--out", "r.jsonl"], "temperature", -1),
    "rollout-dtype": (["rollout", "s", "--out", "r.jsonl"], "dtype", "float64"),
    "rollout-device": (["rollout", "s", "--out", "r.jsonl"], "device", "gpu"),
    "init-subset-multiple": (["schedule", "init", "--scores", "s", "--run", "r"], "subset_multiple", 0),
    "init-strategy": (["schedule", "init", "--scores", "s", "--run", "r"], "strategy", "gian"),
    "init-forget": (["schedule", "init", "--scores", "s", "--run", "r", "--strategy", "mopps"], "forget", 2),
    "run-epochs": (["schedule", "run", "--run", "r", "--trainer-cmd", "t {epoch_data}"], "epochs", 0),
    "show-top": (["show", "s"], "top", -1),
    "score-limit": (["score", "--out", "o"], "limit", 0),
    "score-site": (["score", "--out", "o"], "site", "attention"),
    "score-device": (["score", "--out", "o"], "device", "gpu"),
}


@pytest.mark.parametrize("given", ["flag", "file"])
@pytest.mark.parametrize("case", BAD_VALUES)
def test_a_bad_option_value_exits_2_named_as_it_was_given(case, given, gaincurate, error_line, tmp_path):
    """One line and exit 2; a value from the file is named as the file's key, never as a flag nobody typed."""
    args, key, value = BAD_VALUES[case]
    spelled = "--" + key.replace("_", "-")
    (tmp_path / "bad.json").write_text(json.dumps({key: value}))
    result = gaincurate(*args, *([spelled, str(value)] if given == "flag" else ["--config", "bad.json"]))
    line = error_line(result)
    assert result.returncode == 2, result.stderr
    if given == "file":
        assert f"--config bad.json: {key}" in line and spelled not in line and str(value) in line
    else:
        assert f"{spelled} " in line and "bad.json" not in line and str(value) in line
    assert [path.name for path in tmp_path.iterdir()] == ["bad.json"], "a refused command writes nothing"


def test_user_errors_exit_1_and_debug_shows_the_traceback(gaincurate, error_line, tmp_path):
    result = gaincurate("show", tmp_path / "missing")
    assert result.returncode == 1
    assert "has no manifest.json" in error_line(result) and "gaincurate score" in error_line(result)

    debug = gaincurate("show", tmp_path / "missing", env={"GAINCURATE_DEBUG": "1"})
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "InputError" in debug.stderr
    debug = gaincurate("show", "scores", "--bogus", env={"GAINCURATE_DEBUG": "1"})
    assert debug.returncode == 1 and "NoSuchOption" in debug.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["bench", "curriculum", "--bench", "cpu-arith", "--out", "b", "--strategies", "gian"],
            "unknown arm 'gian'",
        ),
        (["bench", "curriculum", "--bench", "no-such-bench", "--out", "b"], "neither a bundled config"),
        (["signal", "check", "missing"], "missing has no manifest.json"),
        (
            ["schedule", "step", "--run", "missing"],
            "--run missing does not exist; check the path, or start a run there: "
            "`gaincurate schedule init --scores SCORES --run missing`",
        ),
        (
            ["schedule", "init", "--scores", "missing", "--run", "r", "--strategy", "oracle"],
            "the benchmark's ceiling",
        ),
    ],
    ids=["bench-strategy", "bench-config", "signal-scores", "schedule-run", "oracle-outside-the-bench"],
)
def test_other_commands_user_errors_are_one_line(args, message, gaincurate, error_line, tmp_path):
    result = gaincurate(*args)
    assert result.returncode == 1 and message in error_line(result)
    assert list(tmp_path.iterdir()) == []


def test_a_run_directory_that_is_no_run_gets_the_fix_that_works_there(scored, gaincurate, error_line, tmp_path):
    """The old line suggested `schedule init --run DIR` (no --scores, and refused for a scores directory)."""
    line = error_line(gaincurate("schedule", "step", "--run", scored))
    assert line.endswith(
        f"--run {scored} is a scores directory (written by `gaincurate score`), not a run; pass the run directory, "
        f"or start a run on these scores: `gaincurate schedule init --scores {scored} --run NEW_RUN`"
    )
    (tmp_path / "empty").mkdir()
    line = error_line(gaincurate("schedule", "status", "--run", "empty"))
    assert "--run empty is empty: no run was started there" in line
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    line = error_line(gaincurate("schedule", "step", "--run", "other"))
    assert "--run other holds no state.json, so it is not a run directory" in line and "--run NEW_RUN`" in line
    # Each suggested init is one that is accepted.
    for run in ("NEW_RUN", "empty"):
        result = gaincurate("schedule", "init", "--scores", scored, "--run", run, "--subset-size", "4")
        assert result.returncode == 0, result.stderr


def test_step_after_the_scores_were_rescored_from_other_prompts_says_what_changed(
    tiny_llama, gaincurate, error_line, tmp_path
):
    """`score --overwrite` of edited prompts under a live run said only "(8 rows, run has 8)"."""
    # The scoring runs in this process (score_in_process): the refusal of `schedule step` is what is under test.
    score = ["--model", tiny_llama, "--device", "cpu", "--dtype", "float32", "--quiet", "--out", tmp_path / "scores"]
    score_in_process([write_jsonl(tmp_path / "a.jsonl", PROBLEMS), *score])
    assert gaincurate("schedule", "init", "--scores", "scores", "--run", "run", "--subset-size", "4").returncode == 0
    assert gaincurate("schedule", "step", "--run", "run").returncode == 0
    edited = [{**row, "problem": row["problem"] + " Explain."} if i == 3 else row for i, row in enumerate(PROBLEMS)]
    score_in_process([write_jsonl(tmp_path / "b.jsonl", edited), *score, "--overwrite"])
    line = error_line(gaincurate("schedule", "step", "--run", "run"))
    scores = tmp_path / "scores"
    assert line == (
        f"gaincurate: error: the scores in {scores} hold other prompts than when the run started (the same "
        f"{len(PROBLEMS)} rows, but their text or columns differ), so the run's prompt ids no longer name the prompts "
        f"it drew; score the run's own dataset into {scores} again, or start a new run on these scores in another "
        f"directory (`gaincurate schedule init --scores {scores} --run NEW_RUN`)"
    )


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([{"question": "What is 2 + 3?", "answer": "5"}], "(dataset {data} has question, answer)"),
        ([{"problem": "What is 2 + 3?", "solution": "5"}], "(dataset {data} has problem, solution)"),
        ([{"problem": "What is 2 + 3?", "answer": "5"}], "has 1 rows with an answer; the bench config needs"),
    ],
    ids=["no-problem-column", "no-answer-column", "too-few-rows"],
)
def test_a_bench_configs_dataset_is_checked_in_the_configs_own_terms(rows, expected, gaincurate, error_line, tmp_path):
    """The error named `--prompt-column`, which `bench` lacks; a missing answer column was a KeyError."""
    data = write_jsonl(tmp_path / "data.jsonl", rows)
    (tmp_path / "bench.json").write_text(json.dumps({"base": "cpu-smollm2-math", "dataset": str(data)}))
    line = error_line(gaincurate("bench", "curriculum", "--bench", "bench.json", "--out", "b", "--quiet"))
    assert expected.format(data=data) in line and "--prompt-column" not in line, line
    if "has 1 rows" not in expected:
        assert "needs a 'problem' column (the question) and an 'answer' column; rename its columns" in line


def test_a_schedule_setting_is_named_as_its_caller_spells_it(scored, gaincurate, error_line):
    """On the command line a flag; in Python the field (the Python error was phrased in flags)."""
    from gaincurate.errors import ConfigError
    from gaincurate.schedule import ScheduleConfig

    line = error_line(gaincurate("schedule", "init", "--scores", scored, "--run", "r", "--strategy", "mopps",
                                 "--tau", "0.2", "--subset-size", "4"))  # fmt: skip
    assert line == "gaincurate: error: --tau is a dots or probe or variance option; pass --strategy dots or drop --tau"
    with pytest.raises(ConfigError) as refused:
        ScheduleConfig(strategy="mopps", tau=0.2, subset_size=4)
    assert str(refused.value) == "tau is a dots or probe or variance option; pass strategy='dots' or drop tau"
    with pytest.raises(ConfigError) as refused:
        ScheduleConfig(reward_min=1.0, reward_max=0.0)
    assert str(refused.value) == "reward_min (a wrong answer) must be below reward_max (a right one); got 1,0"


def test_no_arguments_prints_the_help(gaincurate):
    result = gaincurate("schedule")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert all(command in result.stdout + result.stderr for command in ("init", "step", "run", "status"))


def interrupted_score(tmp_path: Path, tiny_llama: Path, *extra: str, ready) -> tuple[subprocess.Popen, str, str, Path]:
    """`score` over ~20 s of rows, sent SIGINT once `ready(out)` holds; its exit code, stdout, stderr, and --out."""
    rows = [{"problem": f"{p['problem']} Then add {i} and double it.", "answer": p["answer"]}
            for i in range(1000) for p in PROBLEMS]  # fmt: skip
    dataset = write_jsonl(tmp_path / "many.jsonl", rows)
    script = Path(sys.executable).with_name("gaincurate")
    out = tmp_path / "s"
    command = [str(script), "score", str(dataset), "--model", str(tiny_llama), "--out", str(out),
               "--device", "cpu", "--dtype", "float32", "--batch-tokens", "64", *extra]  # fmt: skip
    # Ctrl-C reaches a terminal's foreground job, whose SIGINT is at its default. A test run started in the
    # background by a shell script inherits SIGINT ignored (POSIX), and Python then never raises
    # KeyboardInterrupt: give the child the terminal's disposition, whatever started pytest.
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    deadline = time.monotonic() + 120
    while not ready(out) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be interrupted"
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    return process, stdout, stderr, out


def test_ctrl_c_exits_130_and_says_how_to_resume(tiny_llama, tmp_path):
    # Interrupt once scoring is under way: the first finished shard on disk says so.
    process, stdout, stderr, out = interrupted_score(
        tmp_path, tiny_llama, "--shard-rows", "16", ready=lambda out: list(out.glob("shard-*.arrow"))
    )
    assert process.returncode == 130, stderr
    kept, total = len(list(out.glob("shard-*.arrow"))), -(-len(PROBLEMS) * 1000 // 16)
    last = stderr.strip().splitlines()[-1]
    expected = f"gaincurate: interrupted; {kept} of {total} shards (16 rows each) are kept in {out}: run the same"
    assert last == f"{expected} command again to resume" and "Traceback" not in stderr, stderr
    assert stdout == ""


def test_ctrl_c_before_the_first_shard_says_nothing_is_kept(tiny_llama, tmp_path):
    """With the default 1000-row shards, a Ctrl-C in the first minutes used to say "finished work is kept"."""
    process, stdout, stderr, out = interrupted_score(
        tmp_path, tiny_llama, ready=lambda out: (out / "manifest.json").exists()
    )
    assert process.returncode == 130, stderr
    assert not list(out.glob("shard-*.arrow"))
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines[-1] == (
        "gaincurate: interrupted before the first shard (1000 rows) was complete, so nothing is kept and the "
        "same command starts over; a smaller --shard-rows keeps work more often"
    ), stderr
    assert INTERRUPTED not in stderr and "Traceback" not in stderr and stdout == ""


def test_a_write_that_fails_for_lack_of_room_is_one_line(scored, gaincurate, error_line, tmp_path):
    """No disk can be filled here, so a file-size limit of 0 bytes makes every write fail the same way (EFBIG)."""

    def no_room() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))

    result = gaincurate("schedule", "init", "--strategy", "gain", "--scores", scored, "--run", tmp_path / "run",
                        preexec_fn=no_room, env={"PYTHONDONTWRITEBYTECODE": "1"})  # fmt: skip
    line = error_line(result)
    assert result.returncode == 1
    assert "File too large" in line and "run the same command again" in line


def test_the_current_folder_as_a_file_to_write_is_refused_as_a_folder(scored, gaincurate, error_line, tmp_path):
    """`.` has no name: the temporary file would go inside it and the rename onto it fail with EBUSY."""
    init = gaincurate("schedule", "init", "--scores", scored, "--run", "run", "--subset-size", "4")
    assert init.returncode == 0, init.stderr
    for folder in (".", ".."):
        line = error_line(gaincurate("schedule", "status", "--run", "run", "--plot", folder))
        assert line == f"gaincurate: error: {folder}: it is a folder; pick another path"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["run"]
