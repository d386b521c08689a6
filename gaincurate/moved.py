"""Module paths that moved (issue 42): the old name stays importable as the new module, with a deprecation warning.

Users name some modules in launch lines and scripts (verl's `pkg://` hooks, docs' imports); a shim at the old path
calls `alias(__name__, new)`, after which the old name *is* the new module, so every object has one identity
whichever path loaded it first.
"""

from __future__ import annotations

import importlib
import sys
import warnings


def alias(old: str, new: str) -> None:
    """Make module `old` the module `new`, warning once that `old` is deprecated."""
    warnings.warn(f"{old} moved to {new}; the old path will be removed in a later release", DeprecationWarning, 3)
    sys.modules[old] = importlib.import_module(new)
