"""Scores do not depend on how the work was cut: shard size, batch budget and torchrun ranks give the same bytes.

A row is padded to a width that depends on its own length only (`engine.padded_width`); the rows beside
it in a batch change none of its floats. So the bundled 320 prompts score bit for bit alike under
`--shard-rows 64`, the default 1,000, another `--batch-tokens` and two torchrun ranks, in float32 and
bfloat16. The tiny `from_config` Llama runs in the quick suite; the embedded model in one `slow` test, on the first
96 of them (all 320 cost the suite four minutes), cut into 32-row shards.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gaincurate.scoring import score
from gaincurate.scoring.config import RunOptions, ScoreConfig
from gaincurate.scoring.engine import pack_batches, padded_width
from gaincurate.shards import read_scores

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
DTYPES = ["float32", "bfloat16"]
EMBEDDED_ROWS = 96  # three 32-row shards: every cut crosses a shard and a rank boundary


def scores_of(out: Path) -> dict[str, np.ndarray]:
    table = read_scores(out)
    columns = {name: table[name].to_numpy() for name in ("gc_id", "gc_intra", "gc_inter", "gc_score")}
    columns["gc_embedding"] = np.array(table["gc_embedding"].to_pylist(), dtype=np.float16)
    return columns


def assert_identical(got: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    for name, values in expected.items():
        assert got[name].tobytes() == values.tobytes(), name


def torchrun_score(model: str | None, dtype: str, out: Path, *, limit: int | None = None) -> None:
    shard_rows = 64 if limit is None else limit // 3
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m",
               "gaincurate", "score", "--dtype", dtype, "--device", "cpu", "--out", str(out),
               "--shard-rows", str(shard_rows), "--quiet", *(["--model", model] if model else []),
               *(["--limit", str(limit)] if limit else [])]  # fmt: skip
    subprocess.run(command, env=ENV, check=True, capture_output=True, timeout=1800)


def cuts(model: str | None, dtype: str, root: Path, *, limit: int | None = None) -> dict[str, dict[str, np.ndarray]]:
    """The bundled prompts (the first `limit`) scored whole (default shards, budget 1,024) and cut (64-row shards, or
    a third of `limit`, budget 256)."""
    base = ScoreConfig(model=model, dtype=dtype, device="cpu", limit=limit)
    score(base.replace(batch_tokens=1024), RunOptions(out=str(root / "whole")))
    score(
        base.replace(batch_tokens=256),
        RunOptions(out=str(root / "cut"), shard_rows=64 if limit is None else limit // 3),
    )
    return {name: scores_of(root / name) for name in ("whole", "cut")}


def test_a_rows_width_depends_on_its_own_length_only():
    rng = np.random.default_rng(1)
    lengths = rng.integers(1, 300, size=200).tolist()
    batches = pack_batches(lengths, 1024)
    assert sorted(i for b in batches for i in b) == list(range(200))
    for batch in batches:
        widths = {padded_width(lengths[i]) for i in batch}
        assert len(widths) == 1 and (widths.pop() * len(batch) <= 1024 or len(batch) == 1)
    assert all(padded_width(n) >= n for n in lengths)
    # Any subset of the rows (another shard, another part, another budget) pads each row alike.
    for subset, budget in [(lengths[:64], 1024), (lengths[64:], 256), (lengths[::3], 4096)]:
        for batch in pack_batches(subset, budget):
            assert {padded_width(subset[i]) for i in batch} == {padded_width(subset[batch[0]])}
    assert pack_batches(lengths, 1024) == batches


@pytest.mark.parametrize("dtype", DTYPES)
def test_shard_rows_and_batch_tokens_change_no_score(dtype, tiny_llama, tmp_path):
    scored = cuts(str(tiny_llama), dtype, tmp_path)
    assert len(scored["whole"]["gc_id"]) == 320 and np.isfinite(scored["whole"]["gc_score"]).all()
    assert_identical(scored["cut"], scored["whole"])


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES)
def test_two_torchrun_ranks_score_like_one_process(dtype, tiny_llama, tmp_path):
    whole = tmp_path / "whole"
    score(ScoreConfig(model=str(tiny_llama), dtype=dtype, device="cpu"), RunOptions(out=str(whole)))
    torchrun_score(str(tiny_llama), dtype, tmp_path / "ranked")
    assert_identical(scores_of(tmp_path / "ranked"), scores_of(whole))


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES)
def test_embedded_model_scores_alike_however_cut(dtype, tmp_path):
    scored = cuts(None, dtype, tmp_path, limit=EMBEDDED_ROWS)
    assert len(scored["whole"]["gc_id"]) == EMBEDDED_ROWS
    torchrun_score(None, dtype, tmp_path / "ranked", limit=EMBEDDED_ROWS)
    assert_identical(scored["cut"], scored["whole"])
    assert_identical(scores_of(tmp_path / "ranked"), scored["whole"])
