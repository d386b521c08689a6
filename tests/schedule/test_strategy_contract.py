"""The strategy contract is small: the `Strategy` base declares at most eight members a plug-in may define (methods
and class attributes together), and every registered strategy defines no other member the scheduler could call."""

from __future__ import annotations

from gaincurate.schedule.strategies.plugin import About, Strategy
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
        assert cls.about.draws or cls.about.summary, f"{name} says nothing of how it draws"
