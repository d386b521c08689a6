"""A run's prompts without a model pass, for strategies that read no score: `schedule init --prompts FILE`.

uniform, mopps, greso and the lab's strategies that measure the live policy choose from rewards (and that policy)
alone, so a scoring pass would cost them a model load and a forward over every prompt for nothing. `write_unscored`
writes the prompt file as a scores directory, `RUN/prompts/`: the shards, gc_ids (the file's row order), prompt and
answer hashes and manifest `gaincurate score` writes, so every trainer path reads it alike, with the score columns
null, every row's `gc_status` "unscored" and its question tokens 0 (no tokenizer ran). Its prompt format is
`score`'s defaults, so TRL trains on the prompts a default scoring would render. A strategy that reads what a model
pass makes (scores, lengths, embeddings, answer likelihoods: `MODEL_PASS` in its `needs`) is refused, before
anything is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from gaincurate.errors import ConfigError, InputError, shell_word
from gaincurate.progress import NULL_PROGRESS, Progress
from gaincurate.schedule.strategies.contract import EMBEDDINGS, FRESH_SCORES, LIKELIHOOD, SCORES

PROMPTS = "prompts"  # the scores-format folder inside the run directory
UNSCORED = "unscored"  # every row's gc_status
MODEL_PASS = frozenset({SCORES, EMBEDDINGS, FRESH_SCORES, LIKELIHOOD})


def check_unscored(strategy: str, prompts: str = "FILE") -> None:
    """Refuse, in one line, a strategy that reads what only `gaincurate score` makes: the `score` command that makes
    it, and the strategies that start from `prompts` alone."""
    from gaincurate.schedule.strategies.registry import STRATEGIES

    wanted = sorted(STRATEGIES[strategy].about.needs & MODEL_PASS)
    if wanted:
        takes = ", ".join(name for name, cls in STRATEGIES.items() if not cls.about.needs & MODEL_PASS)
        raise ConfigError(
            f"strategy {strategy} reads {' and '.join(wanted)} from a model pass over the prompts: run `gaincurate "
            f"score {shell_word(prompts)} --out scores` first, then `gaincurate schedule init --scores scores` "
            f"instead of --prompts; or start from the prompt file alone with --strategy one of {takes}"
        )


def write_unscored(
    dataset: str, out: Path, *, prompt_column: str | None = None, drop_duplicates: bool = False,
    progress: Progress = NULL_PROGRESS,
) -> dict[str, Any]:  # fmt: skip
    """Write `dataset` (a JSONL, JSON, parquet... file, as `score` reads it) to `out` as an unscored scores
    directory; returns its manifest. `prompt_column` defaults to `score`'s (verl's own layout is detected).
    Repeated ids are refused, repeated prompt texts told on `progress` (`drop_duplicates`: the first of each kept)."""
    from gaincurate import __version__
    from gaincurate.columns import column_values, has_column
    from gaincurate.data import SplitsError, check_answers, load_rows
    from gaincurate.fileio import file_sha256
    from gaincurate.prompt_scan import check_repeats
    from gaincurate.prompts import answer_text, for_column, prompt_digest
    from gaincurate.scoring.config import RunOptions, ScoreConfig, manifest_config
    from gaincurate.shards import DEFAULT_SHARD_ROWS, FORMAT_VERSION, output_schema, shard_name, write_shard

    config = ScoreConfig(dataset=dataset, **({"prompt_column": prompt_column} if prompt_column else {}))
    try:
        loaded = load_rows(dataset, split=None, prompt_column=config.prompt_column, limit=None,
                           answer_column=config.answer_column)  # fmt: skip
    except SplitsError as error:  # `score` picks one with --split; --prompts, with one split's own folder or file
        first = error.splits[0]
        fix = (
            f"pass one split's folder, e.g. --prompts {Path(dataset) / first}"
            if Path(dataset).is_dir()
            else f"save one as a file (datasets.load_dataset({dataset!r}, split={first!r}).to_json('prompts.jsonl'))"
        )
        raise InputError(f"{dataset} has splits {', '.join(error.splits)}; --prompts reads one: {fix}") from None
    loaded = check_repeats(loaded, drop=drop_duplicates)
    if loaded.repeats is not None:
        progress.stage(loaded.repeats.line(loaded.name))
    rows = loaded.rows
    answers = check_answers(rows, loaded.answer_column, loaded.name, allow_missing=True)
    config = config.replace(prompt_column=loaded.prompt_column, answer_column=loaded.answer_column)
    answer_column = config.answer_column if config.answer_column and has_column(rows, config.answer_column) else None
    schema = output_schema(rows.features.arrow_schema, embed=False)
    out.mkdir(parents=True)
    names = []
    for index, low in enumerate(range(0, len(rows), DEFAULT_SHARD_ROWS)):
        chunk = rows.select(range(low, min(low + DEFAULT_SHARD_ROWS, len(rows))))
        given = column_values(chunk, answer_column) if answer_column else [None] * len(chunk)
        hashes = {
            "gc_prompt_hash": [prompt_digest(value) for value in column_values(chunk, config.prompt_column)],
            "gc_answer_hash": [prompt_digest(answer_text(value)) for value in given],
        }  # as `gaincurate score` hashes them (`scoring.run.score_columns`), so trainers check rows alike
        names.append(shard_name(index))
        write_shard(out / names[-1], _table(chunk.with_format("arrow")[:], schema, low, hashes))
    options = RunOptions(out=str(out), allow_missing_answers=True, drop_duplicates=drop_duplicates)
    manifest = {
        "format_version": FORMAT_VERSION,
        "tool_version": __version__,
        "complete": True,
        "unscored": True,
        "fingerprint": {},
        "config": manifest_config(config, options),
        "model": {"id": UNSCORED},
        "prompt_hash": for_column(config.prompt_format, config.prompt_column).fingerprint(),
        "prompt_format": "as_is" if for_column(config.prompt_format, config.prompt_column).as_is else "question",
        "answers": answers,
        "dataset": {"name": loaded.name, "split": None, "fingerprint": loaded.fingerprint,
                    "columns": rows.column_names},
        "rows": len(rows),
        "shard_rows": DEFAULT_SHARD_ROWS,
        "shards": names,
        "checksums": {name: file_sha256(out / name) for name in names},
        "debias": None,
    }  # fmt: skip
    from gaincurate.scoring.output import write_manifest  # the one writer of a scores manifest

    write_manifest(out, manifest)
    return manifest


def _table(inputs: pa.Table, schema: pa.Schema, low: int, hashes: dict[str, list[str | None]]) -> pa.Table:
    """The input columns, then every gc_* column: ids in row order, no score, status `unscored`."""
    count = len(inputs)
    gc = {
        "gc_id": pa.array(np.arange(low, low + count), pa.int64()),
        "gc_intra": pa.nulls(count, pa.float64()),
        "gc_inter": pa.nulls(count, pa.float64()),
        "gc_score": pa.nulls(count, pa.float64()),
        "gc_question_tokens": pa.array(np.zeros(count, np.int32), pa.int32()),
        "gc_context_tokens": pa.array(np.zeros(count, np.int32), pa.int32()),
        "gc_truncated": pa.array(np.zeros(count, bool), pa.bool_()),
        "gc_status": pa.array([UNSCORED] * count, pa.string()),
        **{name: pa.array(values, pa.string()) for name, values in hashes.items()},
    }
    return pa.Table.from_arrays([*inputs.columns, *(gc[name] for name in schema.names[inputs.num_columns :])],
                                schema=schema)  # fmt: skip


def init_unscored(
    run_dir: Path, prompts: str, config: Any, *, prompt_column: str | None = None, drop_duplicates: bool = False,
    progress: Progress = NULL_PROGRESS,
) -> tuple[Any, Any]:  # fmt: skip
    """`steps.init_run` for a prompt file: its unscored directory staged beside `run_dir`, checked by `init_run`
    like any scores directory, then moved to `RUN/prompts/`; nothing is left behind when a check fails."""
    import dataclasses
    import os
    import tempfile

    from gaincurate.schedule.run import rundir
    from gaincurate.schedule.run.steps import init_run

    run_dir = Path(run_dir)
    rundir.check_new(run_dir)
    check_unscored(config.strategy, prompts)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{run_dir.name}-", dir=run_dir.parent) as work:
        staged = Path(work) / PROMPTS
        manifest = write_unscored(prompts, staged, prompt_column=prompt_column, drop_duplicates=drop_duplicates,
                                  progress=progress)  # fmt: skip
        # Checked here, not by `init_run`, so that the error names the user's file, not the staging folder.
        if config.format == "verl" and not manifest["answers"]["present"]:
            column = manifest["answers"]["column"]
            raise InputError(
                f"--format verl needs a ground truth per prompt, but {prompts} has no column {column!r}; rename the "
                f"column that holds its answers to {column!r}, or use --format trl"
            )
        run, scheduler = init_run(run_dir, staged, config)
        os.replace(staged, run_dir / PROMPTS)
    run = dataclasses.replace(run, scores_dir=str((run_dir / PROMPTS).resolve()))
    rundir.save_run(run_dir, run)
    return run, scheduler
