"""`gaincurate signal check SCORES --data D`: does the angle score carry learning signal on this model, beyond length?

For each scored prompt (or a seeded sample of `rows`), the exact prompt that was scored (system prompt, few-shot
turns, question, generation prompt; built from the scores manifest) is followed by the tokens of
`The answer is \\boxed{ANSWER}.`, with no end-of-turn token. The mean NLL of those answer tokens is taken, and
the L2 norm of its gradient over all model parameters (fp32, batch 1, eval mode): how hard this prompt's right
answer would pull on the weights. The report is the Spearman correlation of that gradient norm with `gc_score`,
with the question's token count, with the difficulty column when there is one, and with the NLL itself, plus the
partial Spearman correlation of score and gradient norm with question length held fixed.

    result = signal_check("scores/", data="problems.jsonl", rows=200)
    result == {"rows": 200, "spearman": {"score": r, "question_tokens": r, "difficulty": r | None, "nll": r},
               "partial_spearman_score_given_length": r}

Answers (and the difficulty column) come from `data`, row i being gc_id i, as `gaincurate score` numbered them;
without `data` they come from the scores table's own input columns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gaincurate.errors import InputError
from gaincurate.errors import setting as spelled
from gaincurate.progress import NULL_PROGRESS, Progress
from gaincurate.settings import at_least, setting

ANSWER_TEMPLATE = "The answer is \\boxed{{{answer}}}."
DIFFICULTY_COLUMN = "difficulty"


@dataclass(frozen=True, kw_only=True)
class SignalCheck:
    """What one check reads and how (the scores directory aside); `gaincurate signal check` takes each as an option."""

    data: str | None = setting(None, "The dataset the scores came from, for answers.", shown="the scores' columns")
    rows: int | None = setting(None, "A seeded sample of N prompts.", check=at_least(3), shown="all with an answer")
    seed: int = setting(0, "Seed of the sample.")
    answer_column: str = setting("answer", "Column of the right answers.")
    difficulty_column: str = setting(DIFFICULTY_COLUMN, "Column of a known difficulty, if any.")
    device: str = setting("cpu", "cpu or cuda[:N].")


@dataclass(frozen=True)
class SignalRows:
    """Per-row measurements, in gc_id order of the rows checked."""

    gc_ids: np.ndarray
    scores: np.ndarray
    question_tokens: np.ndarray
    difficulty: np.ndarray | None
    nll: np.ndarray
    grad_norm: np.ndarray


def rankdata(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank (as scipy.stats.rankdata's default)."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.arange(1, len(values) + 1)
    sorted_values = values[order]
    starts = np.flatnonzero(np.concatenate([[True], sorted_values[1:] != sorted_values[:-1]]))
    ends = np.concatenate([starts[1:], [len(values)]])
    for start, end in zip(starts, ends, strict=True):
        if end - start > 1:
            ranks[order[start:end]] = (start + 1 + end) / 2
    return ranks


def spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    """Spearman's rho over the pairs where both are finite; None with fewer than 3 pairs or a constant side."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    if keep.sum() < 3:
        return None
    rx, ry = rankdata(x[keep]), rankdata(y[keep])
    if rx.std() == 0 or ry.std() == 0:
        return None
    return float(np.corrcoef(rx, ry)[0, 1])


def partial_spearman(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> float | None:
    """Spearman correlation of x and y with z held fixed: the partial correlation of their ranks."""
    x, y, z = (np.asarray(v, dtype=np.float64) for v in (x, y, z))
    keep = np.isfinite(x) & np.isfinite(y) & np.isfinite(z)
    r_xy, r_xz, r_yz = (spearman(a[keep], b[keep]) for a, b in ((x, y), (x, z), (y, z)))
    if r_xy is None:
        return None
    if r_xz is None or r_yz is None:
        return r_xy  # z is constant: holding it fixed changes nothing
    denominator = math.sqrt((1 - r_xz**2) * (1 - r_yz**2))
    return None if denominator == 0 else float((r_xy - r_xz * r_yz) / denominator)


def answer_gradient(model: Any, prompt_ids: list[int], answer_ids: list[int]) -> tuple[float, float]:
    """Mean NLL of `answer_ids` after `prompt_ids`, and the L2 norm of its gradient over all parameters."""
    import torch

    device = next(model.parameters()).device
    input_ids = torch.tensor([list(prompt_ids) + list(answer_ids)], device=device)
    labels = torch.full_like(input_ids, -100)
    labels[0, len(prompt_ids) :] = input_ids[0, len(prompt_ids) :]
    model.zero_grad(set_to_none=True)
    loss = model(input_ids=input_ids, labels=labels).loss
    loss.backward()
    squares = sum(float(p.grad.detach().float().pow(2).sum()) for p in model.parameters() if p.grad is not None)
    model.zero_grad(set_to_none=True)
    return float(loss.detach()), math.sqrt(squares)


def _inputs(scores_dir: Path, data: str | None, answer_column: str, difficulty_column: str):
    """The scores table's gc_id, score, question tokens and question, with answers and difficulty."""
    from gaincurate.scoring.config import split_config
    from gaincurate.shards import read_manifest, read_scores

    config, _ = split_config(read_manifest(scores_dir)["config"])
    table = read_scores(scores_dir).to_pydict()
    questions = table[config.prompt_column]
    source = table
    if data is not None:
        from gaincurate.data import load_rows

        source = load_rows(data, split=None, prompt_column=config.prompt_column, limit=None).rows.to_dict()
        gc_ids = table["gc_id"]
        rows = source[config.prompt_column]
        if max(gc_ids) >= len(rows) or any(rows[i] != q for i, q in zip(gc_ids, questions, strict=True)):
            raise InputError(f"--data {data} is not the dataset {scores_dir} was scored from (its questions differ)")
        source = {key: [values[i] for i in gc_ids] for key, values in source.items()}
    if answer_column not in source:
        raise InputError(f"no answer column {answer_column!r}; pass --data with one, or --answer-column")
    # The default column may be absent (no difficulty is reported then); a column the user names must hold numbers.
    if difficulty_column != DIFFICULTY_COLUMN and not _numeric(source.get(difficulty_column, [])):
        fault = "no such column" if difficulty_column not in source else "not a numeric column"
        numeric = [name for name, values in source.items() if not name.startswith("gc_") and _numeric(values)]
        raise InputError(f"{spelled('difficulty_column', difficulty_column)}: {fault}; name one of the numeric "
                         f"columns ({', '.join(numeric) or 'none'})")  # fmt: skip
    return config, table, questions, source[answer_column], source.get(difficulty_column)


def _numeric(values: list[Any]) -> bool:
    """Whether every value given is a number (a string of one included), and one at least is."""
    given = [value for value in values if value not in (None, "")]
    return bool(given) and all(math.isfinite(_number(value)) for value in given)


def measure_rows(scores_dir: str | Path, check: SignalCheck, progress: Progress = NULL_PROGRESS) -> SignalRows:
    """NLL and gradient norm of the right answer for each scored prompt with an answer (or a seeded sample)."""
    import torch

    from gaincurate.model import load_model, load_tokenizer, resolve_source
    from gaincurate.prompts import PromptEncoder

    config, table, questions, answers, difficulty = _inputs(
        Path(scores_dir), check.data, check.answer_column, check.difficulty_column
    )
    rows, seed = check.rows, check.seed
    scores = np.asarray([np.nan if s is None else s for s in table["gc_score"]], dtype=np.float64)
    usable = [i for i, a in enumerate(answers) if a not in (None, "") and np.isfinite(scores[i])]
    if rows is not None and rows < len(usable):
        usable = sorted(np.random.default_rng(seed).choice(usable, size=rows, replace=False).tolist())
    if len(usable) < 3:  # refused before the model loads: its gradients would correlate with nothing
        raise InputError(f"{scores_dir} has {len(usable)} prompts with an answer and a score; Spearman needs 3 or "
                         f"more: score a larger set, or give the answers it lacks ({spelled('data')})")  # fmt: skip
    progress.stage("loading the model")
    source = resolve_source(config.model)
    tokenizer = load_tokenizer(source)
    model = load_model(source, dtype="float32", device=check.device)  # eval mode
    encoder = PromptEncoder(tokenizer, config.prompt_format, config.max_length)
    nll, norms = np.zeros(len(usable)), np.zeros(len(usable))
    progress.stage("answer gradients")
    progress.set_total(len(usable))
    with torch.enable_grad():
        for k, i in enumerate(usable):
            prompt = encoder.encode([questions[i]])[0].input_ids.tolist()
            suffix = ANSWER_TEMPLATE.format(answer=str(answers[i]).strip())
            nll[k], norms[k] = answer_gradient(model, prompt, tokenizer.encode(suffix, add_special_tokens=False))
            progress.advance(1)
    hardness = None
    if difficulty is not None:
        hardness = np.array([_number(difficulty[i]) for i in usable], dtype=np.float64)
    return SignalRows(
        gc_ids=np.asarray([table["gc_id"][i] for i in usable], dtype=np.int64),
        scores=scores[usable],
        question_tokens=np.asarray([table["gc_question_tokens"][i] for i in usable], dtype=np.float64),
        difficulty=hardness,
        nll=nll,
        grad_norm=norms,
    )


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def report(measured: SignalRows) -> dict[str, Any]:
    """The `--json` object: every r is a Spearman correlation with the gradient norm."""
    norm = measured.grad_norm
    return {
        "rows": len(norm),
        "spearman": {
            "score": spearman(norm, measured.scores),
            "question_tokens": spearman(norm, measured.question_tokens),
            "difficulty": spearman(norm, measured.difficulty) if measured.difficulty is not None else None,
            "nll": spearman(norm, measured.nll),
        },
        "partial_spearman_score_given_length": partial_spearman(measured.scores, norm, measured.question_tokens),
    }


def signal_check(
    scores_dir: str | Path, data: str | None = None, *, progress: Progress = NULL_PROGRESS, **check: Any
) -> dict[str, Any]:
    """`gaincurate signal check`: the correlations of the answer-gradient norm (see the module docstring).

    `scores_dir`: a `gaincurate score` output (its manifest names the model and prompt format). `data`: the
    dataset it was scored from, for the answer and difficulty columns (None: the scores table's own). `check`:
    the other fields of `SignalCheck` (`rows`: a seeded sample of that many prompts, ...). Returns the `--json` object:
    `{"rows", "spearman": {"score", "question_tokens", "difficulty", "nll"}, "partial_spearman_score_given_length"}`.
    Raises `InputError` when `data` is not the scored dataset or has no answer column.
    """
    return report(measure_rows(scores_dir, SignalCheck(data=data, **check), progress))
