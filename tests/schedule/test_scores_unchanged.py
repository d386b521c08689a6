"""A run records the fingerprint of the scores it started on (model, scoring config, shards) and refuses, in one line
naming what changed, a scores directory that differs from it; nothing in the run directory is written then.

The swap a user makes (`gaincurate score --overwrite` into the run's scores folder with another model or layer) is
tested through the console script; the other cases (a run recorded before runs kept a fingerprint, a swap while an
epoch trains, a re-scoring that changed only speed settings) in process on made-up scores.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import PROBLEMS, score_in_process, write_jsonl
from schedule_helpers import error_line, tree, write_scores

from gaincurate.errors import InputError
from gaincurate.fileio import atomic_write_json, file_sha256, read_json
from gaincurate.schedule.config import ScheduleConfig
from gaincurate.schedule.run import rundir
from gaincurate.schedule.run.run import Run
from gaincurate.schedule.run.steps import init_run
from gaincurate.shards import MANIFEST

CONSOLE_SCRIPT = Path(sys.executable).with_name("gaincurate")
CONFIG = ScheduleConfig(strategy="gain", seed=3, subset_size=8)
FIX = "start a new run on these in another directory: `gaincurate schedule init --scores"


def gaincurate(*args: object) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != "GAINCURATE_DEBUG"}
    env |= {"OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    return subprocess.run([str(CONSOLE_SCRIPT), *map(str, args)], env=env, capture_output=True, text=True, timeout=300)


# -- through the console script -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rows(tmp_path_factory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("rows") / "problems.jsonl", PROBLEMS)


def score(rows: Path, model: Path, out: Path, *extra: object) -> Path:
    score_in_process([rows, "--model", model, "--device", "cpu", "--dtype", "float32", "--quiet", "--out", out, *extra])
    return out


@pytest.fixture(scope="module")
def llama_scores(tiny_models, rows, tmp_path_factory) -> Path:
    return score(rows, tiny_models["llama"], tmp_path_factory.mktemp("llama") / "scores")


@pytest.mark.parametrize("swap", ["model", "layer"])
def test_scores_rescored_under_a_run_are_refused_in_one_line_and_nothing_is_written(
    swap, tiny_models, rows, llama_scores, tmp_path
):
    scores, run = tmp_path / "scores", tmp_path / "run"
    shutil.copytree(llama_scores, scores)
    init = gaincurate("schedule", "init", "--strategy", "gain", "--subset-size", "4", "--scores", scores, "--run", run)
    assert init.returncode == 0, init.stderr
    assert gaincurate("schedule", "step", "--run", run).returncode == 0
    epoch = rundir.load_run(run).schedule.subset_ids.tolist()
    feedback = write_jsonl(tmp_path / "rollouts.jsonl", [{"gc_id": i, "reward": float(i % 2)} for i in epoch])

    if swap == "model":  # another model scored into the same folder
        score(rows, tiny_models["qwen2"], scores, "--overwrite")
        said = (f"(model {tiny_models['llama']} -> {tiny_models['qwen2']}; ", "; shards: other bytes than the run ")
    else:  # the same model, another layer
        score(rows, tiny_models["llama"], scores, "--overwrite", "--layer", "1", "--no-prefix-cache")
        said = ("(scoring config: layer -1 -> 1; shards: other bytes than the run started on)",)
    before = tree(run)
    for command in (
        ("step", "--run", run, "--feedback", feedback),
        ("run", "--run", run, "--epochs", "2", "--trainer-cmd", "true {epoch_data}"),
    ):
        line = error_line(gaincurate("schedule", *command))
        assert line.startswith(f"gaincurate: error: the scores in {scores} changed since this run started "), line
        assert all(words in line for words in said), line
        assert line.endswith(f"{FIX} {scores} --run NEW_RUN`"), line
        assert tree(run) == before
    assert gaincurate("schedule", "status", "--run", run).returncode == 0  # where the run stands is still shown


# -- in process, on made-up scores ----------------------------------------------------------------------------


def fingerprinted(scores: Path, *, model: str = "tiny", layer: int = -1, device: str = "cpu") -> Path:
    """Give made-up scores what `gaincurate score` records of them: the model, the config and the shards' checksums."""
    manifest = read_json(scores / MANIFEST)
    manifest["model"] = {"id": model, "fingerprint": hashlib.sha256(model.encode()).hexdigest()[:16]}
    manifest["fingerprint"] = {"model": model, "layer": layer, "device": device, "batch_tokens": 512}
    manifest["checksums"] = {name: file_sha256(scores / name) for name in manifest["shards"]}
    atomic_write_json(scores / MANIFEST, manifest)
    return scores


def started(tmp_path: Path) -> tuple[Path, Path]:
    """A run on fingerprinted scores, epoch 0 written, and that epoch's feedback."""
    scores, run = fingerprinted(write_scores(tmp_path / "scores")), tmp_path / "run"
    init_run(run, scores, CONFIG)
    ids = Run.open(run).step().step.plan.gc_ids.tolist()
    return run, write_jsonl(tmp_path / "f0.jsonl", [{"gc_id": i, "reward": 1.0} for i in ids])


def test_the_run_records_each_part_and_the_same_scores_made_elsewhere_pass(tmp_path):
    run, feedback = started(tmp_path)
    recorded = rundir.load_run(run).scores_fingerprint
    assert set(recorded) == {"model", "config", "shards"} and recorded["config"] == {"debias": None, "layer": -1}
    # Scored again on another device with a copy of the model, to the same bytes: the same scores.
    fingerprinted(tmp_path / "scores", device="cuda", model="a-copy")
    assert Run.open(run).step(feedback=feedback).epoch == 1


def test_scores_swapped_while_an_epoch_trains_are_refused_before_the_draw(tmp_path):
    run, feedback = started(tmp_path)
    opened = Run.open(run)  # a `schedule run` loop holds its run while the trainer trains
    fingerprinted(tmp_path / "scores", layer=3)
    before = tree(run)
    with pytest.raises(InputError, match=r"changed since this run started \(scoring config: layer -1 -> 3\)"):
        opened.step(feedback=feedback)
    assert tree(run) == before and opened.epoch == 0


def test_a_run_recorded_without_a_fingerprint_checks_nothing(tmp_path):
    """Runs started before runs kept the fingerprint (the recorded runs under tests/schedule/) go on as they did."""
    run, feedback = started(tmp_path)
    state = read_json(run / rundir.STATE)
    atomic_write_json(run / rundir.STATE, {key: value for key, value in state.items() if key != "scores_fingerprint"})
    fingerprinted(tmp_path / "scores", layer=3)
    assert Run.open(run).step(feedback=feedback).epoch == 1
    assert "scores_fingerprint" not in read_json(run / rundir.STATE)  # and none is recorded later


def test_a_part_the_run_did_not_record_is_not_checked(tmp_path):
    """Scores written before checksums existed record no shard digest; checksums written later change nothing."""
    scores = fingerprinted(write_scores(tmp_path / "scores"))
    manifest = read_json(scores / MANIFEST)
    atomic_write_json(scores / MANIFEST, {key: value for key, value in manifest.items() if key != "checksums"})
    init_run(tmp_path / "run", scores, CONFIG)
    assert set(rundir.load_run(tmp_path / "run").scores_fingerprint) == {"model", "config"}
    fingerprinted(scores)  # the checksums appear
    assert Run.open(tmp_path / "run").step().epoch == 0
