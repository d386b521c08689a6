"""The scores folder on disk as a run writes it: its layout, the lock, every manifest write, the fingerprint check.

`--out DIR` holds `manifest.json`, `shard-NNNNN.arrow` (rows i*shard_rows ..; their format and reading:
`gaincurate.shards`), an array job's `part-*-of-*.json` markers and `.gaincurate.lock` (`OutputLock`). A run
takes the lock before it decides anything that depends on what the directory holds, and publishes the
manifest (`complete: false`, with the config fingerprint that a resumed run must match) before the model
loads; at the end it is written again with the SHA-256 of every shard. A second run into the same directory
therefore fails at once: on the lock while the first one runs, on the fingerprint once it has finished. A run
that fails before writing any shard into a directory it created leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from gaincurate.distributed import Part
from gaincurate.errors import ConfigError
from gaincurate.fileio import atomic_write_json, create_exclusive, hold_lock, json_bytes
from gaincurate.shards import (
    DEFAULT_SHARD_ROWS,
    MANIFEST,
    manifest_shard_rows,
    read_manifest,
    shard_bounds,
    shard_intact,
    shard_name,
)

LOCK = ".gaincurate.lock"


def write_manifest(out: Path, manifest: dict[str, Any]) -> None:
    """Replace `--out`'s manifest atomically: readers see the old one or the new one, never a part."""
    atomic_write_json(Path(out) / MANIFEST, manifest)


@dataclass(frozen=True)
class OutputPlan:
    """What `--out` holds before a run: the manifest of the run it resumes (None: nothing yet, or `--overwrite`), the
    files `--overwrite` deletes (or the leftover temporary files), and the rows per shard the run must use."""

    previous: dict[str, Any] | None
    stale: list[Path]
    shard_rows: int


def inspect_output(out: Path, *, probe_lock: bool = True) -> dict[str, Any] | None:
    """The manifest already in `--out` (None: a new or empty directory), after the checks that need no config.

    Refused: a file in place of the directory, a non-empty directory that is not ours, a manifest that is
    not one, and (`probe_lock`) a directory another run is writing. Nothing is changed.
    """
    if not out.exists():
        return None
    if not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a directory; choose another --out")
    if probe_lock:
        OutputLock(out, shared=True).probe()
    if not (out / MANIFEST).exists():
        # Another array part may be writing the manifest right now: its temporary file is not foreign.
        if any(not p.name.startswith((".shard-", ".part-", f".{MANIFEST}.", LOCK)) for p in out.iterdir()):
            raise ConfigError(f"--out {out} is not empty and holds no {MANIFEST}; choose an empty or new directory")
        return None
    return read_manifest(out)


def plan_output(
    out: Path, fingerprint: dict[str, Any], *, overwrite: bool, shard_rows: int | None, probe_lock: bool = True
) -> OutputPlan:
    """Check that `--out` can be used, changing nothing, so a refusal leaves the directory byte-for-byte as it was.

    A directory written with the same fingerprint and shard layout is resumed; one written with another
    config is refused unless `overwrite`; a non-empty directory that is not ours is always refused, and
    so is one that another run holds (`probe_lock`; torchrun's other ranks skip it, their leader holds it).
    """
    previous = inspect_output(out, probe_lock=probe_lock)
    if previous is None:
        return OutputPlan(None, [], shard_rows or DEFAULT_SHARD_ROWS)
    if overwrite:
        # The manifest goes last: killed at any point, the directory is still the old run's or holds nothing of it.
        ours = [p for p in out.iterdir() if p.name.startswith(("shard-", "part-"))] + leftovers(out)
        return OutputPlan(None, sorted(ours) + [out / MANIFEST], shard_rows or DEFAULT_SHARD_ROWS)
    check_fingerprint(out, previous.get("fingerprint", {}), fingerprint)
    return OutputPlan(previous, leftovers(out), check_layout(out, previous, shard_rows))


def leftovers(out: Path) -> list[Path]:
    """The temporary files of killed writes (shards, manifests, part markers): never whole files, cleared before a
    run (by `merge` for an array job's parts, which must not delete one another's)."""
    return sorted(p for pattern in (".shard-*.tmp", ".part-*.tmp", f".{MANIFEST}.*.tmp") for p in out.glob(pattern))


def check_layout(out: Path, previous: dict[str, Any], shard_rows: int | None) -> int:
    """The rows per shard of `--out`; a run asking for another layout is refused (None: take the directory's)."""
    existing = manifest_shard_rows(previous)
    if shard_rows is not None and shard_rows != existing:
        raise ConfigError(
            f"--out {out} was started with --shard-rows {existing}, this run has --shard-rows {shard_rows}; "
            "pass the same value (or leave it out), use another --out, or --overwrite to replace it"
        )
    return existing


def check_fingerprint(out: Path, previous: dict[str, Any], fingerprint: dict[str, Any]) -> None:
    """Refuse a run whose fingerprint differs from the one `--out` was scored with, naming the first difference."""
    differing = sorted(k for k in set(previous) | set(fingerprint) if previous.get(k) != fingerprint.get(k))
    if differing:
        key, more = differing[0], differing[1:]
        raise ConfigError(
            f"--out {out} was scored with {key}={previous.get(key)!r}, this run has {key}={fingerprint.get(key)!r}"
            f"{' (also ' + ', '.join(more) + ' differ)' if more else ''}; "
            "use another --out, or --overwrite to replace it"
        )


def is_finished(out: Path, previous: dict[str, Any], fingerprint: dict[str, Any], shard_rows: int | None, rows: int,
                schema: pa.Schema) -> bool:  # fmt: skip
    """Refuse a run that clashes with `--out` (its fingerprint or shard layout); True when the same run finished
    there and every shard is intact, False when there is work (an unfinished run, a damaged or missing shard)."""
    check_fingerprint(out, previous.get("fingerprint", {}), fingerprint)
    bounds = shard_bounds(rows, check_layout(out, previous, shard_rows))
    if previous.get("complete") is not True or previous.get("shards") != [shard_name(i) for i in range(len(bounds))]:
        return False
    return not shards_to_write(out, previous.get("checksums", {}), list(range(len(bounds))), bounds, schema)


def shards_to_write(
    out: Path, checksums: dict[str, str], mine: list[int], bounds: list[tuple[int, int]], schema: pa.Schema
) -> list[int]:
    """This process's shards that are not on disk intact: missing, or damaged (checksum or content)."""
    return [i for i in mine if not shard_intact(out / shard_name(i), checksums.get(shard_name(i)), *bounds[i], schema)]


def being_written(out: Path) -> bool:
    """Whether a run or an array-job part holds `out`'s lock right now."""
    try:
        OutputLock(out, shared=False).probe()
    except ConfigError:
        return True
    return False


class OutputLock:
    """An advisory `fcntl.flock` on `DIR/.gaincurate.lock`: one run writes a scores directory at a time.

    A single-process run (or torchrun's leader) holds it exclusively for the whole run. Array-job parts
    (`--num-shards`) share it with each other, so they exclude a single run but not one another. The lock
    dies with its process, so a killed run never leaves the directory locked. The empty file stays (only a
    run that created the directory and failed before writing into it removes it again).
    """

    def __init__(self, out: Path, *, shared: bool) -> None:
        self.path = Path(out) / LOCK
        self.shared = shared
        self._fd: int | None = None

    def acquire(self) -> OutputLock:
        self._fd = hold_lock(self.path, self._busy, shared=self.shared)
        return self

    def probe(self) -> None:
        """Refuse now if another run holds the lock the way this one would need it; take nothing."""
        if self.path.exists():
            os.close(hold_lock(self.path, self._busy, shared=self.shared))  # closing drops the probe's lock

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _busy(self) -> ConfigError:
        return ConfigError(
            f"--out {self.path.parent} is being written by another `gaincurate score` run right now; "
            "wait for it to finish, or use another --out"
        )

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


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

    def publish(self, manifest: dict[str, Any], stale: list[Path]) -> dict[str, Any]:
        """Write the first manifest (`complete: false`) before the model loads; clear stale files first."""
        if not self.locks:
            return manifest  # torchrun's other ranks: their leader writes
        if self.exclusive:  # array parts run concurrently: none may delete another's temporary files
            for path in stale:
                path.unlink(missing_ok=True)
        path = self.out / MANIFEST
        if not path.exists() and create_exclusive(path, json_bytes(manifest)):
            self._created.append(path)
            return manifest
        # Resuming, or another array part published first: either way it must be scoring the same thing.
        check_fingerprint(self.out, read_manifest(self.out).get("fingerprint", {}), manifest["fingerprint"])
        write_manifest(self.out, manifest)
        return manifest
