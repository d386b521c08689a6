"""Answer checking with the real math-verify: boxed answers, the `any` format, nested braces, number golds, threads."""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from gaincurate.errors import ConfigError
from gaincurate.rollout.answers import AnswerChecker, check_answer, gold_text, last_boxed
from gaincurate.rollout.config import RolloutConfig

MATH = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "math_train.json"


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


def test_an_unknown_answer_format_is_a_config_error():
    with pytest.raises(ConfigError, match="answer_format must be one of boxed, any; got 'last'"):
        RolloutConfig(scores="scores", out="out.jsonl", answer_format="last")


def test_last_boxed_keeps_nested_braces():
    assert last_boxed("a \\boxed{1} b \\boxed{\\frac{1}{2}} c") == "\\frac{1}{2}"
    assert last_boxed("\\boxed {42}") == "42"
    assert last_boxed("no box here") is None
    assert last_boxed("\\boxed{\\boxed{5}}") == "5"  # the box that starts last
    assert last_boxed("} \\boxed{3} then \\boxed{4") == "3"  # a cut-off last box: the previous complete one
    assert last_boxed("\\boxed{a \\boxed{5} b") == "5"
    assert last_boxed("\\fbox{2} \\boxed{3}") == "3" and last_boxed("\\boxed{3} \\fbox{2}") == "2"
    assert last_boxed("\\boxed x {7}") is None


def test_last_boxed_reads_a_cut_off_run_of_boxes_in_one_pass():
    """A completion cut off in a `\\boxed{\\boxed{...` loop takes a bounded number of Python steps per character:
    rescanning the rest of the text from every open box would take minutes on these 210k characters."""
    text = "Let me think. \\boxed{5} " + "\\boxed{" * 30_000
    steps, traced = 0, sys.gettrace()

    def count(frame, event, arg):
        nonlocal steps
        steps += 1
        if steps > len(text):
            raise AssertionError(f"last_boxed took more than {len(text)} Python steps")
        return count

    sys.settrace(count)
    try:
        assert last_boxed(text) == "5"
    finally:
        sys.settrace(traced)


def test_answers_are_checked_off_the_main_thread_as_verl_calls_its_reward():
    """math-verify's `signal.alarm` timeouts raise in a worker thread, where verl's reward managers check answers."""
    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(AnswerChecker(), "so \\boxed{18}", "18").result()
        assert pool.submit(AnswerChecker("any"), "so the answer is 18", "18").result()
        assert not pool.submit(AnswerChecker(), "so \\boxed{17}", "18").result()


@pytest.mark.parametrize(
    ("completion", "gold", "correct"),
    [
        ("\\boxed{0.00001}", 1e-05, True),
        ("\\boxed{10000000000000000}", 1e16, True),
        ("\\boxed{18}", 18.0, True),
        ("\\boxed{18}", 18, True),
        ("\\boxed{19}", 18, False),
        ("\\boxed{\\frac{1}{2}}", "\\[\\frac{1}{2}\\]", True),
        ("\\boxed{0.5}", "\\(\\frac{1}{2}\\)", True),
        ("\\boxed{\\frac{1}{3}}", "\\[\\frac{1}{2}\\]", False),
    ],
    ids=["tiny-float", "huge-float", "float", "int", "int-wrong", "display-math", "inline-math", "display-wrong"],
)
def test_number_golds_and_golds_in_latex_delimiters_are_read_as_written(completion, gold, correct):
    assert check_answer(completion, gold) is correct


def test_a_float_gold_is_written_without_an_exponent():
    assert [gold_text(g) for g in (1e-05, 1e16, 0.00012, 18.0, 18, None, "1e-05")] == [
        "0.00001", "10000000000000000", "0.00012", "18.0", "18", None, "1e-05",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("completion", "gold", "correct"),
    [
        ("\\boxed{18.9}", "\\$18.90", True),
        ("\\boxed{18.90}", "\\$18.90", True),
        ("\\boxed{\\$18.90}", "\\$18.90", True),
        ("\\boxed{18.80}", "\\$18.90", False),
        ("\\boxed{1657}", "\\$1,\\!657", True),
        ("\\boxed{1,\\!657}", "\\$1,\\!657", True),
        ("\\boxed{4}", "$4$", True),
        ("\\boxed{5}", "$4$", False),
        ("\\boxed{3}", "\\boxed{3}", True),
    ],
    ids=[
        "price-decimal",
        "price",
        "price-boxed",
        "price-wrong",
        "price-thousands",
        "thousands-boxed",
        "delimited",
        "delimited-wrong",
        "boxed-gold",
    ],
)
def test_an_escaped_dollar_in_the_gold_is_a_dollar_sign_not_a_delimiter(completion, gold, correct):
    assert check_answer(completion, gold) is correct


@pytest.mark.skipif(not MATH.is_file(), reason="MATH's training set is not at ../shared/data/math_train.json here")
def test_every_real_math_gold_boxed_matches_itself():
    """Every MATH gold with a `$` in it, and every 20th of the rest (the whole set takes half a minute on a CPU):
    boxed, it is right against itself. Only a gold that is missing or empty cannot be matched."""
    golds = [row["answer"] for row in json.loads(MATH.read_text())]
    chosen = [gold for index, gold in enumerate(golds) if index % 20 == 0 or "$" in (gold or "")]
    assert sum("$" in (gold or "") for gold in chosen) >= 30
    checker = AnswerChecker()
    failing = [gold for gold in chosen if not checker(f"\\boxed{{{gold}}}", gold)]
    assert all(not (gold or "").strip() for gold in failing), failing
