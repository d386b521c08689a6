"""`gaincurate merge` and the readers of a scores directory under damage, through the real console script.

An array job's directory (two `--num-shards` parts) is damaged one way at a time: a part marker that is not JSON,
not an object or lacks a field; a manifest that lacks a field or lists fewer shards than its rows need; a shard copied
from another run or with a flipped byte; a marker of a part that does not exist. `merge` refuses each in one line that
names the file and what to do, and changes nothing. A complete directory whose manifest was edited by hand is refused
by `show` the same way. The reference runs are scored in this process (`score_in_process`).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import PROBLEMS, score_in_process, write_jsonl
from test_score_faults import error_line, gaincurate, snapshot

from gaincurate.fileio import file_sha256, read_json
from gaincurate.scoring.output import OutputLock
from gaincurate.shards import read_manifest

MARKER = "part-00001-of-00002.json"


@pytest.fixture(scope="module")
def runs(tiny_llama, tmp_path_factory) -> dict[str, object]:
    """The eight problems at two rows a shard: as two array parts (unmerged), as one run, and with another config."""
    root = tmp_path_factory.mktemp("merge")
    data = write_jsonl(root / "problems.jsonl", PROBLEMS)
    args = [data, "--model", tiny_llama, "--dtype", "float32", "--device", "cpu", "--batch-tokens", "64",
            "--shard-rows", "2", "--quiet"]  # fmt: skip
    for index in (0, 1):
        score_in_process([*args, "--out", root / "parts", "--num-shards", "2", "--shard-index", index])
    score_in_process([*args, "--out", root / "single"])
    score_in_process([*args, "--out", root / "other", "--inter-weight", "0.5"])
    return {"root": root, "args": args}


def edit_json(path: Path, change: Callable[[dict], object]) -> None:
    value = read_json(path)
    change(value)
    path.write_text(json.dumps(value))


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-200] ^= 0xFF  # inside the last record batch's values: the file still reads as Arrow
    path.write_bytes(bytes(data))


def owner(folder: Path, shard: str) -> int:
    """The part whose marker records `shard`."""
    return next(int(m.name[5:10]) for m in folder.glob("part-*.json") if shard in read_json(m)["checksums"])


DAMAGES = {
    "marker-not-json": (lambda d: (d / MARKER).write_text("{"), f"{MARKER} is damaged"),
    "marker-a-list": (lambda d: (d / MARKER).write_text("[]"), f"{MARKER} is damaged"),
    "marker-empty": (lambda d: (d / MARKER).write_text("{}"), f"{MARKER} is damaged"),
    "marker-without-work": (lambda d: edit_json(d / MARKER, lambda m: m.pop("work")), f"{MARKER} is damaged"),
    "marker-without-checksums": (lambda d: edit_json(d / MARKER, lambda m: m.pop("checksums")), f"{MARKER} is damaged"),
    "manifest-without-fingerprint": (
        lambda d: edit_json(d / "manifest.json", lambda m: m.pop("fingerprint")),
        "it lacks fingerprint",
    ),
    "manifest-without-config": (lambda d: edit_json(d / "manifest.json", lambda m: m.pop("config")), "it lacks config"),
    "manifest-without-shards": (lambda d: edit_json(d / "manifest.json", lambda m: m.pop("shards")), "it lacks shards"),
    "manifest-drops-a-shard": (
        lambda d: edit_json(d / "manifest.json", lambda m: m.update(shards=m["shards"][:3])),
        "lists 3 shard(s), but rows 8 at shard_rows 2 need 4",
    ),
    "a-part-that-does-not-exist": (
        lambda d: shutil.copy(d / "part-00000-of-00002.json", d / "part-00002-of-00002.json"),
        "part-00002-of-00002.json: part 2 of 2 does not exist",
    ),
}


@pytest.mark.parametrize("damage", DAMAGES, ids=list(DAMAGES))
def test_a_damaged_marker_or_manifest_is_one_line_and_changes_nothing(damage, runs, tmp_path):
    folder = shutil.copytree(runs["root"] / "parts", tmp_path / "scores")
    make, expected = DAMAGES[damage]
    make(folder)
    before = snapshot(folder)
    line = error_line(gaincurate("merge", folder))
    assert expected in line, line
    if damage.startswith("marker"):
        assert "rerun part 1 (`gaincurate score ... --num-shards 2 --shard-index 1`)" in line, line
    assert snapshot(folder) == before


@pytest.mark.parametrize("damage", ["another-run-s-shard", "a-flipped-byte"])
def test_a_shard_its_part_did_not_write_is_refused_by_name_then_rebuilt(damage, runs, tmp_path):
    """A shard that still reads as Arrow but is not the one its part wrote (its SHA-256 differs from the marker's)
    is refused, naming the part to rerun; doing what the line says gives the one-process run's bytes."""
    folder = shutil.copytree(runs["root"] / "parts", tmp_path / "scores")
    shard = folder / "shard-00001.arrow"
    if damage == "a-flipped-byte":
        flip_a_byte(shard)
    else:
        shutil.copy(runs["root"] / "other" / shard.name, shard)
    part = owner(folder, shard.name)
    before = snapshot(folder)
    line = error_line(gaincurate("merge", folder))
    assert f"{shard.name} is not the shard part {part} wrote" in line, line
    assert f"remove it, rerun part {part} (`gaincurate score ... --num-shards 2 --shard-index {part}`)" in line, line
    assert snapshot(folder) == before
    shard.unlink()
    score_in_process([*runs["args"], "--out", folder, "--num-shards", "2", "--shard-index", part])
    assert gaincurate("merge", folder).returncode == 0
    single = runs["root"] / "single"
    assert read_manifest(folder)["checksums"] == read_manifest(single)["checksums"]


def test_each_marker_records_the_checksums_of_its_part_s_shards(runs):
    folder = runs["root"] / "parts"
    recorded = {}
    for marker in folder.glob("part-*.json"):
        recorded |= read_json(marker)["checksums"]
    assert recorded == {name: file_sha256(folder / name) for name in read_manifest(folder)["shards"]}


def test_merging_a_complete_directory_says_so_and_reports_no_new_run(runs, tmp_path):
    folder = shutil.copytree(runs["root"] / "parts", tmp_path / "scores")
    assert gaincurate("merge", folder).returncode == 0
    before = snapshot(folder)
    again = gaincurate("merge", folder)
    assert again.returncode == 0, again.stderr
    assert f"{folder} is already complete (8 rows); nothing to merge." in again.stdout, again.stdout
    assert "Scored" not in again.stdout and snapshot(folder) == before
    assert json.loads(gaincurate("merge", folder, "--json").stdout)["already_complete"] is True


def _debias(value: object) -> Callable[[dict], None]:
    return lambda m: m.update(debias=value)


# Hand edits of a complete manifest that every reader (here `show`) refuses in one line, with what the line names.
EDITS = {
    "no-diagnostics": (lambda m: m.pop("diagnostics"), "it lacks diagnostics.status_counts"),
    "no-status-counts": (lambda m: m["diagnostics"].pop("status_counts"), "it lacks diagnostics.status_counts"),
    "diagnostics-a-list": (lambda m: m.update(diagnostics=[]), "its 'diagnostics' is not an object"),
    "debias-without-intercept": (_debias({"method": "length", "slope": 0.1}), "its 'debias' is not a length fit"),
    "debias-a-string": (_debias("length"), "its 'debias' is not a length fit"),
    "model-empty": (lambda m: m.update(model={}), "it lacks model.id"),
    "no-site": (lambda m: m.pop("site"), "it lacks site"),
    "no-backend": (lambda m: m.pop("backend"), "it lacks backend"),
    "no-prompt-column": (lambda m: m["config"].pop("prompt_column"), "it lacks config.prompt_column"),
    "prompt-column-not-a-column": (
        lambda m: m["config"].update(prompt_column="question"),
        "its config.prompt_column 'question' is not one of its columns (problem, answer, difficulty)",
    ),
    "timings-a-string": (lambda m: m.update(timings="x"), "its 'timings' is not an object"),
    "rows-not-a-number": (lambda m: m.update(rows="8"), "its 'rows' is not a whole number"),
    "rows-one-short": (lambda m: m.update(rows=7), "it says 7 rows, its shards hold 8"),
    "a-shard-dropped": (
        lambda m: m.update(shards=m["shards"][:3]),
        "lists 3 shard(s), but rows 8 at shard_rows 2 need 4",
    ),
}


@pytest.mark.parametrize("edit", EDITS, ids=list(EDITS))
def test_a_hand_edited_complete_manifest_is_one_line(edit, runs, tmp_path):
    folder = shutil.copytree(runs["root"] / "single", tmp_path / "scores")
    change, expected = EDITS[edit]
    edit_json(folder / "manifest.json", change)
    before = snapshot(folder)
    line = error_line(gaincurate("show", folder))
    assert f"{folder / 'manifest.json'} is damaged: " in line and expected in line, line
    assert line.endswith(f"re-run `gaincurate score --overwrite` into {folder}, or score into a new --out"), line
    assert snapshot(folder) == before


def test_a_re_rank_counts_only_the_scored_rows(runs, tmp_path):
    """`--debias length` on a finished directory says how many rows it re-ranked: those with a score."""
    folder = shutil.copytree(runs["root"] / "single", tmp_path / "scores")
    unscored = read_manifest(folder)["diagnostics"]["unscored_rows"]
    assert unscored > 0  # the one-token problem "7" has no pairwise cosine
    result = gaincurate("score", *runs["args"], "--out", folder, "--debias", "length")
    assert result.returncode == 0, result.stderr
    assert f"Re-ranked the {len(PROBLEMS) - unscored} scored rows of {folder}" in result.stdout, result.stdout


def test_a_part_still_running_is_waited_for_not_rerun(runs, tmp_path):
    """A part that holds the directory's lock has not finished yet: rerunning it, the fix for a missing part, would
    start a second copy beside it, so the line says to merge once it ends; once it has, a missing part is one."""
    folder = shutil.copytree(runs["root"] / "parts", tmp_path / "scores")
    (folder / MARKER).unlink()
    before = snapshot(folder)
    with OutputLock(folder, shared=True):  # what a running part holds
        line = error_line(gaincurate("merge", folder))
    assert "part(s) 1 of 2 have not finished, and a part is being written right now" in line, line
    assert line.endswith("merge once it ends") and "rerun" not in line, line
    assert snapshot(folder) == before
    line = error_line(gaincurate("merge", folder))
    assert "part(s) 1 of 2 are missing; rerun" in line, line
