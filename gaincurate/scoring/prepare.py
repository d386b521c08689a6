"""Before any forward: load the rows, the tokenizer and the model, fingerprint the run and plan its shards.

`plan_run` needs neither tokenizer nor model (so a finished run is recognised without loading either);
`prepare` runs under the lock on `--out` (`scoring.output`) and decides dtype, batch size and fingerprint.
Nothing here writes to `--out`: both only check that the directory can be used (a clashing run is refused
before anything is touched) and list the files an `--overwrite` will delete.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from gaincurate import distributed
from gaincurate.data import LoadedDataset, check_answers, load_rows
from gaincurate.hub import hub_local_only
from gaincurate.model import (
    ModelSource,
    SiteForward,
    load_tokenizer,
    resolve_device,
    resolve_source,
)
from gaincurate.model_identity import hub_revision, source_fingerprint
from gaincurate.progress import NULL_PROGRESS, Progress
from gaincurate.prompt_scan import check_repeats
from gaincurate.prompts import (
    DEFAULT_FEW_SHOT,
    DEFAULT_SYSTEM_PROMPT,
    NO_CONTEXT,
    TRL_PROMPT_COLUMN,
    PromptEncoder,
    for_column,
    is_messages,
)
from gaincurate.scoring.batch_size import SAMPLE_ROWS
from gaincurate.scoring.config import RunOptions, ScoreConfig, prompt_tokens
from gaincurate.scoring.dtype import convert_model, load_in
from gaincurate.scoring.engine import Scorer, find_shared_prefix, on_gpu
from gaincurate.scoring.output import inspect_output, is_finished, plan_output, shard_bounds
from gaincurate.scoring.tuning import model_config, resolve_batch_tokens, tune
from gaincurate.shards import output_schema

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Plan:
    """What a run knows before any tokenizer or model loads: rows, model source, device, and what `--out` holds."""

    config: ScoreConfig
    options: RunOptions
    dataset: LoadedDataset
    source: ModelSource
    device: str  # resolved, before a torchrun rank picks its own GPU
    schema: pa.Schema
    out: Path
    model_fingerprint: str
    dataset_fingerprint: str
    previous: dict[str, Any] | None  # the manifest in --out before this run, read without the lock
    answers: dict[str, Any] | None = None  # the answer column: present, rows without an answer (`check_answers`)
    split: bool = False  # one part of several (torchrun, `--num-shards`): the parts must agree on every choice

    @property
    def rows(self) -> Any:
        return self.dataset.rows

    def fingerprint(self, config: ScoreConfig, dtype: str | None) -> dict[str, Any]:
        """Every setting a score depends on: the config (batch tokens resolved), device, dtype, model, data."""
        if len(self.rows) and is_messages(self.rows[0][config.prompt_column]):
            # Chat messages get no system prompt or few-shot turn, so none of them changes a score: the fingerprint
            # holds the defaults whatever is set, as it did when it held whatever was set (mostly the defaults).
            config = config.replace(system_prompt=DEFAULT_SYSTEM_PROMPT, few_shot=DEFAULT_FEW_SHOT)
        # The model and the data by what they hold (their fingerprints below), not by the path as typed: the same
        # run resumed from another directory, or on a copy of its data, is the same run.
        fields = {k: v for k, v in config.result_fields().items() if k not in ("model", "dataset")}
        return {
            **{k: _jsonable(v) for k, v in fields.items()},
            "device": self.device,
            "dtype": dtype,
            "model_fingerprint": self.model_fingerprint,
            "dataset_fingerprint": self.dataset_fingerprint,
            # TRL's prompt column is scored as it is, and marked so; only then, so other fingerprints keep their value.
            **({"prompt_format": "as_is"} if config.prompt_column == TRL_PROMPT_COLUMN else {}),
        }

    def resumed_fingerprint(self) -> dict[str, Any]:
        """The fingerprint this run gets if it resumes `--out`: an `auto` dtype or batch size keeps the recorded one."""
        recorded = (self.previous or {}).get("fingerprint", {})
        unmeasured = {"chosen": None}  # nothing is measured before the model loads: an unrecorded size stays None
        chosen = resolve_batch_tokens(self.config, self.device, recorded, self.split, lambda: unmeasured)["chosen"]
        dtype = self.config.dtype if self.config.dtype != "auto" else recorded.get("dtype")
        return self.fingerprint(self.config.replace(batch_tokens=chosen), dtype)

    def finished(self) -> dict[str, Any] | None:
        """Before any tokenizer or model: refuse a run that clashes with `--out`; the manifest, marked
        `already_complete`, when the same run finished there (`output.is_finished`); None when there is work. The
        recorded ranking may still differ from the one `--debias` asks for (`debias_changes`)."""
        if self.options.overwrite or self.previous is None:
            return None
        if not is_finished(self.out, self.previous, self.resumed_fingerprint(), self.options.shard_rows, len(self.rows),
                           self.schema):  # fmt: skip
            return None
        return {**self.previous, "already_complete": True}

    def debias_changes(self) -> bool:
        """Whether the ranking `--debias` asks for is not the one `--out` records: re-ranking reads the shards only."""
        recorded = (self.previous or {}).get("debias") is not None
        return recorded != (self.config.debias == "length")


@dataclass(frozen=True)
class Prepared:
    """Everything a run needs before the model is loaded."""

    config: ScoreConfig  # with `batch_tokens` resolved for the device
    options: RunOptions  # with `shard_rows` resolved for --out
    dataset: LoadedDataset
    source: ModelSource
    device: str  # resolved, before a torchrun rank picks its own GPU
    dtype: str
    tokenizer: Any
    encoder: PromptEncoder
    schema: pa.Schema
    out: Path
    fingerprint: dict[str, Any]
    stale: list[Path]  # files to delete before writing (an --overwrite, or leftovers of a killed writer)
    previous: dict[str, Any] | None  # the manifest of the run resumed, found under the lock (its shard checksums)
    tuning: dict[str, Any] | None = None  # how dtype and batch tokens were chosen: the manifest's `tuning`
    preloaded: Any = None  # the float32 model the fidelity gate loaded; `load_scorer` converts it in place
    preloaded_seconds: float = 0.0
    answers: dict[str, Any] | None = None  # the manifest's `answers` (`data.check_answers`)

    @property
    def rows(self) -> Any:
        return self.dataset.rows

    @property
    def bounds(self) -> list[tuple[int, int]]:
        return shard_bounds(len(self.rows), self.options.shard_rows)


@dataclass(frozen=True)
class Loaded:
    """The model cut at the scoring site, wrapped in a `Scorer`."""

    model: Any
    site: SiteForward
    scorer: Scorer
    seconds: float


def plan_run(config: ScoreConfig, options: RunOptions, *, probe_lock: bool = True) -> Plan:
    """Load the rows, find the model, fingerprint the data and look at `--out`: no tokenizer, no model, no write."""
    dataset = load_rows(config.dataset, split=config.split, prompt_column=config.prompt_column, limit=config.limit,
                        answer_column=config.answer_column)  # fmt: skip
    dataset = check_repeats(dataset, drop=options.drop_duplicates)
    rows = dataset.rows
    answers = check_answers(rows, dataset.answer_column, dataset.name, allow_missing=options.allow_missing_answers)
    if (dataset.prompt_column, dataset.answer_column) != (config.prompt_column, config.answer_column):
        logger.info("reading verl's columns: prompts from %r, answers from %r", dataset.prompt_column,
                    dataset.answer_column)  # fmt: skip
        config = config.replace(prompt_column=dataset.prompt_column, answer_column=dataset.answer_column)
    source = resolve_source(config.model)
    if source.kind == "hub":  # a Hub id that cannot be had fails here, before the lock and torch
        hub_revision(source.folder, fetch=not hub_local_only(source.folder))  # the revision the load will take
    schema = output_schema(rows.features.arrow_schema, embed=config.embed)
    out, device = Path(options.out), resolve_device(config.device)
    previous = inspect_output(out, probe_lock=probe_lock)
    split = distributed.current_part(options.num_shards, options.shard_index).count > 1
    return Plan(
        config, options, dataset, source, device, schema, out, source_fingerprint(source),
        dataset.fingerprint, previous, answers, split,
    )  # fmt: skip


def prepare(plan: Plan, progress: Progress = NULL_PROGRESS) -> Prepared:
    """Under the lock on `--out`: load the tokenizer, check the prompt template on the first row, choose dtype
    and batch size, fingerprint, check `--out` against it. The choices are stage lines on `progress`."""
    config, options, rows = plan.config, plan.options, plan.rows
    started = time.perf_counter()
    tokenizer = load_tokenizer(plan.source)
    tokenizer_seconds = time.perf_counter() - started
    window = prompt_tokens(config.max_length, model_config(plan.source))
    if window != config.max_length:
        progress.stage(f"prompts truncated at {window} tokens: the model's context window")
    encoder = PromptEncoder(tokenizer, for_column(config.prompt_format, config.prompt_column), window)
    if len(rows):
        first = rows[0][config.prompt_column]
        encoded = encoder.encode([first], first_row=0)[0]  # template problems surface before any write
        if is_messages(first) and not encoded.context_tokens:
            progress.stage(NO_CONTEXT)

    previous = None if options.overwrite else inspect_output(plan.out, probe_lock=False)  # it may have changed
    questions = rows.select(range(min(len(rows), SAMPLE_ROWS)))[config.prompt_column]  # the batch-size probe's
    tuning = tune(config, plan.source, plan.model_fingerprint, plan.device, encoder,
                  previous=(previous or {}).get("fingerprint"), split=plan.split, questions=questions,
                  progress=progress)  # fmt: skip
    config = config.replace(batch_tokens=tuning.batch_tokens)
    fingerprint = plan.fingerprint(config, tuning.dtype)
    output = plan_output(plan.out, fingerprint, overwrite=options.overwrite, shard_rows=options.shard_rows,
                         probe_lock=False)  # fmt: skip
    record = {**tuning.record, "tokenizer_seconds": tokenizer_seconds}
    return Prepared(
        config, options.replace(shard_rows=output.shard_rows), plan.dataset, plan.source, plan.device, tuning.dtype,
        tokenizer, encoder, plan.schema, plan.out, fingerprint, output.stale, output.previous,
        tuning=record, preloaded=tuning.model, preloaded_seconds=tuning.model_seconds, answers=plan.answers,
    )  # fmt: skip


def load_scorer(prepared: Prepared, device: str, progress: Progress) -> Loaded:
    """Load the model on `device` and cut it after the last layer scoring (or embedding) needs."""
    from gaincurate.kernels import resolve_backend

    config = prepared.config
    progress.stage("loading model")
    started = time.perf_counter()
    if prepared.preloaded is not None:
        model = convert_model(prepared.preloaded, prepared.dtype).to(device)
    else:
        model = load_in(prepared.source, prepared.dtype, device)
    seconds = time.perf_counter() - started + prepared.preloaded_seconds
    embed_layer = config.embed_layer if config.embed else None
    site = SiteForward(model, layer=config.layer, site=config.site, embed_layer=embed_layer)
    prefix = find_shared_prefix(prepared.encoder) if config.prefix_cache else None
    backend = resolve_backend(config.backend, device, work_bytes=_work_bytes(prepared, device, model))
    scorer = Scorer(site, device=device, backend=backend, config=config, prefix=prefix,
                    batch_tokens=config.batch_tokens)  # fmt: skip
    return Loaded(model, site, scorer, seconds)


def _work_bytes(prepared: Prepared, device: str, model: Any) -> int | None:
    """What the backend's choice weighs on a GPU: the run's hidden-state bytes (elsewhere it needs none)."""
    if not on_gpu(device):
        return None
    from gaincurate.scoring.gpu_budget import hidden_bytes

    return hidden_bytes(prepared.dataset.weights, model)


def shard_weights(weights: np.ndarray, bounds: list[tuple[int, int]]) -> list[int]:
    """Characters of prompt text per shard, from each row's (`LoadedDataset.weights`): the balancing weight (tokens
    would need a tokenizer pass)."""
    cumulative = np.concatenate([[0], np.cumsum(weights, dtype=np.int64)])
    return [int(cumulative[high] - cumulative[low]) for low, high in bounds]


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value
