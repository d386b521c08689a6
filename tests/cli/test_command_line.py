"""The command line is read in one place: the CLI's entry (`gaincurate/cli/__init__.py`) decides from it what to
mount (the lab's commands, `schedule init`'s options of the strategies kept for comparison) and passes that down.

Read as code, not text: a script that the package hands to a child process as a string reads the child's own command
line, not gaincurate's; two do so, and are named here with that reason. The supervisor's watchdog
(`gaincurate/supervisor.py`, `_WATCHDOG`) takes its process group and grace from its argv, and the lab's
scoring bench writes a script that sets its own (`gaincurate/lab/benchmarks/scoring.py`).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENTRY = "gaincurate/cli/__init__.py"
CHILD_SCRIPTS = {"gaincurate/supervisor.py", "gaincurate/lab/benchmarks/scoring.py"}


def reads_argv(tree: ast.AST) -> list[int]:
    """The lines where a module's own code reads `sys.argv` (or imports `argv` from `sys`)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "argv" and getattr(node.value, "id", None) == "sys":
            found.append(node.lineno)
        if isinstance(node, ast.ImportFrom) and node.module == "sys" and any(a.name == "argv" for a in node.names):
            found.append(node.lineno)
    return found


def test_sys_argv_is_read_only_by_the_cli_entry():
    readers = {
        str(path.relative_to(ROOT)): lines
        for path in sorted((ROOT / "gaincurate").rglob("*.py"))
        if (lines := reads_argv(ast.parse(path.read_text())))
    }
    assert set(readers) == {ENTRY}, readers


def test_the_child_scripts_named_above_hold_sys_argv_only_in_a_string():
    for name in CHILD_SCRIPTS:
        text = (ROOT / name).read_text()
        assert "sys.argv" in text and not reads_argv(ast.parse(text)), name
