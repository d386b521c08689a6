"""The prompts a rollout run samples: chosen gc_ids, their questions and gold answers, and prompt settings.

Everything comes from the scores directory, so a rollout prompt is built exactly as the scored one was
(system prompt, few-shot turns, chat template recorded in its manifest).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gaincurate.columns import check_ground_truths, column_values, has_column, missing_answers
from gaincurate.errors import ConfigError, InputError
from gaincurate.prompts import is_messages
from gaincurate.rollout.answers import gold_text
from gaincurate.rollout.config import RolloutConfig

# A prompt value as the scores directory holds it: text, or chat messages ({"role", "content"} dicts), which the
# chat template renders as scoring and TRL render them.
PromptValue = str | list[dict[str, Any]]

REFERENCE_STREAM = 7  # seed-sequence branch for drawing the reference ids, apart from sampling streams


@dataclass(frozen=True)
class Inputs:
    gc_ids: np.ndarray
    questions: list[PromptValue]
    answers: list[str | None]
    prompt_config: dict[str, Any]
    dataset_fingerprint: str | None
    model_spec: str | None
    answer_column: str
    note: str | None = None  # one line for the user: the prompts without a gold answer that were left out


def choose_ids(all_ids: np.ndarray, *, reference_size: int | None, ids_file: str | None, seed: int) -> np.ndarray:
    """The gc_ids to roll out, ascending: from --ids, a seeded sample of --reference-size, or all."""
    all_ids = np.asarray(all_ids, dtype=np.int64)
    if ids_file is not None:
        return _ids_from_file(all_ids, ids_file)
    if reference_size is None:
        return np.sort(all_ids)
    if reference_size > len(all_ids):
        raise ConfigError(
            f"--reference-size {reference_size} is more than the {len(all_ids)} prompts; pass at most {len(all_ids)}"
        )
    rng = np.random.default_rng([seed, REFERENCE_STREAM])
    return np.sort(rng.choice(np.sort(all_ids), size=reference_size, replace=False))


def _ids_from_file(all_ids: np.ndarray, ids_file: str) -> np.ndarray:
    path = Path(ids_file)
    if not path.is_file():
        raise InputError(f"--ids {ids_file} does not exist; pass a file of gc_ids, one per line")
    try:
        text = path.read_text(encoding="utf-8-sig").strip()  # "-sig": an editor's byte order mark is no gc_id
        values = json.loads(text) if text.startswith("[") else text.replace(",", " ").split()
        chosen = np.asarray(sorted({_gc_id(v) for v in values}), dtype=np.int64)
    except (ValueError, TypeError):
        raise InputError(f"--ids {ids_file} must hold whole gc_ids, one per line (or a JSON list)") from None
    unknown = np.setdiff1d(chosen, all_ids)
    if len(unknown):
        raise InputError(f"--ids {ids_file} names gc_id {int(unknown[0])}, which is not in the scores directory")
    if not len(chosen):
        raise InputError(f"--ids {ids_file} names no gc_id")
    return chosen


def _gc_id(value: Any) -> int:
    """A gc_id as written: an integer or its digits; 1.5 (or true) names no prompt, so it is refused, not rounded."""
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError(value)
    return int(value)


def answered_choice(
    all_ids: np.ndarray, unanswered: np.ndarray, config: RolloutConfig, answer_column: str
) -> tuple[np.ndarray, str | None]:
    """`choose_ids` among the prompts with a gold answer, and the line that says how many without one were left out.

    No completion can match a missing answer, so its rollouts would all read as failures and the reference set would
    say the model cannot solve the prompt; those prompts are never rolled out (whole prompts, never some of their
    lines, so a resumed file is still whole groups). A run left with nothing to roll out is refused.
    """
    lacking = f"no {answer_column!r} answer"
    if config.ids_file is not None:
        listed = choose_ids(all_ids, reference_size=None, ids_file=config.ids_file, seed=config.seed)
        chosen = np.setdiff1d(listed, unanswered)
        if not len(chosen):
            raise InputError(
                f"every gc_id --ids {config.ids_file} names has {lacking}, so no rollout could be checked; "
                "list prompts that have an answer"
            )
        left_out = len(listed) - len(chosen)
        where = f"of the {len(listed)} gc_ids of --ids {config.ids_file}"
    else:
        chosen_from = np.setdiff1d(all_ids, unanswered)
        if not len(chosen_from):
            raise InputError(
                f"every prompt of {config.scores} has {lacking}, so no rollout could be checked; "
                "pass --answer-column naming the column that holds the answers"
            )
        if len(unanswered) and config.reference_size is not None and config.reference_size > len(chosen_from):
            raise ConfigError(
                f"--reference-size {config.reference_size} is more than the {len(chosen_from)} prompts of "
                f"{config.scores} with an answer ({len(unanswered)} have {lacking}); pass at most {len(chosen_from)}"
            )
        chosen = choose_ids(chosen_from, reference_size=config.reference_size, ids_file=None, seed=config.seed)
        left_out = len(unanswered)
        where = f"of the {len(all_ids)} prompts of {config.scores}"
    if not left_out:
        return chosen, None
    return chosen, f"note: {left_out} {where} have {lacking}; they are left out, as no completion can match them"


def prompt_value(value: Any) -> PromptValue:
    """A prompt cell as rollout renders it: chat messages stay messages, anything else is its text."""
    if is_messages(value):
        return [dict(message) for message in value]
    return "" if value is None else str(value)


def read_inputs(config: RolloutConfig, *, answered_only: bool = True) -> Inputs:
    """The chosen prompts of `config.scores`, with their answers; one-line errors for a missing column. Prompts without
    a gold answer are left out (`answered_choice`) unless `answered_only` is False (every prompt, unchecked)."""
    from gaincurate.shards import read_manifest, read_scores

    manifest = read_manifest(Path(config.scores))
    prompt_config = manifest.get("config", {})
    prompt_column = prompt_config.get("prompt_column", "problem")
    answer_column = config.answer_column or prompt_config.get("answer_column")
    if not answer_column:
        raise ConfigError(f"{config.scores} was scored without an answer column; pass --answer-column NAME")
    columns = manifest.get("dataset", {}).get("columns")
    if columns is not None and answer_column.split(".")[0] not in columns:
        raise InputError(
            f"{config.scores} has no column {answer_column!r}; available: {', '.join(columns)}. Pass --answer-column"
        )
    table = read_scores(Path(config.scores))
    if not has_column(table, answer_column):
        raise InputError(f"{config.scores} has no column {answer_column!r}; pass --answer-column NAME")
    given = column_values(table, answer_column)
    check_ground_truths(given, answer_column, config.scores)  # as `score` refuses it: an object is no gold answer
    all_ids = table.column("gc_id").to_numpy(zero_copy_only=False).astype(np.int64)
    note = None
    if answered_only:
        unanswered = all_ids[missing_answers(given)]
        chosen, note = answered_choice(all_ids, unanswered, config, answer_column)
    else:
        chosen = choose_ids(all_ids, reference_size=config.reference_size, ids_file=config.ids_file, seed=config.seed)
    rows = np.searchsorted(all_ids, chosen)
    questions = table.column(prompt_column).take(rows).to_pylist()
    answers = [given[row] for row in rows]  # not `table.take`, which would first join every column, embeddings too
    return Inputs(
        gc_ids=chosen,
        questions=[prompt_value(q) for q in questions],
        answers=[gold_text(a) for a in answers],
        prompt_config=prompt_config,
        dataset_fingerprint=manifest.get("dataset", {}).get("fingerprint"),
        model_spec=config.model if config.model is not None else prompt_config.get("model"),
        answer_column=answer_column,
        note=note,
    )
