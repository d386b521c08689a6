"""User-facing errors.

Every mistake a user can make (a missing file, a bad column, a clashing output directory) raises a
subclass of `GaincurateError` whose message names the bad value and the fix. `gaincurate.cli.main`
prints that message as one line and exits non-zero. Bugs are not wrapped: they keep their traceback.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import shlex
from collections.abc import Callable, Iterator
from typing import Any

# Errors name a setting as their caller spells it: `--subset-size 41` on the command line, `subset_size=41` in
# Python. The `gaincurate` entry point runs every command under `settings_as_flags()`; Python callers get names.
_AS_FLAGS = contextvars.ContextVar("gaincurate_settings_as_flags", default=False)
# While a command runs, the `--config FILE` it read and which settings that file gave (no flag overrode them): a bad
# value from the file is named as the file's key (`--config run.toml: top`), never as a flag the user did not type.
_FROM_FILE: contextvars.ContextVar[tuple[str, Callable[[str], bool]] | None] = contextvars.ContextVar(
    "gaincurate_settings_from_file", default=None
)
_NO_VALUE = object()


def setting(name: str, value: Any = _NO_VALUE) -> str:
    """`name` (a config field), with `value` when given, as the caller spells it: a flag, or a Python keyword."""
    flags = _AS_FLAGS.get()
    spelled = "--" + name.replace("_", "-") if flags else name
    if value is _NO_VALUE:
        return spelled
    shown = f"{value:g}" if isinstance(value, float) else repr(value) if isinstance(value, str) and not flags else value
    return f"{spelled} {shown}" if flags else f"{spelled}={shown}"


def shell_word(value: Any) -> str:
    """`value` (a path) as one word of a command a user pastes into a shell: quoted where it needs it, and a leading
    dash written ./-x, which the command would read as an option otherwise."""
    word = str(value)
    return shlex.quote(f"./{word}" if word.startswith("-") else word)


def as_given(name: str) -> str:
    """A setting named by a check (`--top`, `top`) as the user gave its value: `--config FILE: top` when the file
    `settings_from_file` names gave it, else `name`."""
    key, source = name.removeprefix("--").replace("-", "_"), _FROM_FILE.get()
    return f"--config {source[0]}: {key}" if source is not None and source[1](key) else name


def settings_from_file(path: Any, gave: Callable[[str], bool]) -> None:
    """The command running read `path`, which gave the settings (by field name) that `gave` answers True for."""
    _FROM_FILE.set((str(path), gave))


def settings_as_flags_now() -> bool:
    """Whether errors raised here name settings as command-line flags."""
    return _AS_FLAGS.get()


@contextlib.contextmanager
def settings_as_flags() -> Iterator[None]:
    """Inside, errors name settings as command-line flags (`--subset-size`), not as fields (`subset_size`)."""
    token, file_token = _AS_FLAGS.set(True), _FROM_FILE.set(None)  # a config file read inside is forgotten after
    try:
        yield
    finally:
        _AS_FLAGS.reset(token)
        _FROM_FILE.reset(file_token)


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


class OptionValueError(ConfigError):
    """A bad option value (its type, its choice or its range), from a flag, `--config FILE` or Python: a usage error,
    which the command line exits 2 for, like a mistyped flag. Every setting's check raises it (`settings.setting`)."""

    exit_code = 2


class BackendError(GaincurateError, ValueError):
    """A compute backend that cannot run on this device."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C in work that keeps whole pieces (shards): how many it kept. Still a KeyboardInterrupt for callers."""

    def __init__(self, *, kept: int, total: int, piece_rows: int, where: str, overwrite: bool = False) -> None:
        self.kept, self.total, self.piece_rows, self.where = kept, total, piece_rows, where
        self.overwrite = overwrite  # the run replaced an earlier one: the same command would delete what it kept
        super().__init__(f"interrupted; {kept} of {total} pieces of {piece_rows} rows are kept in {where}")


class InterruptedCommand(GaincurateError):
    """The command line's form of `Interrupted`: `gaincurate` prints its message and exits 130."""

    exit_code = 130


@contextlib.contextmanager
def interrupts_held() -> Iterator[None]:
    """A Ctrl-C (or SIGTERM, where Python handles it) during the block is acted on right after it, not inside it.

    Python raises KeyboardInterrupt wherever the main thread happens to be; inside a compiled extension's import
    (torch._dynamo's nanobind modules, which transformers imports when it loads a model) that aborts the whole
    process with a C++ `terminate` instead of exit 130 and the usual one line. The handlers only note the signal
    here; the previous handler then runs once the block is done. Off the main thread this holds nothing.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    noted: list[int] = []
    previous = {}
    for number in (signal.SIGINT, signal.SIGTERM):
        if callable(signal.getsignal(number)):
            previous[number] = signal.signal(number, lambda received, _frame: noted.append(received))
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        for number in noted[:1]:
            previous[number](number, None)


# torch's bfloat16 and float16 attention on CPU packs its blocks for AMX tiles whenever oneDNN reports them, with a
# packing routine that exists only in ATen's AVX-512 kernels: with ATEN_CPU_CAPABILITY below avx512 on an AMX CPU
# it raises this (torch 2.13). Holding oneDNN below AMX too (ONEDNN_MAX_CPU_ISA) avoids it.
NARROWED_ATTENTION = "pack_vnni2 is only supported when avx512"


@contextlib.contextmanager
def narrowed_attention_explained() -> Iterator[None]:
    """Inside, torch's narrowed-attention failure (an environment setting, not a bug) is one BackendError line."""
    try:
        yield
    except RuntimeError as error:
        if NARROWED_ATTENTION not in str(error):
            raise
        capability = os.environ.get("ATEN_CPU_CAPABILITY", "unset")
        raise BackendError(
            f"torch's bfloat16 and float16 attention cannot run on this CPU with ATEN_CPU_CAPABILITY={capability} "
            "while oneDNN may use AMX: unset ATEN_CPU_CAPABILITY, hold oneDNN below AMX too (ONEDNN_MAX_CPU_ISA=AVX2), "
            f"or use {setting('dtype', 'float32')}"
        ) from None
