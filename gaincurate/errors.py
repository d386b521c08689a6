"""User-facing errors.

Every mistake a user can make (a missing file, a bad column, a clashing output directory) raises a
subclass of `GaincurateError` whose message names the bad value and the fix. `gaincurate.cli.main`
prints that message as one line and exits non-zero. Bugs are not wrapped: they keep their traceback.
"""


class GaincurateError(Exception):
    """A problem the user can fix; the message says how."""

    exit_code = 1


class InputError(GaincurateError):
    """A dataset, file or column that cannot be read as asked."""


class MissingColumnError(InputError):
    """A dataset without the column a caller named; callers that name columns otherwise than by flag re-word it."""

    def __init__(self, message: str, *, column: str, available: list[str]) -> None:
        super().__init__(message)
        self.column, self.available = column, list(available)


class ModelError(GaincurateError):
    """A model that cannot be found or loaded."""


class ConfigError(GaincurateError):
    """An option value that is invalid, or clashes with existing output."""


class BackendError(GaincurateError, ValueError):
    """A compute backend that cannot run on this device."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C in work that keeps whole pieces (shards): how many it kept. Still a KeyboardInterrupt for callers."""

    def __init__(self, *, kept: int, total: int, piece_rows: int, where: str) -> None:
        self.kept, self.total, self.piece_rows, self.where = kept, total, piece_rows, where
        super().__init__(f"interrupted; {kept} of {total} pieces of {piece_rows} rows are kept in {where}")


class InterruptedCommand(GaincurateError):
    """The command line's form of `Interrupted`: `gaincurate` prints its message and exits 130."""

    exit_code = 130
