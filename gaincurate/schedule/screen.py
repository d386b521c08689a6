"""Deprecated path (issues 42 and 50): this module is `gaincurate.lab.strategies.screen` now.

The old name keeps existing scripts and launch lines working, with a DeprecationWarning.
"""

from gaincurate.moved import alias

alias(__name__, "gaincurate.lab.strategies.screen")
