"""No module of gaincurate/integrations/ calls a private method or function of another one (issue 42).

The adapters talk to each other through public names: a `_name` is its module's own. Read with `ast`, so the
test needs no trainer installed. A private method is a `_name` (not a dunder) defined in a class body; a call
`obj._name(...)` whose receiver is not the module's own (`self`, `cls`, `super()`) and whose name is a private
method defined in another module of integrations/ fails, and so does importing a `_name` from another module of
integrations/. A trainer's own private hooks (TRL's `_get_train_sampler`, ...) overridden here are the trainer's
interface, not another module's: they are called by TRL, never across these modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "gaincurate" / "integrations"
OWN_RECEIVERS = ("self", "cls")


def _private(name: str) -> bool:
    return name.startswith("_") and not name.endswith("__")


def _modules() -> dict[Path, ast.Module]:
    return {path: ast.parse(path.read_text(), str(path)) for path in sorted(PACKAGE.rglob("*.py"))}


def _private_methods(tree: ast.Module) -> set[str]:
    return {
        item.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
        for item in node.body
        if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and _private(item.name)
    }


def _own(receiver: ast.expr) -> bool:
    if isinstance(receiver, ast.Name):
        return receiver.id in OWN_RECEIVERS
    return isinstance(receiver, ast.Call) and isinstance(receiver.func, ast.Name) and receiver.func.id == "super"


def crossings(modules: dict[Path, ast.Module]) -> list[str]:
    """Each call of another module's private method, and each import of another module's private name."""
    defined = {path: _private_methods(tree) for path, tree in modules.items()}
    found = []
    for path, tree in modules.items():
        where = path.relative_to(PACKAGE.parent.parent)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                name = node.func.attr
                if not _private(name) or _own(node.func.value):
                    continue
                owners = sorted(str(other.relative_to(PACKAGE)) for other, names in defined.items() if name in names)
                if any(owner != str(path.relative_to(PACKAGE)) for owner in owners):
                    found.append(f"{where}:{node.lineno} calls {ast.unparse(node.func)}() of {', '.join(owners)}")
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("gaincurate.integrations"):
                found.extend(
                    f"{where}:{node.lineno} imports {alias.name} from {node.module}"
                    for alias in node.names
                    if _private(alias.name)
                )
    return found


def test_no_module_of_integrations_calls_a_private_method_of_another():
    assert crossings(_modules()) == []


def test_the_check_sees_a_call_across_modules_and_leaves_a_modules_own():
    """The check itself, on two small modules: what it must find, and what it must leave alone."""
    owner = ast.parse(
        "class Curriculum:\n    def _end_epoch(self): ...\n    def step(self):\n        self._end_epoch()\n"
    )
    caller = ast.parse(
        "from gaincurate.integrations.trl.curriculum import _helper\n"
        "class Callback:\n"
        "    def _use(self): ...\n"
        "    def on_epoch_end(self, curriculum):\n"
        "        curriculum._end_epoch()\n"
        "        self._use()\n"
        "        super()._use()\n"
        "        curriculum._not_ours()\n"
    )
    found = crossings({PACKAGE / "trl" / "curriculum.py": owner, PACKAGE / "trl" / "trainer.py": caller})
    assert found == [
        "gaincurate/integrations/trl/trainer.py:1 imports _helper from gaincurate.integrations.trl.curriculum",
        "gaincurate/integrations/trl/trainer.py:5 calls curriculum._end_epoch() of trl/curriculum.py",
    ]
