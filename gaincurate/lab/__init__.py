"""The lab: code that exists to measure, not to run a user's training.

Nothing on the product path (`gaincurate score`, `schedule`, `show`, `rollout`, the TRL and verl integrations) imports
it; it imports the product and measures it:

* `benchmarks`: the curriculum bench (`gaincurate bench curriculum`: each strategy trained through stock TRL against
  an oracle), the scale, scoring, kernel, GPU and replay benches, and the signal check;
* `difficulty`: DOTS' difficulty prediction as a tool of its own (`gaincurate difficulty predict|fit|evaluate`),
  held-out and online evaluation against baselines;
* `cli`: those commands, mounted on `gaincurate` only when one of them is asked for;
* `strategies`: the strategies kept for comparison, with pilot's TRL reuse.

What it adds to the product (its strategies, its commands, pilot's TRL screener) it registers by entry points in
pyproject.toml, as another package's plug-ins would (`gaincurate.entry_points`): the product never names it.

docs/architecture.md draws the product and the lab side by side.
"""
