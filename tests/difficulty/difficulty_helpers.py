"""Builders for the difficulty tests: scores directories with embeddings, and feedback files.

The embeddings are made up so that a hidden pass rate depends on them smoothly: prompts sit in a few
clusters, and each cluster has its own pass rate. Feedback draws Bernoulli rewards from those rates.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
from fake_scores import score_columns, write_scores_dir

from gaincurate.feedback_lines import format_line

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
    intra, inter = rng.uniform(0.2, 0.8, n_prompts), rng.uniform(0.2, 0.8, n_prompts)
    score, tokens = rng.uniform(0.5, 1.5, n_prompts), rng.integers(5, 60, n_prompts)
    columns = score_columns(score, tokens, intra=intra, inter=inter)
    if embed:
        columns["gc_embedding"] = pa.array(
            [None if i in missing_ids else row.astype(np.float16) for i, row in enumerate(embeddings)],
            pa.list_(pa.float16()),
        )
    return write_scores_dir(
        directory, inputs, columns, dataset={"name": "toy", "fingerprint": f"toy-{n_prompts}-{seed}"}
    )


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
