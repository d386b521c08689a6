"""Module paths that moved (issues 42 and 50): the old name stays importable as the new module, with a deprecation
warning.

Users name some modules in launch lines and scripts (verl's `pkg://` hooks, docs' imports); a shim at the old path
calls `alias(__name__, new)`, after which the old name *is* the new module, so every object has one identity
whichever path loaded it first. A package that moved with all its modules (`gaincurate.benchmarks`, now in the lab)
calls `alias_package`: then `old.x` is `new.x` for every module below it, `python -m old.x` included. A module some of
whose names moved sets `__getattr__ = moved_names(__name__, names, new)`.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from collections.abc import Callable, Mapping
from types import CodeType, ModuleType
from typing import Any


def alias(old: str, new: str) -> None:
    """Make module `old` the module `new`, warning once that `old` is deprecated."""
    warnings.warn(f"{old} moved to {new}; the old path will be removed in a later release", DeprecationWarning, 3)
    sys.modules[old] = importlib.import_module(new)


def moved_names(old: str, names: tuple[str, ...] | Mapping[str, str], new: str) -> Callable[[str], Any]:
    """A module `__getattr__` for `old` under which `names` are still found: each read from module `new` on first
    use, with a warning that it moved; a mapping gives each old name its new one."""
    renamed = dict(names) if isinstance(names, Mapping) else {name: name for name in names}

    def found(name: str) -> Any:
        if name not in renamed:
            raise AttributeError(f"module {old!r} has no attribute {name!r}")
        warnings.warn(f"{old}.{name} moved to {new}.{renamed[name]}", DeprecationWarning, 2)
        return getattr(importlib.import_module(new), renamed[name])

    return found


def alias_package(old: str, new: str) -> None:
    """`alias` for a package and every module below it."""
    warnings.warn(f"{old} moved to {new}; the old path will be removed in a later release", DeprecationWarning, 3)
    sys.modules[old] = importlib.import_module(new)
    sys.meta_path.insert(0, _MovedPackage(old, new))


class _MovedPackage(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds `old.x` as the already imported `new.x` (the module object itself, not a second copy)."""

    def __init__(self, old: str, new: str) -> None:
        self.old, self.new = old, new

    def _new_name(self, name: str) -> str:
        return self.new + name[len(self.old) :]

    def find_spec(self, name: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
        if not name.startswith(self.old + "."):
            return None
        found = importlib.util.find_spec(self._new_name(name))
        return None if found is None else importlib.util.spec_from_loader(name, self, origin=found.origin)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return importlib.import_module(self._new_name(spec.name))

    def exec_module(self, module: ModuleType) -> None:
        """Nothing: the module ran under its new name."""

    def get_code(self, name: str) -> CodeType | None:
        """The new module's code, for `python -m old.x` (runpy runs it as __main__)."""
        spec = importlib.util.find_spec(self._new_name(name))
        return spec.loader.get_code(spec.name) if spec is not None and spec.loader is not None else None
