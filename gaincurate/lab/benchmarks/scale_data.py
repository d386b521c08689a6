"""Synthetic scores directories and feedback for the scale bench: as many prompts as asked, seeded, on disk.

The rows are the bundled sample prompts (gaincurate/assets/math_sample.jsonl) replicated, each copy with a unique
id in its text, a jittered score and a jittered float16 embedding around its original's, written with the project's
own shard writer (`gaincurate.shards`) in `gaincurate score`'s layout: shards of DEFAULT_SHARD_ROWS rows, a
manifest with every shard's SHA-256. Feedback is seeded too: every prompt has a hidden pass rate, and each rollout
of an epoch's prompt is right with that probability.

    write_synthetic_scores(Path("scores-100k"), rows=100_000, width=576, seed=0)
    write_feedback(Path("feedback.jsonl"), gc_ids, rollouts=8, seed=0, epoch=1)
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np
import pyarrow as pa

from gaincurate import shards
from gaincurate.fileio import file_sha256
from gaincurate.scoring.output import write_manifest

SCORE_SPREAD = 0.05  # the jitter of a copy's score around its original's
EMBEDDING_SPREAD = 0.5  # the jitter of a copy's embedding, relative to the spread of the originals'


def sample_rows() -> list[dict]:
    text = resources.files("gaincurate").joinpath("assets/math_sample.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def hidden_pass_rates(rows: int, seed: int) -> np.ndarray:
    """The pass rate each synthetic prompt's rollouts are drawn with: its original's difficulty, jittered."""
    base = np.asarray([row.get("difficulty", 3) for row in sample_rows()], dtype=np.float64)
    rng = np.random.default_rng([seed, 1])
    originals = np.arange(rows) % len(base)
    rate = 1.0 - base[originals] / 6.0 + rng.normal(0.0, 0.15, rows)
    return np.clip(rate, 0.0, 1.0)


def write_synthetic_scores(directory: Path, *, rows: int, width: int, seed: int) -> Path:
    """A complete scores directory of `rows` synthetic prompts (embeddings of `width`; 0: none); kept if present."""
    directory = Path(directory)
    manifest_path = directory / shards.MANIFEST
    if manifest_path.is_file() and shards.read_manifest(directory).get("rows") == rows:
        return directory
    originals = sample_rows()
    rng = np.random.default_rng([seed, 0])
    base_scores = rng.normal(0.0, 0.3, len(originals))
    base_embeddings = rng.normal(0.0, 1.0, (len(originals), width)) + rng.normal(0.0, 3.0, width)  # a shared offset
    input_schema = pa.schema([(name, pa.string()) for name in ("problem", "answer", "type")])
    schema = shards.output_schema(input_schema, embed=width > 0)
    directory.mkdir(parents=True, exist_ok=True)
    names, checksums = [], {}
    size = shards.DEFAULT_SHARD_ROWS
    for index, low in enumerate(range(0, rows, size)):
        table = _shard_table(schema, originals, base_scores, base_embeddings, low, min(low + size, rows), seed)
        name = shards.shard_name(index)
        shards.write_shard(directory / name, table)
        names.append(name)
        checksums[name] = file_sha256(directory / name)
    manifest = {
        "format_version": shards.FORMAT_VERSION,
        "complete": True,
        "rows": rows,
        "shard_rows": size,
        "shards": names,
        "checksums": checksums,
        "config": {"prompt_column": "problem", "answer_column": "answer", "system_prompt": None, "few_shot": [],
                   "chat_template": True},
        "dataset": {"name": f"synthetic-{rows}", "fingerprint": f"synthetic-{rows}-{width}-{seed}"},
        "model": {"id": "synthetic"},
        "site": "mlp-input", "layer": -1, "dtype": "none", "device": "none", "backend": "none",
        "diagnostics": {"status_counts": {"ok": rows}, "truncated_rows": 0},
        "debias": None,
    }  # fmt: skip
    write_manifest(directory, manifest)
    return directory


def _shard_table(
    schema: pa.Schema,
    originals: list[dict],
    base_scores: np.ndarray,
    base_embeddings: np.ndarray,
    low: int,
    high: int,
    seed: int,
) -> pa.Table:
    """Rows low..high-1: copies of the originals, each with its own text, score and embedding (seeded per shard)."""
    from gaincurate.prompts import prompt_digest

    rng = np.random.default_rng([seed, 2, low])
    ids = np.arange(low, high)
    which = ids % len(originals)
    problems = [f"{originals[i]['problem']} (variant {gc_id})" for i, gc_id in zip(which, ids, strict=True)]
    answers = [str(originals[i]["answer"]) for i in which]
    score = base_scores[which] + rng.normal(0.0, SCORE_SPREAD, len(ids))
    tokens = np.asarray([len(text.split()) + 4 for text in problems], dtype=np.int32)
    columns = {
        "problem": pa.array(problems),
        "answer": pa.array(answers),
        "type": pa.array([str(originals[i].get("type", "")) for i in which]),
        "gc_id": pa.array(ids, pa.int64()),
        "gc_intra": pa.array(score / 2),
        "gc_inter": pa.array(score / 2),
        "gc_score": pa.array(score),
        "gc_question_tokens": pa.array(tokens, pa.int32()),
        "gc_context_tokens": pa.array(np.zeros(len(ids), np.int32), pa.int32()),
        "gc_truncated": pa.array(np.zeros(len(ids), bool)),
        "gc_status": pa.array(["ok"] * len(ids)),
        "gc_prompt_hash": pa.array([prompt_digest(text) for text in problems]),
        "gc_answer_hash": pa.array([prompt_digest(text) for text in answers]),
    }
    if base_embeddings.shape[1]:
        jitter = rng.normal(0.0, EMBEDDING_SPREAD, (len(ids), base_embeddings.shape[1]))
        vectors = (base_embeddings[which] + jitter).astype(np.float16)
        offsets = pa.array(np.arange(len(ids) + 1, dtype=np.int32) * vectors.shape[1], pa.int32())
        columns["gc_embedding"] = pa.ListArray.from_arrays(offsets, pa.array(vectors.reshape(-1), pa.float16()))
    return pa.Table.from_arrays([columns[field.name] for field in schema], schema=schema)


def write_feedback(path: Path, gc_ids: np.ndarray, *, pass_rates: np.ndarray, rollouts: int, seed: int, epoch: int):
    """One `{"gc_id", "reward"}` line per rollout of each prompt in `gc_ids`, right with its hidden pass rate."""
    rng = np.random.default_rng([seed, 3, epoch])
    gc_ids = np.asarray(gc_ids, dtype=np.int64)
    right = rng.random((len(gc_ids), rollouts)) < pass_rates[gc_ids][:, None]
    lines = [
        f'{{"gc_id": {int(gc_id)}, "reward": {1.0 if hit else 0.0}}}\n'
        for gc_id, row in zip(gc_ids, right, strict=True)
        for hit in row
    ]
    Path(path).write_text("".join(lines))
