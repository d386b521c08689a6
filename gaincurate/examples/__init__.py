"""Complete trainer scripts that ship with the package, run with `gaincurate example NAME [ARGS]`.

    gaincurate example trl-epoch --data {epoch_data} ...   # one TRL epoch: the `schedule run` trainer command
    gaincurate example trl-inprocess                       # GRPO with a curriculum inside one TRL process
    gaincurate example --path trl-epoch                    # where the script is installed, to copy it

They run from any directory: nothing here reads a path inside a clone.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from gaincurate.errors import ConfigError

EXAMPLES = {
    "trl-epoch": "one GRPO epoch with TRL per command: the trainer command of `gaincurate schedule run`",
    "trl-inprocess": "GRPO with a curriculum inside one TRL process (a tiny random Llama, half a minute on CPU)",
}


def _module(name: str) -> Any:
    if name not in EXAMPLES:
        raise ConfigError(f"no example {name!r}; pick one of {', '.join(EXAMPLES)}")
    return importlib.import_module(f"gaincurate.examples.{name.replace('-', '_')}")


def example_path(name: str) -> Path:
    """The installed file of example `name`, to read or copy."""
    return Path(_module(name).__file__)


def run_example(name: str, argv: list[str]) -> int:
    """Run example `name` with command-line arguments `argv`; returns its exit code."""
    return int(_module(name).main(argv) or 0)
