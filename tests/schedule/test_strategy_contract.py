"""The strategy contract is small: the `Strategy` base declares at most eight members a plug-in may define (methods
and class attributes together), and every registered strategy defines no other member the scheduler could call."""

from __future__ import annotations

from gaincurate.schedule.strategies.contract import About, Strategy
from gaincurate.schedule.strategies.registry import STRATEGIES

CONTRACT = {"name", "about", "build", "start", "choose", "observe", "wants", "report"}


def members(cls: type) -> set[str]:
    """The public names a class declares itself: its methods and class attributes, annotated ones included."""
    declared = set(vars(cls)) | set(vars(cls).get("__annotations__", {}))
    return {name for name in declared if not name.startswith("_")}


def test_the_strategy_base_declares_at_most_eight_members_a_plug_in_may_define():
    assert members(Strategy) == CONTRACT and len(CONTRACT) <= 8


def test_every_registered_strategy_declares_itself_as_data_and_is_drawn_by_its_contract():
    for name, cls in STRATEGIES.items():
        assert cls.name == name and isinstance(cls.about, About), name
        assert cls.choose is not Strategy.choose, f"{name} does not say how it chooses"
        assert cls.about.summary, f"{name} says nothing of what it draws"


def test_no_module_but_a_strategys_own_names_its_options_class():
    """Integrations, the run and other strategies ask a strategy through its contract (`about`, `wants`), never by
    its options' class: the source of every module is read, so a deferred import or an isinstance counts too."""
    import ast
    import inspect
    from pathlib import Path

    import gaincurate
    from gaincurate.schedule.strategies.registry import FILTERS

    classes = [cls.about.options for cls in STRATEGIES.values()] + [cls.options_class for cls in FILTERS.values()]
    home = {options.__name__: Path(inspect.getfile(options)).resolve() for options in classes if options.names()}
    package = Path(gaincurate.__file__).parent
    named = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [alias.name for alias in node.names] if isinstance(node, ast.ImportFrom) else []
            names += [node.id] if isinstance(node, ast.Name) else [node.attr] if isinstance(node, ast.Attribute) else []
            named += [f"{path.relative_to(package)}: {n}" for n in names if n in home and home[n] != path.resolve()]
    assert home and named == []
