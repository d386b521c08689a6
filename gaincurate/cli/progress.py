"""Progress on stderr for long commands: `RowProgress`, the CLI's `gaincurate.progress.Progress`.

On a terminal it draws one rich bar with rows, rows/s and ETA. When stderr is not a terminal (Slurm,
nohup, a pipe), a bar would print nothing useful, so it writes one plain line at most every 30 seconds:

    scoring: 1,200/5,000 rows (24%), 12.5 rows/s, ETA 5m04s

Stage lines ("loading model") are printed either way. `quiet` (the commands' `--quiet` and `--json`)
silences all of it. `setup_logging` sends library log records to the same stderr console.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from gaincurate.progress import set_for_libraries

PLAIN_INTERVAL_SECONDS = 30.0


def setup_logging(quiet: bool) -> None:
    """Library log records on stderr (none when quiet); other libraries' own progress bars off."""
    if sys.stderr.isatty():
        from rich.console import Console
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(console=Console(stderr=True, quiet=quiet), show_path=False,
                                               show_time=False)  # fmt: skip
    else:  # a log file or a pipe: a record a line, however long (rich would wrap it at 80 columns, padded)
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        handler.setLevel(logging.CRITICAL + 1 if quiet else logging.NOTSET)
    logging.basicConfig(level=logging.ERROR if quiet else logging.INFO, handlers=[handler], format="%(message)s")
    # transformers' bars and warnings would duplicate ours; tqdm reads TQDM_DISABLE when it is first imported,
    # which the commands defer until after this (the GGUF conversion bar comes from plain tqdm). Off a terminal a
    # bar redraws itself with carriage returns into the log, so there it is off too; stage lines say what runs.
    set_for_libraries("TRANSFORMERS_VERBOSITY", "error")
    set_for_libraries("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if quiet or not sys.stderr.isatty():
        set_for_libraries("TQDM_DISABLE", "1", override=True)
    if quiet:
        set_for_libraries("TORCH_LOGS", "-all")  # torch's own log handler: warnings on import otherwise


class RowProgress:
    """Stages and a row count on stderr: a rich bar on a terminal, a plain line every 30 s otherwise."""

    def __init__(
        self,
        description: str,
        *,
        quiet: bool,
        stream: TextIO | None = None,
        terminal: bool | None = None,
        interval: float = PLAIN_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._description, self._quiet, self._interval, self._clock = description, quiet, interval, clock
        self._stream = stream
        self._terminal = self._out().isatty() if terminal is None else terminal
        self._total: int | None = None
        self._done = 0
        self._counted_from: tuple[float, int] | None = None  # (time, rows) of the first advance
        self._last_line = clock()
        self._bar: Any = None  # started by the first `set_total`, so stage-only commands draw no empty bar

    def _out(self) -> TextIO:
        # Looked up at each write, so a caller that swaps sys.stderr (pytest's capture) is honoured.
        return self._stream if self._stream is not None else sys.stderr

    def stage(self, message: str) -> None:
        if self._quiet:
            return
        if self._bar is not None:
            self._bar.console.print(message, markup=False, highlight=False)
        else:
            self._write(message)

    def set_total(self, total: int) -> None:
        """Start a count of `total` rows (a second call starts another: the bench's warm start, then its pairs)."""
        self._total, self._done, self._counted_from = total, 0, None
        if self._bar is None and not self._quiet and self._terminal:
            self._bar = _rich_bar(self._out())
            self._task = self._bar.add_task(self._description, total=None, rate="")
            self._bar.start()
        if self._bar is not None:
            self._bar.reset(self._task, total=total, completed=0, rate="")

    def advance(self, rows: int) -> None:
        self._done += rows
        now = self._clock()
        if self._counted_from is None:
            # Rows reported before any work (a resumed run's finished shards) would inflate rows/s: start after them.
            self._counted_from = (now, self._done)
        if self._bar is not None:
            self._bar.advance(self._task, rows)
            speed = self._bar.tasks[0].speed
            self._bar.update(self._task, rate=f"{speed:.1f} rows/s" if speed else "")
        elif not self._quiet and now - self._last_line >= self._interval:
            self._last_line = now
            self._write(self.plain_line(now))

    def plain_line(self, now: float) -> str:
        """`scoring: 1,200/5,000 rows (24%), 12.5 rows/s, ETA 5m04s`; parts not known yet are left out."""
        parts = [f"{self._description}: {self._done:,}" + (f"/{self._total:,}" if self._total else "") + " rows"]
        if self._total:
            parts[0] += f" ({100 * self._done / self._total:.0f}%)"
        rate = self._rate(now)
        if rate:
            parts.append(f"{rate:.1f} rows/s")
            if self._total:
                parts.append(f"ETA {_duration(max(0, self._total - self._done) / rate)}")
        return ", ".join(parts)

    def _rate(self, now: float) -> float | None:
        if self._counted_from is None:
            return None
        start, rows = self._counted_from
        return (self._done - rows) / (now - start) if now > start and self._done > rows else None

    def _write(self, line: str) -> None:
        out = self._out()
        out.write(line + "\n")
        out.flush()

    def __enter__(self) -> RowProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


def _rich_bar(stream: TextIO) -> Any:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=Console(file=stream, force_terminal=True),
    )


def _duration(seconds: float) -> str:
    """`42s`, `5m04s`, `2h07m`."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
