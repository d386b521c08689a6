"""Atomic file writes shared by every part that persists state, and the checksum of a written file.

A file is written to a temporary sibling, flushed to disk, then renamed over the target with
`os.replace`, so a reader (or a resumed run) sees either the old file or the complete new one,
never half of one. A write that fails (a full disk, a directory made read-only) leaves no temporary
file behind and raises `OSError` with the error number and the target's name, whatever layer failed
(pyarrow reports ENOSPC without a file name), so the command line can say which file and what to do.

Also here: `naming` (the same naming for a write to a raw descriptor), `hold_lock` (a file's advisory lock),
`create_exclusive` (write a file only if none is there, atomically), `publish_folder` (the same rename trick for a
whole folder), `file_sha256`, and `cache_dir`, the user cache folder.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# mkstemp creates files readable by the owner only; published files get the usual umask instead.
_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp_path)` and rename the result onto `path` once it has returned."""
    path = Path(path)
    if path.is_dir():  # `.` too, whose empty name would put the temporary file inside it (os.replace: EBUSY)
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    tmp_path = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(handle)
        tmp_path = Path(tmp_name)
        write(tmp_path)
        with open(tmp_path, "rb+") as file:
            os.fsync(file.fileno())
        os.chmod(tmp_path, 0o666 & ~_UMASK)
        os.replace(tmp_path, path)
    except BaseException as error:
        if tmp_path is not None:
            with contextlib.suppress(OSError):  # a directory made read-only meanwhile keeps its leftover
                tmp_path.unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise _naming(error, path) from None
        raise


def remove_leftovers(folder: Path, *patterns: str) -> None:
    """Delete the temporary files that `atomic_write` of a file named like a glob pattern left when its process was
    killed (`.NAME.XXXX.tmp`); call it only where no other process may be writing such a file right now."""
    for pattern in patterns:
        for path in Path(folder).glob(f".{pattern}.*.tmp"):
            with contextlib.suppress(OSError):  # a folder made read-only keeps its leftovers; the write reports it
                path.unlink()


def _naming(error: OSError, path: Path) -> OSError:
    """The same failure, as a plain `OSError(errno, strerror, path)` naming the file that was being written."""
    number = error.errno
    if number is None:  # pyarrow puts "[errno 28]" in the message only
        found = re.search(r"\[errno (\d+)\]", str(error), re.IGNORECASE)
        number = int(found.group(1)) if found else None
    if number is None:
        return error
    return OSError(number, os.strerror(number), str(path))  # OSError picks the subclass: PermissionError, ...


@contextlib.contextmanager
def naming(path: str | Path) -> Iterator[None]:
    """Raise an `OSError` inside as one naming `path` (`_naming`): a raw descriptor's error names no file."""
    try:
        yield
    except OSError as error:
        raise _naming(error, Path(path)) from None


def hold_lock(path: Path, busy: Callable[[], Exception], *, shared: bool = False) -> int:
    """An advisory `flock` on `path` (created when missing), exclusive or `shared`, for as long as the returned
    descriptor is open; `busy()` is raised when another process holds it in a way that excludes this one. The lock
    dies with its process: a killed run leaves none."""
    import fcntl

    handle = os.open(path, os.O_RDONLY | os.O_CREAT, 0o666)  # read-only is enough: a finished read-only file locks
    try:
        fcntl.flock(handle, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(handle)
        raise busy() from None
    return handle


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write `obj` as indented, key-sorted JSON so equal objects give equal bytes."""
    atomic_write_bytes(path, json_bytes(obj))


def json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True, allow_nan=True) + "\n").encode()


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes (`hashlib.file_digest`: into one reused buffer, half the time of 1 MiB reads,
    which a million prompts' scores pay on every schedule step)."""
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def cache_dir() -> Path:
    """Where gaincurate keeps what it measured or converted once per machine, outside any repository:
    `$GAINCURATE_CACHE_DIR`, else `$XDG_CACHE_HOME/gaincurate`, else `~/.cache/gaincurate`."""
    if os.environ.get("GAINCURATE_CACHE_DIR"):
        return Path(os.environ["GAINCURATE_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "gaincurate"


def publish_folder(folder: Path, write: Callable[[Path], None]) -> bool:
    """Fill a temporary sibling with `write(tmp)`, flush its files, and rename it to `folder` in one step.

    Returns False, keeping what is there, when another process published `folder` first.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        write(tmp)
        for file in tmp.rglob("*"):
            if file.is_file():
                with open(file, "rb") as handle:
                    os.fsync(handle.fileno())
        os.chmod(tmp, 0o777 & ~_UMASK)
        try:
            os.rename(tmp, folder)
        except OSError:
            if folder.is_dir():
                return False
            raise
        return True
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def create_exclusive(path: Path, data: bytes) -> bool:
    """Write `data` to `path` only if no file is there yet, atomically; False when one already is."""
    path = Path(path)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(tmp_name, 0o666 & ~_UMASK)
        try:
            os.link(tmp_name, path)  # unlike a rename, a link never replaces an existing file
        except FileExistsError:
            return False
        return True
    except OSError as error:
        raise _naming(error, path) from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
