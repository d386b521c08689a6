"""Difficulty prediction for DOTS (arXiv 2506.05316): which prompts a model solves about half the time.

* `predict`: attention over a reference set of measured pass rates, leave-one-out (numpy);
* `estimate`: the aged pass-rate estimates dots selects with (own rollouts blended with the neighbours'
  prediction as measurements age);
* `calibrate`: an optional trained adapter and calibration head, applied with numpy, and `load_calibrator`, which
  dots' `--calibrator` reads (the training is the lab's, `gaincurate difficulty fit`);
* `reference`: measured pass rates from feedback files (read with `gaincurate.feedback_lines`), and a scores
  directory's embeddings;
* `ridge`: the probe strategy's CPU-exact weighted ridge.

The `gaincurate difficulty predict|fit|evaluate` commands, their jobs and the held-out and online evaluations are
the lab's (registered by entry point, `gaincurate.entry_points`): they measure this math; a run does not need them.

It imports `gaincurate.feedback_lines` and never `gaincurate.schedule`: the schedule builds on it, not the reverse.

The `dots` schedule strategy (`gaincurate.schedule.strategies.dots`) uses `predict` and `reference` each epoch.
"""
