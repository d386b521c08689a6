"""What `score` and `schedule init` check of a user's own data before any work (issue 58), through the console script.

An empty file, a file of blank lines, a header-only CSV and a schema-only parquet each say that they hold no rows;
repeated ids (an `id` column) are refused in one line; repeated prompt texts are counted in one warning line, and
`--drop-duplicates` keeps the first of each; `schedule init --likelihood` on scores without a reference answer per
prompt is refused at init, naming the column it looked for and how to name another. Nothing is written when refused.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import PROBLEMS, score_in_process, write_jsonl

from gaincurate.shards import read_scores


def write_empty(path, kind: str):
    if kind == "parquet":
        pq.write_table(pa.table({"problem": pa.array([], pa.string()), "answer": pa.array([], pa.string())}), path)
    else:
        path.write_text({"empty": "", "blank": "\n  \n\n", "header": "problem,answer\n", "list": "[]"}[kind])
    return path


@pytest.mark.parametrize(
    ("name", "kind", "said"),
    [
        ("p.jsonl", "empty", "is empty (0 bytes)"),
        ("p.jsonl", "blank", "holds only blank lines"),
        ("p.csv", "header", "has a header line but no rows"),
        ("p.parquet", "parquet", "has columns (problem, answer) but no rows"),
        ("p.json", "list", "holds no rows"),
    ],
)
@pytest.mark.parametrize("command", ["score", "init"])
def test_an_input_without_rows_says_so(name, kind, said, command, gaincurate, error_line, tmp_path):
    data = write_empty(tmp_path / name, kind).name  # as the user types it, from the folder it is in
    if command == "score":
        refused = gaincurate("score", data, "--out", "scores", "--model", "no-such-model-needed")
    else:
        refused = gaincurate("schedule", "init", "--prompts", data, "--run", "run", "--strategy", "uniform")
    line = error_line(refused)
    assert line == f"gaincurate: error: {name} {said}; it needs one prompt per row"
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_repeated_ids_are_refused_in_one_line(gaincurate, error_line, tmp_path):
    rows = [{"id": f"q{i % 3}", **row} for i, row in enumerate(PROBLEMS[:4])]
    data = write_jsonl(tmp_path / "p.jsonl", rows).name
    for refused in (
        gaincurate("score", data, "--out", "scores", "--model", "no-such-model-needed"),
        gaincurate("schedule", "init", "--prompts", data, "--run", "run", "--strategy", "uniform"),
    ):
        assert error_line(refused) == (
            "gaincurate: error: p.jsonl repeats ids: rows 0 and 3 (counting from 0) both have id 'q0'; give every row "
            "its own id, or rename the column if it holds no ids"
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.jsonl"]


def test_repeated_prompt_texts_are_counted_and_dropped_when_asked(gaincurate, tiny_llama, tmp_path, capfd, monkeypatch):
    rows = [PROBLEMS[0], PROBLEMS[1], PROBLEMS[0], PROBLEMS[2], PROBLEMS[1], PROBLEMS[0]]
    data = write_jsonl(tmp_path / "p.jsonl", rows).name
    warning = (
        "warning: 3 of 6 prompts of p.jsonl repeat an earlier row's text (first: row 2 repeats row 0); each copy is "
        "scored and drawn on its own: pass --drop-duplicates to keep the first of each"
    )
    kept = gaincurate("schedule", "init", "--prompts", data, "--run", "run", "--strategy", "uniform")
    assert kept.returncode == 0, kept.stderr
    assert kept.stderr.splitlines() == [warning]
    dropped = gaincurate("schedule", "init", "--prompts", data, "--run", "once", "--strategy", "uniform",
                         "--drop-duplicates")  # fmt: skip
    assert dropped.returncode == 0, dropped.stderr
    assert dropped.stderr.splitlines() == [warning.split(" each copy")[0].replace("warning", "note").replace(
        ";", "; --drop-duplicates kept the first of each")]  # fmt: skip
    assert read_scores(tmp_path / "once" / "prompts").column("problem").to_pylist() == [
        PROBLEMS[0]["problem"], PROBLEMS[1]["problem"], PROBLEMS[2]["problem"]
    ]  # fmt: skip
    assert read_scores(tmp_path / "run" / "prompts").num_rows == 6

    # `score` in this process: it counts repeats with the same check and line as `schedule init` above, which shows
    # them through the console script; here what it keeps is under test (a console score costs a torch import).
    monkeypatch.chdir(tmp_path)  # named as the user types it
    capfd.readouterr()
    score_in_process([data, "--out", "scores", "--model", tiny_llama, "--dtype", "float32", "--drop-duplicates"])
    assert "3 of 6 prompts of p.jsonl repeat" in capfd.readouterr().err
    assert json.loads((tmp_path / "scores" / "manifest.json").read_text())["rows"] == 3


def test_likelihood_without_reference_answers_is_refused_at_init(gaincurate, error_line, tiny_llama, tmp_path):
    unanswered = write_jsonl(tmp_path / "p.jsonl", [{"problem": row["problem"]} for row in PROBLEMS])
    # The scores are made in this process (score_in_process): the refusal at init is what is under test.
    score_in_process([unanswered, "--out", tmp_path / "scores", "--model", tiny_llama, "--dtype", "float32",
                      "--allow-missing-answers"])  # fmt: skip
    line = error_line(gaincurate("schedule", "init", "--scores", "scores", "--run", "run", "--likelihood"))
    assert line == (
        "gaincurate: error: --likelihood measures the policy's probability of each prompt's reference answer, but "
        "scores has no 'answer' column (its columns: problem); score the data again with --answer-column NAME (the "
        "column holding the answers), or drop --likelihood"
    )
    assert not (tmp_path / "run").exists()
    half = write_jsonl(tmp_path / "half.jsonl", [{**row, "answer": None if i == 2 else row["answer"]}
                                                 for i, row in enumerate(PROBLEMS)])  # fmt: skip
    score_in_process([half, "--out", tmp_path / "half", "--model", tiny_llama, "--dtype", "float32",
                      "--allow-missing-answers"])  # fmt: skip
    line = error_line(gaincurate("schedule", "init", "--scores", "half", "--run", "run", "--likelihood"))
    assert f"but 1 of {len(PROBLEMS)} prompts in half have no 'answer' answer (first: gc_id 2)" in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("quiet", [(), ("--quiet",)], ids=["", "quiet"])
@pytest.mark.parametrize(
    ("name", "content", "said"),
    [
        ("bad.parquet", b"not parquet\n", "this is not a parquet file. Check that it is valid parquet"),
        ("bad.arrow", b"not arrow\n", ". Check that it is valid arrow"),
        ("ragged.csv", b'problem,answer\n"a?",1\n"b?",2,3,4\n', "Expected 2 fields in line 3, saw 4. Check that"),
        ("latin1.csv", 'problem,answer\n"caf\xe9?",5\n'.encode("latin-1"), "; re-save the file as UTF-8"),
    ],
    ids=["parquet", "arrow", "ragged-csv", "latin1-csv"],
)
def test_an_unreadable_file_is_our_one_line_without_the_readers_log(name, content, said, quiet, gaincurate,
                                                                     error_line, tmp_path):  # fmt: skip
    """datasets' csv, parquet and arrow readers log their failure (twice: raw, then through rich) before ours."""
    (tmp_path / name).write_bytes(content)
    line = error_line(gaincurate("score", name, "--out", "scores", "--model", "no-such-model-needed", *quiet))
    assert line.startswith(f"gaincurate: error: {'cannot read ' * (name != 'latin1.csv')}{name}") and said in line
    assert ".." not in line and sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_split_on_a_folder_of_one_dataset_is_refused_as_on_a_file(gaincurate, error_line, tmp_path):
    import datasets

    datasets.Dataset.from_list(PROBLEMS).save_to_disk(tmp_path / "saved")
    line = error_line(gaincurate("score", "saved", "--split", "test", "--out", "scores", "--model", "no-such-model"))
    assert line == "gaincurate: error: saved is a save_to_disk folder of one dataset (split train); drop --split test"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["saved"]


def test_prompts_from_a_folder_of_splits_names_a_fix_init_takes(gaincurate, error_line, tmp_path):
    """init has no --split: the fix it names is one split's folder, and that command runs."""
    import datasets

    rows = datasets.Dataset.from_list(PROBLEMS)
    datasets.DatasetDict({"train": rows, "test": rows.select(range(2))}).save_to_disk(tmp_path / "dd")
    line = error_line(gaincurate("schedule", "init", "--prompts", "dd", "--run", "run", "--strategy", "uniform"))
    assert line == (
        "gaincurate: error: dd has splits train, test; --prompts reads one: pass one split's folder, e.g. "
        "--prompts dd/train"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dd"]
    done = gaincurate("schedule", "init", "--prompts", "dd/train", "--run", "run", "--strategy", "uniform")
    assert done.returncode == 0 and read_scores(tmp_path / "run" / "prompts").num_rows == len(PROBLEMS), done.stderr


def test_prompts_for_verl_without_answers_names_the_users_file(gaincurate, error_line, tmp_path):
    """Not the staging folder, gone by the time the user reads it, and no re-scoring of what was never scored."""
    write_jsonl(tmp_path / "q.jsonl", [{"question": row["problem"], "solution": row["answer"]} for row in PROBLEMS])
    line = error_line(gaincurate("schedule", "init", "--prompts", "q.jsonl", "--prompt-column", "question", "--run",
                                 "run", "--strategy", "uniform", "--format", "verl"))  # fmt: skip
    assert line == (
        "gaincurate: error: --format verl needs a ground truth per prompt, but q.jsonl has no column 'answer'; "
        "rename the column that holds its answers to 'answer', or use --format trl"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.jsonl"]
