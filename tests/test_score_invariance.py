"""What the scores promise across cuts, ranks and CPUs (docs/shards.md, "What the scores promise").

The same command on the same machine writes the same bytes: run twice, resumed, or split into array-job parts
(test_score_faults.py, test_distributed.py). Whatever else only changes how the work is cut or which kernels do it
(`--shard-rows`, `--batch-tokens`, `--threads`, torchrun ranks, another x86 CPU's BLAS and SIMD paths) moves a
score by at most `SCORE_TOLERANCE` of its dtype. Bytes cannot be promised there: BLAS picks its matrix kernel by
the product's shape and the thread count, so a row's floats depend on how many rows share its batch (on an Intel
Xeon with AVX-512 a row computed alone differs from the same row in a batch; on an AMD EPYC 1-3, 7 and 15-row
products differ from larger ones).

The tiny `from_config` Llama runs in the quick suite: cut otherwise in process, and on other BLAS and SIMD paths
(`OTHER_PATHS`; MKL, oneDNN and torch pick their kernels at start-up, so in fresh processes), which find this class
of difference on any x86 machine. The embedded model runs in one `slow` test, on the first 96 of the bundled
prompts in float32 and 24 in bfloat16 (all 320 cost the suite four minutes), cut into three shards. Ranks are the
tiny model's torchrun test in bfloat16, and in float32 tests/test_distributed.py's killed rank's rerun against one
process (every score and the embedding): a rank is one more cut of the work, which the embedded model's cuts
already exercise on real weights, and its two more 135M loads cost the suite 40 CPU-s.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import score_in_process
from simd_paths import PATHS

from gaincurate.scoring import score
from gaincurate.scoring.config import SCORE_TOLERANCE, RunOptions, ScoreConfig
from gaincurate.scoring.engine import pack_batches, padded_width
from gaincurate.shards import read_scores

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
DTYPES = ["float32", "bfloat16"]
# Three shards each: every cut crosses shard boundaries. bfloat16 has no native kernels on an AVX2 CPU
# and took four minutes of the suite at 96 rows; its tolerance is 2.6x the largest move seen on 96 (docs/shards.md).
EMBEDDED_ROWS = {"float32": 96, "bfloat16": 24}
SCORES = ("gc_intra", "gc_inter", "gc_score")
# The narrowed paths besides the determinism leg's (tests/simd_paths.py says what each is).
OTHER_PATHS = {name: PATHS[name] for name in ("compatible", "avx2")}
PLAIN_ENV = {k: v for k, v in ENV.items() if k not in {name for path in OTHER_PATHS.values() for name in path}}
PATH_ROWS = 96


def scores_of(out: Path) -> dict[str, np.ndarray]:
    table = read_scores(out)
    columns = {name: table[name].to_numpy() for name in ("gc_id", *SCORES)}
    columns["gc_embedding"] = np.array(table["gc_embedding"].to_pylist(), dtype=np.float16)
    return columns


def assert_identical(got: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    for name, values in expected.items():
        assert got[name].tobytes() == values.tobytes(), name


def assert_within_tolerance(got: dict[str, np.ndarray], expected: dict[str, np.ndarray], dtype: str) -> None:
    """The promise across cuts and CPUs: the same ids in the same order, each score within the dtype's tolerance (so
    only prompts whose scores lie within twice it can swap places), each embedding within its own."""
    tolerance = SCORE_TOLERANCE[dtype]
    assert np.array_equal(got["gc_id"], expected["gc_id"])
    for name in SCORES:
        np.testing.assert_allclose(got[name], expected[name], rtol=0, atol=tolerance.score, equal_nan=True,
                                   err_msg=name)  # fmt: skip
    reference = expected["gc_embedding"].astype(np.float64)
    moved = np.linalg.norm(got["gc_embedding"].astype(np.float64) - reference, axis=1)
    assert np.all(moved <= tolerance.embedding * np.linalg.norm(reference, axis=1)), "gc_embedding"


def score_in_subprocess(model: str | None, dtype: str, out: Path, env: dict[str, str], *args: str) -> None:
    command = [sys.executable, "-m", "gaincurate", "score", "--dtype", dtype, "--device", "cpu", "--out", str(out),
               "--quiet", *(["--model", model] if model else []), *args]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr


def torchrun_score(model: str, dtype: str, out: Path) -> None:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m",
               "gaincurate", "score", "--dtype", dtype, "--device", "cpu", "--out", str(out),
               "--shard-rows", "64", "--quiet", "--model", model]  # fmt: skip
    subprocess.run(command, env=ENV, check=True, capture_output=True, timeout=1800)


def whole(model: str | None, dtype: str, out: Path, *, limit: int | None = None) -> dict[str, np.ndarray]:
    """The bundled prompts (the first `limit`) scored whole: default shards, budget 1,024."""
    score(ScoreConfig(model=model, dtype=dtype, device="cpu", limit=limit, batch_tokens=1024), RunOptions(out=str(out)))
    return scores_of(out)


def cut(model: str | None, dtype: str, out: Path, *, limit: int | None = None) -> dict[str, np.ndarray]:
    """The same prompts cut otherwise: 64-row shards (or a third of `limit`), budget 256."""
    config = ScoreConfig(model=model, dtype=dtype, device="cpu", limit=limit, batch_tokens=256)
    score(config, RunOptions(out=str(out), shard_rows=64 if limit is None else limit // 3))
    return scores_of(out)


@pytest.fixture(scope="module")
def tiny_whole(tiny_llama, tmp_path_factory):
    """The tiny model's 320 bundled prompts scored whole, once per dtype: what its cuts and its ranks are held to."""
    root = tmp_path_factory.mktemp("tiny-whole")
    return functools.cache(lambda dtype: whole(str(tiny_llama), dtype, root / dtype))


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


def test_the_tolerance_check_catches_a_score_or_an_embedding_that_moved_too_far():
    rng = np.random.default_rng(2)
    expected = {"gc_id": np.arange(50), "gc_embedding": rng.normal(size=(50, 8)).astype(np.float16)}
    expected |= {name: rng.uniform(0, 1, 50) for name in SCORES}
    tolerance = SCORE_TOLERANCE["float32"].score
    near = {**expected, "gc_score": expected["gc_score"] + tolerance / 2}
    assert_within_tolerance(near, expected, "float32")
    for name in SCORES:
        moved = expected[name].copy()
        moved[7] += 3 * tolerance
        with pytest.raises(AssertionError, match=name):
            assert_within_tolerance({**expected, name: moved}, expected, "float32")
    embedding = expected["gc_embedding"].copy()
    embedding[3] *= 1.01
    with pytest.raises(AssertionError, match="gc_embedding"):
        assert_within_tolerance({**expected, "gc_embedding": embedding}, expected, "float32")


@pytest.mark.parametrize("dtype", DTYPES)
def test_another_cut_stays_within_tolerance(dtype, tiny_llama, tiny_whole, tmp_path):
    reference = tiny_whole(dtype)
    assert len(reference["gc_id"]) == 320 and np.isfinite(reference["gc_score"]).all()
    assert_within_tolerance(cut(str(tiny_llama), dtype, tmp_path / "cut"), reference, dtype)


@pytest.fixture(scope="module")
def default_path(tiny_llama, tmp_path_factory) -> dict[str, dict[str, np.ndarray]]:
    """The first `PATH_ROWS` bundled prompts scored whole on this machine's default kernels: in this process, which
    runs on them unless the suite was started on another path (a fresh process costs 8 CPU-s)."""
    root = tmp_path_factory.mktemp("default-path")
    for dtype in DTYPES:
        args = ("--limit", str(PATH_ROWS), "--batch-tokens", "1024")
        if PLAIN_ENV.keys() == ENV.keys():
            score_in_process(["--model", tiny_llama, "--dtype", dtype, "--device", "cpu", "--out", root / dtype,
                              "--quiet", *args])  # fmt: skip
        else:
            score_in_subprocess(str(tiny_llama), dtype, root / dtype, PLAIN_ENV, *args)
    return {dtype: scores_of(root / dtype) for dtype in DTYPES}


# `gaincurate score` once per argument list, in one process: the path is what is tested, not the console script,
# and a process per dtype cost the suite 9 CPU-s more each.
SCORE_EACH = """
import json, sys
from gaincurate.cli import main
for args in json.loads(sys.argv[1]):
    try:
        main(args)
    except SystemExit as done:
        assert not done.code, f"exit {done.code}"
"""


@pytest.mark.parametrize("path", sorted(OTHER_PATHS))
def test_another_blas_and_simd_path_and_another_cut_stay_within_tolerance(path, default_path, tiny_llama, tmp_path):
    """The same prompts on another path (other GEMM kernels: the bytes may differ) and cut otherwise (32-row shards,
    budget 256) than the default path's run, in each dtype: the scores stay within the promise."""
    args = ["--limit", str(PATH_ROWS), "--batch-tokens", "256", "--shard-rows", str(PATH_ROWS // 3), "--quiet"]
    runs = [["score", "--model", str(tiny_llama), "--dtype", dtype, "--device", "cpu", "--out", str(tmp_path / dtype),
             *args] for dtype in DTYPES]  # fmt: skip
    done = subprocess.run([sys.executable, "-c", SCORE_EACH, json.dumps(runs)], env=PLAIN_ENV | OTHER_PATHS[path],
                          capture_output=True, text=True, timeout=1800)  # fmt: skip
    assert done.returncode == 0, done.stderr
    for dtype in DTYPES:
        assert_within_tolerance(scores_of(tmp_path / dtype), default_path[dtype], dtype)


@pytest.mark.parametrize("gpu_forward", [False, True], ids=["cpu-forward", "gpu-forward"])
def test_gpu_bucket_widths_stay_within_tolerance_of_exact_ones(gpu_forward, tiny_llama, default_path, tmp_path,
                                                               monkeypatch):  # fmt: skip
    """A GPU pads each row to its bucket (`engine.padded_width` on cuda) and, where the model allows, runs the forward
    as `forward_kernels.right_padded_forward` says (attention without the padding mask, RMSNorm fused); the same here,
    in float32, moves no score beyond the tolerance of the exact widths a CPU keeps."""
    from gaincurate import forward_kernels
    from gaincurate.scoring import engine

    exact = engine.padded_width
    monkeypatch.setattr(engine, "padded_width", lambda length, device="cpu": exact(length, "cuda"))
    monkeypatch.setattr(forward_kernels, "right_padded_causal_applies", lambda model, device: gpu_forward)
    monkeypatch.setattr(forward_kernels, "fused_rms_norms_apply", lambda model, device: gpu_forward)
    config = ScoreConfig(model=str(tiny_llama), dtype="float32", device="cpu", limit=PATH_ROWS, batch_tokens=1024)
    timings = score(config, RunOptions(out=str(tmp_path / "bucketed")))["timings"]
    assert timings["padded_tokens"] > timings["tokens"]  # rows were padded
    assert_within_tolerance(scores_of(tmp_path / "bucketed"), default_path["float32"], "float32")


@pytest.mark.slow
def test_two_torchrun_ranks_score_like_one_process_in_bfloat16(tiny_llama, tiny_whole, tmp_path):
    """float32's ranks: tests/test_distributed.py::test_killed_rank_then_rerun_resumes_and_matches."""
    torchrun_score(str(tiny_llama), "bfloat16", tmp_path / "ranked")  # split runs take a fixed budget: one more cut
    assert_within_tolerance(scores_of(tmp_path / "ranked"), tiny_whole("bfloat16"), "bfloat16")


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES)
def test_embedded_model_scores_alike_however_cut(dtype, tmp_path):
    rows = EMBEDDED_ROWS[dtype]
    reference = whole(None, dtype, tmp_path / "whole", limit=rows)
    assert len(reference["gc_id"]) == rows
    assert_within_tolerance(cut(None, dtype, tmp_path / "cut", limit=rows), reference, dtype)
