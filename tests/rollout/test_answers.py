"""Answer checking with the real math-verify: boxed answers, the `any` format, and nested braces."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gaincurate.errors import ConfigError
from gaincurate.rollout.answers import AnswerChecker, check_answer, last_boxed
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
