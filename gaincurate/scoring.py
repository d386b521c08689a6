"""The scoring pipeline: dataset rows -> prompts -> truncated forward -> segment sums -> shards.

Run it with `gaincurate score [DATASET] --out DIR`, or from Python with `score(ScoreConfig(...))`.

Rows are cut into shards of `shard_size` consecutive rows. Inside a shard, prompts are sorted by
length and packed into batches of at most `batch_tokens` padded tokens, so batches waste little on
padding. A shard's content depends only on its rows and the config, so a killed run that is started
again skips the finished shards and produces the same bytes as an uninterrupted run.

`rescore` re-scores chosen rows of an existing scores directory with a newer checkpoint, or with a
live model inside a trainer, using the same prompt and site configuration.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from gaincurate import __version__, distributed
from gaincurate.config import ScoreConfig, resolve_batch_tokens
from gaincurate.data import fingerprint as dataset_fingerprint
from gaincurate.data import load_rows
from gaincurate.engine import ProgressHook, Scorer, find_shared_prefix
from gaincurate.errors import ConfigError, InputError
from gaincurate.fileio import atomic_write_json, read_json
from gaincurate.metrics import fit_length_debias, spearman
from gaincurate.model import (
    SiteForward,
    describe_model,
    load_model,
    load_tokenizer,
    resolve_device,
    resolve_dtype,
    resolve_source,
    source_fingerprint,
)
from gaincurate.prompts import EncodedPrompt, PromptEncoder
from gaincurate.shards import (
    FORMAT_VERSION,
    MANIFEST,
    output_schema,
    plan_output,
    read_manifest,
    read_scores,
    read_shard,
    shard_name,
    write_shard,
)

log = logging.getLogger(__name__)


def _score_columns(prompts: list[EncodedPrompt], ids: np.ndarray, result: dict[str, Any]) -> dict[str, pa.Array]:
    columns = {
        "gc_id": pa.array(ids, pa.int64()),
        "gc_intra": pa.array(result["intra"], pa.float64()),
        "gc_inter": pa.array(result["inter"], pa.float64()),
        "gc_score": pa.array(result["score"], pa.float64()),
        "gc_question_tokens": pa.array([p.question_tokens for p in prompts], pa.int32()),
        "gc_context_tokens": pa.array([p.context_tokens for p in prompts], pa.int32()),
        "gc_truncated": pa.array([p.truncated for p in prompts], pa.bool_()),
        "gc_status": pa.array([p.status for p in prompts], pa.string()),
    }
    if "embedding" in result:
        columns["gc_embedding"] = pa.array(
            [None if v is None else v.astype(np.float16) for v in result["embedding"]], pa.list_(pa.float16())
        )
    return columns


def score(
    config: ScoreConfig, progress: ProgressHook | None = None, on_total: Callable[[int], None] | None = None
) -> dict[str, Any]:
    """Score a dataset into `config.out` and return its manifest. Resumes a matching partial run.

    Under torchrun, or with `num_shards`/`shard_index`, this process writes only its part of the shards;
    see `gaincurate.distributed`.
    """
    started = time.perf_counter()
    part = distributed.current_part(config.num_shards, config.shard_index)
    if config.overwrite and part.count > 1 and not part.distributed:
        raise ConfigError("--overwrite cannot be combined with --num-shards; clear the --out directory first")
    dataset = load_rows(config.dataset, split=config.split, prompt_column=config.prompt_column, limit=config.limit)
    rows = dataset.rows
    source = resolve_source(config.model)
    device = resolve_device(config.device)
    dtype = resolve_dtype(config.dtype, device)
    tokenizer = load_tokenizer(source)
    encoder = PromptEncoder(tokenizer, config.prompt_format, config.max_length)
    schema = output_schema(rows.features.arrow_schema, embed=config.embed)
    if len(rows):
        encoder.encode([rows[0][config.prompt_column]])  # template problems surface before any write

    config = config.replace(batch_tokens=resolve_batch_tokens(config.batch_tokens, device))
    out = Path(config.out)
    fingerprint = {
        **{k: _jsonable(v) for k, v in config.result_fields().items()},
        "device": device,
        "dtype": dtype,
        "model_fingerprint": source_fingerprint(source),
        "dataset_fingerprint": dataset_fingerprint(rows, config.prompt_column),
    }
    stale = plan_output(out, fingerprint, config.overwrite)
    if not config.overwrite and (out / MANIFEST).exists():
        previous = read_manifest(out)
        if previous.get("complete") and all((out / name).exists() for name in previous["shards"]):
            return previous  # already done: keep the original timings

    device = distributed.device_for(part, device)
    distributed.init(part, device)
    load_started = time.perf_counter()
    model = load_model(source, dtype=dtype, device=device)
    load_seconds = time.perf_counter() - load_started
    site = SiteForward(model, layer=config.layer, site=config.site)
    prefix = find_shared_prefix(encoder) if config.prefix_cache else None
    scorer = Scorer(site, device=device, backend=config.backend, config=config, prefix=prefix)

    num_shards = max(1, math.ceil(len(rows) / config.shard_size))
    bounds = [(i * config.shard_size, min(len(rows), (i + 1) * config.shard_size)) for i in range(num_shards)]
    manifest = {
        "format_version": FORMAT_VERSION,
        "tool_version": __version__,
        "complete": False,
        "fingerprint": fingerprint,
        "config": config.replace(num_shards=None, shard_index=None).to_dict(),
        "model": describe_model(source, model, tokenizer),
        "site": config.site,
        "layer": site.layer_index,
        "dtype": dtype,
        "device": resolve_device(config.device),
        "backend": scorer.backend,
        "prompt_hash": config.prompt_format.fingerprint(),
        "dataset": {
            "name": dataset.name,
            "split": dataset.split,
            "fingerprint": fingerprint["dataset_fingerprint"],
            "columns": rows.column_names,
        },
        "rows": len(rows),
        "shards": [shard_name(i) for i in range(num_shards)],
        "debias": None,
    }
    # Array parts run concurrently, so none of them may delete another's temporary files; merge does.
    if part.count == 1 or (part.distributed and part.is_leader):
        for path in stale:
            path.unlink(missing_ok=True)
    if part.is_leader or not part.distributed:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / MANIFEST, manifest)
    distributed.barrier(part)

    mine = distributed.assign(_shard_weights(rows, config.prompt_column, bounds), part.count)[part.index]
    todo = [i for i in mine if not (out / shard_name(i)).exists()]
    if on_total:
        on_total(sum(bounds[i][1] - bounds[i][0] for i in mine))
    if progress:
        progress(sum(bounds[i][1] - bounds[i][0] for i in mine if i not in todo))

    def encode(index: int) -> tuple[Any, list[EncodedPrompt]]:
        chunk = rows.select(range(*bounds[index]))
        return chunk, encoder.encode(chunk[config.prompt_column])

    score_started = time.perf_counter()
    # Tokenize the next shard on a worker thread while the model runs on this one.
    with ThreadPoolExecutor(max_workers=1) as pool:
        upcoming = pool.submit(encode, todo[0]) if todo else None
        for position, index in enumerate(todo):
            chunk, prompts = upcoming.result()
            if position + 1 < len(todo):
                upcoming = pool.submit(encode, todo[position + 1])
            result = scorer.score(prompts, progress)
            table = chunk.with_format("arrow")[:]
            columns = _score_columns(prompts, np.arange(*bounds[index]), result)
            table = (
                pa.Table.from_arrays([*table.columns, *columns.values()], schema=schema)
                if len(table)
                else (schema.empty_table())
            )
            write_shard(out / shard_name(index), table)
    work = {
        **dataclasses.asdict(scorer.stats),
        "score_seconds": time.perf_counter() - score_started,
        "rows_scored": sum(bounds[i][1] - bounds[i][0] for i in todo),
        "shards_resumed": len(mine) - len(todo),
        "model_load_seconds": load_seconds,
    }
    if part.count > 1 and not part.distributed:
        atomic_write_json(out / distributed.part_marker(part), {"fingerprint": fingerprint, "work": work})
        return manifest
    works = distributed.gather(part, work)
    distributed.barrier(part)
    if part.is_leader:
        manifest = _finalize(out, manifest, config, works, time.perf_counter() - started)
    distributed.barrier(part)
    distributed.finish(part)
    return manifest


def merge(out: Path) -> dict[str, Any]:
    """Complete the manifest of a directory scored as an array job (`--num-shards K --shard-index I`)."""
    manifest = read_manifest(out)
    if manifest.get("complete"):
        return manifest
    markers = sorted(out.glob("part-*-of-*.json"))
    counts = {int(m.stem.rsplit("-", 1)[1]) for m in markers}
    if len(counts) != 1:
        raise InputError(
            f"{out} holds no part markers of one --num-shards run (found {len(markers)}); "
            "run every `gaincurate score ... --num-shards K --shard-index I` part first"
        )
    count = counts.pop()
    missing = distributed.missing_parts(out, count)
    if missing:
        raise InputError(
            f"{out}: part(s) {', '.join(map(str, missing))} of {count} are missing; "
            f"rerun `gaincurate score ... --num-shards {count} --shard-index N` for each, then merge again"
        )
    parts = [read_json(marker) for marker in markers]
    if any(p["fingerprint"] != manifest["fingerprint"] for p in parts):
        raise InputError(f"{out}: the parts were scored with different configs; rescore them into a new --out")
    absent = [name for name in manifest["shards"] if not (out / name).exists()]
    if absent:
        raise InputError(f"{out}: {absent[0]} is missing although every part finished; rerun its part")
    for leftover in out.glob(".shard-*.tmp"):  # from parts that were killed and rerun
        leftover.unlink(missing_ok=True)
    config = ScoreConfig(**{**manifest["config"], "few_shot": tuple(manifest["config"]["few_shot"])})
    return _finalize(out, manifest, config, [p["work"] for p in parts], None)


def _shard_weights(rows: Any, prompt_column: str, bounds: list[tuple[int, int]]) -> list[int]:
    """Characters of prompt text per shard: the balancing weight (tokens would need a tokenizer pass)."""
    import pyarrow.compute as pc

    lengths = []
    for batch in rows.select_columns([prompt_column]).with_format("arrow").iter(batch_size=50_000):
        lengths.append(pc.fill_null(pc.utf8_length(pc.cast(batch[prompt_column], pa.string())), 0).to_numpy())
    cumulative = np.concatenate([[0], np.cumsum(np.concatenate(lengths))]) if lengths else np.zeros(1)
    return [int(cumulative[high] - cumulative[low]) for low, high in bounds]


def _finalize(
    out: Path, manifest: dict[str, Any], config: ScoreConfig, works: list[dict[str, Any]], total: float | None
) -> dict[str, Any]:
    """Diagnostics over every shard, summed work counters, `complete: true`, written atomically."""
    manifest = {**manifest, **_diagnostics(out, manifest, config)}
    summed = {key: sum(w[key] for w in works) for key in ("tokens", "padded_tokens", "batches", "rows_scored",
                                                          "prefix_tokens_reused", "shards_resumed")}  # fmt: skip
    score_seconds = max(w["score_seconds"] for w in works)
    forward_seconds = max(w["forward_seconds"] for w in works)
    manifest["timings"] = {
        **summed,
        "processes": len(works),
        "total_seconds": total,
        "model_load_seconds": max(w["model_load_seconds"] for w in works),
        "score_seconds": score_seconds,
        "forward_seconds": forward_seconds,
        "rows_per_second": _rate(summed["rows_scored"], score_seconds),
        "tokens_per_second": _rate(summed["tokens"], forward_seconds),
    }
    manifest["complete"] = True
    atomic_write_json(out / MANIFEST, manifest)
    return manifest


def _rate(amount: float, seconds: float) -> float | None:
    return amount / seconds if seconds > 0 else None


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


def _diagnostics(out: Path, manifest: dict[str, Any], config: ScoreConfig) -> dict[str, Any]:
    """How far the ranking is a length sort, what was flagged, and the optional length debias fit."""
    columns = ["gc_score", "gc_question_tokens", "gc_status", "gc_truncated"]
    tables = [read_shard(out / name).select(columns) for name in manifest["shards"]]
    table = pa.concat_tables(tables) if tables else pa.table({c: [] for c in columns})
    score_values = table.column("gc_score").to_numpy(zero_copy_only=False).astype(np.float64)
    tokens = table.column("gc_question_tokens").to_numpy(zero_copy_only=False).astype(np.float64)
    statuses = table.column("gc_status").to_pylist()
    finite = score_values[np.isfinite(score_values)]
    diagnostics = {
        "spearman_score_vs_question_tokens": spearman(score_values, tokens),
        "status_counts": {s: statuses.count(s) for s in sorted(set(statuses))},
        "truncated_rows": int(np.asarray(table.column("gc_truncated").to_pylist(), dtype=bool).sum()),
        "unscored_rows": int(len(score_values) - len(finite)),
        "score_mean": float(finite.mean()) if len(finite) else None,
        "score_std": float(finite.std()) if len(finite) else None,
    }
    debias = fit_length_debias(score_values, tokens) if config.debias == "length" else None
    if debias:
        from gaincurate.metrics import apply_debias

        diagnostics["spearman_debiased_vs_question_tokens"] = spearman(
            apply_debias(score_values, tokens, debias), tokens
        )
    return {"diagnostics": diagnostics, "debias": debias}


def rescore(
    scores_dir: Path,
    ids: Sequence[int],
    *,
    checkpoint: str | Path | None = None,
    model: Any = None,
    tokenizer: Any = None,
    progress: ProgressHook | None = None,
    nproc: int = 1,
) -> np.ndarray:
    """Re-score rows `ids` (gc_id) of a scores directory with a checkpoint folder or a live model.

    The prompt format, site, layer and metric settings come from the directory's manifest, so the new
    scores are comparable with the stored ones. Returns gc_score in the order of `ids`. With `nproc` > 1
    (checkpoints only) the rows are scored by `torchrun --nproc-per-node nproc -m gaincurate score`.
    """
    manifest = read_manifest(scores_dir)
    config = ScoreConfig(**{**manifest["config"], "few_shot": tuple(manifest["config"]["few_shot"])})
    table = read_scores(scores_dir, columns=["gc_id", config.prompt_column])
    id_column = table.column("gc_id").to_numpy()
    position = {int(gc_id): i for i, gc_id in enumerate(id_column)}
    missing = [i for i in ids if int(i) not in position]
    if missing:
        raise InputError(f"gc_id {missing[0]} is not in {scores_dir}; it holds ids 0..{len(id_column) - 1}")
    questions = table.column(config.prompt_column).take([position[int(i)] for i in ids]).to_pylist()

    if (model is None) != (tokenizer is None):
        raise ConfigError("rescore needs both a live model and its tokenizer, or a checkpoint")
    if nproc > 1 and model is None and checkpoint is not None:
        return _rescore_in_processes(config, questions, checkpoint, nproc)
    if model is None:
        if checkpoint is None:
            raise ConfigError("rescore needs --checkpoint or a live model")
        source = resolve_source(str(checkpoint))
        device = resolve_device(config.device)
        tokenizer = load_tokenizer(source)
        model = load_model(source, dtype=resolve_dtype(config.dtype, device), device=device)
        site = SiteForward(model, layer=config.layer, site=config.site)
    else:
        device = str(next(model.parameters()).device)
        site = SiteForward(model, layer=config.layer, site=config.site, prune=False)
    was_training = model.training
    model.eval()
    try:
        encoder = PromptEncoder(tokenizer, config.prompt_format, config.max_length)
        prefix = find_shared_prefix(encoder) if config.prefix_cache else None
        scorer = Scorer(site, device=device, backend=config.backend, config=config.replace(embed=False), prefix=prefix)
        prompts = encoder.encode(questions)
        result = scorer.score(prompts, progress)
    finally:
        site.close()
        if was_training:
            model.train()
    return result["score"]


def _rescore_in_processes(config: ScoreConfig, questions: list[Any], checkpoint: str | Path, nproc: int) -> np.ndarray:
    """Score `questions` with the multi-process `score` path, reusing the scores directory's config."""
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory(prefix="gaincurate-rescore-") as tmp:
        folder = Path(tmp)
        data = folder / "rows.jsonl"
        data.write_text("".join(json.dumps({config.prompt_column: q}) + "\n" for q in questions))
        settings = config.replace(
            dataset=str(data), split=None, limit=None, model=str(checkpoint), out=str(folder / "scores"),
            embed=False, debias="none", overwrite=False, quiet=True,
            shard_size=max(1, math.ceil(len(questions) / (2 * nproc))),
        ).to_dict()  # fmt: skip
        (folder / "config.json").write_text(json.dumps(settings))
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
                   "-m", "gaincurate", "score", "--config", str(folder / "config.json")]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            tail = " | ".join(done.stderr.strip().splitlines()[-3:])
            raise RuntimeError(f"multi-process re-scoring failed with exit code {done.returncode}: {tail}")
        return read_scores(folder / "scores")["gc_score"].to_numpy(zero_copy_only=False).astype(np.float64)
