"""The lab: code that exists to measure, not to run a user's training.

Nothing on the product path (`gaincurate score`, `schedule`, `show`, `rollout`, the TRL and verl integrations) imports
it; it imports the product and measures it:

* `benchmarks`: the curriculum bench (`gaincurate bench curriculum`: each strategy trained through stock TRL against
  an oracle), the scale, scoring, kernel, GPU and replay benches, and the signal check;
* `difficulty`: DOTS' difficulty prediction as a tool of its own (`gaincurate difficulty predict|fit|evaluate`),
  held-out and online evaluation against baselines;
* `cli`: those commands, mounted on `gaincurate` by name (`gaincurate.cli`) and only when one of them is asked for.

docs/architecture.md draws the product and the lab side by side.
"""
