"""The manifest of a scores directory: its first form (`complete: false`) and its completion.

The first form is written before the model loads, with the fingerprint a resumed run must match, and
again with the model's own description once it has loaded. Completion adds the diagnostics over every
shard (how far the ranking is a length sort, what was flagged, the optional length debias fit), the
summed work counters of every process and the SHA-256 of every shard, then sets `complete: true`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gaincurate import __version__
from gaincurate.fileio import file_sha256
from gaincurate.metrics import apply_debias, fit_length_debias, spearman
from gaincurate.model_identity import describe_model
from gaincurate.prompts import applied_format, for_column
from gaincurate.scoring.config import RunOptions, ScoreConfig, manifest_config
from gaincurate.scoring.output import write_manifest
from gaincurate.scoring.prepare import Loaded, Prepared
from gaincurate.scoring.tuning import floor_fields
from gaincurate.shards import FORMAT_VERSION, read_shard, shard_name

_SUMMED = ("tokens", "padded_tokens", "batches", "packed_batches", "rows_scored", "prefix_tokens_reused",
           "shards_resumed")  # fmt: skip
WORK_FIELDS = (*_SUMMED, "score_seconds", "forward_seconds", "model_load_seconds")  # a part's counters `finalize` reads


def start_manifest(prepared: Prepared, options: RunOptions) -> dict[str, Any]:
    """What is scored, how, with which model; `complete: false` until `finalize`. Written before the model
    loads, so it names the model by its source; `model_fields` adds what only the loaded model tells."""
    config, dataset = prepared.config, prepared.dataset
    previous = prepared.previous or {}
    # The template as applied: chat messages get no system prompt or few-shot turns, so none is recorded for them.
    applied = applied_format(config.prompt_format, dataset.rows[0][config.prompt_column] if len(dataset.rows) else "")
    return {
        "format_version": FORMAT_VERSION,
        "tool_version": __version__,
        "complete": False,
        "fingerprint": prepared.fingerprint,
        "config": manifest_config(
            config.replace(system_prompt=applied.system_prompt, few_shot=applied.few_shot), options
        ),
        "model": {"id": prepared.source.display, "kind": prepared.source.kind},
        "site": config.site,
        "dtype": prepared.dtype,
        "device": prepared.device,
        "tuning": prepared.tuning,
        "prompt_hash": for_column(applied, config.prompt_column).fingerprint(),
        # What TRL trains on: "as_is" (TRL's prompt column, or chat messages) or "question" (system + few-shot added).
        "prompt_format": "as_is" if for_column(config.prompt_format, config.prompt_column).as_is else "question",
        "answers": prepared.answers,
        "dataset": {
            "name": dataset.name,
            "split": dataset.split,
            "fingerprint": prepared.fingerprint["dataset_fingerprint"],
            "columns": dataset.rows.column_names,
        },
        "rows": len(dataset.rows),
        "shard_rows": options.shard_rows,
        "shards": [shard_name(i) for i in range(len(prepared.bounds))],
        # Kept from the run being resumed (same fingerprint and layout), so a second crash still has them.
        "checksums": previous.get("checksums", {}),
        "debias": None,
    }


def model_fields(prepared: Prepared, loaded: Loaded) -> dict[str, Any]:
    """The manifest fields only the loaded model can fill: its description, the resolved layer, the backend."""
    return {
        "model": describe_model(prepared.source, loaded.model, prepared.tokenizer),
        "layer": loaded.site.layer_index,
        "backend": loaded.scorer.backend,
    }


def finalize(out: Path, manifest: dict[str, Any], config: ScoreConfig, works: list[dict[str, Any]],
             total: float | None, checksums: dict[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
    """Diagnostics over every shard, summed work counters, `complete: true`, written atomically. `checksums`: the
    shards' SHA-256 where the caller has them (`merge`, having checked them against the parts'), else read here."""
    manifest = {**manifest, **diagnostics(out, manifest, config)}
    summed = {key: sum(w[key] for w in works) for key in _SUMMED}
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
    manifest["timings"].update(floor_fields(manifest.get("tuning"), manifest["timings"], works))
    manifest["checksums"] = checksums or {name: file_sha256(out / name) for name in manifest["shards"]}
    manifest["complete"] = True
    write_manifest(out, manifest)
    return manifest


def apply_debias_choice(out: Path, manifest: dict[str, Any], config: ScoreConfig) -> dict[str, Any]:
    """A complete directory's manifest with the diagnostics and length-debias fit of `config.debias`, written: the
    shards are read, not written, and the scoring pass's timings are kept, with this step's own `debias_seconds`."""
    started = time.perf_counter()
    manifest = {
        **manifest,
        **diagnostics(out, manifest, config),
        "config": {**manifest["config"], "debias": config.debias},
    }
    manifest["timings"] = {**manifest["timings"], "debias_seconds": time.perf_counter() - started}
    write_manifest(out, manifest)
    return manifest


def _status_order(item: dict[str, Any]) -> str:
    return item["values"]


def _rate(amount: float, seconds: float) -> float | None:
    return amount / seconds if seconds > 0 else None


def diagnostics(out: Path, manifest: dict[str, Any], config: ScoreConfig) -> dict[str, Any]:
    """How far the ranking is a length sort, what was flagged, and the optional length debias fit."""
    columns = ["gc_score", "gc_question_tokens", "gc_status", "gc_truncated"]
    tables = [read_shard(out / name).select(columns) for name in manifest["shards"]]
    table = pa.concat_tables(tables) if tables else pa.table({c: [] for c in columns})
    score_values = table.column("gc_score").to_numpy(zero_copy_only=False).astype(np.float64)
    tokens = table.column("gc_question_tokens").to_numpy(zero_copy_only=False).astype(np.float64)
    # Counted by pyarrow, not as a Python string per row (a million rows: 1 s and 60 MB of strings, before).
    statuses = pc.value_counts(table.column("gc_status")).to_pylist()
    finite = score_values[np.isfinite(score_values)]
    found = {
        "spearman_score_vs_question_tokens": spearman(score_values, tokens),
        "status_counts": {item["values"]: item["counts"] for item in sorted(statuses, key=_status_order)},
        "truncated_rows": int(pc.sum(pc.fill_null(table.column("gc_truncated"), False)).as_py() or 0),
        "unscored_rows": int(len(score_values) - len(finite)),
        "score_mean": float(finite.mean()) if len(finite) else None,
        "score_std": float(finite.std()) if len(finite) else None,
    }
    debias = fit_length_debias(score_values, tokens) if config.debias == "length" else None
    if debias:
        found["spearman_debiased_vs_question_tokens"] = spearman(apply_debias(score_values, tokens, debias), tokens)
    return {"diagnostics": found, "debias": debias}
