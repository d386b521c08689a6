"""Owning `--out` for one run: the lock, the first manifest, the already-complete check, the shards to (re)write.

A run takes `DIR/.gaincurate.lock` (`shards.OutputLock`) before it decides anything that depends on what
the directory holds, and publishes the manifest with its config fingerprint before the model loads. A
second run into the same directory therefore fails at once: on the lock while the first one runs, on the
fingerprint once it has finished. A run that fails before writing any shard into a directory it created
leaves nothing behind.

    with OutputClaim(out, part) as claim:
        prepared = prepare(plan)                  # reads --out again, under the lock
        manifest = claim.publish(start_manifest(prepared, prepared.options), prepared)
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from gaincurate.distributed import Part
from gaincurate.fileio import atomic_write_json, create_exclusive, json_bytes
from gaincurate.scoring.prepare import Plan, Prepared, shard_bounds
from gaincurate.shards import (
    LOCK,
    MANIFEST,
    OutputLock,
    check_fingerprint,
    check_layout,
    read_manifest,
    shard_intact,
    shard_name,
)


class OutputClaim:
    """The lock on `--out` for the length of a run, and the first manifest's publication.

    A single process or torchrun's leader holds the lock exclusively; an array-job part shares it with
    the other parts; torchrun's other ranks take none (their leader holds it for them).
    """

    def __init__(self, out: Path, part: Part) -> None:
        self.out = Path(out)
        self.exclusive = part.count == 1 or (part.distributed and part.is_leader)
        self.locks = self.exclusive or not part.distributed
        self._lock = OutputLock(self.out, shared=not self.exclusive)
        self._created: list[Path] = []  # what to remove if the run fails before writing a shard

    def __enter__(self) -> OutputClaim:
        if self.locks:
            if not self.out.exists():
                self.out.mkdir(parents=True)
                self._created.append(self.out)
            if not (self.out / LOCK).exists():
                self._created.append(self.out / LOCK)
            self._lock.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        self._lock.release()
        if kind is not None and self.exclusive and not any(self.out.glob("shard-*.arrow")):
            for path in reversed(self._created):  # the manifest, the lock file, then the directory
                with contextlib.suppress(OSError):
                    path.rmdir() if path.is_dir() else path.unlink()

    def publish(self, manifest: dict[str, Any], prepared: Prepared) -> dict[str, Any]:
        """Write the first manifest (`complete: false`) before the model loads; clear stale files first."""
        if not self.locks:
            return manifest  # torchrun's other ranks: their leader writes
        if self.exclusive:  # array parts run concurrently: none may delete another's temporary files
            for path in prepared.stale:
                path.unlink(missing_ok=True)
        path = self.out / MANIFEST
        if not path.exists() and create_exclusive(path, json_bytes(manifest)):
            self._created.append(path)
            return manifest
        # Resuming, or another array part published first: either way it must be scoring the same thing.
        check_fingerprint(self.out, read_manifest(self.out).get("fingerprint", {}), manifest["fingerprint"])
        atomic_write_json(path, manifest)
        return manifest


def check_resume(plan: Plan) -> dict[str, Any] | None:
    """Before any tokenizer or model: refuse a run that clashes with `--out`, and recognise one already done.

    Compares the fingerprint this run gets if it resumes the directory (an `auto` dtype or batch size keeps
    the recorded choice) and the shard layout. Returns the manifest, marked `already_complete`, when the
    same run finished there and every shard is intact; None when there is work (a new directory, an
    unfinished run, a damaged or missing shard).
    """
    previous = plan.previous
    if plan.options.overwrite or previous is None:
        return None
    check_fingerprint(plan.out, previous.get("fingerprint", {}), plan.resumed_fingerprint())
    bounds = shard_bounds(len(plan.rows), check_layout(plan.out, previous, plan.options.shard_rows))
    if previous.get("complete") is not True or previous.get("shards") != [shard_name(i) for i in range(len(bounds))]:
        return None
    checksums = previous.get("checksums", {})
    for index, (low, high) in enumerate(bounds):
        name = shard_name(index)
        if not shard_intact(plan.out / name, checksums.get(name), low, high, plan.schema):
            return None
    if (previous.get("debias") is not None) != (plan.config.debias == "length"):
        return None  # the ranking `--debias` asks for is not the one recorded: finalize again, no shard is rescored
    return {**previous, "already_complete": True}


def shards_to_write(prepared: Prepared, mine: list[int], bounds: list[tuple[int, int]]) -> list[int]:
    """This process's shards that are not on disk intact: missing, or damaged (checksum or content)."""
    checksums = {} if prepared.options.overwrite else (prepared.previous or {}).get("checksums", {})
    return [
        i
        for i in mine
        if not shard_intact(prepared.out / shard_name(i), checksums.get(shard_name(i)), *bounds[i], prepared.schema)
    ]
