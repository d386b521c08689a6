"""One (strategy, seed) pair of the bench: a real stock TRL `GRPOTrainer` run driven by the in-process curriculum.

The pair does exactly what a user's script does with `gaincurate.integrations.trl` (docs/trl.md), through the
same public API only: a `GainCurriculum` over the bench's scores, `train_dataset()`, `wrap_rewards(...)`, a
`CurriculumGRPOTrainer(..., curriculum=curriculum)`, `trainer.train()`. The strategy is only a name in the
`ScheduleConfig`, so every strategy the scheduler knows runs here unchanged; `oracle` (bench only) plugs its own
selector in with `GainCurriculum.use_strategy`, and screen's cost is read from the measurement it was handed
(`screening.spent`).

What it measures, every `eval_every` optimizer steps and at step 0 (the initial model):

* held-out greedy accuracy and sampled pass rate (`evaluate.py`);
* cumulative rollouts (training, plus screen's screening) and tokens by kind (`compute.py`), counted as spent;
* the fraction of rollout groups since the previous point whose rewards were all equal;
* wall-clock seconds of everything the strategy costs: model load, trainer set-up, training, the curriculum's
  epoch ends (re-scoring, prediction, drawing), plus the initial scoring for every strategy but the baseline.
  Evaluation and the oracle's measurement pause the clock; each cost is also reported on its own. The first
  imports are paid before the clock starts and reported apart, charged to no arm (`warm.py`).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PrinterCallback, TrainerCallback

from gaincurate.integrations.trl.rewards import REUSED_COLUMN
from gaincurate.lab.benchmarks.curriculum.assets import Assets
from gaincurate.lab.benchmarks.curriculum.candidates import live_candidates
from gaincurate.lab.benchmarks.curriculum.compute import PARAMETERS, REFRESH, ROLLOUT, TokenCounter, matmul_parameters
from gaincurate.lab.benchmarks.curriculum.configs import BenchConfig
from gaincurate.lab.benchmarks.curriculum.diagnosis import PoolInstrument
from gaincurate.lab.benchmarks.curriculum.evaluate import Sampled, evaluate, sample_prompts, zero_variance_groups
from gaincurate.lab.benchmarks.curriculum.oracle import ARMS as ORACLE_ARMS
from gaincurate.lab.benchmarks.curriculum.oracle import OracleStrategy
from gaincurate.lab.benchmarks.curriculum.warm import SCORING_FIRST_IMPORT, WARM_UP_SECONDS, warm_up_process

RUN = "run"  # the pair's run directory, inside its work directory while it trains
EVAL_STREAM = 1_000_003  # sampling seeds of evaluation, apart from the oracle's (epoch numbers)
POOL_STREAM = 50_021  # the pool instrument's sampling seeds sit this far from the oracle's (seed * 100_003 + epoch)


class Clock:
    """Seconds since start, less the time spent in `exclude(...)` blocks (measurement that is not charged)."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.excluded: dict[str, float] = {}

    def now(self) -> float:
        return time.perf_counter() - self.started - sum(self.excluded.values())

    @contextmanager
    def exclude(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.excluded[name] = self.excluded.get(name, 0.0) + time.perf_counter() - started


class CountingReward:
    """The task's reward, counting training rollouts, tokens and zero-variance groups as TRL calls it.

    The rows a pilot arm's trainer reused from the pilot are counted in the groups, not in the rollouts and tokens:
    the pilot's own cost (`screen_spent`) already holds them."""

    def __init__(self, reward: Callable[..., list[float]], group_size: int, training: Callable[[], bool]) -> None:
        self.reward = reward
        self.group_size = group_size
        self.training = training
        self.__name__ = getattr(reward, "__name__", "reward")
        self.rollouts = self.tokens = self.zero_groups = self.groups = 0

    def __call__(self, *, completions: list[Any], completion_ids: list[list[int]], **kwargs: Any) -> list[float]:
        rewards = self.reward(completions=completions, completion_ids=completion_ids, **kwargs)
        if self.training():
            zero, groups = zero_variance_groups(rewards, self.group_size)
            # A row the trainer took from the pilot (`pilot_reuse`) was charged as a pilot rollout: not again here.
            reused = kwargs.get(REUSED_COLUMN) or [False] * len(rewards)
            self.rollouts += sum(not flag for flag in reused)
            self.tokens += sum(len(ids) for ids, flag in zip(completion_ids, reused, strict=True) if not flag)
            self.zero_groups += zero
            self.groups += groups
        return rewards

    def take_zero_variance_fraction(self) -> float | None:
        """Zero-variance groups over groups since the last call (None when no group was trained)."""
        fraction = self.zero_groups / self.groups if self.groups else None
        self.zero_groups = self.groups = 0
        return fraction


def state_sha256(model: Any) -> str:
    """A digest of every parameter and buffer (name, dtype, shape, bytes): equal digests mean equal weights."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{value.dtype}:{tuple(value.shape)}".encode())
        digest.update(value.view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return digest.hexdigest()


def load_initial(assets: Assets, config: BenchConfig) -> tuple[Any, Any]:
    """The bench's initial model and tokenizer, loaded afresh for each pair."""
    from gaincurate.model import load_model, load_tokenizer, resolve_source

    source = resolve_source(assets.model)
    tokenizer = load_tokenizer(source)
    dtype = "float32" if config.device == "cpu" else "bfloat16"
    model = load_model(source, dtype=dtype, device=config.device)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def grpo_config(config: BenchConfig, output_dir: Path, seed: int) -> Any:
    """The GRPO settings shared by every strategy: the rollout budget per step, the optimizer, the length."""
    from trl import GRPOConfig

    return GRPOConfig(
        output_dir=str(output_dir), use_cpu=config.device == "cpu", bf16=config.device != "cpu",
        per_device_train_batch_size=config.prompts_per_step * config.num_generations, gradient_accumulation_steps=1,
        num_generations=config.num_generations, max_completion_length=config.max_completion_length,
        num_train_epochs=config.epochs, max_steps=config.steps, learning_rate=config.learning_rate,
        lr_scheduler_type="constant", warmup_steps=0, beta=0.0, temperature=config.temperature,
        save_strategy="no", logging_steps=max(1, config.eval_every), report_to="none", disable_tqdm=True,
        seed=seed, data_seed=seed, remove_unused_columns=False, dataloader_num_workers=0,
    )  # fmt: skip


class _Callbacks:
    """The pair's trainer callbacks: evaluation every K steps, progress, and the curriculum's epoch-end time."""

    def __init__(self, run: PairRun) -> None:
        self.run = run
        self.epoch_end_started = 0.0

    def before(self) -> TrainerCallback:
        outer = self

        class Before(TrainerCallback):
            def on_epoch_end(self, args, state, control, **kwargs):
                outer.epoch_end_started = outer.run.clock.now()
                outer.run.token_counter.phase = REFRESH

        return Before()

    def after(self) -> TrainerCallback:
        outer = self

        class After(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                outer.run.progress_step()
                if state.global_step % outer.run.config.eval_every == 0 or state.global_step == args.max_steps:
                    outer.run.measure(state.global_step)

            def on_epoch_end(self, args, state, control, **kwargs):
                outer.run.costs["curriculum_seconds"] += outer.run.clock.now() - outer.epoch_end_started
                outer.run.token_counter.phase = ROLLOUT

        return After()


class PairRun:
    """Everything one (strategy, seed) pair holds while it trains; `run()` returns its record."""

    def __init__(
        self,
        config: BenchConfig,
        assets: Assets,
        strategy: str,
        seed: int,
        work_dir: Path,
        on_point: Callable[[dict], None] | None = None,
        on_step: Callable[[], None] | None = None,
    ) -> None:
        self.config, self.assets, self.strategy, self.seed = config, assets, strategy, seed
        self.work_dir = work_dir
        self.on_point, self.on_step = on_point, on_step
        self.points: list[dict[str, Any]] = []
        self.charged_setup = 0.0 if strategy == config.baseline else assets.scoring_seconds
        self.charged_scoring_tokens = 0 if strategy == config.baseline else assets.scoring_tokens
        self.costs = {"scoring_seconds": self.charged_setup, "curriculum_seconds": 0.0}
        if strategy != config.baseline and assets.scoring_first_import_seconds is not None:
            self.costs[SCORING_FIRST_IMPORT] = assets.scoring_first_import_seconds  # listed, never charged
        self.clock = Clock()
        self.curriculum: Any = None
        self.screen_charged: Any = None  # screening as of the last point (what the points carry)
        self.instrument: PoolInstrument | None = None  # `measure_pool`: the whole pool measured, never charged

    def progress_step(self) -> None:
        if self.on_step is not None:
            self.on_step()

    def screen_spent(self) -> Any:
        """What a screen arm's screening has cost so far (charged like training rollouts); zeros for others."""
        from gaincurate.lab.strategies.screening import Spent, spent

        return spent(self.curriculum.run) if self.curriculum is not None else Spent()

    def measure(self, step: int) -> None:
        """One evaluation point (the clock stands still meanwhile)."""
        config, assets = self.config, self.assets
        with self.clock.exclude("eval"), self.token_counter.during(None):
            conversations = [assets.messages(r["problem"]) for r in assets.eval]
            sample = partial(
                self._sample_prompts, conversations, [r["answer"] for r in assets.eval], seed=EVAL_STREAM + step
            )
            result = evaluate(sample, samples=config.eval_samples, temperature=config.temperature)
        spent = self.screen_spent()  # a snapshot: the strategy's own count keeps growing
        self.screen_charged = spent
        point = {
            "strategy": self.strategy, "seed": self.seed, "step": step,
            "rollouts": self.counter.rollouts + spent.rollouts, "tokens": self.counter.tokens + spent.tokens,
            **self.token_counter.counts, "scoring_tokens": self.charged_scoring_tokens,
            "seconds": self.charged_setup + self.clock.now(),
            "accuracy": result.accuracy, "zero_variance_fraction": self.counter.take_zero_variance_fraction(),
            "sampled_accuracy": result.sampled_accuracy,
        }  # fmt: skip
        self.points.append(point)
        if self.on_point is not None:
            self.on_point(point)

    def _pass_rates(self, dataset: Any, row_of: dict[int, int], gc_ids: np.ndarray, samples: int, seed: int):
        """(pass rate of each of `gc_ids` under the live model, tokens generated): the task's own prompts and check."""
        sampled = self._sample(dataset, row_of, gc_ids, samples, seed)
        return sampled.rates, sampled.tokens

    def _sample(self, dataset: Any, row_of: dict[int, int], gc_ids: np.ndarray, samples: int, seed: int) -> Sampled:
        rows = [dataset[row_of[int(i)]] for i in gc_ids]
        answers = [r["answer"] for r in rows]
        return self._sample_prompts([r["prompt"] for r in rows], answers, samples, self.config.temperature, seed=seed)

    def _sample_prompts(
        self, conversations: list, answers: list, samples: int, temperature: float | None, *, seed: int
    ) -> Sampled:
        """`sample_prompts` with the live model, the task's check and the bench's sampling settings."""
        config, check = self.config, self.assets.check
        return sample_prompts(
            self.model, self.tokenizer, conversations, answers, check, samples=samples, temperature=temperature,
            max_new_tokens=config.max_completion_length, batch_size=config.eval_batch, seed=seed,
        )  # fmt: skip

    def _oracle_measure(self, dataset: Any, row_of: dict[int, int]) -> Callable[[np.ndarray, int], tuple]:
        def measure(gc_ids: np.ndarray, epoch: int) -> tuple[np.ndarray, int]:
            seed = self.seed * 100_003 + epoch
            with self.clock.exclude("oracle"), self.token_counter.during(None):
                return self._pass_rates(dataset, row_of, gc_ids, self.config.oracle_rollouts, seed)

        return measure

    def _pool_measure(self, dataset: Any, row_of: dict[int, int]) -> Callable[[np.ndarray, int], tuple]:
        """The pool instrument's measurement: the oracle's code, a seed stream of its own (the instrument stops
        the clock around it)."""

        def measure(gc_ids: np.ndarray, epoch: int) -> tuple[np.ndarray, int]:
            seed = self.seed * 100_003 + POOL_STREAM + epoch
            with self.token_counter.during(None):
                return self._pass_rates(dataset, row_of, gc_ids, self.config.oracle_rollouts, seed)

        return measure

    def _screener(self, dataset: Any, row_of: dict[int, int], keep: bool) -> Callable[[np.ndarray, int, int], Any]:
        """screen's and pilot's measurement with the live model and the task's checker; on the clock: it is charged.
        `keep`: the completions and their mu go with it, so that the trainer trains on them (`pilot_reuse`)."""
        from gaincurate.lab.strategies.screening import PilotCompletions, Screening, screen_seed
        from gaincurate.rollout.live import completion_logps

        def screen(gc_ids: np.ndarray, epoch: int, rollouts: int) -> Screening:
            with self.token_counter.during(ROLLOUT):  # sampling like the trainer's: its prefill is charged so
                sampled = self._sample(dataset, row_of, gc_ids, rollouts, screen_seed(self.seed, epoch))
            kept = None
            if keep:
                parts = list(zip(sampled.prompt_ids, sampled.completions, sampled.correct, strict=True))
                temperature = self.config.temperature
                with self.token_counter.during(REFRESH):  # the pilot's own pass over its completions
                    mus = [completion_logps(self.model, ids, group, temperature) for ids, group, _ in parts]
                kept = [
                    PilotCompletions(ids, group, correct.tolist(), mu)
                    for (ids, group, correct), mu in zip(parts, mus, strict=True)
                ]
            return Screening(np.rint(sampled.rates * rollouts), np.full(len(gc_ids), rollouts), sampled.tokens, kept)

        return screen

    def _curriculum(self) -> tuple[Any, Any, OracleStrategy | None]:
        from gaincurate.integrations.trl import GainCurriculum
        from gaincurate.schedule.config import ScheduleConfig

        config = self.config
        fields = config.schedule_fields(self.strategy)
        name = config.baseline if self.strategy in ORACLE_ARMS else fields.pop("strategy", self.strategy)
        if name == "probe":  # the embedding alone unless the arm asks for the likelihood, as the verdicts ran it
            fields.setdefault("likelihood", False)
        schedule = ScheduleConfig(strategy=name, subset_size=config.subset_size, seed=self.seed, **fields)
        started = self.clock.now()
        # A run directory like a user's (the oracle's strategy is the bench's own, which state.json cannot name), so
        # `gaincurate schedule status --run OUT/runs/NAME` shows the pair's readout; the bench keeps it (`train_pair`).
        run_dir = None if self.strategy in ORACLE_ARMS else self.work_dir / RUN
        curriculum = GainCurriculum(scores_dir=self.assets.scores_dir, config=schedule, run_dir=run_dir)
        dataset = curriculum.train_dataset()
        row_of = {int(gc_id): row for row, gc_id in enumerate(dataset["gc_id"])}
        if curriculum.run.needs_policy:  # screen, pilot: measure with the live model and the task's checker, charged
            keep = curriculum.strategy.name == "pilot"  # its completions join the groups (`pilot_reuse`)
            curriculum.policy_measure = self._screener(dataset, row_of, keep)
        oracle = None
        if self.strategy in ORACLE_ARMS:
            oracle = ORACLE_ARMS[self.strategy](self._oracle_measure(dataset, row_of), target=config.oracle_target,
                                                rollouts=config.oracle_rollouts)  # fmt: skip
            curriculum.use_strategy(oracle)
        if config.measure_pool:
            candidates = live_candidates(self, chain=config.task == "chain")  # what the probe could read
            self.instrument = PoolInstrument(curriculum, self._pool_measure(dataset, row_of), config.oracle_rollouts,
                                             lambda: self.clock.exclude("pool"), candidates)  # fmt: skip
        self.costs["curriculum_seconds"] += self.clock.now() - started
        return curriculum, dataset, oracle

    def run(self) -> dict[str, Any]:
        from gaincurate.integrations.trl import CurriculumGRPOTrainer
        from gaincurate.integrations.trl.noise import quiet_training_noise

        config = self.config
        previous_threads = torch.get_num_threads()
        torch.set_num_threads(config.threads)
        try:
            self.costs[WARM_UP_SECONDS] = warm_up_process(lambda: load_initial(self.assets, config))
            self.clock = Clock()
            self.model, self.tokenizer = load_initial(self.assets, config)
            quiet_training_noise(self.model)  # TRL's renamed-API FutureWarnings, on every pair otherwise
            initial_sha256 = state_sha256(self.model)
            self.token_counter = TokenCounter(self.model)
            with self.token_counter.during(REFRESH):  # the curriculum's first draw may measure with the model
                curriculum, dataset, oracle = self._curriculum()
            self.curriculum = curriculum
            self.counter = CountingReward(self.assets.reward, config.num_generations, lambda: self.model.training)
            callbacks = _Callbacks(self)
            listed = [callbacks.before(), curriculum.callback, callbacks.after()]
            if self.instrument is not None:  # after the curriculum's: it measures once the next epoch is drawn
                listed.append(self.instrument.callback())
            trainer = CurriculumGRPOTrainer(
                model=self.model, args=grpo_config(config, self.work_dir, self.seed), train_dataset=dataset,
                reward_funcs=[self.counter], processing_class=self.tokenizer, curriculum=curriculum, callbacks=listed,
            )  # fmt: skip
            trainer.remove_callback(PrinterCallback)  # TRL's log lines would go to stdout, which carries results
            self.measure(0)
            self.token_counter.phase = ROLLOUT
            trainer.train()
            if not self.points or self.points[-1]["step"] != trainer.state.global_step:
                self.measure(trainer.state.global_step)
        finally:
            torch.set_num_threads(previous_threads)
        return self._record(curriculum, oracle, initial_sha256)

    def _record(self, curriculum: Any, oracle: OracleStrategy | None, initial_sha256: str) -> dict[str, Any]:
        history = curriculum.history
        rescore = sum(float(line.get("timings", {}).get("rescore_s", 0.0)) for line in history)
        costs = {
            **self.costs,
            "rescore_seconds": rescore,
            "select_seconds": self.costs["curriculum_seconds"] - rescore,
            "total_seconds": self.points[-1]["seconds"],
            "eval_seconds": self.clock.excluded.get("eval", 0.0),
            PARAMETERS: matmul_parameters(self.model),
        }
        # As of the last point, whose rollouts, tokens and seconds include it; listed apart here. The epoch drawn
        # after the last step (never trained) was screened after that point and is not charged.
        spent = self.screen_charged
        if spent is not None and spent.rollouts:
            costs |= {"screen_rollouts": spent.rollouts, "screen_tokens": spent.tokens, "screen_seconds": spent.seconds}
        if oracle is not None:
            costs |= {"measure_rollouts": oracle.costs.rollouts, "measure_tokens": oracle.costs.tokens,
                      "measure_seconds": oracle.costs.seconds}  # fmt: skip
        if self.instrument is not None:
            costs |= self.instrument.costs
        return {
            "strategy": self.strategy,
            "seed": self.seed,
            "initial_sha256": initial_sha256,
            "points": self.points,
            "costs": costs,
            # Each epoch's savings readout, as the run's history holds it (`gaincurate.schedule.readout`).
            "epochs": [
                {"epoch": line["epoch"], "accuracy": line.get("accuracy"), "readout": line.get("readout")}
                for line in history
            ],
            "oracle_epochs": oracle.costs.epochs if oracle is not None else None,
            "pool_epochs": self.instrument.epochs if self.instrument is not None else None,
        }
