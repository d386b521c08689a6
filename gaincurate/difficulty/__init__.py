"""Difficulty prediction for DOTS (arXiv 2506.05316): which prompts a model solves about half the time.

* `predict`: attention over a reference set of measured pass rates, leave-one-out (numpy);
* `estimate`: the aged pass-rate estimates dots selects with (own rollouts blended with the neighbours'
  prediction as measurements age);
* `calibrate`: an optional trained adapter and calibration head, cross-fitted (torch, CPU);
* `online`: `difficulty evaluate --online`, each epoch of a run predicted from the epochs before it;
* `evaluate`: held-out correlation against global-mean, length and angle-score baselines (numpy);
* `reference`: measured pass rates from feedback files (read with `gaincurate.feedback`), and a scores
  directory's embeddings;
* `jobs` / `cli`: `gaincurate difficulty predict|fit|evaluate` (and the `gaincurate rollout` command,
  whose job is `gaincurate.rollout`).

It imports `gaincurate.feedback` and never `gaincurate.schedule`: the schedule builds on it, not the reverse.

The `dots` schedule strategy (`gaincurate.schedule.strategies.dots`) uses `predict` and `reference` each epoch.
"""
