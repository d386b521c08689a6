"""Completing an array-job scoring run: every `--num-shards K --shard-index I` part is there, so finalize."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from gaincurate import distributed
from gaincurate.errors import InputError
from gaincurate.fileio import file_sha256, read_json
from gaincurate.scoring.config import split_config
from gaincurate.scoring.finalize import WORK_FIELDS, finalize
from gaincurate.scoring.output import LOCK, being_written, leftovers
from gaincurate.shards import read_manifest

_MARKER = re.compile(r"part-(\d{5,})-of-(\d{5,})\.json")


def merge(out: Path) -> dict[str, Any]:
    """Complete the manifest of a directory scored as an array job (`--num-shards K --shard-index I`): every part's
    marker whole and of this run, every shard the one its part wrote (by the SHA-256 the marker records)."""
    manifest = read_manifest(out, needs=("fingerprint", "config", "shards", "rows"))
    if manifest.get("complete"):
        return {**manifest, "already_complete": True}
    count = _part_count(out)
    parts = [_read_marker(out, index, count) for index in range(count)]
    if any(p["fingerprint"] != manifest["fingerprint"] for p in parts):
        raise InputError(f"{out}: the parts were scored with different configs; rescore them into a new --out")
    checksums = {}
    for name in manifest["shards"]:
        index = next((i for i, p in enumerate(parts) if name in p["checksums"]), None)
        if index is None:
            raise InputError(f"{out}: no part's marker records {name}; rerun every part, then merge again")
        rerun = f"rerun part {index} ({_command(count, index)}), then merge again"
        if not (out / name).is_file():
            raise InputError(f"{out}: {name} is missing although part {index} finished; {rerun}")
        checksums[name] = file_sha256(out / name)
        if checksums[name] != parts[index]["checksums"][name]:
            raise InputError(f"{out}: {name} is not the shard part {index} wrote (its SHA-256 differs from the "
                             f"part's marker): another run's, or damaged; remove it, {rerun}")  # fmt: skip
    for leftover in leftovers(out):  # from parts that were killed and rerun
        leftover.unlink(missing_ok=True)
    config, _ = split_config(manifest["config"])
    return finalize(out, manifest, config, [p["work"] for p in parts], None, checksums)


def _part_count(out: Path) -> int:
    """K of the parts whose markers `out` holds, once every one of 0..K-1 is there and none beyond."""
    named = [(path, match) for path in sorted(out.glob("part-*-of-*.json")) if (match := _MARKER.fullmatch(path.name))]
    counts = {int(match[2]) for _, match in named}
    if len(counts) != 1:
        _refuse_while_written(out, "no part has finished")
        raise InputError(
            f"{out} holds no part markers of one --num-shards run (found {len(named)}); "
            "run every `gaincurate score ... --num-shards K --shard-index I` part first"
        )
    count = counts.pop()
    beyond = [(path, int(match[1])) for path, match in named if int(match[1]) >= count]
    if beyond:
        path, index = beyond[0]
        raise InputError(f"{path}: part {index} of {count} does not exist (parts are 0 to {count - 1}); remove it, "
                         "then merge again")  # fmt: skip
    missing = distributed.missing_parts(out, count)
    if missing:
        _refuse_while_written(out, f"part(s) {', '.join(map(str, missing))} of {count} have not finished")
        raise InputError(
            f"{out}: part(s) {', '.join(map(str, missing))} of {count} are missing; "
            f"rerun `gaincurate score ... --num-shards {count} --shard-index N` for each, then merge again"
        )
    return count


def _refuse_while_written(out: Path, unfinished: str) -> None:
    """Refuse, in one line, a merge that finds parts missing while a part still runs (it holds the directory's
    lock): rerunning the part, the fix for a part that is gone, would start a second copy beside it."""
    if being_written(out):
        raise InputError(
            f"{out}: {unfinished}, and a part is being written right now (it holds {out / LOCK}); merge once it ends"
        )


def _read_marker(out: Path, index: int, count: int) -> dict[str, Any]:
    """Part `index`'s marker, refused in one line unless it holds what its part records: the fingerprint, the work
    counters and the SHA-256 of every shard it wrote."""
    path = out / distributed.part_marker(distributed.Part(index, count))
    try:
        part = read_json(path)
    except (ValueError, RecursionError):
        part = None
    part = part if isinstance(part, dict) else {}
    work, checksums = part.get("work"), part.get("checksums")
    whole = (isinstance(part.get("fingerprint"), dict) and isinstance(work, dict) and isinstance(checksums, dict)
             and all(type(work.get(key)) in (int, float) for key in WORK_FIELDS)
             and all(isinstance(value, str) for value in checksums.values()))  # fmt: skip
    if not whole:
        raise InputError(f"{path} is damaged; rerun part {index} ({_command(count, index)}), then merge again")
    return part


def _command(count: int, index: int) -> str:
    return f"`gaincurate score ... --num-shards {count} --shard-index {index}`"
