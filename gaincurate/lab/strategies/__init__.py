"""Strategies kept for comparison: measured by the bench, none of them the product's choice.

Each is registered by an entry point in the `gaincurate.strategies` group (pyproject.toml), which
`gaincurate.schedule.strategies.registry` reads, and loaded only when a run names it (or
`schedule init --help` and `schedule strategies` list every strategy), so a run of the product's strategies loads
none of them. Their results are in docs/benchmarks.md and docs/strategies.md:

* `screen` (SPEED-RL) and `pilot` (Pilot-Commit): candidates measured with the current policy before each draw;
* `predict`: the chance a prompt's next group is informative, learned across prompts (did not close the gap);
* `variance`: expected reward variance plus an uncertainty bonus, from mopps' posteriors.
"""
