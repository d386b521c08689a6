"""The `gaincurate` command line: thin Typer commands over the library, and the one error path.

    gaincurate score data.jsonl --out scores        # gaincurate/cli/score.py (score, merge)
    gaincurate show scores                          # show.py
    gaincurate schedule init|step|run|status        # schedule.py
    gaincurate rollout ...                          # rollout.py
    gaincurate example trl-epoch ...                # example.py: the trainer scripts shipped in the package
    gaincurate bench ... / difficulty ... / signal check  # the lab's: an entry point (`gaincurate.entry_points`)

Each command parses its options (shared ones in `options.py`), calls one library function and hands the
result to `render.emit`: results go to stdout, progress (`progress.py`) and errors to stderr.

`main()` is the console entry point and the only place errors are turned into output. A user error
prints one line, `gaincurate: error: ...`, naming the bad value and the fix: usage errors (an unknown
flag, a missing option, a bad value from a flag or `--config FILE`: `errors.OptionValueError`) exit 2,
a `GaincurateError` 1 (or its own code), a full disk or a denied write 1. Ctrl-C exits 130 and says what
was kept (`score`: its whole shards) and that re-running resumes. Set GAINCURATE_DEBUG=1 for the
traceback. Bugs are not caught.
"""

from __future__ import annotations

import errno
import os
import sys

import typer
from typer._click.core import ParameterSource
from typer._click.exceptions import BadParameter, ClickException, NoArgsIsHelpError, UsageError

from gaincurate import entry_points
from gaincurate.cli.options import PRODUCT_COMMANDS, command_group
from gaincurate.cli.schedule_options import mounts_the_lab
from gaincurate.errors import GaincurateError, InterruptedCommand

TOP_LINE = (
    "Choose which prompts a GRPO run trains on, and when, to reach its accuracy with fewer rollouts: by default "
    "each epoch takes the prompts predicted nearest a 50% pass rate (probe)."
)
app = command_group(
    TOP_LINE,
    add_completion=False,
    rich_markup_mode="markdown",
    epilog="First run: `gaincurate score PROMPTS.jsonl --out scores`, then `gaincurate schedule init --scores scores "
    "--run run`; docs/quickstart.md walks through it, and `gaincurate bench curriculum --demo` shows the saving.",
)

# Environment faults the user fixes outside gaincurate; everything written so far is kept.
_NO_SPACE = {errno.ENOSPC: "free some disk space", errno.EDQUOT: "free some quota", errno.EFBIG: "raise `ulimit -f`"}
_NO_ACCESS = {errno.EACCES, errno.EPERM, errno.EROFS}
# A folder where a file goes, or a file where a folder does (`mkdir(parents=True, exist_ok=True)` says EEXIST).
_WRONG_PATH = {
    errno.EISDIR: "it is a folder",
    errno.ENOTDIR: "a file stands where the path needs a folder",
    errno.EEXIST: "a file stands where the path needs a folder",
}
INTERRUPTED = "gaincurate: interrupted; finished work is kept: run the same command again to resume"


# `gaincurate --help` in panels: the path a run takes first, then what measures, then the glue for other tools, and
# the lab's commands last, marked as such: they study the product and are no part of a user's run.
START, MEASURE, TOOLS = "Start here", "Measure", "Integrations and cluster jobs"
LAB = "Lab: research commands, not part of a run"


def _mount(lab: bool, lab_options: bool) -> None:
    """Command modules import no torch at module level, so `gaincurate --help` stays fast. Other packages' commands
    (the lab's) come from their entry points, and only when `lab` is set, so that a product command never imports
    them; `schedule init` offers the options of the lab's strategies only with `lab_options` (`mounts_the_lab`)."""
    from gaincurate.cli import example, rollout, schedule, score, show, verl

    score.register(app, START)
    schedule.register(app, START, lab=lab_options)
    show.register(app, START)
    rollout.register(app, MEASURE)
    score.register_merge(app, TOOLS)
    app.add_typer(verl.app, name="verl", rich_help_panel=TOOLS)
    example.register(app, TOOLS)
    if lab:
        for name in entry_points.registered(entry_points.COMMANDS):
            entry_points.load(entry_points.COMMANDS, name)(app, LAB)


def _asks_for_the_lab(argv: list[str]) -> bool:
    """Whether a command line may reach a lab command: any but one whose command is a product command (`--help` and
    a mistyped command see every command)."""
    words = [word for word in argv[1:] if not word.startswith("-")]
    return not words or words[0] not in PRODUCT_COMMANDS


# The one reader of the command line outside Typer: what it may reach decides what is mounted.
_mount(lab=_asks_for_the_lab(sys.argv), lab_options=mounts_the_lab(sys.argv))


def _version(shown: bool) -> None:
    if shown:
        from importlib.metadata import version

        typer.echo(f"gaincurate {version('gaincurate')}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """The top-level options: `--version`."""


def main(args: list[str] | None = None) -> None:
    """Console entry point: run the app; every user error becomes one line on stderr and an exit code."""
    from gaincurate.model import quiet_dependency_noise

    quiet_dependency_noise()
    try:
        code = app(args=args, prog_name="gaincurate", standalone_mode=False)
    except KeyboardInterrupt:  # raised outside a command (Typer turns one inside a command into 130)
        code = 130
    except NoArgsIsHelpError as shown:
        print(shown.format_message(), file=sys.stderr, end="")
        sys.exit(shown.exit_code)
    except InterruptedCommand as stopped:  # a command that says what its Ctrl-C kept
        print(f"gaincurate: {stopped}", file=sys.stderr)
        sys.exit(stopped.exit_code)
    except (GaincurateError, ClickException, typer.Abort, OSError) as error:
        _fail(error)
    if code == 130:
        print(INTERRUPTED, file=sys.stderr)
    if isinstance(code, int) and code != 0:  # success returns, so callers in Python can go on
        sys.exit(code)


def _fail(error: BaseException) -> None:
    """Print a user error as one line and exit with its code; anything else is a bug and keeps its traceback."""
    if isinstance(error, OSError) and error.errno not in _NO_SPACE.keys() | _NO_ACCESS | _WRONG_PATH.keys():
        raise error
    if os.environ.get("GAINCURATE_DEBUG") == "1":
        raise error
    print(f"gaincurate: error: {_one_line(error)}", file=sys.stderr)
    sys.exit(getattr(error, "exit_code", 1) if isinstance(error, GaincurateError | ClickException) else 1)


def _one_line(error: BaseException) -> str:
    if isinstance(error, UsageError):
        where = error.ctx.command_path if error.ctx is not None else "gaincurate"
        return f"{_usage_message(error)} (see `{where} --help`)"
    if isinstance(error, ClickException):
        return " ".join(error.format_message().split())
    if isinstance(error, typer.Abort):
        return "aborted"
    if isinstance(error, OSError) and error.errno in _WRONG_PATH:
        return f"{error.filename or 'a path'}: {_WRONG_PATH[error.errno]}; pick another path"
    if isinstance(error, OSError):
        fix = _NO_SPACE.get(error.errno, "fix the permissions or pick another path")
        return f"{error.filename or 'a file'}: {error.strerror}; {fix}, then run the same command again to resume"
    return str(error) or type(error).__name__  # the library's own wording: one line, or a line and a log tail


def _usage_message(error: UsageError) -> str:
    """Click's message, with the value that failed to parse named: `--top -1 is not valid: input should be ...`, or
    `--config FILE: top -1 ...` for a value that file gave (only `--config FILE` fills the default map)."""
    errors = getattr(error.__cause__, "errors", None)  # Typer parses values with pydantic; its error holds the input
    if isinstance(error, BadParameter) and error.param is not None and callable(errors) and errors():
        first = errors()[0]
        hint = error.param_hint or error.param.get_error_hint()
        hint = hint if isinstance(hint, str) else " / ".join(hint)
        if error.ctx is not None and error.ctx.get_parameter_source(error.param.name) is ParameterSource.DEFAULT_MAP:
            key = hint.split("/")[0].strip(" '").removeprefix("--").replace("-", "_")  # as the file spells it
            hint = f"--config {error.ctx.params.get('config')}: {key}"
        detail = str(first["msg"]).removeprefix("Value error, ")
        return f"{hint.replace(chr(39), '')} {first['input']} is not valid: {detail[0].lower()}{detail[1:]}"
    return " ".join(error.format_message().split())
