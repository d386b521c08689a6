"""One progress protocol for long library work: named stages, a row total, and rows done.

Library code never prints; it reports through a `Progress` it is handed (the CLI passes a rich bar on a TTY,
or periodic log lines otherwise). Callers that do not care pass nothing and get `NULL_PROGRESS`.

    def score(config, progress: Progress = NULL_PROGRESS): ...
        progress.stage("loading model")
        progress.set_total(n_rows)
        progress.advance(rows_done_in_this_batch)
"""

from __future__ import annotations

import os
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


# The environment variables set to quiet other libraries in this process, with the user's values before them (None:
# unset): a child process, such as `schedule run`'s trainer, runs with the user's own environment and its own bars.
_USERS_VALUES: dict[str, str | None] = {}


def set_for_libraries(name: str, value: str, *, override: bool = False) -> None:
    """Set `name` for this process's libraries (`override`: where the user set it too), not for its children."""
    _USERS_VALUES.setdefault(name, os.environ.get(name))
    if override or name not in os.environ:
        os.environ[name] = value


def users_environment() -> dict[str, str]:
    """This process's environment without what `set_for_libraries` set: the one a child process gets."""
    environment = dict(os.environ)
    for name, value in _USERS_VALUES.items():
        if value is None:
            environment.pop(name, None)
        else:
            environment[name] = value
    return environment
