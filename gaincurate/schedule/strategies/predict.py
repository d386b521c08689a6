"""Deprecated path (issue 50): the predict strategy is kept for comparison in the lab now.

It is `gaincurate.lab.strategies.predict`; the old name keeps existing scripts working, with a DeprecationWarning.
"""

from gaincurate.moved import alias

alias(__name__, "gaincurate.lab.strategies.predict")
