"""Builders shared by the TRL and verl integration tests: a scored prompt set, GRPO settings, the mu formula.

Everything runs offline on CPU: the model is tests/helpers.py's random 3-layer Llama.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

from helpers import write_jsonl

from gaincurate.schedule.run.run import Run

N_PROMPTS = 16
NUM_GENERATIONS = 2
PROMPTS_PER_STEP = 2  # prompts per generation batch; an epoch of 4 prompts is 2 optimizer steps
SUBSET = 4
# Small rank units so that mu visibly moves across a 16-prompt set in three epochs.
SCHEDULE = {"subset_size": SUBSET, "sigma": 4, "step_size": 3, "adj_max": 6, "seed": 3, "rescore": "subset"}
MU_OPTIONS = ("sigma", "step_size", "adj_max", "rescore")  # gain's and length's own options in SCHEDULE


def schedule(strategy: str, **overrides) -> dict:
    """SCHEDULE's settings for `strategy` (the other strategies take no mu options), with `overrides`."""
    keeps_mu = strategy in ("gain", "length")
    return {"strategy": strategy, **{k: v for k, v in SCHEDULE.items() if keeps_mu or k not in MU_OPTIONS}, **overrides}


# Strategies the in-process end-to-end test runs; a new strategy is one more entry here.
STRATEGIES = ["gain", "uniform", "dots", "mopps", "greso"]
EXAMPLE_DIR = Path(__file__).resolve().parents[2] / "gaincurate" / "examples"


def write_prompts(path: Path, n_prompts: int = N_PROMPTS) -> Path:
    rows = [{"problem": f"What is {i} + {3 * i + 1}?", "answer": str(4 * i + 1)} for i in range(n_prompts)]
    return write_jsonl(path, rows)


def score_prompts(model_dir: Path, out: Path) -> Path:
    """Score the test prompts with the tiny model: a real scores directory, as `gaincurate score` writes.

    With embeddings (`--embed`), so the dots strategy can run on it too.
    """
    from gaincurate.scoring import score
    from gaincurate.scoring.config import RunOptions, ScoreConfig

    prompts = write_prompts(out.parent / f"{out.name}-prompts.jsonl")
    config = ScoreConfig(
        dataset=str(prompts), model=str(model_dir), dtype="float32", device="cpu",
        backend="torch", system_prompt="Solve it.", few_shot=(), embed=True,
    )  # fmt: skip
    score(config, RunOptions(out=str(out), quiet=True))
    return out


def parity_reward(completion_ids, **kwargs) -> list[float]:
    """1 when the completion's token ids sum to an odd number: varied rewards from a random model."""
    return [float(sum(ids) % 2) for ids in completion_ids]


def grpo_settings(output_dir: Path, **overrides) -> dict:
    settings = {
        "output_dir": str(output_dir),
        "use_cpu": True,
        "per_device_train_batch_size": PROMPTS_PER_STEP * NUM_GENERATIONS,
        "num_generations": NUM_GENERATIONS,
        "max_completion_length": 8,
        "num_train_epochs": 3,
        "learning_rate": 1e-2,
        "save_strategy": "epoch",
        "logging_steps": 1,
        "report_to": "none",
        "disable_tqdm": True,
        "seed": 0,
        "bf16": False,
    }
    settings.update(overrides)
    return settings


def expected_mu_next(mu: float, accuracy: float, ang: float, driver: Run) -> tuple[float, float]:
    """DESIGN section 4, written out again: delta and mu_{t+1} from acc_t and ang_t (raw angle signal), with the
    driver's gain options and its sizes resolved for its prompt set."""
    from gaincurate.schedule.strategies.gain import resolve_sizes

    options = driver.config.options
    sizes = resolve_sizes(options, driver.scheduler.n_prompts)
    n, alpha = sizes.step_size, options.alpha
    delta = n * math.tanh(alpha * (accuracy - options.beta)) + n * math.tanh(alpha * ang)
    delta = min(max(delta, sizes.adj_min), sizes.adj_max)
    return delta, min(max(mu + delta, 0.0), sizes.n_prompts - 1.0)


class EpochRewards:
    """The test's own record of what the reward function saw: (trainer epoch, gc_id, reward) per rollout."""

    def __init__(self) -> None:
        self.rollouts: list[tuple[int, int, float]] = []

    def __call__(self, completion_ids, gc_id, trainer_state, **kwargs):
        rewards = parity_reward(completion_ids)
        epoch = math.floor(trainer_state.epoch + 1e-6)
        self.rollouts.extend((epoch, int(g), r) for g, r in zip(gc_id, rewards, strict=True))
        return rewards

    def ids(self, epoch: int) -> Counter:
        return Counter(g for e, g, _ in self.rollouts if e == epoch)

    def feedback(self, epoch: int) -> list[dict]:
        return [{"gc_id": g, "reward": r} for e, g, r in self.rollouts if e == epoch]
