"""The shape of the package stays one-directional: no import cycle, no oversized module or function.

Every `import` counts, including those inside functions (a deferred import is still a dependency). Two graphs are
checked: modules of `gaincurate/` and `kernels/` (installed as `gaincurate.kernels`), and the direct children of
`gaincurate` (sub-packages and top-level modules), whose arrows must point one way (docs/architecture.md).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80


def _module_files() -> dict[str, Path]:
    files = {}
    for folder, package in (("gaincurate", ["gaincurate"]), ("kernels", ["gaincurate", "kernels"])):
        for path in (ROOT / folder).rglob("*.py"):
            parts = package + list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            files[".".join(parts)] = path
    return files


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The longest known module that `name` (a module or a name inside one) belongs to."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from package import submodule` depends on the submodule; a name defined in a module on that module.
            names = [f"{base}.{alias.name}" for alias in node.names]
        for name in names:
            target = _resolve(name, modules)
            if target and target != module:
                found.add(target)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def _graph() -> dict[str, set[str]]:
    modules = _module_files()
    return {module: _imports(module, path, modules) for module, path in modules.items()}


def _child(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


def test_no_module_import_cycle():
    assert _cycles(_graph()) == []


def test_no_cycle_between_the_packages_direct_children():
    children: dict[str, set[str]] = {}
    for module, targets in _graph().items():
        if module == "gaincurate":
            continue  # the package's own __init__ re-exports; it is not a floor of the house
        source = _child(module)
        children.setdefault(source, set()).update(
            _child(target) for target in targets if _child(target) not in (source, "gaincurate")
        )
    assert _cycles(children) == []


def test_modules_and_functions_stay_small():
    too_long = []
    for path in _module_files().values():
        text = path.read_text()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            too_long.append(f"{path.relative_to(ROOT)}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {length} lines")
    assert too_long == []


def test_the_checker_sees_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


# Floors of the house, bottom first (docs/architecture.md draws the same plan): imports point down or sideways.
FLOORS = {
    "errors": 0, "entry_points": 0, "fileio": 0, "progress": 0, "feedback_lines": 0, "metrics": 0, "hub": 0,
    "config_file": 0, "numerics": 0, "settings": 0, "supervisor": 0,
    "data": 1, "columns": 1, "json_files": 1, "prompts": 1, "prompt_scan": 1,
    "model": 2, "model_identity": 2, "adapters": 2, "forward_kernels": 2, "layer_fusions": 2, "packed_forward": 2,
    "kernels": 2, "distributed": 2,
    "shards": 3,
    "scoring": 4, "show": 4,
    "rollout": 5,
    "difficulty": 6,
    "schedule": 7,
    "integrations": 8,
    "examples": 9,
    "cli": 10, "__main__": 10,
    "lab": 11,  # the lab measures the product
}  # fmt: skip


def test_imports_point_down_the_floors():
    upward = []
    for module, targets in _graph().items():
        if module == "gaincurate":
            continue
        source = _child(module).removeprefix("gaincurate.")
        for target in targets:
            child = _child(target).removeprefix("gaincurate.")
            if target != "gaincurate" and child != source and FLOORS[child] > FLOORS[source]:
                upward.append(f"{module} -> {target}")
    assert upward == []


def test_every_child_has_a_floor_and_every_module_is_in_the_architecture_page():
    page = (ROOT / "docs" / "architecture.md").read_text()
    children = {_child(module).removeprefix("gaincurate.") for module in _module_files() if module != "gaincurate"}
    assert children <= set(FLOORS)
    missing = [
        str(path.relative_to(ROOT)) for path in _module_files().values() if f"`{path.relative_to(ROOT)}`" not in page
    ]
    assert missing == []


# Rooms of schedule/, bottom first (docs/architecture.md, floor 7): shared values (every module not named here),
# the strategy plug-ins, the pure scheduler over them, and the run on disk. The package's __init__ re-exports the
# scheduler, so it stands with it.
SCHEDULE_ROOMS = {"strategies": 1, "readout": 2, "readout_words": 2, "config": 2, "core": 2, "": 2, "run": 3}


def _schedule_room(module: str) -> int:
    parts = module.split(".")
    return SCHEDULE_ROOMS.get(parts[2] if len(parts) > 2 else "", 0)


def test_imports_inside_schedule_point_down_its_rooms():
    upward = [
        f"{module} -> {target}"
        for module, targets in _graph().items()
        if module.startswith("gaincurate.schedule")
        for target in targets
        if target.startswith("gaincurate.schedule") and _schedule_room(target) > _schedule_room(module)
    ]
    assert upward == []


def forwards(source: str, package: bool = False) -> bool:
    """Whether a module's source exists only to forward another: it rebinds `sys.modules` or takes its `__getattr__`
    from a helper, or it holds nothing but imports and calls (a package's `__init__` may import its package's names
    to export them, and may define a `__getattr__` that loads them lazily)."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        targets = [ast.unparse(target) for target in getattr(node, "targets", [])]
        if any(target.startswith("sys.modules[") for target in targets):
            return True
        if "__getattr__" in targets and isinstance(node.value, ast.Call):
            return True
    body = [
        node
        for node in tree.body
        if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))  # the docstring
        and not (isinstance(node, ast.ImportFrom) and node.module == "__future__")
        and not (isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "__all__")
    ]
    calls = [node for node in body if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)]
    only_imports_and_calls = all(isinstance(node, ast.Import | ast.ImportFrom) for node in body if node not in calls)
    if package:
        return bool(calls) and only_imports_and_calls
    getattr_hook = any(isinstance(node, ast.FunctionDef) and node.name == "__getattr__" for node in body)
    return getattr_hook or only_imports_and_calls


def test_no_module_exists_only_to_forward_another():
    """Unreleased code renames; it does not alias (issue 59): a module is code of its own, not an old path."""
    forwarding = [
        str(path.relative_to(ROOT))
        for path in _module_files().values()
        if path.name != "__main__.py"  # `python -m gaincurate`: an import and a call are all it is for
        and forwards(path.read_text(), package=path.name == "__init__.py")
    ]
    assert forwarding == []


def test_the_forwarding_check_sees_the_shapes_an_alias_takes():
    docstring = '"""Moved."""\n'
    assert forwards(docstring + "from gaincurate.schedule.run.run import Run, STATE\n")
    assert forwards(docstring + "import sys\nimport gaincurate.lab\nsys.modules[__name__] = gaincurate.lab\n")
    assert forwards(docstring + "from gaincurate.moved import alias\n\nalias(__name__, 'gaincurate.lab.x')\n")
    assert forwards(docstring + "from m import alias_package\n\nalias_package(__name__, 'b')\n", package=True)
    assert forwards(docstring + "from a import hook\n__getattr__ = hook(__name__, ('Spent',), 'b')\n")
    assert forwards("import sys, b\nsys.modules['a'] = b\n", package=True)
    assert not forwards(docstring + "from a import b\n\nLIMIT = b * 2\n")
    assert not forwards(docstring + "from a import b\n__all__ = ['b']\n", package=True)
