"""The resumable output of a rollout run: whole prompt groups of feedback lines, and a settings sidecar.

Lines are appended a prompt group (all `samples` rollouts of one prompt) at a time, so after a crash only
the tail can be torn. A restart keeps the complete groups, cuts the torn tail and skips what is done.
The settings that decide the sampled tokens are kept in `OUT.rollout.json`; resuming with other settings
is refused.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from gaincurate.errors import ConfigError, InputError
from gaincurate.feedback_lines import parse_line
from gaincurate.fileio import atomic_write_json, hold_lock, remove_leftovers
from gaincurate.rollout.config import RolloutConfig

SIDECAR_SUFFIX = ".rollout.json"


def complete_prefix(path: Path, samples: int) -> tuple[list[int], int, list[float]]:
    """gc_ids whose `samples` lines are all in `path`, the byte length of that prefix, and its rewards.

    Lines are written a prompt group at a time, so only the tail can be torn: half a line, or part of a
    group. Anything else (a bad line in the middle, a gc_id repeated later) means the file is not ours.
    """
    if not path.exists():
        return [], 0, []
    done: list[int] = []
    rewards: list[float] = []
    offset, kept, group_id, group = 0, 0, None, []
    for raw in path.read_bytes().splitlines(keepends=True):
        if not raw.endswith(b"\n"):
            break  # a torn last line
        try:
            gc_id, reward = parse_line(raw, reward_max=1.0)
        except ValueError:
            raise InputError(
                f"{path} has a malformed line at byte {offset}; it is not a rollout file, pick another --out"
            ) from None
        if gc_id != group_id:
            if group:
                raise InputError(
                    f"{path}: gc_id {group_id} has {len(group)} of {samples} lines before gc_id "
                    f"{gc_id}; it was written with other settings, pick another --out"
                )
            group_id = gc_id
        group.append(reward)
        offset += len(raw)
        if len(group) == samples:
            if gc_id in done:
                raise InputError(f"{path} holds gc_id {gc_id} twice; pick another --out")
            done.append(gc_id)
            rewards.extend(group)
            kept, group_id, group = offset, None, []
    return done, kept, rewards


def sidecar(out: Path) -> Path:
    return out.with_name(out.name + SIDECAR_SUFFIX)


def check_settings(out: Path, settings: dict[str, Any], overwrite: bool) -> bool:
    """Whether an existing output is resumed; refuses one written with other settings. An empty `out` without a
    sidecar, which a run killed before writing its sidecar leaves, holds nothing to resume."""
    path = sidecar(out)
    if overwrite or not out.exists() or (out.stat().st_size == 0 and not path.exists()):
        return False
    if not path.is_file():
        raise ConfigError(f"--out {out} exists but has no {path.name}; pick another --out or pass --overwrite")
    previous = json.loads(path.read_text()).get("settings", {})
    differing = sorted(k for k in set(previous) | set(settings) if previous.get(k) != settings.get(k))
    if differing:
        key = differing[0]
        raise ConfigError(
            f"--out {out} was written with {key}={previous.get(key)!r}, this run has {key}={settings.get(key)!r}; "
            "pick another --out, or --overwrite to start again"
        )
    return True


@contextlib.contextmanager
def claim_output(out: Path) -> Iterator[None]:
    """Hold `out` for the whole run, before anything on disk is read: two runs into one file would interleave their
    groups, so the second is refused in one line. The empty file this run created goes again when it fails before
    writing anything, so a failed first run leaves nothing."""
    new = not out.exists() and not out.is_symlink()  # a link's target is the user's: left alone
    out.parent.mkdir(parents=True, exist_ok=True)
    busy = f"--out {out} is being written by another `gaincurate rollout` right now; wait for it, or use another --out"
    try:
        lock = hold_lock(out, lambda: ConfigError(busy))  # on the output file itself: it adds no file beside it
    except FileNotFoundError:  # a link into a folder that is gone: the error would name the link, not what is missing
        target = os.readlink(out) if out.is_symlink() else out
        raise ConfigError(
            f"--out {out} is a link to {target}, whose folder does not exist; make that folder or pick another --out"
        ) from None
    try:
        yield
    except BaseException:
        with contextlib.suppress(OSError):
            if new and not out.stat().st_size and not sidecar(out).exists():
                out.unlink()
        raise
    finally:
        os.close(lock)


def start_output(
    out: Path, *, resuming: bool, keep_bytes: int, settings: dict[str, Any], config: RolloutConfig
) -> None:
    """Make `out` hold only its complete groups (nothing when not resuming) and record the settings."""
    remove_leftovers(out.parent, sidecar(out).name)
    if not resuming:
        out.write_bytes(b"")
    elif out.stat().st_size != keep_bytes:
        os.truncate(out, keep_bytes)
    atomic_write_json(sidecar(out), {"settings": settings, "config": asdict(config)})
