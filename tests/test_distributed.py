"""Scale-out scoring: torchrun ranks and array-job parts write what a single process writes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import PROBLEMS, write_jsonl

from gaincurate.distributed import Part, assign, current_part, device_for
from gaincurate.errors import ConfigError, InputError
from gaincurate.scoring import merge, score
from gaincurate.scoring.config import SCORE_TOLERANCE, RunOptions, ScoreConfig
from gaincurate.shards import read_manifest, read_scores

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
GAINCURATE = Path(sys.executable).parent / "gaincurate"  # the console script, as a user runs it


@pytest.fixture()
def many_problems(tmp_path) -> Path:
    rows = [{"problem": f"{p['problem']} Repeat this {i} times.", "answer": p["answer"]}
            for i in range(40) for p in PROBLEMS]  # fmt: skip
    return write_jsonl(tmp_path / "many.jsonl", rows)


def score_args(dataset: Path, model: Path, out: Path) -> list[str]:
    return ["score", str(dataset), "--model", str(model), "--out", str(out), "--dtype", "float32",
            "--device", "cpu", "--shard-rows", "16", "--quiet"]  # fmt: skip


def torchrun(nproc: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            "-m", "gaincurate"]  # fmt: skip


def assert_same_scores(got: Path, expected: Path) -> None:
    """Within the promise across ranks (docs/shards.md): ranks run with another thread count and batch budget.
    Every score and the embedding: the killed rank's rerun is the suite's float32 check of ranks."""
    a, b = read_scores(got), read_scores(expected)
    assert a["gc_id"].to_pylist() == b["gc_id"].to_pylist()
    assert len(set(a["gc_id"].to_pylist())) == a.num_rows
    tolerance = SCORE_TOLERANCE["float32"]
    for name in ("gc_intra", "gc_inter", "gc_score"):
        np.testing.assert_allclose(a[name].to_numpy(), b[name].to_numpy(), atol=tolerance.score, equal_nan=True,
                                   err_msg=name)  # fmt: skip
    got_rows, expected_rows = (np.array(t["gc_embedding"].to_pylist(), dtype=np.float64) for t in (a, b))
    moved = np.linalg.norm(got_rows - expected_rows, axis=1)
    assert np.all(moved <= tolerance.embedding * np.linalg.norm(expected_rows, axis=1)), "gc_embedding"


def test_assign_balances_weights_and_covers_everything():
    weights = [50, 10, 10, 30, 40, 5, 5, 20]
    parts = assign(weights, 3)
    assert sorted(i for p in parts for i in p) == list(range(len(weights)))
    loads = [sum(weights[i] for i in p) for p in parts]
    assert max(loads) - min(loads) <= max(weights) and assign(weights, 3) == parts


@pytest.mark.slow
def test_killed_rank_then_rerun_resumes_and_matches(tiny_llama, many_problems, tmp_path):
    single, ranked = tmp_path / "single", tmp_path / "ranked"
    score(ScoreConfig(dataset=str(many_problems), model=str(tiny_llama), dtype="float32", device="cpu"),
          RunOptions(out=str(single), shard_rows=16))  # fmt: skip
    launcher = subprocess.Popen([*torchrun(2), *score_args(many_problems, tiny_llama, ranked)], env=ENV,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and len(list(ranked.glob("shard-*.arrow"))) < 2:
        time.sleep(0.01)
    workers = _children(launcher.pid)
    assert workers, "torchrun started no worker"
    os.kill(workers[-1], signal.SIGKILL)
    assert launcher.wait(timeout=120) != 0
    finished = len(list(ranked.glob("shard-*.arrow")))
    assert 2 <= finished < 20 and not read_manifest(ranked)["complete"]

    subprocess.run([*torchrun(2), *score_args(many_problems, tiny_llama, ranked)], env=ENV, check=True,
                   capture_output=True, timeout=300)  # fmt: skip
    manifest = read_manifest(ranked)  # what a fresh run of two ranks writes; test_score_invariance.py runs one
    assert manifest["complete"] and manifest["timings"]["processes"] == 2 and manifest["timings"]["shards_resumed"] >= 2
    assert_same_scores(ranked, single)


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return sorted(found)


def test_array_parts_then_merge(tiny_llama, problems_file, tmp_path):
    single, parted = tmp_path / "single", tmp_path / "parted"
    # One batch budget for both: a single CPU run measures its own, split parts take a fixed one (config.py).
    config = ScoreConfig(dataset=str(problems_file), model=str(tiny_llama), dtype="float32", device="cpu",
                         batch_tokens=512)  # fmt: skip
    score(config, RunOptions(out=str(single), shard_rows=2))
    for index in (0, 2):
        manifest = score(config, RunOptions(out=str(parted), num_shards=3, shard_index=index, shard_rows=2))
        assert not manifest["complete"]
    with pytest.raises(InputError, match=r"part\(s\) 1 of 3 are missing"):
        merge(parted)
    assert not read_manifest(parted)["complete"]
    score(config, RunOptions(out=str(parted), num_shards=3, shard_index=1, shard_rows=2))
    manifest = merge(parted)
    assert manifest["complete"] and manifest["timings"]["processes"] == 3
    assert_same_scores(parted, single)
    # The same command cut into parts: the shards are the very bytes a single process writes.
    for name in manifest["shards"]:
        assert (parted / name).read_bytes() == (single / name).read_bytes()


@pytest.mark.slow
def test_rescore_with_two_processes_equals_in_process(tiny_llama, problems_file, tmp_path):
    from gaincurate.scoring import rescore

    scores = tmp_path / "scores"
    score(ScoreConfig(dataset=str(problems_file), model=str(tiny_llama), dtype="float32", device="cpu"),
          RunOptions(out=str(scores)))  # fmt: skip
    ids = [6, 0, 3, 4, 1]
    in_process = rescore(scores, ids, checkpoint=tiny_llama)
    two_processes = rescore(scores, ids, checkpoint=tiny_llama, nproc=2)
    stored = read_scores(scores)["gc_score"].to_numpy()[ids]
    tolerance = SCORE_TOLERANCE["float32"].score  # another subset of rows: another cut of the work
    np.testing.assert_allclose(in_process, stored, atol=tolerance)
    np.testing.assert_allclose(two_processes, in_process, atol=tolerance)
    # A trainer's `model.save_pretrained` alone: the workers get the scored model's tokenizer, as one process does.
    untokenized = shutil.copytree(tiny_llama, tmp_path / "weights", ignore=shutil.ignore_patterns("tokenizer*"))
    np.testing.assert_array_equal(rescore(scores, ids, checkpoint=untokenized, nproc=2), two_processes)


def test_world_size_without_a_rank_is_one_line_naming_the_variable_and_the_launch(tmp_path):
    """WORLD_SIZE alone (left over in a shell, set by hand) is not torchrun: the line says which variable is missing
    and how to launch, before anything is read or written."""
    data = write_jsonl(tmp_path / "problems.jsonl", PROBLEMS)
    environment = {name: value for name, value in ENV.items() if name not in ("RANK", "LOCAL_RANK")}
    done = subprocess.run(
        [str(GAINCURATE), "score", str(data), "--model", str(tmp_path / "model"), "--out", str(tmp_path / "out")],
        env={**environment, "WORLD_SIZE": "2"}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith("gaincurate: error: WORLD_SIZE=2 asks for 2 processes but RANK is not set; ")
    assert "torchrun --nproc-per-node N -m gaincurate score" in done.stderr and "unset WORLD_SIZE" in done.stderr
    assert not (tmp_path / "out").exists()


def test_a_rank_that_is_not_a_number_is_refused_the_same_way(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "first")
    with pytest.raises(ConfigError, match=r"^WORLD_SIZE=2 asks for 2 processes but RANK is 'first', not a whole"):
        current_part(None, None)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert current_part(None, None) == Part(1, 2, True, 0)  # LOCAL_RANK unset: one process per node


@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:1"])
def test_under_torchrun_any_cuda_device_is_the_ranks_own_gpu(device):
    """`init` pins each rank to GPU LOCAL_RANK, so every CUDA device a rank is given means that one: a `cuda:0`
    honoured as written would put every rank on GPU 0."""
    assert [device_for(Part(rank, 3, True, rank), device) for rank in range(3)] == ["cuda:0", "cuda:1", "cuda:2"]
    assert device_for(Part(1, 3, True, 1), "cpu") == "cpu"
    assert device_for(Part(1, 3), device) == device  # an array-job part: the device as given
