"""Run a command under supervision: its own process group, signals passed on, nothing left behind.

`supervise(command, env=..., log=...)` starts `command` through the shell in a new session (and so in its
own process group), sends its stdout and stderr to `log`, and returns its exit code. `schedule run` runs its trainer
command so (`gaincurate.integrations.command`), and re-scoring its torchrun (`gaincurate.scoring.rescore`). Meanwhile:

* SIGINT, SIGTERM and SIGHUP sent to us are forwarded to the command's whole group. If the group is not gone
  `grace_s` seconds later it gets SIGKILL; a second signal kills it at once. Then `Stopped` is raised. A signal
  that comes at any moment of `supervise`, while the command starts or after it has exited, ends the same way: the
  handler only notes it, and `supervise` acts on the note once its clean-up is done, so nothing is raised from
  inside the clean-up.
* A signal that was ignored when we started stays ignored: `nohup` ignores SIGHUP and a shell's background job
  SIGINT, so that they outlive the terminal and the Ctrl-C meant for the foreground (CPython leaves an ignored
  SIGINT alone for the same reason).
* If we die without a chance to forward anything (SIGKILL, the OOM killer), a small watchdog process notices
  that its pipe from us closed and stops the group the same way. PR_SET_PDEATHSIG would not do: the kernel
  sends it to one process only and clears it on fork, so it would reach the shell but not the trainer the
  shell started. The watchdog runs in a session of its own, so a signal to our whole job does not take it down.
* When the command exits, anything it left running in its group is stopped too, so no stray worker holds
  memory (a GPU's) into the next epoch.

`echo`: a `BoundedEcho` that copies the log to a text stream while it grows: lines are cut at
`ECHO_LINE_CHARS`, the copy stops after `ECHO_BYTES`, and both cuts name the full log.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext, suppress
from pathlib import Path
from typing import Any, TextIO

GRACE_S = 30.0  # from the forwarded signal to SIGKILL: time for a trainer to save or clean up
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
ECHO_LINE_CHARS = 2000
ECHO_BYTES = 1 << 20  # per command: past this the log file alone has the output
POLL_S = 0.2  # how often the log is read for the echo while the command runs
_CHUNK = 1 << 20

# Reads one byte from stdin: a byte means "done, stand down"; end of file means the supervisor died.
_WATCHDOG = """
import os, signal, sys, time
group, grace = int(sys.argv[1]), float(sys.argv[2])
if os.read(0, 1):
    sys.exit(0)
try:
    os.killpg(group, signal.SIGTERM)
except OSError:
    sys.exit(0)
deadline = time.monotonic() + grace
while time.monotonic() < deadline:
    try:
        os.killpg(group, 0)
    except OSError:
        sys.exit(0)
    time.sleep(0.1)
try:
    os.killpg(group, signal.SIGKILL)
except OSError:
    pass
"""


class Stopped(Exception):
    """We were asked to stop (`signum`) while the command ran; its process group is gone now."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def supervise(
    command: str,
    *,
    env: Mapping[str, str],
    log: Path,
    echo: BoundedEcho | None = None,
    grace_s: float = GRACE_S,
    keep_fds: tuple[int, ...] = (),
) -> int:
    """Run `command` through the shell, output to `log`; its exit code (negative: killed by that signal). `keep_fds`:
    descriptors the command inherits (a lock it holds while it lives).

    Raises `Stopped` when a forwarded signal came while it ran, the command's group stopped by then."""
    state: dict[str, Any] = {"group": None, "signum": None}
    with _handlers(state):
        code = _run(command, env, Path(log), echo, grace_s, state, keep_fds)
    if state["signum"] is not None:
        raise Stopped(state["signum"])
    return code


def _run(command: str, env: Mapping[str, str], log: Path, echo: BoundedEcho | None, grace_s: float,
         state: dict[str, Any], keep_fds: tuple[int, ...]) -> int | None:  # fmt: skip
    """Start the command, wait for it or for a signal, then stop its group; None when a signal ended the wait."""
    process: subprocess.Popen | None = None
    watchdog = None
    try:
        with log.open("wb") as sink:
            # stdin from /dev/null: a trainer must not wait for a terminal it no longer has.
            process = subprocess.Popen(
                command, shell=True, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
                env=dict(env), start_new_session=True, pass_fds=keep_fds,
            )  # fmt: skip
        state["group"] = process.pid  # a new session's leader: its pid is the group id
        watchdog = _start_watchdog(process.pid, grace_s)
        code = _wait(process, log, echo, state)
        # The signal that came, passed on; else SIGTERM to whatever the command left running in its group.
        stop_group(process.pid, state["signum"] or signal.SIGTERM, grace_s, process=process)
        return code
    except BaseException:
        if process is not None:
            stop_group(process.pid, signal.SIGTERM, grace_s, process=process)
        raise
    finally:
        state["group"] = None  # gone: its id may be given to another group, which a second signal must not reach
        if watchdog is not None:
            _dismiss(watchdog)


def stop_group(group: int, signum: int, grace_s: float, *, process: subprocess.Popen | None = None) -> None:
    """Send `signum` to a process group, wait up to `grace_s` for it to go, then SIGKILL what is left."""
    try:
        os.killpg(group, signum)
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if process is not None:
            process.poll()  # reap our own child, or it stays in the group as a zombie
        if not group_alive(group):
            break
        time.sleep(0.05)
    else:
        _kill(group, signal.SIGKILL)
    if process is not None:
        process.wait()


def group_alive(group: int) -> bool:
    """Whether a process group still has a live (not zombie) member."""
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # killpg also reaches zombies (exited, not yet reaped by their new parent); /proc tells them apart.
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "(comm)": state, ppid, pgrp, ...
        except (OSError, IndexError):
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            return True
    return False


class BoundedEcho:
    """Copies a command's output to a text stream line by line, with each line and the total capped.

    A carriage return without a newline (a progress bar redrawing itself) restarts the line, so a bar shows
    once, in its latest state, when its line ends.
    """

    def __init__(
        self, stream: TextIO, log: Path, *, line_chars: int = ECHO_LINE_CHARS, total_bytes: int = ECHO_BYTES
    ) -> None:
        self.stream, self.log = stream, log
        self.line_chars, self.left = line_chars, total_bytes
        self.line = bytearray()
        self.dropped = 0  # bytes of the current line past the cap
        self.done = False

    def feed(self, data: bytes) -> None:
        *complete, rest = data.replace(b"\r\n", b"\n").split(b"\n")
        for part in complete:
            self._add(part)
            self._emit()
        self._add(rest)

    def close(self) -> None:
        if self.line or self.dropped:
            self._emit()

    def _add(self, part: bytes) -> None:
        if b"\r" in part:
            self.line.clear()
            self.dropped = 0
            part = part.rsplit(b"\r", 1)[1]
        room = max(0, 4 * self.line_chars - len(self.line))  # UTF-8: at most 4 bytes a character
        self.line += part[:room]
        self.dropped += max(0, len(part) - room)

    def _emit(self) -> None:
        text = self.line.decode(errors="replace")
        extra = self.dropped + len(text[self.line_chars :].encode())
        self.line.clear()
        self.dropped = 0
        if self.done:
            return
        if extra:
            text = f"{text[: self.line_chars]} [gaincurate: {extra} more bytes of this line are in {self.log}]"
        self.left -= len(text) + 1
        if self.left < 0:
            text = f"[gaincurate: the trainer's output is no longer echoed here; the full log is {self.log}]"
            self.done = True
        self.stream.write(text + "\n")
        self.stream.flush()


def _wait(process: subprocess.Popen, log: Path, copy: BoundedEcho | None, state: dict[str, Any]) -> int | None:
    """The command's exit code, or None as soon as a forwarded signal is noted in `state`."""
    with log.open("rb") if copy is not None else nullcontext() as reader:
        while state["signum"] is None:
            try:
                code: int | None = process.wait(timeout=POLL_S)
            except subprocess.TimeoutExpired:
                code = None
            if copy is not None:
                while chunk := reader.read(_CHUNK):
                    copy.feed(chunk)
            if code is not None:
                if copy is not None:
                    copy.close()
                return code
    return None


@contextmanager
def _handlers(state: dict[str, Any]) -> Iterator[None]:
    """While `supervise` runs, a forwarded signal is noted in `state` for it to act on; a second one kills the group.

    The handler raises nothing: an exception raised wherever the signal lands (inside the clean-up, while the
    watchdog is dismissed) would skip the rest of the clean-up and reach the user as a traceback."""

    def handle(signum: int, frame: Any) -> None:
        if state["signum"] is None:
            state["signum"] = signum
        elif state["group"] is not None:
            _kill(state["group"], signal.SIGKILL)

    previous = {}
    try:
        for signum in FORWARDED:
            # Ignored when we started (`nohup`, a background job): whoever started us asked not to be stopped by it.
            if signal.getsignal(signum) is signal.SIG_IGN:
                continue
            previous[signum] = signal.signal(signum, handle)
    except ValueError:
        pass  # not the main thread: signals cannot reach this thread anyway
    try:
        yield
    finally:
        # Held while they are put back, so that none is left with our handler by a signal that lands in between.
        held = signal.pthread_sigmask(signal.SIG_BLOCK, previous)
        try:
            for signum, handler in previous.items():
                # None: the handler was not set from Python and cannot be put back; the default is the nearest.
                signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)


def _start_watchdog(group: int, grace_s: float) -> tuple[subprocess.Popen, int]:
    read_end, write_end = os.pipe()
    watchdog = subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", _WATCHDOG, str(group), str(grace_s)],
        stdin=read_end, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    os.close(read_end)
    return watchdog, write_end


def _dismiss(watchdog: tuple[subprocess.Popen, int]) -> None:
    process, write_end = watchdog
    try:
        os.write(write_end, b"x")
    finally:
        os.close(write_end)
    process.wait()


def _kill(group: int, signum: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signum)
