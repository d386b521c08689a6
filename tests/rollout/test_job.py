"""`gaincurate rollout` end to end: real answer checks, seeded sampling, and resume equal to uninterrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import PROBLEMS, score_helper_problems

from gaincurate.errors import ConfigError
from gaincurate.rollout import sampling
from gaincurate.rollout.answers import AnswerChecker
from gaincurate.rollout.config import RolloutConfig
from gaincurate.rollout.job import run_rollouts

SAMPLES = 3  # rollouts per prompt in `config_for`
PROMPTS = 3 * len(PROBLEMS)  # the prompts of `tiny_scores`


@pytest.fixture(scope="module")
def tiny_scores(tiny_llama, tmp_path_factory) -> Path:
    """A scores directory of the helper problems (3 rewordings each, with answers), scored with the tiny Llama."""
    return score_helper_problems(tiny_llama, tmp_path_factory.mktemp("rollout"))


def config_for(scores: Path, out: Path, **changes) -> RolloutConfig:
    values = {
        "scores": str(scores),
        "out": str(out),
        "samples": SAMPLES,
        "max_new_tokens": 6,
        "temperature": 1.0,
        "seed": 11,
        "batch_size": 6,
        "dtype": "float32",
        "device": "cpu",
        "threads": 1,
    }
    return RolloutConfig(**{**values, **changes})


class RecordingProgress:
    """A `Progress` that keeps what it was told."""

    def __init__(self) -> None:
        self.stages: list[str] = []
        self.totals: list[int] = []
        self.advanced: list[int] = []

    def stage(self, message: str) -> None:
        self.stages.append(message)

    def set_total(self, total: int) -> None:
        self.totals.append(total)

    def advance(self, rows: int) -> None:
        self.advanced.append(rows)


def test_a_rollout_run_checks_answers_for_real(tiny_scores, tiny_llama, tmp_path, monkeypatch):
    """Generation is replaced by known completions; decoding and the math-verify check are real."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    answers = {i: row["answer"] for i, row in enumerate(PROBLEMS * 3)}

    def fake_generate(model, prompts, gc_ids, config, *, pad_id, stop_ids, device):
        texts = [
            f"so \\boxed{{{answers[g]}}}" if k % 2 == 0 else f"so \\boxed{{{answers[g]}1}}"
            for g in gc_ids
            for k in range(config.samples)
        ]
        completions = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
        return completions, [len(c) + 1 for c in completions]

    monkeypatch.setattr(sampling, "generate_batch", fake_generate)
    out = tmp_path / "feedback.jsonl"
    progress = RecordingProgress()
    result = run_rollouts(config_for(tiny_scores, out), progress=progress)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == PROMPTS * SAMPLES and result.rollouts_written == PROMPTS * SAMPLES
    by_prompt: dict[int, list[float]] = {}
    for line in lines:
        assert set(line) == {"gc_id", "reward"}
        by_prompt.setdefault(line["gc_id"], []).append(line["reward"])
    assert sorted(by_prompt) == list(range(PROMPTS))
    assert all(rewards == [1.0, 0.0, 1.0] for rewards in by_prompt.values())
    assert result.mean_reward == pytest.approx(2 / 3)
    # batch_size 6 over 3 samples: 2 prompts a batch; progress counts prompts.
    assert progress.totals == [PROMPTS] and progress.advanced == [2] * (PROMPTS // 2) and len(progress.stages) == 1


@pytest.fixture()
def parity_checker(monkeypatch):
    """Reward = parity of the completion's length: real sampled text decides it, so files show any drift."""
    monkeypatch.setattr(AnswerChecker, "__call__", lambda self, completion, answer: len(completion) % 2 == 0)


def test_seeded_rollouts_are_byte_identical(tiny_scores, tmp_path, parity_checker):
    run_rollouts(config_for(tiny_scores, tmp_path / "a.jsonl"))
    run_rollouts(config_for(tiny_scores, tmp_path / "b.jsonl"))
    run_rollouts(config_for(tiny_scores, tmp_path / "c.jsonl", seed=12))
    first = (tmp_path / "a.jsonl").read_bytes()
    assert first == (tmp_path / "b.jsonl").read_bytes()
    assert first != (tmp_path / "c.jsonl").read_bytes()
    assert 0 < sum(json.loads(line)["reward"] for line in first.splitlines()) < PROMPTS * SAMPLES


@pytest.mark.parametrize("cut", [0.5, 0.77, 1.0], ids=["mid-file", "mid-line", "complete"])
def test_resume_after_a_torn_write_equals_uninterrupted(tiny_scores, tmp_path, parity_checker, cut):
    straight = tmp_path / "straight.jsonl"
    run_rollouts(config_for(tiny_scores, straight))
    resumed = tmp_path / "resumed.jsonl"
    run_rollouts(config_for(tiny_scores, resumed))
    data = resumed.read_bytes()
    kept = data[: int(len(data) * cut)]
    resumed.write_bytes(kept)
    result = run_rollouts(config_for(tiny_scores, resumed))
    assert resumed.read_bytes() == straight.read_bytes()
    # Every prompt's SAMPLES lines are consecutive, so the whole groups kept are the whole lines kept // SAMPLES:
    # exactly those are resumed, and exactly the rest is rolled out again.
    whole_groups = kept.count(b"\n") // SAMPLES
    assert result.prompts_resumed == whole_groups
    assert result.rollouts_written == (PROMPTS - whole_groups) * SAMPLES


def test_resume_with_other_settings_is_refused_and_changes_nothing(tiny_scores, tmp_path, parity_checker):
    out, ids = tmp_path / "out.jsonl", tmp_path / "ids.txt"
    ids.write_text("1\n5\n")
    run_rollouts(config_for(tiny_scores, out, ids_file=str(ids)))
    before = out.read_bytes(), (tmp_path / "out.jsonl.rollout.json").read_bytes()
    with pytest.raises(ConfigError, match="seed=11.*seed=12"):
        run_rollouts(config_for(tiny_scores, out, ids_file=str(ids), seed=12))
    assert (out.read_bytes(), (tmp_path / "out.jsonl.rollout.json").read_bytes()) == before
    run_rollouts(config_for(tiny_scores, out, ids_file=str(ids), seed=12, overwrite=True))
    assert out.read_bytes() != before[0]


def test_cli_rollout_writes_feedback_the_scheduler_reads(tiny_scores, tmp_path, monkeypatch, capsys, parity_checker):
    from gaincurate.cli import main
    from gaincurate.schedule.feedback import read_feedback

    out = tmp_path / "fb.jsonl"
    argv = [
        "gaincurate",
        "rollout",
        str(tiny_scores),
        "--out",
        str(out),
        "--samples",
        "2",
        "--max-new-tokens",
        "4",
        "--reference-size",
        "5",
        "--device",
        "cpu",
        "--dtype",
        "float32",
        "--threads",
        "1",
        "--json",
    ]
    monkeypatch.setattr(sys, "argv", argv)
    main()
    report = json.loads(capsys.readouterr().out)
    assert report["prompts"] == 5 and report["rollouts_written"] == 10 and report["settings"]["threads"] == 1
    summary = read_feedback(out, epoch_ids=range(PROMPTS), known_ids=range(PROMPTS), reward_max=1.0)
    assert summary.rollouts == 10 and summary.prompts == 5


# The parity checker, and with GAINCURATE_TEST_APPEND_DELAY a pause after each append so a kill lands mid-run.
KILLABLE = """
import os, sys
from gaincurate.rollout import answers, job
answers.AnswerChecker.__call__ = lambda self, completion, answer: len(completion) % 2 == 0
original, delay = job.append_rollouts, float(os.environ.get("GAINCURATE_TEST_APPEND_DELAY", "0"))
def slow_append(*args, **kwargs):
    written = original(*args, **kwargs)
    import time; time.sleep(delay)
    return written
job.append_rollouts = slow_append
from gaincurate.cli import main
sys.argv = ["gaincurate", "rollout", *sys.argv[1:]]
main()
"""


@pytest.mark.slow
def test_resume_after_sigkill_equals_uninterrupted(tiny_scores, tmp_path, parity_checker, capsys):
    args = [
        str(tiny_scores),
        "--samples",
        "2",
        "--max-new-tokens",
        "5",
        "--batch-size",
        "2",
        "--seed",
        "3",
        "--device",
        "cpu",
        "--dtype",
        "float32",
        "--threads",
        "1",
        "--quiet",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    straight, killed = tmp_path / "straight.jsonl", tmp_path / "killed.jsonl"
    # The uninterrupted reference and the rerun in this process, with KILLABLE's checker: their start is not under
    # test; the run that is killed is a process of its own (SIGKILL is what is under test).
    import torch

    from gaincurate.cli import main

    def in_process(out: Path) -> None:
        threads = torch.get_num_threads()
        try:
            main(["rollout", *args, "--out", str(out)])
        finally:
            torch.set_num_threads(threads)
        capsys.readouterr()

    in_process(straight)
    # Only the run to be killed pauses after each append: the other two idled 13 s between them (#27).
    slow = {**env, "GAINCURATE_TEST_APPEND_DELAY": "0.3"}
    process = subprocess.Popen([sys.executable, "-c", KILLABLE, *args, "--out", str(killed)], env=slow)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not killed.exists() or killed.read_bytes().count(b"\n") < 6):
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert killed.read_bytes().count(b"\n") < straight.read_bytes().count(b"\n")  # it really was cut short
    in_process(killed)  # resumes from what the killed process appended
    assert killed.read_bytes() == straight.read_bytes()


UNANSWERED = (1, 4, 10)  # gc_ids of `answerless_scores` whose answer is missing or blank


@pytest.fixture(scope="module")
def answerless_scores(tiny_llama, tmp_path_factory) -> Path:
    """`tiny_scores`' prompts, three of them without an answer, scored with --allow-missing-answers."""
    from helpers import write_jsonl

    from gaincurate.scoring import score
    from gaincurate.scoring.config import RunOptions, ScoreConfig

    root = tmp_path_factory.mktemp("answerless")
    rows = [{**row, "problem": f"{row['problem']} (version {k})"} for k in range(3) for row in PROBLEMS]
    for gc_id, blank in zip(UNANSWERED, (None, "", "  "), strict=True):
        rows[gc_id]["answer"] = blank
    data = write_jsonl(root / "problems.jsonl", rows)
    config = ScoreConfig(dataset=str(data), model=str(tiny_llama), dtype="float32", device="cpu", few_shot=())
    score(config, RunOptions(out=str(root / "scores"), quiet=True, allow_missing_answers=True))
    return root / "scores"


def test_prompts_without_an_answer_are_left_out_whole_and_resume_is_byte_identical(
    answerless_scores, tmp_path, parity_checker
):
    straight, progress = tmp_path / "straight.jsonl", RecordingProgress()
    result = run_rollouts(config_for(answerless_scores, straight), progress=progress)
    written = [json.loads(line)["gc_id"] for line in straight.read_text().splitlines()]
    answered = sorted(set(range(PROMPTS)) - set(UNANSWERED))
    assert sorted(set(written)) == answered and len(written) == len(answered) * SAMPLES
    assert result.prompts == len(answered) and progress.totals == [len(answered)]
    assert progress.stages[0] == (
        f"note: 3 of the {PROMPTS} prompts of {answerless_scores} have no 'answer' answer; they are left out, as no "
        "completion can match them"
    )
    resumed = tmp_path / "resumed.jsonl"
    run_rollouts(config_for(answerless_scores, resumed))
    resumed.write_bytes(resumed.read_bytes()[: int(resumed.stat().st_size * 0.6)])  # torn mid-group
    result = run_rollouts(config_for(answerless_scores, resumed))
    assert resumed.read_bytes() == straight.read_bytes() and 0 < result.prompts_resumed < len(answered)

    sample = run_rollouts(config_for(answerless_scores, tmp_path / "sample.jsonl", reference_size=len(answered)))
    assert sample.prompts == len(answered)  # the sample of K is drawn among the prompts with an answer


def console_rollout(*args: object, cwd: Path) -> subprocess.CompletedProcess:
    """`gaincurate rollout ARGS` through the installed console script, as a user runs it."""
    script = Path(sys.executable).with_name("gaincurate")
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    environment.pop("GAINCURATE_DEBUG", None)
    return subprocess.run([str(script), "rollout", *map(str, args)], cwd=cwd, env=environment, capture_output=True,
                          text=True, timeout=300)  # fmt: skip


def test_prompts_without_an_answer_are_counted_in_one_line_and_none_left_is_refused(answerless_scores, tmp_path):
    """Through the console script: --ids naming a prompt with an answer and one without rolls out the first and says
    so in one stderr line; --ids naming only prompts without one is refused in one line, and nothing is written."""
    common = ["--samples", "1", "--max-new-tokens", "2", "--device", "cpu", "--dtype", "float32", "--threads", "1"]
    (tmp_path / "some.txt").write_text("0\n1\n")
    done = console_rollout(answerless_scores, "--out", "some.jsonl", "--ids", "some.txt", *common, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    note = "note: 1 of the 2 gc_ids of --ids some.txt have no 'answer' answer; they are left out, as no completion can"
    assert [line for line in done.stderr.splitlines() if "answer" in line] == [f"{note} match them"]
    assert [json.loads(line)["gc_id"] for line in (tmp_path / "some.jsonl").read_text().splitlines()] == [0]

    (tmp_path / "none.txt").write_text("1\n4\n")
    before = sorted(p.name for p in tmp_path.iterdir())
    refused = console_rollout(answerless_scores, "--out", "none.jsonl", "--ids", "none.txt", *common, cwd=tmp_path)
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.splitlines() == [
        "gaincurate: error: every gc_id --ids none.txt names has no 'answer' answer, so no rollout could be checked; "
        "list prompts that have an answer"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.fixture(scope="module")
def mixed_scores(tiny_llama, tmp_path_factory) -> Path:
    """Answers mixing numbers and strings (datasets keeps such a column as JSON), and an object column `meta`."""
    from helpers import score_in_process, write_jsonl

    root = tmp_path_factory.mktemp("mixed")
    answers = [42, "\\frac{1}{2}", "10\\%"]
    rows = [
        {"problem": row["problem"], "answer": a, "meta": {"a": str(a)}}
        for row, a in zip(PROBLEMS[:3], answers, strict=True)
    ]
    score_in_process([write_jsonl(root / "p.jsonl", rows), "--out", root / "scores", "--model", tiny_llama,
                      "--dtype", "float32", "--device", "cpu", "--quiet"])  # fmt: skip
    return root / "scores"


def test_gold_answers_of_a_mixed_json_column_are_the_files_values_not_their_json_text(mixed_scores, tmp_path):
    from gaincurate.rollout.answers import check_answer
    from gaincurate.rollout.inputs import read_inputs

    answers = read_inputs(config_for(mixed_scores, tmp_path / "f.jsonl")).answers
    assert answers == ["42", "\\frac{1}{2}", "10\\%"]  # not '"10\\\\%"', which no correct completion matched
    assert [float(check_answer(f"\\boxed{{{a}}}", a)) for a in answers] == [1.0, 1.0, 1.0]


def test_an_answer_column_of_objects_is_refused_as_score_refuses_it(mixed_scores, tmp_path):
    common = ["--samples", "1", "--max-new-tokens", "2", "--device", "cpu", "--dtype", "float32", "--threads", "1"]
    refused = console_rollout(mixed_scores, "--answer-column", "meta", "--out", "f.jsonl", *common, cwd=tmp_path)
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.splitlines() == [
        f"gaincurate: error: column 'meta' of {mixed_scores} holds an object in row 0 (counting from 0), not an answer "
        "text or number; name the field that holds the answer: --answer-column meta.a"
    ]
    assert list(tmp_path.iterdir()) == []


def test_an_ids_file_with_a_byte_order_mark_is_read_and_a_fraction_is_refused(mixed_scores, tmp_path):
    common = ["--samples", "1", "--max-new-tokens", "2", "--device", "cpu", "--dtype", "float32", "--threads", "1"]
    (tmp_path / "bom.txt").write_bytes("\ufeff0\r\n2\r\n".encode())  # as Notepad saves it
    done = console_rollout(mixed_scores, "--out", "bom.jsonl", "--ids", "bom.txt", *common, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert sorted(json.loads(line)["gc_id"] for line in (tmp_path / "bom.jsonl").read_text().splitlines()) == [0, 2]
    (tmp_path / "half.json").write_text("[1.5, 2]")  # gc_id 1.5 names no prompt; it was rolled out as gc_id 1
    before = sorted(p.name for p in tmp_path.iterdir())
    refused = console_rollout(mixed_scores, "--out", "half.jsonl", "--ids", "half.json", *common, cwd=tmp_path)
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.splitlines() == [
        "gaincurate: error: --ids half.json must hold whole gc_ids, one per line (or a JSON list)"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_second_rollout_into_an_out_being_written_is_refused_and_writes_nothing(tiny_scores, tmp_path):
    """Two runs into one file would interleave their groups (each gc_id twice, which its own resume refuses): while
    one holds --out (here the test holds its lock, as a running `rollout` does), another is refused in one line."""
    import fcntl

    out = tmp_path / "out.jsonl"
    out.write_bytes(b"")
    common = ["--samples", "1", "--max-new-tokens", "2", "--device", "cpu", "--dtype", "float32", "--threads", "1"]
    handle = os.open(out, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        refused = console_rollout(tiny_scores, "--out", out, *common, cwd=tmp_path)
    finally:
        os.close(handle)
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused.stderr
    busy = f"--out {out} is being written by another `gaincurate rollout` right now; wait for it, or use another --out"
    assert refused.stderr == f"gaincurate: error: {busy}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"] and out.read_bytes() == b""


def test_an_out_that_is_a_link_into_a_missing_folder_is_one_line(tiny_scores, tmp_path):
    (tmp_path / "gone.jsonl").symlink_to(tmp_path / "nowhere" / "z.jsonl")
    """A dangling link (into a scratch folder that was cleaned): one line naming it and the fix, nothing written."""
    result = console_rollout(tiny_scores, "--out", "gone.jsonl", "--samples", "1", cwd=tmp_path)
    link = f"--out gone.jsonl is a link to {tmp_path / 'nowhere' / 'z.jsonl'}, whose folder does not exist"
    assert result.returncode == 1
    assert result.stderr == f"gaincurate: error: {link}; make that folder or pick another --out\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gone.jsonl"]
