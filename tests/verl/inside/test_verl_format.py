"""verl's own parquet through gaincurate and back into real verl: its reward and its dataset read what we export.

The files are laid out as verl's preprocessing scripts write them (`verl_preprocessing`: gsm8k's layout, two
splits concatenated so `extra_info.index` repeats, and MATH's). The scores are made up; the commands are
`gaincurate`'s entry point in this environment, where verl is importable: the warning users see through the
entry point's own process (`python -m gaincurate`), the files the checks read from it called in this process (each
process costs 9-10 s here, and the files are the same: tests/integrations/test_verl_format.py runs them as
processes in .venv).
"""

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from fake_scores import score_columns, write_scores_dir
from verl.utils.dataset.rl_dataset import RLHFDataset
from verl.utils.reward_score import default_compute_score
from verl_preprocessing import completions, concatenated_gsm8k, math_split, write_parquet

VERL_COLUMNS = ("data_source", "prompt", "ability", "reward_model")


def gaincurate(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    result = subprocess.run([sys.executable, "-m", "gaincurate", *args], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    return result


def in_process(*args: str) -> list[str]:
    """`gaincurate ARGS` through its entry point in this process; the warnings it logged."""
    from gaincurate.cli import main

    handler = logging.Handler(logging.WARNING)
    warned: list[str] = []
    handler.emit = lambda record: warned.append(record.getMessage())
    logging.getLogger("gaincurate").addHandler(handler)
    try:
        main(list(args))  # returns on success; a failure exits with its code
    finally:
        logging.getLogger("gaincurate").removeHandler(handler)
    return warned


def scores_of(parquet: Path, directory: Path) -> Path:
    inputs = pq.read_table(parquet).replace_schema_metadata(None)
    n = inputs.num_rows
    return write_scores_dir(directory, inputs, score_columns(np.linspace(0.5, 2.0, n), [10] * n),
                            dataset={"name": parquet.name, "fingerprint": f"verl-{n}"}, prompt_column="prompt",
                            answer_column="reward_model.ground_truth")  # fmt: skip


@pytest.fixture(scope="module", params=["gsm8k", "math"])
def verl_files(request, tmp_path_factory):
    """(the user's parquet, its epoch-0000.parquet, its full export), by the documented commands."""
    directory = tmp_path_factory.mktemp(request.param)
    if request.param == "gsm8k":
        parquet = concatenated_gsm8k(directory, count=8)
    else:
        parquet = write_parquet(math_split(16), directory / "math.parquet")
    scores, run = scores_of(parquet, directory / "scores"), directory / "run"
    in_process("schedule", "init", "--strategy", "gain", "--scores", str(scores), "--run", str(run), "--format", "verl",
               "--subset-size", "8")  # fmt: skip
    warned = in_process("schedule", "step", "--run", str(run))
    assert not [line for line in warned if "custom_reward_function" in line]  # verl knows gsm8k and MATH-lighteval
    exported = directory / "all.parquet"
    in_process("verl", "export", "--scores", str(scores), "--out", str(exported))
    return parquet, run / "epoch-0000.parquet", exported


def test_every_exported_row_keeps_the_users_columns_and_extra_info(verl_files):
    parquet, epoch, exported = verl_files
    source = pq.read_table(parquet).to_pylist()
    for path in (epoch, exported):
        for row in pq.read_table(path).to_pylist():
            original = source[row["gc_id"]]
            assert {key: row[key] for key in VERL_COLUMNS} == {key: original[key] for key in VERL_COLUMNS}
            assert row["extra_info"] | original["extra_info"] == row["extra_info"]
            assert row["extra_info"]["gc_id"] == row["gc_id"]


def test_verls_default_compute_score_gives_1_and_0_on_every_row(verl_files):
    _, epoch, exported = verl_files
    for path in (epoch, exported):
        for row in pq.read_table(path).to_pylist():
            truth = row["reward_model"]["ground_truth"]
            correct, wrong = completions(row["data_source"], truth)
            assert default_compute_score(row["data_source"], correct, truth, row["extra_info"]) == 1.0, row
            assert default_compute_score(row["data_source"], wrong, truth, row["extra_info"]) == 0.0, row


def test_rlhf_dataset_gives_each_row_its_gc_id_beside_verls_own_index(verl_files, tokenizer, tmp_path):
    from omegaconf import OmegaConf

    _, _, exported = verl_files
    config = OmegaConf.create({"prompt_key": "prompt", "max_prompt_length": 1024, "filter_overlong_prompts": False,
                               "truncation": "error", "cache_dir": str(tmp_path / "cache")})  # fmt: skip
    data = RLHFDataset(data_files=str(exported), tokenizer=tokenizer, config=config)
    items = [data[row] for row in range(len(data))]
    assert [item["gc_id"] for item in items] == list(range(len(items)))  # what the verl hooks read
    assert [item["index"] for item in items] == [item["extra_info"]["index"] for item in items]  # verl's, kept


def test_a_data_source_verl_does_not_know_gets_a_one_line_warning(tmp_path):
    table = pq.read_table(write_parquet(math_split(8), tmp_path / "math.parquet")).replace_schema_metadata(None)
    table = table.set_column(table.column_names.index("data_source"), "data_source", [["my/own-set"] * 8])
    pq.write_table(table, tmp_path / "own.parquet")
    scores, run = scores_of(tmp_path / "own.parquet", tmp_path / "scores"), tmp_path / "run"
    in_process("schedule", "init", "--strategy", "gain", "--scores", str(scores), "--run", str(run), "--format", "verl",
               "--subset-size", "8")  # fmt: skip
    warned = [line for line in gaincurate("schedule", "step", "--run", str(run)).stderr.splitlines() if line.strip()]
    assert len(warned) == 1, warned
    assert "'my/own-set'" in warned[0] and "reward.custom_reward_function" in warned[0]
