"""Deprecated path (issue 50): the pilot strategy is kept for comparison in the lab now.

It is `gaincurate.lab.strategies.pilot`; the old name keeps existing scripts working, with a DeprecationWarning.
"""

from gaincurate.moved import alias

alias(__name__, "gaincurate.lab.strategies.pilot")
