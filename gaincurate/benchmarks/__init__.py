"""Deprecated path (issue 50): the benches are `gaincurate.lab.benchmarks` now, in the lab with everything else that
exists to measure rather than to run.

The old names (`gaincurate.benchmarks.scale`, `python -m gaincurate.benchmarks.probe_fit`, ...) keep working, with a
DeprecationWarning.
"""

from gaincurate.moved import alias_package

alias_package(__name__, "gaincurate.lab.benchmarks")
