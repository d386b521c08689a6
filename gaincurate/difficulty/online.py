"""Deprecated path (issue 50): this module is `gaincurate.lab.difficulty.online` now, in the lab.

The old name keeps existing scripts working, with a DeprecationWarning.
"""

from gaincurate.moved import alias

alias(__name__, "gaincurate.lab.difficulty.online")
