"""One progress protocol for long library work: named stages, a row total, and rows done.

Library code never prints; it reports through a `Progress` it is handed (the CLI passes a rich bar on a TTY,
or periodic log lines otherwise). Callers that do not care pass nothing and get `NULL_PROGRESS`.

    def score(config, progress: Progress = NULL_PROGRESS): ...
        progress.stage("loading model")
        progress.set_total(n_rows)
        progress.advance(rows_done_in_this_batch)
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """Where long work reports: `stage` for a one-line step, `set_total`/`advance` for a row count.

    `set_total` starts a count from zero; work that has several counts (a warm start, then training) calls it
    before each.
    """

    def stage(self, message: str) -> None: ...

    def set_total(self, total: int) -> None: ...

    def advance(self, rows: int) -> None: ...


class NullProgress:
    """Reports nowhere."""

    def stage(self, message: str) -> None:
        pass

    def set_total(self, total: int) -> None:
        pass

    def advance(self, rows: int) -> None:
        pass


NULL_PROGRESS: Progress = NullProgress()
