"""`gaincurate rollout`: measure pass rates by sampling answers and checking them with math-verify.

* `config`: what a run was asked to do (`RolloutConfig`) and what it did (`RolloutResult`);
* `inputs`: the prompts to roll out, their gold answers and prompt settings, from a scores directory;
* `sampling`: batched, seeded generation with `transformers` (a completion depends on its own seed only);
* `answers`: a completion's final answer against the gold one, with math-verify;
* `output`: the resumable output file (complete prompt groups, the settings sidecar);
* `job`: `run_rollouts`, the resumable job that ties them together.

It writes feedback lines through `gaincurate.feedback_lines`, the format `gaincurate difficulty` and the `dots`
schedule strategy read as a reference set.
"""
