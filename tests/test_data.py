"""Every documented dataset form loads with all its columns; bad rows are kept and flagged."""

from __future__ import annotations

import subprocess
import sys

import datasets
import pytest
from helpers import PROBLEMS, write_jsonl

from gaincurate.data import load_rows
from gaincurate.errors import InputError
from gaincurate.prompt_scan import check_repeats, scan_prompts
from gaincurate.scoring import score
from gaincurate.scoring.config import RunOptions, ScoreConfig
from gaincurate.shards import read_manifest, read_scores


@pytest.mark.parametrize("form", ["json", "jsonl", "parquet", "csv", "arrow", "save_to_disk", "dataset_dict"])
def test_every_local_form_loads_with_all_columns(form, tmp_path):
    rows = datasets.Dataset.from_list(PROBLEMS)
    path = tmp_path / f"data.{form}"
    if form == "json":
        rows.to_json(path, lines=False)
    elif form == "jsonl":
        rows.to_json(path, lines=True)
    elif form == "parquet":
        rows.to_parquet(path)
    elif form == "csv":
        rows.to_csv(path, index=False)
    elif form == "arrow":
        path = tmp_path / "data.arrow"
        rows.save_to_disk(tmp_path / "saved")
        path.write_bytes(next((tmp_path / "saved").glob("*.arrow")).read_bytes())
    elif form == "save_to_disk":
        rows.save_to_disk(path)
    else:
        datasets.DatasetDict({"train": rows, "test": rows.select(range(2))}).save_to_disk(path)
    loaded = load_rows(str(path), split="test" if form == "dataset_dict" else None, prompt_column="problem", limit=None)
    expected = PROBLEMS[:2] if form == "dataset_dict" else PROBLEMS
    assert loaded.rows["problem"] == [p["problem"] for p in expected]
    assert set(loaded.rows.column_names) == {"problem", "answer", "difficulty"}


def test_a_file_the_checks_refuse_is_refused_without_importing_datasets(tmp_path):
    """An empty, blank or missing file is refused before `datasets`, the slowest import on that path, is needed."""
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "blank.csv").write_text("\n\n")
    probe = (
        "import sys\n"
        "from gaincurate.data import load_rows\n"
        "from gaincurate.errors import InputError\n"
        "for name in ('empty.jsonl', 'blank.csv', 'missing.json'):\n"
        "    try:\n"
        "        load_rows(name, split=None, prompt_column='problem', limit=None)\n"
        "    except InputError as error:\n"
        "        print(error)\n"
        "print('datasets' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True)
    *refusals, imported = result.stdout.splitlines()
    assert len(refusals) == 3 and imported == "False", result.stdout


def test_dataset_dict_needs_a_split(tmp_path):
    rows = datasets.Dataset.from_list(PROBLEMS)
    datasets.DatasetDict({"train": rows, "test": rows}).save_to_disk(tmp_path / "dd")
    with pytest.raises(InputError, match="pick one with --split"):
        load_rows(str(tmp_path / "dd"), split=None, prompt_column="problem", limit=None)


def test_a_folder_of_one_dataset_takes_no_other_split(tmp_path):
    """As a single file: --split names the split it holds or none; another split is refused, not ignored."""
    datasets.Dataset.from_list(PROBLEMS).save_to_disk(tmp_path / "one")
    for split in (None, "train"):
        assert len(load_rows(str(tmp_path / "one"), split=split, prompt_column="problem", limit=None).rows) == 8
    with pytest.raises(InputError, match=r"one dataset \(split train\); drop --split test"):
        load_rows(str(tmp_path / "one"), split="test", prompt_column="problem", limit=None)


def test_a_csv_is_read_as_written_like_the_same_rows_in_json(tmp_path):
    """pandas would read the answer 02139 as 2139.0, 0.250 as 0.25, and the prompt `NA`, or the answer `None`, as
    missing; a CSV's prompts and answers are its text, as JSON strings, and only an empty cell is missing."""
    problems, answers = ["NA", "null", "7", "What is 2+2?", "Solve"], ["0.250", "02139", "1e3", "None", None]
    text = "".join(f"{p},{'' if a is None else a}\n" for p, a in zip(problems, answers, strict=True))
    (tmp_path / "d.CSV").write_text("problem,answer\n" + text)  # a suffix in capitals is read as its own kind
    write_jsonl(tmp_path / "d.JSONL", [{"problem": p, "answer": a} for p, a in zip(problems, answers, strict=True)])
    for name in ("d.CSV", "d.JSONL"):
        rows = load_rows(str(tmp_path / name), split=None, prompt_column="problem", limit=None).rows
        assert rows["problem"] == problems and rows["answer"] == answers, name


def test_limit_and_fingerprint(tmp_path):
    rows = datasets.Dataset.from_list(PROBLEMS)
    rows.to_json(tmp_path / "d.jsonl", lines=True)
    first = load_rows(str(tmp_path / "d.jsonl"), split=None, prompt_column="problem", limit=3).rows
    assert len(first) == 3
    assert scan_prompts(first, "problem").every != scan_prompts(rows, "problem").every
    assert scan_prompts(first, "problem").every == scan_prompts(rows.select(range(3)), "problem").every


def test_empty_and_missing_questions_are_kept_and_flagged(tiny_llama, tmp_path):
    rows = [*PROBLEMS[:3], {"problem": "", "answer": "0", "difficulty": 1},
            {"problem": None, "answer": "0", "difficulty": 1}]  # fmt: skip
    datasets.Dataset.from_list(rows).to_json(tmp_path / "d.jsonl", lines=True)
    config = ScoreConfig(dataset=str(tmp_path / "d.jsonl"), model=str(tiny_llama), dtype="float32", device="cpu")
    manifest = score(config, RunOptions(out=str(tmp_path / "s")))
    table = read_scores(tmp_path / "s")
    assert table.num_rows == 5 and table["gc_status"].to_pylist()[3:] == ["empty_question", "empty_question"]
    assert manifest["diagnostics"]["status_counts"]["empty_question"] == 2
    assert read_manifest(tmp_path / "s")["diagnostics"]["unscored_rows"] == 2


def _brute_fingerprint(rows, column: str) -> str:
    import hashlib

    digest = hashlib.sha256(",".join(rows.column_names).encode())
    for text in rows[column]:
        digest.update(repr(text).encode() + b"\x00")
    return digest.hexdigest()[:16]


@pytest.mark.parametrize("drop", [False, True])
def test_one_pass_over_the_prompts_gives_what_separate_passes_gave(drop, tmp_path):
    """`check_repeats`' one read of the text: its fingerprint is the kept rows' (as hashed row by row), its weights
    each kept row's characters (as Arrow counts them), its repeats each later copy of an earlier text."""
    import pyarrow as pa
    import pyarrow.compute as pc

    texts = ["What is 2 + 3?", "héllo wörld", "What is 2 + 3?", None, "ünïcödé ∑", "héllo wörld", ""]
    datasets.Dataset.from_list([{"problem": t, "answer": "1"} for t in texts]).to_json(tmp_path / "d.jsonl")
    loaded = check_repeats(load_rows(str(tmp_path / "d.jsonl"), split=None, prompt_column="problem", limit=None),
                           drop=drop)  # fmt: skip
    rows = loaded.rows
    assert len(rows) == (5 if drop else 7) and (loaded.repeats.count, loaded.repeats.first) == (2, (2, 0))
    assert _brute_fingerprint(rows, "problem") == scan_prompts(rows, "problem").every
    column = pa.array(rows["problem"], pa.string())
    assert loaded.weights.tolist() == pc.fill_null(pc.utf8_length(column), 0).to_pylist()


def test_the_fingerprint_follows_every_column_by_value(tmp_path):
    """A corrected answer is another dataset (its shards carry the answers on to training and the likelihood); the
    rows `--drop-duplicates` keeps hash as a file of those rows alone does, whatever the file's layout."""
    texts = ["What is 2 + 3?", "héllo", "What is 2 + 3?", None, "x"]

    def fingerprint(name: str, rows: list[dict], drop: bool = False) -> str:
        loaded = load_rows(str(write_jsonl(tmp_path / name, rows)), split=None, prompt_column="problem", limit=None)
        return check_repeats(loaded, drop=drop).fingerprint

    rows = [{"problem": text, "answer": str(i)} for i, text in enumerate(texts)]
    first = fingerprint("a.jsonl", rows)
    assert fingerprint("again.jsonl", rows) == first
    assert fingerprint("fixed.jsonl", [*rows[:4], {**rows[4], "answer": "9"}]) != first
    kept = [row for i, row in enumerate(rows) if i != 2]
    assert fingerprint("a.jsonl", rows, drop=True) == fingerprint("kept.jsonl", kept) != first


def test_chat_prompts_weigh_their_messages_contents(tmp_path):
    chats = [[{"role": "user", "content": "Solve x + 1 = 2."}], [{"role": "system", "content": "Be brief."},
             {"role": "user", "content": "2 + 2?"}]]  # fmt: skip
    datasets.Dataset.from_list([{"prompt": c, "answer": "1"} for c in chats]).to_json(tmp_path / "c.jsonl")
    loaded = check_repeats(load_rows(str(tmp_path / "c.jsonl"), split=None, prompt_column="prompt", limit=None),
                           drop=False)  # fmt: skip
    assert loaded.weights.tolist() == [len("Solve x + 1 = 2."), len("Be brief.") + len("2 + 2?")]


CHAT = [{"role": "user", "content": "What is 2 + 3?"}]
PARTS = [{"role": "user", "content": [{"type": "text", "text": "What is 2 + 3?"}]}]
# A conversation no chat template renders as TRL does (with each message's role and text), and the words for it.
BAD_CONVERSATIONS = {
    "null-content": ([{"role": "system", "content": None}, *CHAT], "has message 0 (system) with no content (null)"),
    "content-parts": (PARTS, "has message 0 (user) with content parts, not text; join the parts' text into one string"),
    "empty": ([], "is an empty conversation (no message); give it at least one user message, or remove the row"),
    "number-content": ([{"role": "user", "content": 5}], "has message 0 (user) whose content is not text"),
    "null-role": ([{"role": None, "content": "Be brief."}, *CHAT], "has message 0 without a role"),
}


@pytest.mark.parametrize(
    ("case", "alone"),
    # A column of empty lists alone holds no messages at all: it is refused as holding no text.
    [(case, alone) for case in BAD_CONVERSATIONS for alone in (False, True) if case != "empty" or not alone],
    ids=lambda value: {False: "after-good-rows", True: "every-row"}.get(value, value),
)
def test_a_conversation_no_template_renders_is_refused_naming_its_row(case, alone, tmp_path):
    bad, said = BAD_CONVERSATIONS[case]
    good = [] if alone else [{"prompt": CHAT, "answer": "5"}] * 3
    path = write_jsonl(tmp_path / "chats.jsonl", [*good, *[{"prompt": bad, "answer": "5"}] * 2])
    with pytest.raises(InputError) as refused:
        load_rows(str(path), split=None, prompt_column="prompt", limit=None)
    assert str(refused.value).startswith(f"row {len(good)} (counting from 0) of column 'prompt' of {path} {said}")


def test_renderable_conversations_are_checked_without_reading_a_row_in_python(tmp_path, monkeypatch):
    """Rows without a prompt or without a user message are scored and flagged, not refused."""
    from gaincurate import data

    def never(value):
        raise AssertionError("a renderable column was read row by row")

    monkeypatch.setattr(data, "_conversation_problem", never)
    chats = [CHAT, None, [{"role": "system", "content": "Be brief."}], [{"role": "tool", "content": ""}, *CHAT]]
    path = write_jsonl(tmp_path / "chats.jsonl", [{"prompt": chat, "answer": "5"} for chat in chats * 500])
    assert len(load_rows(str(path), split=None, prompt_column="prompt", limit=None).rows) == 2000


def test_scoring_reads_the_prompt_column_once_before_it_starts_and_each_shard_once(tiny_llama, tmp_path, monkeypatch):
    """One whole-column pass (`scan_prompts`: repeats, fingerprint, shard weights), then each shard's prompts once,
    encoded and hashed from the same read; besides, only the batch-size probe's sample."""
    import gaincurate.prompt_scan
    from gaincurate.scoring.batch_size import SAMPLE_ROWS

    scans, reads = [], []
    real_scan, real_getitem = gaincurate.prompt_scan.scan_prompts, datasets.Dataset.__getitem__

    def scan(rows, column):
        scans.append(column)
        return real_scan(rows, column)

    def getitem(self, key):
        if key == "problem":
            reads.append(len(self))
        return real_getitem(self, key)

    monkeypatch.setattr(gaincurate.prompt_scan, "scan_prompts", scan)
    monkeypatch.setattr(datasets.Dataset, "__getitem__", getitem)
    config = ScoreConfig(model=str(tiny_llama), dtype="float32", device="cpu", limit=40)
    score(config, RunOptions(out=str(tmp_path / "s"), shard_rows=16))
    assert scans == ["problem"]
    assert sorted(reads) == sorted([min(40, SAMPLE_ROWS), 16, 16, 8])


def test_a_datasets_column_is_read_in_one_arrow_pass_as_datasets_formats_it(tmp_path):
    """`column_values` reads a Dataset's column through Arrow once (datasets' own formatting goes row by row, 90x
    slower on a million rows): the same Python values for text, chat messages, struct fields, numbers and a JSON
    column mixing numbers and strings, after a `select` too."""
    from gaincurate.columns import column_values

    rows = [{"problem": "What is 2 + 3?", "answer": 5, "meta": {"level": 1, "tag": "easy"},
             "messages": [{"role": "user", "content": "hi"}]},
            {"problem": "Find 10% of 80.", "answer": "10\\%", "meta": {"level": 2, "tag": None},
             "messages": [{"role": "user", "content": "yo"}, {"role": "assistant", "content": "ok"}]}]  # fmt: skip
    write_jsonl(tmp_path / "rows.jsonl", rows)
    dataset = datasets.load_dataset("json", data_files=str(tmp_path / "rows.jsonl"), split="train")
    for part in (dataset, dataset.select([1, 0])):
        for name in ("problem", "answer", "messages", "meta"):
            assert column_values(part, name) == list(part[name])
        assert column_values(part, "meta.tag") == [row["tag"] for row in part["meta"]]
    assert column_values(dataset, "answer") == [5, "10\\%"]
