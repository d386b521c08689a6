"""Builders for the difficulty tests: scores directories with embeddings, and feedback files.

The embeddings are made up so that a hidden pass rate depends on them smoothly: prompts sit in a few
clusters, and each cluster has its own pass rate. Feedback draws Bernoulli rewards from those rates.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from gaincurate import shards
from gaincurate.feedback import format_line
from gaincurate.fileio import atomic_write_json

WIDTH = 12


def true_pass_rates(n_prompts: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings [N, WIDTH] float32, hidden pass rates [N]) with structure attention can find."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(5, WIDTH)) * 3.0
    cluster = rng.integers(0, len(centres), n_prompts)
    # A shared offset (like the big common directions of real hidden states) that centring must remove.
    embeddings = 40.0 + centres[cluster] + rng.normal(size=(n_prompts, WIDTH))
    rates = np.array([0.05, 0.3, 0.5, 0.7, 0.95])[cluster]
    return embeddings.astype(np.float32), rates


def write_embedded_scores(
    directory: Path, n_prompts: int = 60, *, seed: int = 0, embed: bool = True, missing_ids: tuple[int, ...] = ()
) -> Path:
    """A complete scores directory whose rows carry `gc_embedding` (None for `missing_ids`)."""
    rng = np.random.default_rng(seed + 100)
    embeddings, _ = true_pass_rates(n_prompts, seed)
    inputs = pa.table(
        {
            "problem": [f"question {i}" for i in range(n_prompts)],
            "answer": [str(i % 7) for i in range(n_prompts)],
        }
    )
    schema = shards.output_schema(inputs.schema, embed=embed)
    columns = {
        "gc_id": pa.array(np.arange(n_prompts), pa.int64()),
        "gc_intra": pa.array(rng.uniform(0.2, 0.8, n_prompts)),
        "gc_inter": pa.array(rng.uniform(0.2, 0.8, n_prompts)),
        "gc_score": pa.array(rng.uniform(0.5, 1.5, n_prompts)),
        "gc_question_tokens": pa.array(rng.integers(5, 60, n_prompts), pa.int32()),
        "gc_context_tokens": pa.array(np.full(n_prompts, 20), pa.int32()),
        "gc_truncated": pa.array(np.zeros(n_prompts, dtype=bool)),
        "gc_status": pa.array(["ok"] * n_prompts),
    }
    if embed:
        columns["gc_embedding"] = pa.array(
            [None if i in missing_ids else row.astype(np.float16) for i, row in enumerate(embeddings)],
            pa.list_(pa.float16()),
        )
    table = pa.Table.from_arrays([*inputs.columns, *columns.values()], schema=schema)
    shards.write_shard(directory / shards.shard_name(0), table)
    manifest = {
        "format_version": shards.FORMAT_VERSION,
        "complete": True,
        "rows": n_prompts,
        "shards": [shards.shard_name(0)],
        "config": {
            "prompt_column": "problem",
            "answer_column": "answer",
            "system_prompt": "Solve it.",
            "few_shot": [],
            "chat_template": True,
        },
        "dataset": {"name": "toy", "fingerprint": f"toy-{n_prompts}-{seed}"},
        "debias": None,
    }
    atomic_write_json(directory / shards.MANIFEST, manifest)
    return directory


def write_feedback(path: Path, gc_ids, *, samples: int = 8, seed: int = 0, n_prompts: int = 60) -> Path:
    """Bernoulli rollouts of `gc_ids` at their hidden pass rates, `samples` lines each."""
    _, rates = true_pass_rates(n_prompts)
    rng = np.random.default_rng(seed)
    lines = []
    for gc_id in gc_ids:
        for _ in range(samples):
            lines.append(format_line(gc_id, float(rng.random() < rates[gc_id])))
    path.write_text("".join(lines))
    return path
