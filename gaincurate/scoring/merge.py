"""Completing an array-job scoring run: every `--num-shards K --shard-index I` part is there, so finalize."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gaincurate import distributed
from gaincurate.errors import InputError
from gaincurate.fileio import read_json
from gaincurate.scoring.config import split_config
from gaincurate.scoring.finalize import finalize
from gaincurate.shards import read_manifest


def merge(out: Path) -> dict[str, Any]:
    """Complete the manifest of a directory scored as an array job (`--num-shards K --shard-index I`)."""
    manifest = read_manifest(out)
    if manifest.get("complete"):
        return manifest
    markers = sorted(out.glob("part-*-of-*.json"))
    counts = {int(m.stem.rsplit("-", 1)[1]) for m in markers}
    if len(counts) != 1:
        raise InputError(
            f"{out} holds no part markers of one --num-shards run (found {len(markers)}); "
            "run every `gaincurate score ... --num-shards K --shard-index I` part first"
        )
    count = counts.pop()
    missing = distributed.missing_parts(out, count)
    if missing:
        raise InputError(
            f"{out}: part(s) {', '.join(map(str, missing))} of {count} are missing; "
            f"rerun `gaincurate score ... --num-shards {count} --shard-index N` for each, then merge again"
        )
    parts = [read_json(marker) for marker in markers]
    if any(p["fingerprint"] != manifest["fingerprint"] for p in parts):
        raise InputError(f"{out}: the parts were scored with different configs; rescore them into a new --out")
    absent = [name for name in manifest["shards"] if not (out / name).exists()]
    if absent:
        raise InputError(f"{out}: {absent[0]} is missing although every part finished; rerun its part")
    for leftover in out.glob(".shard-*.tmp"):  # from parts that were killed and rerun
        leftover.unlink(missing_ok=True)
    config, _ = split_config(manifest["config"])
    return finalize(out, manifest, config, [p["work"] for p in parts], None)
