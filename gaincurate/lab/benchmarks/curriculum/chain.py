"""The chain task of the CPU bench: sums of several one-digit terms, answered after the running totals.

A problem of `k` terms adds `k` digits, `"7+5+9+8"`. The completion writes every running total, digits least
significant first and separated by commas, then `=` and the answer: for 7+5+9+8 the totals are 12, 21, 29, so the
completion is `"21,12,92=92"`. The row carries the steps as its reference `solution` (`"21,12,92"`) and the reversed
sum as its reference `answer` (`"92"`), as a MATH row carries a solution and a boxed answer. The reward reads the
text after the last `=` only, never the steps (as math-verify reads the last `\\boxed{}`).

A `k`-term completion is at least `k` times its answer's length in tokens (one per character, the end token not
counted; up to 11 terms, so that the sum has at most 2 digits): `k - 1` totals, `k - 2` commas, `=` and the answer,
so `3k - 2` characters for a one-digit answer, and for a two-digit one the last total has two digits too, `2k + 1`.

Why the steps carry the answer: given every term but one, the sum takes 10 different values as the missing term
runs over its 10 values, each once, so a policy that does not fold every term into its running state answers right
at most once in 10, whatever else it computes (the bound the tests check). That bounds shortcuts, not a model that
adds every term in its forward pass; docs/benchmark-history.md ("Every design tried for `cpu-chain`") measures both: the
bench's warm start answers from the totals it wrote (force an earlier total one too high and its answer moves with it,
in 300 of 300 4-term sums), and the same model supervised on bare answers learns them too, less well.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

SYMBOLS = ","  # beyond the sums' alphabet: the separator of the steps ("=" already marks the answer)
LOW, HIGH = 0, 10  # the terms: digits, [LOW, HIGH)
ANSWER_MARK = "="


def make_row(terms: Sequence[int]) -> dict:
    """`{"problem": "7+5+9", "solution": "21,12", "answer": "12", "digits": 3}`; `digits` counts the terms (the
    family)."""
    totals = np.cumsum(terms)[1:]
    solution = ",".join(str(int(total))[::-1] for total in totals)
    return {"problem": "+".join(str(int(t)) for t in terms), "solution": solution, "answer": str(int(totals[-1]))[::-1],
            "digits": len(terms)}  # fmt: skip


def completion(row: dict) -> str:
    """The completion the warm start supervises: the reference solution, `=`, the reference answer."""
    return f"{row['solution']}{ANSWER_MARK}{row['answer']}"


def final_answer(text: str) -> str | None:
    """The text after the last `=` of a completion (stripped); None when it has none."""
    if ANSWER_MARK not in text:
        return None
    return text.rsplit(ANSWER_MARK, 1)[1].strip()


def is_correct(completion_text: str, answer: str) -> bool:
    """The final answer only: the steps before it are never read."""
    return final_answer(completion_text) == answer


def distinct_problems(terms: int) -> int:
    return (HIGH - LOW) ** terms


def problems(term_counts: Sequence[Sequence[int]], *, seed: int, exclude: set[str] = frozenset()) -> list[dict]:
    """Distinct problems: for each `(terms, count)`, `count` sums of that many terms, seeded; none of `exclude`."""
    rng = np.random.default_rng(seed)
    rows: list[dict] = []
    seen = set(exclude)
    for terms, count in term_counts:
        rows += draw_distinct(lambda n=terms: make_row([int(t) for t in rng.integers(LOW, HIGH, size=n)]), count, seen)
    return rows


def draw_distinct(draw: Callable[[], dict], count: int, seen: set[str]) -> list[dict]:
    """`count` rows of `draw()` whose problems are neither in `seen` nor repeated (the arithmetic task's too); each
    row's problem joins `seen`."""
    rows: list[dict] = []
    while len(rows) < count:
        row = draw()
        if row["problem"] not in seen:
            seen.add(row["problem"])
            rows.append(row)
    return rows


def sample_rows(rng: np.random.Generator, term_counts: Sequence[int], size: int) -> list[dict]:
    """`size` random problems (repeats allowed), each of a term count drawn uniformly from `term_counts`."""
    chosen = rng.choice(np.asarray(term_counts), size=size)
    return [make_row([int(t) for t in rng.integers(LOW, HIGH, size=int(k))]) for k in chosen]


def slip(row: dict) -> dict:
    """The row with a systematic slip in its last step: the last running total, and so the answer, plus one."""
    *steps, last = row["solution"].split(",")
    wrong = str(int(last[::-1]) + 1)[::-1]
    return {**row, "solution": ",".join([*steps, wrong]), "answer": wrong}
