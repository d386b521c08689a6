"""The probe's likelihood feature (`--likelihood`): what it measures, the checks before the first step, its columns.

`--likelihood-of` says what the current policy's log-probability is taken of (`gaincurate.scoring.likelihood`):

* `answer` (the default): the reference answer right after the prompt, as `--answer-template` spells it. Where the
  reward checks a short exact answer at temperature 1 this *is* the pass rate.
* `solution`: the reference solution (`--solution-column`), per token: `--answer-template`'s text before
  `{answer}` with the solution in `{solution}`. On a task whose answer follows reasoning it says how familiar the
  policy finds the reference reasoning (docs/benchmarks.md, "The likelihood on a reasoning task", measures it).
* `answer-after-solution`: the answer given the reference solution, the template's part from `{answer}` on.

Every kind is a proxy somewhere, so the probe's fit weighs it: its two columns (the probability and its log),
standardised over the pool's measured prompts, go unpenalised beside the penalised embedding.
"""

from __future__ import annotations

from string import Formatter
from typing import Any

import numpy as np

from gaincurate.errors import ConfigError
from gaincurate.numerics import exp

LOGP_FLOOR = -30.0  # a log-probability below this says "never": clipped, so one hopeless prompt does not set the scale
NOTE = (
    "the likelihood is measured after each epoch with the newest model (the live model, or --checkpoint); "
    "until then, and for prompts never measured, the fit uses the embedding alone"
)
KIND_HELP = "Of each prompt's reference: the answer, the solution per token, or the answer after it."
SOLUTION_HELP = "Column of the reference solutions (--likelihood-of solution, answer-after-solution)."
TEMPLATE_HELP = "The completion measured: {answer}, or {solution} then {answer}."


def template_check(name: str, value: Any) -> str:
    if not isinstance(value, str) or not {"answer", "solution"} & set(_fields(value)):
        raise ConfigError(
            f"{name} must be text holding {{answer}} or {{solution}}, where the reference goes; got {value!r}"
        )
    return value


def column_check(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{name} must be a column name; got {value!r}")
    return value


def _fields(template: str) -> list[str]:
    return [field for _, field, _, _ in Formatter().parse(template) if field is not None]


def check_options(likelihood: bool, of: str, template: str) -> None:
    """Refuse settings that contradict each other, in the words of the flags."""
    if not likelihood and of != "answer":
        raise ConfigError(f"--likelihood-of {of} chooses what --likelihood measures: add --likelihood")
    fields = _fields(template)
    if of == "answer" and fields != ["answer"]:
        raise ConfigError(
            f"--likelihood-of answer measures the answer alone: --answer-template holds {{answer}} once and no other "
            f"field; got {template!r} (with {{solution}}, choose --likelihood-of solution or answer-after-solution)"
        )
    if of == "answer":
        return
    allowed = [["solution", "answer"]] + ([["solution"]] if of == "solution" else [])
    if fields not in allowed:
        example = "'{solution}={answer}'" if of == "answer-after-solution" else "'{solution}'"
        raise ConfigError(
            f"--likelihood-of {of} reads --answer-template as {{solution}}, then {{answer}}"
            f"{'' if of == 'answer-after-solution' else ' (optional)'}; got {template!r}: pass e.g. "
            f"--answer-template {example}, as the policy's completions join them"
        )


def check_columns(scores: Any, of: str, solution_column: str) -> None:
    """Refuse, before the first step, a scores directory without the reference each prompt's likelihood reads."""
    column = scores.prompt_config.get("answer_column")
    if of != "solution":
        why = "--likelihood measures the policy's probability of each prompt's reference answer, but"
        fix = "score the data again with --answer-column NAME (the column holding the answers), or drop --likelihood"
        if not column:
            raise ConfigError(f"{why} {scores.directory} names no answer column; {fix}")
        _check_column(scores, column, why, fix, "answer")
    if of != "answer":
        why = f"--likelihood-of {of} reads each prompt's reference solution, but"
        fix = "name the column holding the solutions with --solution-column (it must be in the scored data)"
        _check_column(scores, solution_column, why, fix, "solution")


def _check_column(scores: Any, column: str, why: str, fix: str, what: str) -> None:
    from gaincurate.columns import column_values, has_column, missing_answers

    if not has_column(scores.table, column):
        names = ", ".join(name for name in scores.table.column_names if not name.startswith("gc_"))
        raise ConfigError(f"{why} {scores.directory} has no {column!r} column (its columns: {names}); {fix}")
    missing = missing_answers(column_values(scores.table, column))
    if missing:
        first, rows = scores.table.column("gc_id")[missing[0]].as_py(), scores.table.num_rows
        raise ConfigError(
            f"{why} {len(missing)} of {rows} prompts in {scores.directory} have no {column!r} {what} "
            f"(first: gc_id {first}); drop those rows and score again, or name another column: {fix}"
        )


def likelihood_columns(logps: np.ndarray) -> np.ndarray:
    """[N, 2]: the probability and the log-probability (floored), NaN where unmeasured."""
    floored = np.maximum(logps, LOGP_FLOOR)  # NaN stays NaN
    measured = np.isfinite(floored)
    probability = np.full(len(logps), np.nan)
    probability[measured] = exp(floored[measured])  # not np.exp: its bits vary by CPU
    return np.stack([probability, floored], axis=1)


def likelihood_scale(pool_logps: np.ndarray | None) -> tuple[np.ndarray, np.ndarray] | None:
    """The mean and spread (1 where there is none) of the likelihood columns over the pool's measured prompts; None
    when none was measured (or the probe reads no likelihood)."""
    if pool_logps is None or not np.isfinite(pool_logps).any():
        return None
    reference = likelihood_columns(pool_logps[np.isfinite(pool_logps)])
    mean = reference.mean(axis=0)
    centred = reference - mean
    spread = np.sqrt((centred * centred).mean(axis=0))
    return mean, np.where(spread > 0, spread, 1.0)
