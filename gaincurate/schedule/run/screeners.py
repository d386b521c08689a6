"""The policies `screen` measures its candidates with: a live model in process, or a checkpoint on disk.

* `live_screener`: the trainer's model as it stands (the TRL curriculum at each epoch's end);
* `checkpoint_screener`: `gaincurate rollout` on a checkpoint's weights (`schedule next` / `schedule run`,
  the verl sampler), or on the scores' own model before the first checkpoint. It writes the candidate
  list to RUN/screen-NNNN.ids and the rollouts to RUN/screen-NNNN.jsonl, so a killed step resumes the file.

Both sample with `gaincurate rollout`'s defaults (256 new tokens, temperature 0.7, boxed answers checked by
math-verify) and the seed `seed * SEED_STREAM + SCREEN_OFFSET + epoch`, apart from dots' reference sets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from gaincurate.fileio import atomic_write_bytes
from gaincurate.progress import NULL_PROGRESS, Progress
from gaincurate.rollout.config import RolloutConfig
from gaincurate.schedule.run.reference_sets import SEED_STREAM
from gaincurate.schedule.strategies.screening import PilotCompletions, Screener, Screening

SCREEN_OFFSET = 500_009  # screening seeds sit apart from fresh reference sets' (seed * SEED_STREAM + epoch)


def screen_seed(seed: int, epoch: int) -> int:
    return seed * SEED_STREAM + SCREEN_OFFSET + epoch


def live_screener(
    scores_dir: str | Path, model: Any, tokenizer: Any, *, seed: int, keep: dict[str, Any] | None = None
) -> Screener:
    """Screen with `model` in memory, as it is when each epoch is drawn.

    `keep`: sample with these settings instead (the trainer's `temperature` and `max_new_tokens`) and keep every
    completion with its behaviour log-probs in the Screening, so that the trainer can train on them.
    """
    from gaincurate.rollout.live import roll_live

    def screen(gc_ids: np.ndarray, epoch: int, rollouts: int) -> Screening:
        config = RolloutConfig(
            scores=str(scores_dir), out="", samples=rollouts, seed=screen_seed(seed, epoch), **(keep or {})
        )
        rolled = roll_live(model, tokenizer, config, gc_ids, keep=keep is not None)
        kept = None
        if keep is not None:
            parts = zip(rolled.prompt_ids, rolled.completions, rolled.rewards, rolled.logps, strict=True)
            kept = [PilotCompletions(*part) for part in parts]
        return Screening(rolled.correct.astype(np.float64), np.full(len(gc_ids), rollouts), rolled.tokens, kept)

    return screen


def checkpoint_screener(
    run_dir: Path,
    scores_dir: str | Path,
    *,
    seed: int,
    model_path: Path | None,
    progress: Progress = NULL_PROGRESS,
) -> Screener:
    """Screen with the weights at `model_path` (None: the model the scores directory was scored with)."""
    from gaincurate.difficulty.reference import read_measurements
    from gaincurate.rollout.job import run_rollouts
    from gaincurate.schedule.run import rundir

    def screen(gc_ids: np.ndarray, epoch: int, rollouts: int) -> Screening:
        out = rundir.screen_path(run_dir, epoch)
        ids_file = out.with_suffix(".ids")
        atomic_write_bytes(ids_file, "".join(f"{int(i)}\n" for i in gc_ids).encode())
        config = RolloutConfig(
            scores=str(scores_dir),
            out=str(out),
            model=None if model_path is None else str(model_path),
            samples=rollouts,
            ids_file=str(ids_file),
            seed=screen_seed(seed, epoch),
        )
        where = model_path or "the model the prompts were scored with"
        progress.stage(f"screening {len(gc_ids)} candidates, {rollouts} rollouts each, with {where}")
        result = run_rollouts(config, progress=progress)
        measured = read_measurements(out, gc_ids)  # rollout's own file: rewards are 1 and 0
        sums = np.array([measured.get(int(i), (0.0, 0))[0] for i in gc_ids], dtype=np.float64)
        counts = np.array([measured.get(int(i), (0.0, 0))[1] for i in gc_ids], dtype=np.int64)
        return Screening(sums, counts, result.generated_tokens)

    return screen
