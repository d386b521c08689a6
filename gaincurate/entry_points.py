"""What other packages add to gaincurate: entry points, declared in a package's pyproject.toml and read lazily.

gaincurate names no plug-in; a package installed beside it registers the way pytest's plug-ins (`pytest11`) and
datasets' builders do, under these groups (the lab registers its own this way, in this repository's pyproject.toml):

    [project.entry-points."gaincurate.strategies"]     # a strategy by its `--strategy` name: "module:StrategyClass"
    mine = "my_package.mine:MineStrategy"
    [project.entry-points."gaincurate.commands"]       # commands: "module:register", called as register(app, panel)
    my-tool = "my_package.cli:register"

Reading a group imports nothing; a module loads when its entry is first used (a run that names the strategy, a command
line that may reach the command).
"""

from __future__ import annotations

import functools
from importlib.metadata import entry_points
from typing import Any

STRATEGIES = "gaincurate.strategies"
COMMANDS = "gaincurate.commands"


@functools.cache
def registered(group: str) -> dict[str, str]:
    """{name: "module:attribute"} of every entry point in `group`, in the order the installed packages declare them."""
    return {entry.name: entry.value for entry in entry_points(group=group)}


def load(group: str, name: str) -> Any:
    """The object the entry point `name` of `group` names, imported now."""
    (entry,) = entry_points(group=group, name=name)
    return entry.load()
