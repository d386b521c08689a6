"""Feedback lines: the one parser (every bad line named, never silently counted) and the one writer."""

from __future__ import annotations

import errno
import json
import math
import os
import resource
import subprocess
import sys

import numpy as np
import pytest

from gaincurate import feedback_lines
from gaincurate.errors import InputError
from gaincurate.feedback_lines import (
    append_rollouts,
    format_line,
    parse_line,
    parse_record,
    read_rollouts,
    tally,
    validated,
)

KNOWN = range(10)


def write_lines(path, lines):
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


@pytest.mark.parametrize(
    ("record", "reward_max", "expected"),
    [
        ({"gc_id": 3, "reward": 2.0}, 2.0, (3, 1.0)),
        ({"gc_id": 3, "reward": 0.5}, 2.0, (3, 0.25)),
        ({"gc_id": 3, "reward": 0}, 1.0, (3, 0.0)),
        ({"gc_id": np.int64(4), "reward": np.float32(0.5)}, 1.0, (4, 0.5)),
        ({"gc_id": 5, "correct": True, "step": 4}, 1.0, (5, 1.0)),
        ({"gc_id": 5, "correct": np.bool_(False)}, 7.0, (5, 0.0)),
    ],
)
def test_a_record_is_its_gc_id_and_correctness(record, reward_max, expected):
    assert parse_record(record, reward_max) == expected


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ('{"gc_id": 3, "correct": tr', "line 2: not valid JSON"),
        ({"gc_id": "3", "correct": True}, "line 2: gc_id '3' is not an integer"),
        ({"reward": 1.0}, r"line 2: has no gc_id \(pass the epoch file's gc_id through to each rollout\)"),
        ({"gc_id": 3}, "line 2: needs exactly one of 'reward' and 'correct'"),
        ({"gc_id": 3, "reward": 1, "correct": True}, "line 2: needs exactly one"),
        ({"gc_id": 3, "correct": 1}, "line 2: correct 1 is not true/false"),
        ({"gc_id": 3, "reward": True}, "line 2: reward True is not a finite number"),
        ('{"gc_id": 3, "reward": 1' + "0" * 400 + "}", r"line 2: reward 1000000000\S*\.\.\. is not a finite number"),
        ({"gc_id": 3, "reward": 1.5}, r"line 2: reward 1.5 is outside \[0, reward_max=1\]"),
        ({"gc_id": 99, "correct": True}, "line 2: gc_id 99 is not in the prompt set"),
        ([3, True], "line 2: expected a JSON object"),
    ],
)
def test_bad_lines_are_one_clear_error(tmp_path, bad, message):
    path = write_lines(tmp_path / "f.jsonl", [{"gc_id": 3, "correct": True}, bad, {"gc_id": 5, "correct": True}])
    with pytest.raises(InputError, match=message) as error:
        list(read_rollouts(path, known_ids=KNOWN, reward_max=1.0))
    assert "\n" not in str(error.value)
    assert str(path) in str(error.value)


def test_every_bad_line_is_counted(tmp_path):
    path = write_lines(
        tmp_path / "f.jsonl", ["nope", {"gc_id": 3, "correct": True}, "{}", {"gc_id": 77, "correct": True}]
    )
    with pytest.raises(InputError, match=r"line 1: not valid JSON .* \(2 more bad line\(s\)\)"):
        list(read_rollouts(path, known_ids=KNOWN, reward_max=1.0))


def test_good_lines_come_out_in_order_and_blank_lines_are_skipped(tmp_path):
    path = write_lines(tmp_path / "f.jsonl", [{"gc_id": 3, "correct": True}, "", "  ", {"gc_id": 8, "reward": 0.5}])
    assert list(read_rollouts(path, known_ids=KNOWN, reward_max=1.0)) == [(3, 1.0), (8, 0.5)]


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_rollouts(tmp_path / "none.jsonl", known_ids=KNOWN, reward_max=1.0)
    with pytest.raises(InputError, match="is a folder; pass the file the trainer wrote its rollouts to"):
        read_rollouts(tmp_path, known_ids=KNOWN, reward_max=1.0)


def test_a_parquet_or_binary_file_is_named_as_such_not_quoted(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"gc_id": [1, 2]}), tmp_path / "epoch-0000.parquet")
    (tmp_path / "blob").write_bytes(b"\x00\x01gc_id\n")
    for name, kind in (("epoch-0000.parquet", "a Parquet file"), ("blob", "binary")):
        with pytest.raises(InputError) as refused:
            read_rollouts(tmp_path / name, known_ids=KNOWN, reward_max=1.0)
        assert str(refused.value).startswith(f"feedback file {tmp_path / name} is {kind}, not JSON lines; write one")


def test_in_process_records_are_validated_alike():
    located = [("record 0", {"gc_id": 3, "reward": 1.0}), ("record 1", {"gc_id": 42, "reward": 1.0})]
    rollouts = validated(located, known_ids=KNOWN, reward_max=1.0)
    assert next(rollouts) == (3, 1.0)
    with pytest.raises(InputError, match="record 1: gc_id 42 is not in the prompt set"):
        next(rollouts)


def test_tally_sums_per_prompt_in_order_of_first_appearance():
    per_prompt = tally([(5, 1.0), (2, 0.0), (5, 0.5), (5, 0.0)])
    assert list(per_prompt.items()) == [(5, (1.5, 3)), (2, (0.0, 1))]


def test_a_written_line_is_exact_and_reads_back():
    line = format_line(np.int64(7), 1)
    assert line == '{"gc_id": 7, "reward": 1.0}\n'
    assert parse_line(line, reward_max=1.0) == (7, 1.0)


def test_append_skips_not_applicable_rewards_and_counts_lines(tmp_path):
    path = tmp_path / "f.jsonl"
    assert append_rollouts(path, [4, 5, 6, 7], [0.5, None, math.nan, 1]) == 2
    assert append_rollouts(path, [4, 5], np.array([np.nan, np.nan], np.float32)) == 0  # numpy's NaN is one too
    assert append_rollouts(path, [8], [0.0], sync=True) == 1
    assert append_rollouts(path, [], []) == 0
    assert path.read_text() == (
        '{"gc_id": 4, "reward": 0.5}\n{"gc_id": 7, "reward": 1.0}\n{"gc_id": 8, "reward": 0.0}\n'
    )
    assert list(read_rollouts(path, known_ids=KNOWN, reward_max=1.0)) == [(4, 0.5), (7, 1.0), (8, 0.0)]
    with pytest.raises(ValueError):
        append_rollouts(path, [1, 2], [1.0])


class _ShortWrites:
    """`os` whose `write` takes 7 bytes at a time, as a disk filling mid-write does (a part taken, no error)."""

    def __getattr__(self, name):
        return getattr(os, name)

    def write(self, descriptor, data):
        return os.write(descriptor, bytes(data[:7]))


def test_a_short_write_is_completed(tmp_path, monkeypatch):
    """Half a line followed by the next batch's lines would be a torn line mid-file, which a resume refuses."""
    path = tmp_path / "out.jsonl"
    monkeypatch.setattr(feedback_lines, "os", _ShortWrites())
    assert append_rollouts(path, [1, 2, 3], [1.0, 0.0, 0.5], sync=True) == 3
    assert path.read_text() == "".join(format_line(i, r) for i, r in [(1, 1.0), (2, 0.0), (3, 0.5)])


def test_a_write_cut_short_by_a_full_disk_is_an_error_naming_the_file(tmp_path):
    """`ulimit -f`: the kernel takes what fits (a short count, no error), then refuses the rest (EFBIG), as a full
    disk does (ENOSPC). The error names the file: a raw descriptor's names none."""
    path = tmp_path / "out.jsonl"
    append = (
        f"from gaincurate.feedback_lines import append_rollouts; append_rollouts({str(path)!r}, range(20), [1.0] * 20)"
    )

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (100, 100))

    result = subprocess.run([sys.executable, "-c", append], preexec_fn=limit, capture_output=True, text=True)
    assert result.returncode == 1 and f"OSError: [Errno {errno.EFBIG}] File too large: {str(path)!r}" in result.stderr
    assert path.stat().st_size == 100  # the torn tail a resume cuts
