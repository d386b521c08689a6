"""verl's own parquet, as its preprocessing scripts write it, read as it is and given back unchanged.

The files come from `verl_preprocessing` (verl's gsm8k/MATH row layout over the bundled sample). Scores are
made up except in the slow test, which scores with the tiny Llama and runs `schedule` through the console script. The
same loop against real verl (its `default_compute_score` and `RLHFDataset`) is tests/verl/inside/test_verl_format.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fake_scores import score_columns, write_scores_dir
from helpers import score_in_process
from verl_preprocessing import concatenated_gsm8k, gsm8k_split, math_split, write_parquet

from gaincurate.columns import VERL_ANSWER_PATH
from gaincurate.data import check_answers, load_rows
from gaincurate.errors import InputError
from gaincurate.integrations.verl import reward as verl_reward
from gaincurate.integrations.verl.sampler import batch_rollouts, data_source_ids, export_prompts
from gaincurate.schedule import ScheduleConfig
from gaincurate.schedule.run.epochs import epoch_table
from gaincurate.schedule.run.inputs import load_scores
from gaincurate.schedule.run.run import Run
from gaincurate.schedule.run.steps import init_run

VERL_COLUMNS = ("data_source", "prompt", "ability", "reward_model")
GAINCURATE = str(Path(sys.executable).parent / "gaincurate")


def scores_of(parquet: Path, directory: Path, **manifest) -> Path:
    """A scores directory over `parquet`'s rows as `gaincurate score` keeps them (every column), made-up scores."""
    inputs = pq.read_table(parquet).replace_schema_metadata(None)
    n = inputs.num_rows
    manifest = {"prompt_column": "prompt", "answer_column": VERL_ANSWER_PATH} | manifest
    return write_scores_dir(directory, inputs, score_columns(np.linspace(0.5, 2.0, n), [10] * n),
                            dataset={"name": parquet.name, "fingerprint": f"verl-{n}"}, **manifest)  # fmt: skip


def source_rows(parquet: Path) -> list[dict]:
    return pq.read_table(parquet).to_pylist()


def assert_kept(exported: pa.Table, source: list[dict]) -> None:
    """Each exported row keeps its source row's verl columns exactly and every key and value of its extra_info."""
    for row in exported.to_pylist():
        original = source[row["gc_id"]]  # gc_id is the row's position in the scored file
        assert {key: row[key] for key in VERL_COLUMNS} == {key: original[key] for key in VERL_COLUMNS}
        assert row["extra_info"] | original["extra_info"] == row["extra_info"]  # nothing dropped or changed
        assert row["extra_info"]["gc_id"] == row["gc_id"]


def test_verls_layout_needs_no_column_flags(tmp_path):
    parquet = write_parquet(math_split(8), tmp_path / "math.parquet")
    loaded = load_rows(str(parquet), split=None, prompt_column="problem", limit=None)
    assert (loaded.prompt_column, loaded.answer_column) == ("prompt", VERL_ANSWER_PATH)
    answers = check_answers(loaded.rows, loaded.answer_column, loaded.name, allow_missing=False)
    assert answers == {"column": VERL_ANSWER_PATH, "present": True, "missing": 0}
    # Named columns are read as named: the nested path as a flag, and a column the user has.
    named = load_rows(str(parquet), split=None, prompt_column="prompt", limit=None, answer_column=VERL_ANSWER_PATH)
    assert (named.prompt_column, named.answer_column) == ("prompt", VERL_ANSWER_PATH)


def test_a_dict_as_ground_truth_is_refused_naming_the_field(tmp_path):
    rows = datasets.Dataset.from_list([{"q": "1+1", "truth": {"target": ["2"], "style": "rule"}}])
    with pytest.raises(InputError, match=r"--answer-column truth\.target$"):
        check_answers(rows, "truth", "toy", allow_missing=False)


def test_score_given_the_reward_model_object_says_which_column_to_name(tmp_path):
    """Through the console script: one line, before any work (no model loaded, nothing written)."""
    parquet = write_parquet(gsm8k_split(4), tmp_path / "train.parquet")
    out = tmp_path / "scores"
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    result = subprocess.run([GAINCURATE, "score", str(parquet), "--answer-column", "reward_model", "--out", str(out)],
                            capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "column 'reward_model'" in lines[0] and "--answer-column reward_model.ground_truth" in lines[0]
    assert not out.exists()


def test_every_export_keeps_the_users_verl_columns_and_extra_info(tmp_path):
    parquet = concatenated_gsm8k(tmp_path)
    scores = scores_of(parquet, tmp_path / "scores")
    run = tmp_path / "run"
    init_run(run, scores, ScheduleConfig(strategy="gain", subset_size=4, format="verl", data_source="ignored/here"))
    Run.open(run).step()
    source = source_rows(parquet)
    assert_kept(pq.read_table(run / "epoch-0000.parquet"), source)
    exported = pq.read_table(export_prompts(scores, tmp_path / "all.parquet"))
    assert exported.num_rows == len(source)
    assert_kept(exported, source)
    # Keys the user's extra_info lacks are added; theirs (split, index, answer, question) are as they were.
    assert exported.column("extra_info")[0].as_py()["dataset"] == "train.parquet"


def test_data_source_default_applies_only_to_rows_without_one(tmp_path):
    table = pq.read_table(write_parquet(math_split(4), tmp_path / "math.parquet")).replace_schema_metadata(None)
    sources = pa.array(["mine", None, "mine", None])
    table = table.set_column(table.column_names.index("data_source"), "data_source", sources)
    pq.write_table(table, tmp_path / "mixed.parquet")
    scores = load_scores(scores_of(tmp_path / "mixed.parquet", tmp_path / "scores"))
    rows = epoch_table(scores, np.arange(4), data_format="verl", metadata={}, data_source="fallback")
    assert rows.column("data_source").to_pylist() == ["mine", "fallback", "mine", "fallback"]


def test_feedback_reaches_the_right_prompt_when_two_files_repeat_their_index(tmp_path):
    parquet = concatenated_gsm8k(tmp_path, count=6)
    assert [row["extra_info"]["index"] for row in source_rows(parquet)] == [*range(6), *range(6)]
    exported = pq.read_table(export_prompts(scores_of(parquet, tmp_path / "scores"), tmp_path / "all.parquet"))
    rows = exported.to_pylist()
    # The reward side (verl's reward function): each rollout's line names the row that was answered.
    feedback = tmp_path / "rollouts.jsonl"
    for row in rows:
        truth = row["reward_model"]["ground_truth"]
        verl_reward.compute_score(row["data_source"], f"\\boxed{{{truth}}}", truth, row["extra_info"], str(feedback))
    lines = [json.loads(line) for line in feedback.read_text().splitlines()]
    assert [line["gc_id"] for line in lines] == [row["gc_id"] for row in rows] == list(range(12))
    # The sampler side: rows found by gc_id in verl's dataframe, rewards read from the batch's gc_id column.
    frame = datasets.Dataset(exported.replace_schema_metadata(None))
    assert data_source_ids(frame, "gc_id") == list(range(12))
    batch = {
        "index": np.array([row["extra_info"]["index"] for row in rows], dtype=object),  # verl's: 0..5 twice
        "gc_id": np.array([row["gc_id"] for row in rows], dtype=object),
        "token_level_scores": np.arange(12.0),
    }
    assert batch_rollouts(batch)[0] == list(range(12))


def test_exports_made_before_gc_id_are_still_read(tmp_path):
    """Old exports: extra_info {index = gc_id, split = "train", dataset}, no gc_id key."""
    old = {"index": 5, "split": "train", "dataset": "toy"}
    assert verl_reward.exported_id(old) == 5
    assert verl_reward.exported_id(old | {"split": "test"}) is None  # verl's own validation rows
    assert verl_reward.exported_id({"index": 0, "split": "test", "gc_id": 9}) == 9  # ours, whatever the split
    frame = datasets.Dataset.from_list([{"extra_info": old}, {"extra_info": {**old, "index": 2}}])
    assert data_source_ids(frame, "gc_id") == [5, 2]


def test_the_trl_export_keeps_conversational_prompts_and_extra_columns(tmp_path):
    prompts = [
        [{"role": "system", "content": "Be brief.", "name": None}, {"role": "user", "content": "1+1?", "name": "a"}],
        [{"role": "user", "content": "2+2?", "name": None}],
    ]
    inputs = pa.table(
        {
            "prompt": prompts,
            "answer": ["2", "4"],
            "meta": [{"source": "x", "tags": ["a", "b"]}, {"source": "y", "tags": []}],
        }
    )
    scores = load_scores(
        write_scores_dir(
            tmp_path / "scores",
            inputs,
            score_columns(np.array([1.0, 2.0]), [3, 3]),
            dataset={"name": "chat", "fingerprint": "chat-2"},
            prompt_column="prompt",
        )  # fmt: skip
    )
    rows = epoch_table(scores, np.array([1, 0]), data_format="trl", metadata={})
    assert rows.schema.field("prompt").type == inputs.schema.field("prompt").type
    assert rows.column("prompt").to_pylist() == [prompts[1], prompts[0]]
    assert rows.column("meta").to_pylist() == inputs.column("meta").to_pylist()[::-1]


@pytest.mark.slow
def test_a_verl_parquet_goes_through_score_and_schedule_with_no_column_flags(tiny_llama, tmp_path):
    """`score` (the tiny Llama, in this process: the columns it finds are under test, not its start-up), then the real
    console script: schedule init --format verl, schedule step twice."""
    parquet = concatenated_gsm8k(tmp_path, count=4)
    scores, run = tmp_path / "scores", tmp_path / "run"
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")

    def gaincurate(*args: str) -> subprocess.CompletedProcess:
        result = subprocess.run([GAINCURATE, *args], capture_output=True, text=True, env=env, timeout=600)
        assert result.returncode == 0, result.stderr
        return result

    score_in_process([parquet, "--out", scores, "--model", tiny_llama, "--dtype", "float32", "--quiet"])
    manifest = json.loads((scores / "manifest.json").read_text())
    assert (manifest["config"]["prompt_column"], manifest["config"]["answer_column"]) == ("prompt", VERL_ANSWER_PATH)
    gaincurate("schedule", "init", "--scores", str(scores), "--run", str(run), "--format", "verl", "--subset-size", "4")
    gaincurate("schedule", "step", "--run", str(run))
    source = source_rows(parquet)
    first = pq.read_table(run / "epoch-0000.parquet")
    assert_kept(first, source)
    feedback = tmp_path / "rollouts.jsonl"
    feedback.write_text("".join(json.dumps({"gc_id": g, "reward": 1.0}) + "\n" for g in first["gc_id"].to_pylist()))
    gaincurate("schedule", "step", "--run", str(run), "--feedback", str(feedback))
    assert_kept(pq.read_table(run / "epoch-0001.parquet"), source)


def test_a_nested_prompt_column_is_read_as_named(tmp_path):
    parquet = write_parquet(gsm8k_split(4), tmp_path / "train.parquet")
    loaded = load_rows(str(parquet), split=None, prompt_column="extra_info.question", limit=None)
    assert loaded.prompt_column == "extra_info.question"
    questions = [row["extra_info"]["question"] for row in source_rows(parquet)]
    assert loaded.rows["extra_info.question"][:] == questions


def test_chat_message_prompts_say_at_run_time_what_their_score_is_and_record_only_the_template_applied(
    tiny_llama, tmp_path
):
    """verl's prompts are chat messages with the question alone: no context span, so gc_inter is NaN on every row.
    The console script says so in one line while scoring, and the manifest records no system prompt or few-shot turn,
    which messages never get; the same command then finds the folder complete (its fingerprint is unchanged)."""
    from gaincurate.prompts import NO_CONTEXT, PromptFormat, for_column
    from gaincurate.shards import read_scores

    parquet = concatenated_gsm8k(tmp_path, count=3)
    command = [GAINCURATE, "score", str(parquet), "--out", str(tmp_path / "scores"), "--model", str(tiny_llama),
               "--dtype", "float32", "--device", "cpu"]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    assert [line for line in done.stderr.splitlines() if "gc_inter" in line] == [NO_CONTEXT]
    scores = read_scores(tmp_path / "scores")
    assert np.isnan(scores["gc_inter"].to_numpy(zero_copy_only=False)).all()
    manifest = json.loads((tmp_path / "scores" / "manifest.json").read_text())
    assert (manifest["config"]["system_prompt"], manifest["config"]["few_shot"]) == (None, [])
    assert manifest["prompt_hash"] == for_column(PromptFormat(system_prompt=None, few_shot=()), "prompt").fingerprint()
    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0 and "already complete" in again.stdout, again.stderr
    recorded = tmp_path / "manifest-config.json"  # the manifest's config, reused as `--config`: the same scores
    recorded.write_text(json.dumps(manifest["config"]))
    reused = subprocess.run([GAINCURATE, "score", "--config", str(recorded)], capture_output=True, text=True, env=env,
                            timeout=600)  # fmt: skip
    assert reused.returncode == 0 and "already complete" in reused.stdout, reused.stderr
