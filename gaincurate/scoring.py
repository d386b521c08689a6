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

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from gaincurate import __version__
from gaincurate.config import ScoreConfig
from gaincurate.data import fingerprint as dataset_fingerprint
from gaincurate.data import load_rows
from gaincurate.errors import ConfigError, InputError
from gaincurate.fileio import atomic_write_json
from gaincurate.metrics import concentration, fit_length_debias, spearman
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
from gaincurate.prompts import NUM_SEGMENTS, QUESTION, EncodedPrompt, PromptEncoder
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

ProgressHook = Callable[[int], None]


@dataclass
class BatchStats:
    """Work counters across batches, for the manifest's timings."""

    tokens: int = 0
    padded_tokens: int = 0
    batches: int = 0
    forward_seconds: float = 0.0
    prefix_tokens_reused: int = 0


def pack_batches(lengths: Sequence[int], batch_tokens: int) -> list[list[int]]:
    """Group row indices, longest first, so each batch's padded size stays within `batch_tokens`.

    A row longer than the budget gets a batch of its own. Ties keep input order, so packing is
    deterministic.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        # Sorted longest first, so the first row of a batch sets its padded length.
        width = lengths[current[0]] if current else lengths[index]
        if current and width * (len(current) + 1) > batch_tokens:
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


@dataclass(frozen=True)
class SharedPrefix:
    """The leading tokens every prompt shares: system prompt, few-shot turns, role headers.

    In a causal model their hidden states do not depend on the question, so they are computed once:
    each batch continues from their key/value cache and adds their segment sums. Only the question
    and the generation prompt go through the model per row, which cuts the forward's FLOPs by the
    prefix's share of the prompt. A row whose tokens do not start with the prefix (say its context was
    truncated) simply runs in full.
    """

    input_ids: np.ndarray
    segment_ids: np.ndarray

    def matches(self, prompt: EncodedPrompt) -> bool:
        length = len(self.input_ids)
        return (
            len(prompt.input_ids) > length
            and np.array_equal(prompt.input_ids[:length], self.input_ids)
            and np.array_equal(prompt.segment_ids[:length], self.segment_ids)
        )


def find_shared_prefix(encoder: PromptEncoder) -> SharedPrefix | None:
    """The longest run of tokens before the question that two unrelated questions share."""
    first, second = encoder.encode(["0", "Which x?"])
    limit = min(int(np.argmax(first.segment_ids == QUESTION)), int(np.argmax(second.segment_ids == QUESTION)))
    differs = np.flatnonzero(first.input_ids[:limit] != second.input_ids[:limit])
    length = int(differs[0]) if len(differs) else limit
    if length < 2:
        return None
    return SharedPrefix(first.input_ids[:length].copy(), first.segment_ids[:length].copy())


class Scorer:
    """Turns encoded prompts into (intra, inter, score) with one truncated forward per batch."""

    def __init__(
        self, site: SiteForward, *, device: str, backend: str, config: ScoreConfig, prefix: SharedPrefix | None
    ) -> None:
        from gaincurate.kernels import resolve_backend

        self.site = site
        self.device = device
        self.config = config
        self.backend = resolve_backend(backend, device)
        self.stats = BatchStats()
        self.prefix = prefix
        self._prefix_state: tuple[Any, Any, Any] | None = None  # (cache, sums, counts), built on first use

    def score(self, prompts: list[EncodedPrompt], progress: ProgressHook | None = None) -> dict[str, np.ndarray]:
        count = len(prompts)
        intra, inter, score = (np.full(count, np.nan) for _ in range(3))
        embeddings: list[np.ndarray | None] = [None] * count
        runnable = [i for i, p in enumerate(prompts) if p.question_tokens > 0]
        unrunnable = count - len(runnable)
        if progress and unrunnable:
            progress(unrunnable)
        with_prefix = [i for i in runnable if self.prefix is not None and self.prefix.matches(prompts[i])]
        in_full = sorted(set(runnable) - set(with_prefix))
        for group, offset in ((with_prefix, len(self.prefix.input_ids) if self.prefix else 0), (in_full, 0)):
            lengths = [len(prompts[i].input_ids) - offset for i in group]
            for batch in pack_batches(lengths, self.config.batch_tokens):
                rows = [group[i] for i in batch]
                sums, counts, pooled = self._run_batch([prompts[i] for i in rows], offset)
                batch_intra, batch_inter, batch_score = concentration(sums, counts, self.config.inter_weight)
                intra[rows], inter[rows], score[rows] = batch_intra, batch_inter, batch_score
                if pooled is not None:
                    for row, vector in zip(rows, pooled, strict=True):
                        embeddings[row] = vector
                if progress:
                    progress(len(rows))
        result = {"intra": intra, "inter": inter, "score": score}
        if self.config.embed:
            result["embedding"] = embeddings
        return result

    def _prefix_parts(self) -> tuple[Any, Any, Any]:
        """Run the shared prefix once: its key/value cache and its segment sums."""
        if self._prefix_state is None:
            import torch

            from gaincurate.kernels import segment_unit_sums

            ids = torch.from_numpy(self.prefix.input_ids)[None].to(self.device)
            cache = self.site.new_cache()
            hidden = self.site(ids, torch.ones_like(ids), past_key_values=cache)
            segments = torch.from_numpy(self.prefix.segment_ids)[None].to(self.device)
            sums, counts = segment_unit_sums(hidden, segments, NUM_SEGMENTS, backend=self.backend)
            self._prefix_state = (cache, sums, counts)
        return self._prefix_state

    def _run_batch(
        self, prompts: list[EncodedPrompt], offset: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Score one batch; with `offset` > 0 the first `offset` tokens come from the shared prefix."""
        import copy

        import torch

        from gaincurate.kernels import segment_unit_sums

        width = max(len(p.input_ids) for p in prompts) - offset
        input_ids = torch.zeros((len(prompts), width), dtype=torch.long)
        attention_mask = torch.zeros((len(prompts), offset + width), dtype=torch.long)
        attention_mask[:, :offset] = 1
        segments = torch.full((len(prompts), width), -1, dtype=torch.int8)
        for row, prompt in enumerate(prompts):
            length = len(prompt.input_ids) - offset
            input_ids[row, :length] = torch.from_numpy(prompt.input_ids[offset:])
            attention_mask[row, offset : offset + length] = 1
            segments[row, :length] = torch.from_numpy(prompt.segment_ids[offset:])
        start = time.perf_counter()
        cache = None
        if offset:
            prefix_cache, prefix_sums, prefix_counts = self._prefix_parts()
            cache = copy.deepcopy(prefix_cache)
            cache.batch_repeat_interleave(len(prompts))
        hidden = self.site(input_ids.to(self.device), attention_mask.to(self.device), past_key_values=cache)
        segments = segments.to(self.device)
        sums, counts = segment_unit_sums(hidden, segments, NUM_SEGMENTS, backend=self.backend)
        if offset:
            sums, counts = sums + prefix_sums, counts + prefix_counts
        pooled = None
        if self.config.embed:
            # Mean of the raw question hidden states: the DOTS embedding, free from the same forward.
            mask = (segments == QUESTION).to(torch.float32).unsqueeze(-1)
            pooled = ((hidden.float() * mask).sum(1) / mask.sum(1).clamp_min(1)).cpu().numpy()
        sums, counts = sums.cpu().numpy(), counts.cpu().numpy()
        self.stats.forward_seconds += time.perf_counter() - start
        self.stats.batches += 1
        self.stats.tokens += int(attention_mask[:, offset:].sum())
        self.stats.padded_tokens += input_ids.numel()
        self.stats.prefix_tokens_reused += offset * len(prompts)
        return sums, counts, pooled


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
    """Score a dataset into `config.out`; return the final manifest. Resumes a matching partial run."""
    started = time.perf_counter()
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

    out = Path(config.out)
    fingerprint = {
        **{k: _jsonable(v) for k, v in config.result_fields().items()},
        "device": device,
        "dtype": dtype,
        "model_fingerprint": source_fingerprint(source),
        "dataset_fingerprint": dataset_fingerprint(rows, config.prompt_column),
    }
    stale = plan_output(out, fingerprint, config.overwrite)

    load_started = time.perf_counter()
    model = load_model(source, dtype=dtype, device=device)
    load_seconds = time.perf_counter() - load_started
    site = SiteForward(model, layer=config.layer, site=config.site)
    prefix = find_shared_prefix(encoder) if config.prefix_cache else None
    scorer = Scorer(site, device=device, backend=config.backend, config=config, prefix=prefix)
    for path in stale:
        path.unlink()

    num_shards = max(1, math.ceil(len(rows) / config.shard_size))
    manifest = {
        "format_version": FORMAT_VERSION,
        "tool_version": __version__,
        "complete": False,
        "fingerprint": fingerprint,
        "config": config.to_dict(),
        "model": describe_model(source, model, tokenizer),
        "site": config.site,
        "layer": site.layer_index,
        "dtype": dtype,
        "device": device,
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
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / MANIFEST, manifest)

    if on_total:
        on_total(len(rows))
    score_started = time.perf_counter()
    skipped, rows_scored = 0, 0
    for index in range(num_shards):
        low, high = index * config.shard_size, min(len(rows), (index + 1) * config.shard_size)
        path = out / shard_name(index)
        if path.exists():
            skipped += 1
            if progress:
                progress(high - low)
            continue
        rows_scored += high - low
        chunk = rows.select(range(low, high))
        prompts = encoder.encode(chunk[config.prompt_column])
        result = scorer.score(prompts, progress)
        table = chunk.with_format("arrow")[:]
        columns = _score_columns(prompts, np.arange(low, high), result)
        table = (
            pa.Table.from_arrays([*table.columns, *columns.values()], schema=schema)
            if len(table)
            else schema.empty_table()
        )
        write_shard(path, table)
    score_seconds = time.perf_counter() - score_started

    manifest.update(_diagnostics(out, manifest, config))
    stats = scorer.stats
    manifest["timings"] = {
        "total_seconds": time.perf_counter() - started,
        "model_load_seconds": load_seconds,
        "score_seconds": score_seconds,
        "forward_seconds": stats.forward_seconds,
        "rows_scored": rows_scored,
        "shards_resumed": skipped,
        "tokens": stats.tokens,
        "padded_tokens": stats.padded_tokens,
        "batches": stats.batches,
        "prefix_tokens_reused": stats.prefix_tokens_reused,
        "rows_per_second": _rate(rows_scored, score_seconds),
        "tokens_per_second": _rate(stats.tokens, stats.forward_seconds),
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
) -> np.ndarray:
    """Re-score rows `ids` (gc_id) of a scores directory with a checkpoint folder or a live model.

    The prompt format, site, layer and metric settings come from the directory's manifest, so the new
    scores are comparable with the stored ones. Returns gc_score in the order of `ids`.
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
