"""Difficulty prediction for DOTS (arXiv 2506.05316): which prompts a model solves about half the time.

* `predict`: attention over a reference set of measured pass rates, leave-one-out (numpy);
* `calibrate`: an optional trained adapter and calibration head, cross-fitted (torch, CPU);
* `evaluate`: held-out correlation against global-mean, length and angle-score baselines (numpy);
* `reference`: measured pass rates from feedback files, and a scores directory's embeddings;
* `jobs` / `cli`: `gaincurate difficulty predict|fit|evaluate` and `gaincurate rollout`.

The `dots` schedule strategy (`gaincurate.schedule.dots`) uses `predict` and `reference` each epoch.
"""
