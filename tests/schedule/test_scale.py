"""A scheduler step on a large pool (issue #48): the same numbers as the direct computation, and small per prompt.

Each shortcut that keeps a step linear in the pool is checked against the plain computation it replaces: the
embeddings read column-wise against a row-by-row read, the prepared embeddings made a block at a time against the
whole float64 matrix, the bounded reference set against a brute-force pick, the compact state.json against the
listed one. The memory a dots step holds per prompt is measured in subprocesses (ru_maxrss at 5,000 and 20,000 prompts),
not timed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from fake_scores import score_columns, write_scores_dir

from gaincurate import shards
from gaincurate.difficulty.predict import (
    PAIR_BUDGET,
    PREPARE_ROWS,
    REFERENCE_FLOOR,
    REFERENCE_LIMIT,
    PreparedEmbeddings,
    grid_bits,
    prepare_embeddings,
    reference_limit,
)
from gaincurate.difficulty.reference import PassRates, PromptEmbeddings, embeddings_from_table
from gaincurate.lab.strategies.predict import kernel_sums
from gaincurate.schedule.config import ScheduleConfig
from gaincurate.schedule.core import Scheduler
from gaincurate.schedule.state import LISTED_PROMPTS, ScheduleState
from gaincurate.schedule.strategies.contract import PromptSet
from gaincurate.schedule.strategies.dots import DotsStrategy
from gaincurate.schedule.strategies.probe import features as probe_features


def every_row(embeddings, width: int) -> np.ndarray:
    """The probe's features of every row of a pool (a step builds only the measured rows')."""
    return probe_features.EmbeddingFeatures(embeddings, width).rows(np.arange(len(embeddings)))


def prepared_directly(raw: np.ndarray) -> np.ndarray:
    """The preparation as one float64 matrix (the form before #48): centred, norm h^(1/4), on the grid."""
    matrix = np.asarray(raw, dtype=np.float64)
    finite = np.isfinite(matrix).all(axis=1)
    centred = matrix - matrix[finite].mean(axis=0)
    norms = np.linalg.norm(centred, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        prepared = np.where(norms > 0, centred / norms * matrix.shape[1] ** 0.25, 0.0)
    prepared[~finite] = np.nan
    step = 2.0 ** -grid_bits(matrix.shape[1])
    return np.rint(prepared / step) * step


@pytest.mark.determinism
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_embeddings_prepared_block_by_block_are_the_whole_matrix_bit_for_bit(dtype):
    rng = np.random.default_rng(4)
    raw = (rng.normal(size=(2 * PREPARE_ROWS + 37, 24)) * 2 + 5).astype(dtype)
    raw[rng.random(len(raw)) < 0.01] = np.nan
    kept = raw.copy()
    expected = prepared_directly(raw)
    assert np.array_equal(prepare_embeddings(raw), expected, equal_nan=True)
    lazy = PreparedEmbeddings.of(raw)
    whole = np.asarray(raw, dtype=np.float64)
    assert np.array_equal(lazy.center, whole[np.isfinite(whole).all(axis=1)].mean(axis=0))  # the centre's bits
    assert np.array_equal(raw, kept, equal_nan=True)  # the caller's matrix is read, never written
    rows = rng.choice(len(raw), 500, replace=False)
    assert np.array_equal(lazy.rows(rows), expected[rows], equal_nan=True)
    assert np.array_equal(lazy.embedded, np.isfinite(expected).all(axis=1))


def test_embeddings_read_column_wise_are_the_rows_read_one_by_one():
    rng = np.random.default_rng(5)
    n = 300
    vectors = rng.normal(size=(n, 7)).astype(np.float16)
    failed = rng.random(n) < 0.1
    table = pa.table(
        {
            "gc_id": np.arange(n),
            "gc_score": pa.array([None if f else float(v) for f, v in zip(failed, rng.normal(size=n), strict=True)]),
            "gc_question_tokens": pa.array(rng.integers(1, 40, n), pa.int32()),
            "gc_status": ["failed" if f else "ok" for f in failed],
            "gc_embedding": pa.array([None if f else v.tolist() for f, v in zip(failed, vectors, strict=True)],
                                     pa.list_(pa.float16())),
        }
    )  # fmt: skip
    table = pa.concat_tables([table.slice(0, 111), table.slice(111, 5), table.slice(116)])  # chunks, sliced
    read = embeddings_from_table(table, "scores")
    by_row = np.full((n, 7), np.nan, dtype=np.float32)
    for row, vector in enumerate(table.column("gc_embedding").to_pylist()):
        if vector is not None:
            by_row[row] = vector
    assert read.embeddings.dtype == np.float16
    assert np.array_equal(read.embeddings.astype(np.float32), by_row, equal_nan=True)
    assert np.array_equal(np.isnan(read.scores), failed)


def test_a_gc_id_ordered_scores_table_is_read_as_mapped_and_an_unordered_one_is_sorted(tmp_path):
    inputs = pa.table({"problem": [f"q{i}" for i in range(30)]})
    columns = score_columns(np.linspace(0, 1, 30), [5] * 30)
    write_scores_dir(tmp_path / "ordered", inputs, columns, dataset={"name": "t", "fingerprint": "t"}, shard_rows=7)
    table = shards.read_scores(tmp_path / "ordered")
    assert table.column("gc_id").to_pylist() == list(range(30)) and table.column("gc_id").num_chunks == 5
    shuffled = dict(columns, gc_id=pa.array(np.arange(30)[::-1].copy(), pa.int64()))
    write_scores_dir(tmp_path / "reversed", inputs, shuffled, dataset={"name": "t", "fingerprint": "t"}, shard_rows=7)
    table = shards.read_scores(tmp_path / "reversed")
    assert table.column("gc_id").to_pylist() == list(range(30))
    assert table.column("problem").to_pylist() == [f"q{i}" for i in range(30)][::-1]


def test_the_bounded_reference_set_is_a_sample_weighted_by_recency():
    rng = np.random.default_rng(6)
    ids = np.sort(rng.choice(100_000, 9000, replace=False))
    rates = PassRates(ids, rng.random(9000), np.full(9000, 4.0), np.repeat(np.arange(3), 3000)[rng.permutation(9000)])
    kept = rates.sample(1000, now=2, forget=0.4)
    assert len(kept) == 1000 and np.all(np.diff(kept.gc_ids) > 0) and np.isin(kept.gc_ids, ids).all()
    shares = np.bincount(kept.last, minlength=3) / 1000
    assert shares[2] > shares[1] > shares[0] > 0.02  # fresh ones dominate, old ones keep a share
    assert np.array_equal(rates.sample(1000, now=2, forget=0.4).gc_ids, kept.gc_ids)  # a fixed draw
    flat = np.bincount(rates.sample(3000, now=2, forget=1.0).last, minlength=3) / 3000
    assert np.all(np.abs(flat - 1 / 3) < 0.05)  # no ageing: every measurement alike
    assert rates.sample(0, now=2, forget=0.4) is rates and rates.sample(9000, now=2, forget=0.4) is rates


def test_the_reference_set_keeps_2048_in_pools_that_bench_and_record_and_shrinks_to_a_pair_budget_beyond():
    assert reference_limit(320) == reference_limit(PAIR_BUDGET // REFERENCE_LIMIT) == REFERENCE_LIMIT == 2048
    assert reference_limit(100_000) == 1000  # N x R = PAIR_BUDGET
    assert reference_limit(1_000_000) == reference_limit(10**9) == REFERENCE_FLOOR == 256  # DOTS' reference set size
    sizes = np.array([1, 10_000, 50_000, 100_000, 300_000, 1_000_000])
    pairs = sizes * np.array([reference_limit(n) for n in sizes])
    assert np.all(pairs[sizes * REFERENCE_FLOOR <= PAIR_BUDGET] <= PAIR_BUDGET)
    rng = np.random.default_rng(8)
    n = 60_000
    prompts = PromptEmbeddings(np.arange(n), rng.normal(size=(n, 4)).astype(np.float16), np.ones(n, int), np.ones(n))
    assert DotsStrategy(prompts).reference_limit == reference_limit(60_000) == 1666


@pytest.mark.determinism
def test_probe_features_read_block_by_block_are_those_of_a_whole_float32_copy(monkeypatch):
    monkeypatch.setattr(probe_features, "FEATURE_BLOCK", 1000)
    rng = np.random.default_rng(9)
    raw = rng.normal(size=(2500, 40)).astype(np.float16)
    raw[rng.random(len(raw)) < 0.02] = np.nan
    kept = raw.copy()
    whole = np.where(np.isfinite(raw).all(axis=1)[:, None], raw, np.float32(0.0)).astype(np.float32)
    for width in (16, 64):
        blocks = every_row(raw, width)
        monkeypatch.setattr(probe_features, "FEATURE_BLOCK", 10**6)
        assert np.array_equal(blocks, every_row(whole, width))
        monkeypatch.setattr(probe_features, "FEATURE_BLOCK", 1000)
    assert np.array_equal(raw, kept, equal_nan=True)  # the caller's matrix is read, never written


def test_a_large_pool_standardises_by_evenly_spaced_blocks(monkeypatch):
    monkeypatch.setattr(probe_features, "FEATURE_BLOCK", 100)
    rng = np.random.default_rng(10)
    raw = rng.normal(size=(1050, 40)).astype(np.float16)
    got = every_row(raw, 16)
    projected = probe_features.project(raw.astype(np.float32), 16)  # float64, exact
    sampled = np.concatenate([projected[low : low + 100] for low in (0, 316, 633, 950)])  # 950 * k // 3
    mean, spread = sampled.mean(axis=0), sampled.std(axis=0)
    np.testing.assert_allclose(got, (projected - mean) / spread, rtol=1e-5, atol=1e-5)  # every row's would miss


def test_a_command_the_scale_bench_times_does_not_report_the_bench_s_own_peak(tmp_path):
    from gaincurate.lab.benchmarks.scale import Launcher

    held = np.ones(2**27)  # 1 GiB in this process, which a child spawned here would report as its own peak
    launcher = Launcher()
    step = launcher.timed([sys.executable, "-c", "pass"], tmp_path / "log")
    launcher.close()
    assert step["ok"] and step["peak_gb"] < 0.1 and held[-1] == 1.0


def test_the_scale_bench_runs_end_to_end_with_its_reference_agreement(tmp_path):
    """`gaincurate bench scale` through the console script on a small pool: each strategy's steps, and for dots and
    the lab's predict the bounded reference set against the full one."""
    options = ["--sizes", "2000", "--strategies", "probe,predict,dots", "--epochs", "1", "--subset", "64", "--json"]
    console = str(Path(sys.executable).with_name("gaincurate"))
    command = [console, "bench", "scale", *options, "--workdir", str(tmp_path)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    strategies = json.loads(run.stdout)["sizes"]["2000"]["strategies"]
    assert set(strategies) == {"probe", "predict", "dots"}
    assert "agreement" not in strategies["probe"]
    assert strategies["predict"]["agreement"]["measured"] > 0 and strategies["dots"]["agreement"]["measured"] == 64


@pytest.mark.determinism
def test_kernel_sums_over_prepared_blocks_are_those_over_the_matrix():
    rng = np.random.default_rng(7)
    raw = rng.normal(size=(2500, 12)).astype(np.float16)  # more queries than one QUERY_CHUNK
    keys = rng.choice(2500, 200, replace=False)
    values = rng.random((200, 2))
    whole = kernel_sums(prepare_embeddings(raw), keys, values, bandwidth=0.5)
    assert np.array_equal(kernel_sums(PreparedEmbeddings.of(raw), keys, values, bandwidth=0.5), whole)


@pytest.mark.determinism
def test_a_large_pools_state_json_keeps_what_changed_and_loads_back_the_same(tmp_path):
    n = LISTED_PROMPTS + 904
    prompts = PromptSet(
        gc_ids=np.arange(n), scores=np.linspace(0, 1, n), ranking_scores=np.linspace(0, 1, n),
        question_tokens=np.full(n, 9),
    )  # fmt: skip
    scheduler = Scheduler(ScheduleConfig(strategy="uniform", subset_size="64", seed=2), prompts)
    scheduler.step()
    rescored = scheduler.state.scores.copy()
    rescored[[3, 70]] = [0.25, np.nan]  # as a re-scoring leaves them
    state = ScheduleState(**{**scheduler.state.__dict__, "scores": rescored})
    text = json.dumps(state.to_json())
    assert len(text) < 2000, "the pool itself is not listed"
    loaded = ScheduleState.from_json(json.loads(text))
    assert loaded.scores is None and json.dumps(loaded.to_json()) == text  # written back untouched unresolved
    again = Scheduler(ScheduleConfig(strategy="uniform", subset_size="64", seed=2), prompts, loaded).state
    assert np.array_equal(again.scores, rescored, equal_nan=True) and np.array_equal(again.ranking, np.arange(n))
    assert json.dumps(again.to_json()) == text
    listed = {**json.loads(text), "ranking": list(range(n)), "scores": [None if s != s else s for s in rescored]}
    old = Scheduler(ScheduleConfig(strategy="uniform", subset_size="64", seed=2), prompts,
                    ScheduleState.from_json(listed)).state  # fmt: skip
    assert np.array_equal(old.scores, rescored, equal_nan=True)  # a state.json that lists the pool still loads


MEMORY_PROMPTS = (5_000, 20_000)
# Bytes per prompt of a dots step (third epoch, with feedback): the growth of its peak from the smaller pool to the
# larger over the prompts added, so the interpreter and the imports cancel. Per prompt it holds its 64 float16 of
# embeddings as read, the scores table's memory-mapped columns, the estimates and the draw. `pytest -s` prints the
# figure; the bound fails when something per prompt is held again, as the sorted copy of the whole table was (6 KB a
# prompt at a million).
MEMORY_PER_PROMPT = 4096


def dots_step_peak(directory: Path, prompts: int, launcher: Any) -> float:
    """Peak bytes of a dots `schedule step --feedback` (its third) on a synthetic pool of `prompts`.

    The steps before it only set the run up: they run in this process (the same driver the console script calls);
    the measured step alone is a fresh console-script process.
    """
    from gaincurate.lab.benchmarks.scale import console_script
    from gaincurate.lab.benchmarks.scale_data import hidden_pass_rates, write_feedback, write_synthetic_scores
    from gaincurate.schedule.run.run import Run
    from gaincurate.schedule.run.steps import init_run

    scores = write_synthetic_scores(directory / "scores", rows=prompts, width=64, seed=1)
    run, log, feedback = directory / "run", directory / "log", directory / "f.jsonl"
    init_run(run, scores, ScheduleConfig(strategy="dots", subset_size="2000"))
    Run.open(run).step()
    rates = hidden_pass_rates(prompts, 1)
    for epoch in range(3):
        ids = json.loads((run / "state.json").read_text())["positions"]  # dataset order: positions are gc_ids
        write_feedback(feedback, np.asarray(ids), pass_rates=rates, rollouts=8, seed=1, epoch=epoch)
        if epoch < 2:
            Run.open(run).step(feedback=feedback)
    step = launcher.timed([*console_script(), "schedule", "step", "--run", str(run), "--feedback", str(feedback)], log)
    assert step["ok"], log.read_text()[-400:]
    return step["peak_gb"] * 2**30


def test_a_dots_step_stays_under_its_memory_bound_per_prompt(tmp_path):
    from gaincurate.lab.benchmarks.scale import Launcher

    launcher = Launcher()  # spawned from a small process: a child of this one would start at the worker's peak
    small, large = (dots_step_peak(tmp_path / str(n), n, launcher) for n in MEMORY_PROMPTS)
    launcher.close()
    per_prompt = (large - small) / (MEMORY_PROMPTS[1] - MEMORY_PROMPTS[0])
    print(f"dots step: {per_prompt:.0f} bytes per prompt (peaks {small / 2**20:.0f} and {large / 2**20:.0f} MB)")
    assert per_prompt < MEMORY_PER_PROMPT, f"{per_prompt:.0f} bytes per prompt (peak {large / 2**20:.0f} MB)"


def test_an_epochs_rows_taken_shard_by_shard_are_those_of_a_whole_table_take(tmp_path):
    from gaincurate.schedule.run.epochs import take_rows

    inputs = pa.table({"problem": [f"q{i}" for i in range(50)], "level": list(range(50))})
    columns = score_columns(np.linspace(0, 1, 50), [5] * 50)
    write_scores_dir(tmp_path / "s", inputs, columns, dataset={"name": "t", "fingerprint": "t"}, shard_rows=7)
    table = shards.read_scores(tmp_path / "s")
    rows = np.random.default_rng(8).permutation(50)[:23]  # across shards, in no order
    taken = take_rows(table, rows)
    assert taken.column_names == ["problem", "level", "gc_id"]
    assert taken.equals(table.take(pa.array(rows)).select(taken.column_names))
    assert take_rows(table, np.zeros(0, dtype=np.int64)).num_rows == 0


def test_embedding_rows_read_a_block_at_a_time_are_the_whole_matrix_and_give_probe_the_same_features():
    rng = np.random.default_rng(10)
    raw = rng.normal(size=(3000, 24)).astype(np.float16)
    rows = [None if i % 97 == 0 else list(map(float, raw[i])) for i in range(len(raw))]
    column = pa.chunked_array(
        [pa.array(rows[:1234], pa.list_(pa.float16())), pa.array(rows[1234:], pa.list_(pa.float16()))]
    )
    status = ["empty" if row is None else "ok" for row in rows]
    table = pa.table({"gc_id": np.arange(3000), "gc_score": np.ones(3000), "gc_question_tokens": np.ones(3000, int),
                      "gc_status": status, "gc_embedding": column})  # fmt: skip
    whole = embeddings_from_table(table, "t").embeddings
    lazy = embeddings_from_table(table, "t", blocks=True).embeddings
    assert lazy.shape == whole.shape and lazy[:].dtype == whole.dtype == np.float16
    assert np.array_equal(lazy[1200:1300], whole[1200:1300], equal_nan=True)
    assert np.array_equal(lazy[2990:5000], whole[2990:], equal_nan=True)
    assert np.array_equal(every_row(lazy, 16), every_row(whole, 16))
