"""Screening with the current policy, for `screen` and `pilot`: what a screener returns, what it has cost, and the
policies it measures with.

Both strategies need `POLICY`: the integration driving a run hands over where the policy being trained is
(`contract.PolicyAt`), and `screener_for` (their `About.measure`) turns that into a `Screener`, held `Metered`
so that what screening costs is counted in one place (`spent`, which the bench charges to the arm):

* `live_screener`: the trainer's model as it stands (the TRL curriculum, at each draw); with `keep`, every
  completion and its behaviour log-probs stay in the `Screening` (`PilotCompletions`), so that the trainer can train
  on them (`pilot_reuse`);
* `checkpoint_screener`: `gaincurate rollout` on a checkpoint's weights (`schedule step` / `schedule run`, the verl
  sampler), or on the scores' own model before the first checkpoint. It writes the candidate list to
  RUN/screen-NNNN.ids and the rollouts to RUN/screen-NNNN.jsonl, so a killed step resumes the file.

Both sample with `gaincurate rollout`'s defaults (256 new tokens, temperature 0.7, boxed answers checked by
math-verify) and the seed `seed * SEED_STREAM + SCREEN_OFFSET + epoch`, apart from dots' reference sets.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gaincurate.fileio import atomic_write_bytes
from gaincurate.progress import NULL_PROGRESS, Progress
from gaincurate.rollout.config import RolloutConfig
from gaincurate.schedule.run.reference_sets import SEED_STREAM


@dataclass(frozen=True)
class PilotCompletions:
    """One candidate's measuring rollouts, kept so that a trainer can train on them (TRL in process only).

    `prompt_ids`: the prompt as the trainer tokenizes it; `completion_ids`: each completion, its stop token
    included when it stopped; `rewards`: each one's correctness; `logps`: mu, each token's log-prob under the
    policy that sampled it, at its sampling temperature. Memory only: never written to the run directory.
    """

    prompt_ids: list[int]
    completion_ids: list[list[int]]
    rewards: list[float]
    logps: list[list[float]]


@dataclass(frozen=True)
class Screening:
    """The measured candidates: each one's correctness sum and rollout count (in the order asked), and tokens.

    `completions`, when the screener kept them: each candidate's `PilotCompletions` (None: not kept)."""

    sums: np.ndarray
    counts: np.ndarray
    tokens: int = 0
    completions: list[PilotCompletions] | None = None

    @property
    def rates(self) -> np.ndarray:
        return np.asarray(self.sums, dtype=np.float64) / np.maximum(np.asarray(self.counts), 1)


# screener(gc_ids, epoch, rollouts): each candidate rolled `rollouts` times with the current policy.
Screener = Callable[[np.ndarray, int, int], Screening]


@dataclass
class Spent:
    """What screening has cost this process so far (the bench charges it to the arm)."""

    rollouts: int = 0
    tokens: int = 0
    seconds: float = 0.0


class Metered:
    """A screener (the policy that rolls candidates) that counts what it has cost (`spent`): every rollout and
    token it made, and the seconds it took, charged whether or not its candidates were kept."""

    def __init__(self, screener: Screener) -> None:
        self.screener = screener
        self.spent = Spent()

    def __call__(self, gc_ids: np.ndarray, epoch: int, rollouts: int) -> Screening:
        started = time.perf_counter()
        screening = self.screener(gc_ids, epoch, rollouts)
        self.spent.seconds += time.perf_counter() - started
        self.spent.rollouts += int(np.sum(screening.counts))
        self.spent.tokens += int(screening.tokens)
        return screening


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

    def screen(gc_ids: np.ndarray, epoch: int, rollouts: int) -> Screening:
        out = screen_path(run_dir, epoch)
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


def screen_path(run_dir: Path, epoch: int) -> Path:
    """RUN/screen-NNNN.jsonl: the screening rollouts of epoch NNNN's candidates, which `gaincurate rollout` writes
    resumably from the candidate list in RUN/screen-NNNN.ids."""
    return Path(run_dir) / f"screen-{epoch:04d}.jsonl"


def screener_for(at: Any, keep: dict[str, Any] | None = None) -> Metered:
    """What screen and pilot measure with, from where the integration has the policy (`contract.PolicyAt`): the
    measurement it was given, the live model in process, or else the weights on disk for each epoch's draw."""
    if at.given is not None:
        return Metered(at.given)
    if at.model is not None:
        return Metered(live_screener(at.scores_dir, at.model, at.tokenizer, seed=at.seed, keep=keep))
    if at.run_dir is None:
        raise ValueError("screening from a checkpoint writes its rollouts in the run directory, and there is none")
    weights = at.weights or (lambda epoch: None)

    def screen(gc_ids: np.ndarray, epoch: int, rollouts: int) -> Screening:
        made = checkpoint_screener(
            Path(at.run_dir), at.scores_dir, seed=at.seed, model_path=weights(epoch), progress=at.progress
        )
        return made(gc_ids, epoch, rollouts)

    return Metered(screen)


def spent(run: Any) -> Spent:
    """What screening has cost `run` (a `Run`) in this process so far, a snapshot (zeros: it screens nothing)."""
    policy = run.scheduler.policy
    return dataclasses.replace(policy.spent) if isinstance(policy, Metered) else Spent()
