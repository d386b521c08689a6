"""Every module path and import the docs name works.

Users copy these into scripts and launch lines (`pkg://gaincurate.integrations.verl.one_launch`,
`from gaincurate.integrations.trl import GainCurriculum`); a move that the docs did not follow fails here.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from gaincurate import entry_points

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# A dotted name that starts a path (not `.gaincurate.lock`, `+data.gaincurate.run_dir` or `gaincurate-score`).
DOTTED = re.compile(r"(?<![\w.+/-])(?:pkg://)?(gaincurate(?:\.\w+)+)")
FROM_IMPORT = re.compile(r"^\s*from (gaincurate(?:\.\w+)*) import ([\w, ]+)$", re.M)


def documented() -> set[str]:
    names: set[str] = set()
    for page in PAGES:
        text = page.read_text()
        names.update(match.group(1) for match in DOTTED.finditer(text))
        for module, imported in FROM_IMPORT.findall(text):
            names.update(f"{module}.{name.strip()}" for name in imported.split(","))
    return names


def resolve(path: str) -> object:
    """The module or attribute `path` names: the longest importable module, then attributes."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError as error:
            if error.name is None or not ".".join(parts[:cut]).startswith(error.name):
                raise  # a module that exists but imports something missing is a real failure
            continue
        for attribute in parts[cut:]:
            found = getattr(found, attribute)
        return found
    raise ModuleNotFoundError(path)


# Names in the docs that are not Python paths: the scores format's keys, the run directory's files, and the
# entry-point groups other packages register in (`gaincurate.entry_points`).
NOT_PATHS = {
    "gaincurate.KEY",
    entry_points.STRATEGIES,
    entry_points.COMMANDS,
}


def test_the_docs_name_paths_at_all():
    assert {"gaincurate.integrations.verl.one_launch", "gaincurate.integrations.trl.GainCurriculum"} <= documented()


@pytest.mark.parametrize("path", sorted(documented() - NOT_PATHS))
def test_every_documented_path_resolves(path):
    resolve(path)
