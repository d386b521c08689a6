"""Deprecated path (issue 50): pilot reuse goes with the pilot strategy, kept for comparison in the lab now.

It is `gaincurate.lab.strategies.pilot_reuse`; the old name keeps existing scripts working, with a warning.
"""

from gaincurate.moved import alias

alias(__name__, "gaincurate.lab.strategies.pilot_reuse")
