"""Deprecated path (issue 42): this module is `gaincurate.schedule.run.driver` now.

The old name keeps existing scripts and launch lines working, with a DeprecationWarning.
"""

from gaincurate.moved import alias

alias(__name__, "gaincurate.schedule.run.driver")
