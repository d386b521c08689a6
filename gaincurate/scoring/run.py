"""The scoring run: dataset rows -> prompts -> truncated forward -> segment sums -> shards.

Rows are cut into shards of `shard_rows` consecutive rows. Inside a shard, prompts of one padded width (their
exact length on a CPU, a bucket of it on a GPU) are batched together, at most `batch_tokens` tokens a batch. A
shard's bytes depend
only on its rows, the config and the machine, so a killed run that is started again skips the finished
shards and produces the same bytes as an uninterrupted run; another `--shard-rows`, `--batch-tokens` or
number of ranks moves scores only within `SCORE_TOLERANCE` (docs/shards.md, "What the scores promise").
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np
import pyarrow as pa

from gaincurate import distributed
from gaincurate.columns import column_values, has_column
from gaincurate.distributed import Part
from gaincurate.errors import ConfigError, GaincurateError, Interrupted, interrupts_held
from gaincurate.fileio import atomic_write_json, file_sha256
from gaincurate.progress import NULL_PROGRESS, Progress
from gaincurate.prompts import STATUS_OK, EncodedPrompt, answer_text, prompt_digest
from gaincurate.scoring.config import RunOptions, ScoreConfig
from gaincurate.scoring.engine import Scorer
from gaincurate.scoring.finalize import apply_debias_choice, finalize, model_fields, start_manifest
from gaincurate.scoring.output import OutputClaim, manifest_shard_rows, shards_to_write, write_manifest
from gaincurate.scoring.prepare import Loaded, Plan, Prepared, load_scorer, plan_run, prepare, shard_weights
from gaincurate.shards import DEFAULT_SHARD_ROWS, read_manifest, shard_name, write_shard

# The status of a row the forward itself left without a finite score: a hidden state overflowed (float16).
STATUS_NOT_FINITE = "not_finite"


def score(
    config: ScoreConfig, options: RunOptions | None = None, *, progress: Progress = NULL_PROGRESS
) -> dict[str, Any]:
    """Score a dataset into `options.out` and return its manifest. Resumes a matching partial run.

    A run that already finished there returns its manifest, marked `already_complete`, without loading
    tokenizer or model. Under torchrun, or with `num_shards`/`shard_index`, this process writes only its
    part of the shards; see `gaincurate.distributed`. `progress` hears the stages, then this part's rows.
    """
    options = options or RunOptions()
    started = time.perf_counter()
    part = distributed.current_part(options.num_shards, options.shard_index)
    if options.overwrite and part.count > 1 and not part.distributed:
        raise ConfigError("--overwrite cannot be combined with --num-shards; clear the --out directory first")
    plan = plan_run(config, options, probe_lock=not part.distributed or part.is_leader)
    if plan.dataset.repeats is not None:
        progress.stage(plan.dataset.repeats.line(plan.dataset.name))
    finished = plan.finished()  # a clashing run stops here, before any tokenizer or model loads
    if finished is not None:
        return _debiased(plan, part, progress) if plan.debias_changes() else finished
    if options.threads is not None:
        import torch

        torch.set_num_threads(options.threads)
    begun = time.time()
    try:
        return _claim_and_score(plan, part, progress, started)
    except KeyboardInterrupt:
        raise _interrupted(plan, begun) from None


def _debiased(plan: Plan, part: Part, progress: Progress) -> dict[str, Any]:
    """A complete `--out` re-ranked as `--debias` asks: no shard is scored or written and no model loads, so the
    scoring pass's timings stay those of the pass that made the scores. The returned manifest is marked `debiased`."""
    progress.stage(f"re-ranking {plan.out} with --debias {plan.config.debias}: the scores are kept, no model loads")
    with OutputClaim(plan.out, part) as claim:
        if not claim.exclusive:  # an array part: the parts' `merge` completes the directory, not one part
            return {**read_manifest(plan.out), "already_complete": True}
        manifest = apply_debias_choice(plan.out, read_manifest(plan.out), plan.config)
    return {**manifest, "debiased": True}


def _interrupted(plan: Plan, begun: float) -> Interrupted:
    """What a Ctrl-C left in `--out`: whole shards only, as each is written atomically. Under `--overwrite` only the
    shards this run wrote count (the old run's are being deleted), and only a rerun without it keeps them."""
    out = plan.out
    try:
        shard_rows = manifest_shard_rows(read_manifest(out))
    except (OSError, GaincurateError):  # stopped before the first manifest: the layout this run would have used
        shard_rows = plan.options.shard_rows or DEFAULT_SHARD_ROWS
    overwrite = plan.options.overwrite
    kept = sum(not overwrite or p.stat().st_mtime >= begun for p in out.glob("shard-*.arrow")) if out.is_dir() else 0
    total = max(1, -(-len(plan.rows) // shard_rows))
    return Interrupted(kept=kept, total=total, piece_rows=shard_rows, where=str(out), overwrite=overwrite)


def _claim_and_score(plan: Plan, part: Part, progress: Progress, started: float) -> dict[str, Any]:
    """Own `--out`, load the model, and score this part's shards."""
    with OutputClaim(plan.out, part) as claim:
        prepared = prepare(plan, progress)
        device = distributed.device_for(part, prepared.device)
        distributed.init(part, device)
        manifest = claim.publish(start_manifest(prepared, prepared.options), prepared.stale)  # before the model loads
        distributed.barrier(part)
        loaded = load_scorer(prepared, device, progress)
        manifest = {**manifest, **model_fields(prepared, loaded)}
        if claim.locks:
            write_manifest(prepared.out, manifest)
        distributed.barrier(part)
        return _score_part(prepared, loaded, manifest, part, progress, started)


def _score_part(
    prepared: Prepared, loaded: Loaded, manifest: dict[str, Any], part: Part, progress: Progress, started: float
) -> dict[str, Any]:
    """Write this part's missing or damaged shards, then complete the manifest (or leave an array part's marker)."""
    out, bounds = prepared.out, prepared.bounds
    mine = distributed.assign(shard_weights(prepared.dataset.weights, bounds), part.count)
    mine = mine[part.index]
    todo = shards_to_write(out, (prepared.previous or {}).get("checksums", {}), mine, bounds, prepared.schema)
    progress.set_total(sum(bounds[i][1] - bounds[i][0] for i in mine))
    progress.advance(sum(bounds[i][1] - bounds[i][0] for i in mine if i not in todo))

    score_started = time.perf_counter()
    _score_shards(prepared, loaded.scorer, bounds, todo, progress)
    work = {
        **dataclasses.asdict(loaded.scorer.stats),
        "score_seconds": time.perf_counter() - score_started,
        "rows_scored": sum(bounds[i][1] - bounds[i][0] for i in todo),
        "shards_resumed": len(mine) - len(todo),
        "model_load_seconds": loaded.seconds,
    }
    if part.count > 1 and not part.distributed:
        # The SHA-256 of the part's shards, which `merge` checks: a shard copied from another run still reads as rows.
        checksums = {shard_name(i): file_sha256(out / shard_name(i)) for i in mine}
        marker = {"fingerprint": prepared.fingerprint, "work": work, "checksums": checksums}
        atomic_write_json(out / distributed.part_marker(part), marker)
        return manifest
    works = distributed.gather(part, work)
    distributed.barrier(part)
    if part.is_leader:
        manifest = finalize(out, manifest, prepared.config, works, time.perf_counter() - started)
    distributed.barrier(part)
    distributed.finish(part)
    return manifest


def _score_shards(
    prepared: Prepared, scorer: Scorer, bounds: list[tuple[int, int]], todo: list[int], progress: Progress
) -> None:
    """Score and write the shards `todo`, tokenizing the next one while the device runs this one's forwards, on this
    thread: a worker tokenizing would hold the interpreter lock while kernels launch, and the device would wait."""
    rows, column = prepared.rows, prepared.config.prompt_column
    answer_column = prepared.config.answer_column
    answer_column = answer_column if answer_column and has_column(rows, answer_column) else None

    def encode(index: int) -> tuple[Any, list[Any], list[EncodedPrompt]]:
        with interrupts_held():  # datasets' fingerprinting of the selection would swallow a Ctrl-C (a bare `except`)
            chunk = rows.select(range(*bounds[index]))
        values = column_values(chunk, column)  # the shard's prompts, read once: encoded, then hashed below
        return chunk, values, prepared.encoder.encode(values, first_row=bounds[index][0])

    upcoming = encode(todo[0]) if todo else None
    for position, index in enumerate(todo):
        chunk, values, prompts = upcoming
        read = scorer.launch(prompts, progress)
        try:
            if position + 1 < len(todo):
                upcoming = encode(todo[position + 1])
        finally:  # this shard is written whatever tokenizing the next one raises
            answers = column_values(chunk, answer_column) if answer_column else [None] * len(chunk)
            columns = score_columns(prompts, np.arange(*bounds[index]), read(), values, answers)
            table, schema = chunk.with_format("arrow")[:], prepared.schema
            table = pa.Table.from_arrays([*table.columns, *columns.values()], schema=schema) if len(table) else (
                schema.empty_table())  # fmt: skip
            write_shard(prepared.out / shard_name(index), table)


def score_columns(
    prompts: list[EncodedPrompt], ids: np.ndarray, result: dict[str, Any], values: list[Any], answers: list[Any]
) -> dict[str, pa.Array]:
    """The gc_* columns of one shard, in the order of `shards.SCORE_FIELDS` (plus the embedding).

    `values` are the rows' prompt values and `answers` their answers (None: none), hashed for later checks.
    """
    columns = {
        "gc_id": pa.array(ids, pa.int64()),
        "gc_intra": pa.array(result["intra"], pa.float64()),
        "gc_inter": pa.array(result["inter"], pa.float64()),
        "gc_score": pa.array(result["score"], pa.float64()),
        "gc_question_tokens": pa.array([p.question_tokens for p in prompts], pa.int32()),
        "gc_context_tokens": pa.array([p.context_tokens for p in prompts], pa.int32()),
        "gc_truncated": pa.array([p.truncated for p in prompts], pa.bool_()),
        "gc_status": pa.array(
            [
                STATUS_NOT_FINITE if p.status == STATUS_OK and not np.isfinite(v) else p.status
                for p, v in zip(prompts, result["score"], strict=True)
            ],
            pa.string(),
        ),  # fmt: skip
        "gc_prompt_hash": pa.array([prompt_digest(v) for v in values], pa.string()),
        "gc_answer_hash": pa.array([prompt_digest(answer_text(a)) for a in answers], pa.string()),
    }
    if "embedding" in result:
        columns["gc_embedding"] = pa.array(
            [None if v is None else v.astype(np.float16) for v in result["embedding"]], pa.list_(pa.float16())
        )
    return columns
