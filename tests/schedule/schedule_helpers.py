"""Builders for the scheduler tests: tiny scores directories and checkpoint folders, written directly.

No model is involved: a scores directory is written with `gaincurate.shards` from made-up scores.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa

from gaincurate import shards
from gaincurate.fileio import atomic_write_json

SYSTEM_PROMPT = "Solve it."
FEW_SHOT = [{"question": "1 + 1?", "answer": "2"}]


def write_scores(
    directory: Path,
    n_prompts: int = 40,
    *,
    seed: int = 0,
    nan_ids: tuple[int, ...] = (),
    answer_column: str | None = "answer",
    debias: dict | None = None,
    shard_size: int = 16,
) -> Path:
    """A complete scores directory of `n_prompts` rows with random but fixed scores and lengths."""
    rng = np.random.default_rng(seed)
    scores = rng.uniform(0.5, 2.0, n_prompts)
    scores[list(nan_ids)] = np.nan
    tokens = rng.integers(5, 60, n_prompts)
    inputs = pa.table(
        {
            "problem": [f"question {i}" for i in range(n_prompts)],
            "answer": [str(i % 7) for i in range(n_prompts)],
            "level": pa.array(rng.integers(1, 6, n_prompts), pa.int64()),
        }
    )
    schema = shards.output_schema(inputs.schema, embed=False)
    names = []
    for index, low in enumerate(range(0, n_prompts, shard_size)):
        high = min(n_prompts, low + shard_size)
        part = inputs.slice(low, high - low)
        columns = {
            "gc_id": pa.array(np.arange(low, high), pa.int64()),
            "gc_intra": pa.array(scores[low:high] / 2),
            "gc_inter": pa.array(scores[low:high] / 2),
            "gc_score": pa.array(scores[low:high], from_pandas=True),
            "gc_question_tokens": pa.array(tokens[low:high], pa.int32()),
            "gc_context_tokens": pa.array(np.full(high - low, 20), pa.int32()),
            "gc_truncated": pa.array(np.zeros(high - low, dtype=bool)),
            "gc_status": pa.array(["ok"] * (high - low)),
        }
        table = pa.Table.from_arrays([*part.columns, *columns.values()], schema=schema)
        names.append(shards.shard_name(index))
        shards.write_shard(directory / names[-1], table)
    manifest = {
        "format_version": shards.FORMAT_VERSION,
        "complete": True,
        "rows": n_prompts,
        "shards": names,
        "config": {
            "prompt_column": "problem",
            "answer_column": answer_column,
            "system_prompt": SYSTEM_PROMPT,
            "few_shot": FEW_SHOT,
            "chat_template": True,
        },
        "dataset": {"name": "toy-math", "fingerprint": f"toy-{n_prompts}-{seed}"},
        "debias": debias,
    }
    atomic_write_json(directory / shards.MANIFEST, manifest)
    return directory


def write_safetensors(path: Path, *, truncate: int = 0) -> None:
    """A one-tensor safetensors file; `truncate` cuts bytes off the end like a killed writer."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
    header += b" " * (-len(header) % 8)
    data = len(header).to_bytes(8, "little") + header + bytes(16)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data[: len(data) - truncate] if truncate else data)


def write_hf_model(folder: Path, *, truncate: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text('{"model_type": "llama"}')
    write_safetensors(folder / "model.safetensors", truncate=truncate)
    return folder


def write_trl_checkpoint(output_dir: Path, step: int, *, state: bool = True, truncate: int = 0) -> Path:
    folder = write_hf_model(output_dir / f"checkpoint-{step}", truncate=truncate)
    if state:
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return folder
