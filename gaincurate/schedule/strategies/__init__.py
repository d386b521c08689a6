"""Strategies and filters: one module each, listed in `registry`; the contract they implement is `contract`.

A strategy writes `from gaincurate.schedule.strategies import contract` and subclasses `contract.Strategy`; it is
registered by one line in `registry.STRATEGIES`, or, from a package of its own, by an entry point in the
`gaincurate.strategies` group (`gaincurate.entry_points`). A new filter subclasses `filters.Filter` and adds one line
to `registry.FILTERS`.
"""
