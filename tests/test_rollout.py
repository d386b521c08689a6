"""`gaincurate rollout`: real math-verify answer checks, seeded sampling, and resume equal to uninterrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import PROBLEMS, write_jsonl

from gaincurate.difficulty import sampling
from gaincurate.difficulty.answers import AnswerChecker
from gaincurate.errors import ConfigError, InputError
from gaincurate.rollout import (
    RolloutConfig,
    check_answer,
    choose_ids,
    complete_prefix,
    last_boxed,
    run_rollouts,
)


@pytest.mark.parametrize(
    ("completion", "gold", "correct"),
    [
        ("3 trays of 12 is 36, minus 20 leaves 16. The answer is \\boxed{16}.", "16", True),
        ("The answer is \\boxed{15}.", "16", False),
        ("First guess \\boxed{3}, but checking again: \\boxed{16}", "16", True),
        ("\\boxed{16} is wrong, so \\boxed{3}", "16", False),
        ("So x is \\boxed{\\frac{3}{4}}", "3/4", True),
        ("So x is \\boxed{0.75}", "3/4", True),
        ("\\boxed{7.5}", "7.5", True),
        ("\\boxed{-3}", "-3", True),
        ("\\boxed{x = 5}", "5", True),
        ("\\fbox{12}", "12", True),
        ("The answer is 16.", "16", False),
        ("\\boxed{16", "16", False),
        ("\\boxed{}", "0", False),
        ("\\boxed{16}", None, False),
    ],
    ids=[
        "right",
        "wrong",
        "last-box-right",
        "last-box-wrong",
        "frac",
        "decimal-of-frac",
        "decimal",
        "negative",
        "equation",
        "fbox",
        "no-box",
        "cut-off-box",
        "empty-box",
        "no-gold",
    ],
)
def test_answers_are_checked_with_math_verify(completion, gold, correct):
    assert check_answer(completion, gold) is correct


@pytest.mark.parametrize(
    ("completion", "gold", "correct"),
    [
        ("So, half of 4 is 2.", "2", True),
        ("The answer is 16.", "16", True),
        ("One half of 18 is 18/2.", "9", True),
        ("The answer is \\boxed{3}. Then 5 more.", "3", True),
        ("The number is 50.", "60", False),
        ("I do not know.", "4", False),
        ("\\boxed{16}", None, False),
    ],
    ids=["last-number", "plain-answer", "expression", "box-first", "wrong", "no-answer", "no-gold"],
)
def test_answer_format_any_lets_math_verify_find_the_answer(completion, gold, correct):
    assert check_answer(completion, gold, answer_format="any") is correct


def test_an_unknown_answer_format_is_a_config_error(tiny_scores, tmp_path):
    with pytest.raises(ConfigError, match="--answer-format must be one of boxed, any; got 'last'"):
        config_for(tiny_scores, tmp_path / "out.jsonl", answer_format="last")


def test_last_boxed_keeps_nested_braces():
    assert last_boxed("a \\boxed{1} b \\boxed{\\frac{1}{2}} c") == "\\frac{1}{2}"
    assert last_boxed("\\boxed {42}") == "42"
    assert last_boxed("no box here") is None


def test_complete_prefix_keeps_whole_groups_only(tmp_path):
    lines = [json.dumps({"gc_id": gc_id, "reward": 1.0}) + "\n" for gc_id in (4, 4, 9, 9, 2)]
    path = tmp_path / "out.jsonl"
    whole = "".join(lines[:4])
    path.write_text("".join(lines) + '{"gc_id": 2, "rew')
    assert complete_prefix(path, 2) == ([4, 9], len(whole.encode()), [1.0] * 4)
    path.write_text(lines[0] + "oops\n" + lines[1])
    with pytest.raises(InputError, match="malformed line"):
        complete_prefix(path, 2)
    path.write_text(lines[0] + lines[2])
    with pytest.raises(InputError, match="other settings"):
        complete_prefix(path, 2)


def test_reference_ids_are_a_seeded_sorted_sample(tmp_path):
    ids = np.arange(50)
    chosen = choose_ids(ids, reference_size=10, ids_file=None, seed=3)
    assert len(set(chosen.tolist())) == 10 and np.all(np.diff(chosen) > 0)
    np.testing.assert_array_equal(chosen, choose_ids(ids, reference_size=10, ids_file=None, seed=3))
    assert not np.array_equal(chosen, choose_ids(ids, reference_size=10, ids_file=None, seed=4))
    (tmp_path / "ids.txt").write_text("7\n3\n3\n")
    np.testing.assert_array_equal(
        choose_ids(ids, reference_size=None, ids_file=str(tmp_path / "ids.txt"), seed=0), [3, 7]
    )
    (tmp_path / "bad.txt").write_text("70\n")
    with pytest.raises(InputError, match="gc_id 70"):
        choose_ids(ids, reference_size=None, ids_file=str(tmp_path / "bad.txt"), seed=0)


@pytest.fixture(scope="module")
def tiny_scores(tiny_llama, tmp_path_factory) -> Path:
    """A scores directory of the helper problems (5 per original, reworded), scored with the tiny Llama."""
    from gaincurate.config import ScoreConfig
    from gaincurate.scoring import score

    root = tmp_path_factory.mktemp("rollout")
    rows = [{**row, "problem": f"{row['problem']} (version {k})"} for k in range(3) for row in PROBLEMS]
    data = write_jsonl(root / "problems.jsonl", rows)
    out = root / "scores"
    score(
        ScoreConfig(
            dataset=str(data),
            model=str(tiny_llama),
            out=str(out),
            dtype="float32",
            device="cpu",
            few_shot=(),
            quiet=True,
        )
    )
    return out


def config_for(scores: Path, out: Path, **changes) -> RolloutConfig:
    values = {
        "scores": str(scores),
        "out": str(out),
        "samples": 3,
        "max_new_tokens": 6,
        "temperature": 1.0,
        "seed": 11,
        "batch_size": 6,
        "dtype": "float32",
        "device": "cpu",
        "threads": 1,
    }
    return RolloutConfig(**{**values, **changes})


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
    result = run_rollouts(config_for(tiny_scores, out))
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 24 * 3 and result.rollouts_written == 72
    by_prompt: dict[int, list[float]] = {}
    for line in lines:
        assert set(line) == {"gc_id", "reward"}
        by_prompt.setdefault(line["gc_id"], []).append(line["reward"])
    assert sorted(by_prompt) == list(range(24))
    assert all(rewards == [1.0, 0.0, 1.0] for rewards in by_prompt.values())
    assert result.mean_reward == pytest.approx(2 / 3)


def test_a_left_padded_row_sees_what_it_sees_alone(tiny_llama, monkeypatch):
    """Batching, left padding and the shared prefill change no row's next-token scores (nor its seed)."""
    from transformers import AutoTokenizer

    from gaincurate.model import load_model, resolve_source

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    model = load_model(resolve_source(str(tiny_llama)), dtype="float32", device="cpu")
    recorded: list[list] = []
    original = sampling.seeded_sampler

    def recording_sampler(seeds, temperature):
        sampler = original(seeds, temperature)
        steps: list = []
        recorded.append(steps)

        def call(input_ids, scores):
            steps.append(scores.clone())
            return type(sampler).__call__(sampler, input_ids, scores)

        return call

    monkeypatch.setattr(sampling, "seeded_sampler", recording_sampler)
    short = tokenizer("What is 2 + 3?")["input_ids"]
    long = tokenizer("Compute the sum of the first 10 positive integers. If x + 4 = 9, what is x?")["input_ids"]
    config = RolloutConfig(scores="unused", out="unused", samples=2, max_new_tokens=5, temperature=1.0)
    batched, _ = sampling.generate_batch(model, [long, short], [1, 2], config, pad_id=0, stop_ids=[2], device="cpu")
    alone, _ = sampling.generate_batch(model, [short], [2], config, pad_id=0, stop_ids=[2], device="cpu")
    assert batched[2:] == alone
    for step_batched, step_alone in zip(recorded[0], recorded[1], strict=True):
        np.testing.assert_allclose(step_batched[2:].numpy(), step_alone.numpy(), atol=1e-4)


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
    assert 0 < sum(json.loads(line)["reward"] for line in first.splitlines()) < 72


@pytest.mark.parametrize("cut", [0.5, 0.77, 1.0], ids=["mid-file", "mid-line", "complete"])
def test_resume_after_a_torn_write_equals_uninterrupted(tiny_scores, tmp_path, parity_checker, cut):
    straight = tmp_path / "straight.jsonl"
    run_rollouts(config_for(tiny_scores, straight))
    resumed = tmp_path / "resumed.jsonl"
    run_rollouts(config_for(tiny_scores, resumed))
    data = resumed.read_bytes()
    resumed.write_bytes(data[: int(len(data) * cut)])
    result = run_rollouts(config_for(tiny_scores, resumed))
    assert resumed.read_bytes() == straight.read_bytes()
    assert result.prompts_resumed == len(complete_prefix(straight, 3)[0]) if cut == 1.0 else result.prompts_resumed < 24


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
    summary = read_feedback(out, epoch_ids=range(24), known_ids=range(24), reward_max=1.0)
    assert summary.rollouts == 10 and summary.prompts == 5


KILLABLE = """
import sys
from gaincurate import rollout
rollout.AnswerChecker.__call__ = lambda self, completion, answer: len(completion) % 2 == 0
original = rollout._append_lines
def slow_append(path, lines):
    original(path, lines)
    import time; time.sleep(0.3)
rollout._append_lines = slow_append
from gaincurate.cli import main
sys.argv = ["gaincurate", "rollout", *sys.argv[1:]]
main()
"""


@pytest.mark.slow
def test_resume_after_sigkill_equals_uninterrupted(tiny_scores, tmp_path):
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
    subprocess.run([sys.executable, "-c", KILLABLE, *args, "--out", str(straight)], check=True, env=env)
    process = subprocess.Popen([sys.executable, "-c", KILLABLE, *args, "--out", str(killed)], env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not killed.exists() or killed.read_bytes().count(b"\n") < 6):
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert killed.read_bytes().count(b"\n") < straight.read_bytes().count(b"\n")  # it really was cut short
    subprocess.run([sys.executable, "-c", KILLABLE, *args, "--out", str(killed)], check=True, env=env)
    assert killed.read_bytes() == straight.read_bytes()
