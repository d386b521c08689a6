"""`schedule init --prompts FILE`: a run for a strategy that reads no score, with no model pass.

The unscored directory it keeps in RUN/prompts is read as any scores directory: the same epochs as a run on the
file's real scores (mopps reads only gc_ids and rewards), the same rows and prompts in them. A strategy that reads
a model pass's output is refused in one line, and so is a run given both sources or neither; nothing is written.
"""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from gaincurate.cli import main
from gaincurate.schedule.config import DEFAULT_STRATEGY
from gaincurate.schedule.run.unscored import MODEL_PASS, UNSCORED
from gaincurate.schedule.strategies.registry import STRATEGIES
from gaincurate.shards import read_manifest, read_scores


def test_a_prompt_file_draws_the_epochs_its_scores_would(scored, tmp_path, capsys):
    """The commands in this process: what they write is under test (the refusals below are the console script's)."""
    prompts = scored.parent / "problems.jsonl"
    for source, run in (("--prompts", "from-file"), ("--scores", "from-scores")):
        given = prompts if source == "--prompts" else scored
        run_dir = str(tmp_path / run)
        main(["schedule", "init", source, str(given), "--run", run_dir, "--strategy", "mopps", "--subset-size", "3"])
        main(["schedule", "step", "--run", run_dir])
    capsys.readouterr()
    kept = tmp_path / "from-file" / "prompts"
    assert read_manifest(kept)["unscored"] is True
    table = read_scores(kept)
    assert set(table.column("gc_status").to_pylist()) == {UNSCORED} and table.column("gc_score").null_count == len(
        table
    )
    scored_table = read_scores(scored)
    for column in ("gc_id", "gc_prompt_hash", "gc_answer_hash", "problem"):
        assert table.column(column).to_pylist() == scored_table.column(column).to_pylist()
    epochs = [pq.read_table(tmp_path / run / "epoch-0000.parquet").to_pylist() for run in ("from-file", "from-scores")]
    assert epochs[0] == epochs[1] and len(epochs[0]) == 3
    state = json.loads((tmp_path / "from-file" / "state.json").read_text())
    assert state["scores_dir"] == str(kept.resolve())


@pytest.mark.parametrize("strategy", [name for name, cls in STRATEGIES.items() if cls.about.needs & MODEL_PASS])
def test_a_strategy_that_reads_a_model_pass_is_refused_and_nothing_is_written(
    strategy, gaincurate, error_line, scored, tmp_path
):
    line = error_line(
        gaincurate(
            "schedule", "init", "--prompts", scored.parent / "problems.jsonl", "--run", "r", "--strategy", strategy
        )
    )
    prompts = scored.parent / "problems.jsonl"
    assert f"strategy {strategy} reads" in line and "mopps" in line
    # The command that makes what it reads, with the user's own file, and the flag that names a strategy without.
    assert f"run `gaincurate score {prompts} --out scores` first, then `gaincurate schedule init --scores" in line
    assert "start from the prompt file alone with --strategy one of uniform, mopps" in line
    assert sorted(path.name for path in tmp_path.iterdir()) == []


def test_the_default_strategy_from_a_prompt_file_names_the_score_command_and_no_flag_never_typed(
    gaincurate, error_line, scored, tmp_path
):
    line = error_line(gaincurate("schedule", "init", "--prompts", scored.parent / "problems.jsonl", "--run", "r"))
    assert line.startswith(f"gaincurate: error: strategy {DEFAULT_STRATEGY} reads") and "--scores (" not in line
    assert "gaincurate score " in line and not (tmp_path / "r").exists()


@pytest.mark.parametrize("given", [(), ("--scores", "s", "--prompts", "p.jsonl")])
def test_scores_or_prompts_one_of_them(given, gaincurate, error_line, tmp_path):
    line = error_line(gaincurate("schedule", "init", "--run", "r", "--strategy", "uniform", *given))
    assert "--scores DIR" in line and "--prompts FILE" in line
    assert not (tmp_path / "r").exists()


def test_show_on_a_run_s_unscored_prompts_says_there_is_nothing_to_show(gaincurate, error_line, scored, tmp_path):
    gaincurate("schedule", "init", "--prompts", scored.parent / "problems.jsonl", "--run", "r", "--strategy", "mopps")
    line = error_line(gaincurate("show", tmp_path / "r" / "prompts"))
    assert "holds prompts no model has scored" in line and "gaincurate score" in line
