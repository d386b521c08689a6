"""The bundled math sample: reproducible from code, well spread, and with answers that are right."""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from fractions import Fraction

import pytest
from sample_set import generate
from sample_set.generate import dumps_jsonl, format_answer, generate_sample

from gaincurate.data import SAMPLE_PATH, load_sample

ANSWER_RE = re.compile(r"-?\d+(/\d+|\.\d+)?")


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return generate_sample()


def test_bundled_file_is_reproducible_byte_for_byte(rows):
    assert SAMPLE_PATH.read_bytes() == dumps_jsonl(rows)


def test_load_sample_reads_the_bundled_rows(rows):
    assert load_sample() == rows


def test_size_and_difficulty_spread(rows):
    assert len(rows) >= 300
    levels = Counter(row["difficulty"] for row in rows)
    assert sorted(levels) == [1, 2, 3, 4, 5]
    assert min(levels.values()) >= 40
    assert len({row["type"] for row in rows}) >= 6
    for level in range(1, 6):  # every level mixes several kinds of problem
        assert len({row["type"] for row in rows if row["difficulty"] == level}) >= 4


def test_rows_are_well_formed_and_unique(rows):
    assert len({row["problem"] for row in rows}) == len(rows)
    for row in rows:
        assert set(row) == {"problem", "answer", "difficulty", "type"}
        assert isinstance(row["problem"], str) and row["problem"].strip() == row["problem"] != ""
        assert isinstance(row["difficulty"], int) and 1 <= row["difficulty"] <= 5


def test_answers_are_canonical_numbers(rows):
    for row in rows:
        answer = row["answer"]
        assert ANSWER_RE.fullmatch(answer), answer
        value = Fraction(answer)
        if "/" in answer:  # lowest terms, a real fraction, and the problem asks for that form
            assert f"{value.numerator}/{value.denominator}" == answer and value.denominator > 1
            assert "lowest terms" in row["problem"]
        elif "." in answer:
            assert not answer.endswith("0") and value.denominator > 1
            assert "decimal" in row["problem"]
        else:
            assert str(value.numerator) == answer


def test_length_is_not_a_proxy_for_difficulty(rows):
    longest_easy = max(len(r["problem"]) for r in rows if r["difficulty"] == 1)
    shortest_hard = min(len(r["problem"]) for r in rows if r["difficulty"] == 5)
    assert longest_easy > 3 * shortest_hard


def _matches(rows, pattern):
    found = [(re.fullmatch(pattern, r["problem"]), r) for r in rows]
    return [(m, r) for m, r in found if m]


def test_spot_check_addition(rows):
    found = _matches(rows, r"What is (\d+) \+ (\d+)\?")
    assert len(found) >= 3
    for m, row in found:
        assert int(row["answer"]) == int(m[1]) + int(m[2])


def test_spot_check_two_step_equations(rows):
    found = _matches(rows, r"Solve for x: (\d+)x \+ (\d+) = (\d+)\.")
    assert found
    for m, row in found:
        a, b, c = (int(g) for g in m.groups())
        assert a * Fraction(row["answer"]) + b == c


def test_spot_check_modular_powers(rows):
    found = _matches(rows, r"What is the remainder when (\d+)\^(\d+) is divided by (\d+)\?")
    assert found
    for m, row in found:
        base, exponent, modulus = (int(g) for g in m.groups())
        assert int(row["answer"]) == base**exponent % modulus


def test_spot_check_unlike_fractions(rows):
    found = _matches(rows, r"(?:What is|Compute) (\d+)/(\d+) ([+-]) (\d+)/(\d+)\?? ?.*")
    assert found
    for m, row in found:
        p, q = Fraction(int(m[1]), int(m[2])), Fraction(int(m[4]), int(m[5]))
        assert Fraction(row["answer"]) == (p + q if m[3] == "+" else p - q)


def test_generation_is_deterministic_and_uses_no_global_rng():
    state = random.getstate()
    first = generate_sample(60, seed=7)
    assert random.getstate() == state
    assert generate_sample(60, seed=7) == first
    assert generate_sample(60, seed=8) != first
    assert [r["difficulty"] for r in generate_sample(10)].count(1) == 2


@pytest.mark.parametrize(
    ("value", "form", "expected"),
    [
        (Fraction(42), "int", "42"),
        (Fraction(-6, 8), "fraction", "-3/4"),
        (Fraction(15, 2), "decimal", "7.5"),
        (Fraction(1, 8), "decimal", "0.125"),
        (Fraction(-13, 20), "decimal", "-0.65"),
        (Fraction(24, 5), "auto", "24/5"),
        (Fraction(6), "auto", "6"),
    ],
)
def test_format_answer(value, form, expected):
    assert format_answer(value, form) == expected
    assert Fraction(expected) == value


@pytest.mark.parametrize(
    ("value", "form"), [(Fraction(1, 3), "int"), (Fraction(2), "fraction"), (Fraction(1, 3), "decimal")]
)
def test_format_answer_rejects_the_wrong_form(value, form):
    with pytest.raises(ValueError):
        format_answer(value, form)


def test_main_writes_json_lines(tmp_path):
    out = tmp_path / "nested" / "sample.jsonl"
    generate.main(["--out", str(out), "--n", "25", "--seed", "3"])
    data = out.read_bytes()
    assert data == dumps_jsonl(generate_sample(25, seed=3))
    lines = data.decode("utf-8").splitlines()
    assert len(lines) == 25 and data.endswith(b"\n")
    assert list(json.loads(lines[0])) == ["answer", "difficulty", "problem", "type"]
    assert load_sample(out) == generate_sample(25, seed=3)
