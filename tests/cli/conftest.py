"""Fixtures for the command-line tests: the real console script, and one scores directory per session.

`gaincurate(*args)` runs `.venv/bin/gaincurate` in a subprocess, the entry point users run, so what a test
sees (exit code, stdout, stderr) is what a user sees. The scores come from a real `gaincurate score` on the
tiny offline Llama; their `level` column is constant, so its Spearman correlation is NaN.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import PROBLEMS, write_jsonl

CONSOLE_SCRIPT = Path(sys.executable).with_name("gaincurate")


def run_gaincurate(*args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None, **popen):
    """`gaincurate ARGS` through the installed console script; returns the CompletedProcess."""
    environment = {key: value for key, value in os.environ.items() if key != "GAINCURATE_DEBUG"}
    environment |= {"OMP_NUM_THREADS": "1", "COLUMNS": "200", **(env or {})}
    environment = {key: value for key, value in environment.items() if value is not None}  # None: unset it
    command = [str(CONSOLE_SCRIPT), *map(str, args)]
    return subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=300, **popen)


@pytest.fixture()
def gaincurate(tmp_path) -> Callable[..., subprocess.CompletedProcess]:
    def run(*args: str | Path, **options) -> subprocess.CompletedProcess:
        return run_gaincurate(*args, cwd=options.pop("cwd", tmp_path), **options)

    return run


@pytest.fixture(scope="session")
def scored(tiny_llama, tmp_path_factory) -> Path:
    """A complete scores directory of the eight test problems, with a constant numeric column `level`."""
    from gaincurate.cli import main

    root = tmp_path_factory.mktemp("cli-scores")
    dataset = write_jsonl(root / "problems.jsonl", [{**row, "level": 3} for row in PROBLEMS])
    out = root / "scores"
    main(["score", str(dataset), "--model", str(tiny_llama), "--out", str(out), "--device", "cpu",
          "--dtype", "float32", "--quiet", "--json"])  # fmt: skip
    return out


@pytest.fixture()
def error_line() -> Callable[[subprocess.CompletedProcess], str]:
    """The single stderr line of a refused command, asserting there is exactly one, no traceback and no stdout."""

    def line(result: subprocess.CompletedProcess) -> str:
        lines = [text for text in result.stderr.splitlines() if text.strip()]
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("gaincurate: error: ") and "Traceback" not in result.stderr, result.stderr
        assert result.stdout == "", result.stdout
        return lines[0]

    return line
