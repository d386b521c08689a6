"""The in-process curriculum: a scheduler that a trainer process holds for the whole run.

`gaincurate schedule run` launches the trainer once per epoch. A trainer that stays up for the whole run
(TRL's GRPOTrainer through `gaincurate.integrations.trl`, verl 0.5-0.7.1 through
`gaincurate.integrations.verl.sampler`) holds a `CurriculumDriver` instead. It hands out the current epoch's
prompts, collects the rollouts' rewards as they arrive, and at the end of each epoch takes the same step
as `schedule next` (`gaincurate.schedule.run.driver.take_step`), with fresh scores when the caller re-scored:

    driver = CurriculumDriver(scores_dir="scores/", config=ScheduleConfig(subset_size=64), run_dir="run/")
    driver.plan.gc_ids                     # the epoch's prompts, in rank order
    driver.record(gc_ids, rewards)         # any number of times during the epoch
    record = driver.step(rescored=driver.rescore(model=model, tokenizer=tokenizer))   # at the epoch's end

With a run directory the driver keeps it through `gaincurate.schedule.run.rundir`, byte for byte as
`gaincurate schedule` does, so `gaincurate schedule status` reads an in-process run too.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from gaincurate.errors import ConfigError
from gaincurate.feedback import format_line
from gaincurate.schedule.config import ScheduleConfig
from gaincurate.schedule.core import EpochPlan, Rescored, Scheduler
from gaincurate.schedule.feedback import Feedback
from gaincurate.schedule.run import rundir
from gaincurate.schedule.run.driver import init_run, open_scheduler, take_step
from gaincurate.schedule.run.inputs import load_scores
from gaincurate.schedule.run.rundir import RunState
from gaincurate.schedule.state import ScheduleState
from gaincurate.schedule.strategies.base import POLICY, Spent
from gaincurate.schedule.strategies.screen import Screener

logger = logging.getLogger(__name__)

STATE_DICT_VERSION = 2  # 2: mu in gain's memory (1: beside the state, for every strategy)


class CurriculumDriver:
    """A `Scheduler` plus the rollout bookkeeping and run directory an in-process trainer needs.

    Give `scores_dir` (and `config`) for a new schedule; give `run_dir` too to keep it on disk. An
    existing `run_dir` is continued from its state.json; a `config` or `scores_dir` passed with it must
    match the ones it was started with. `write=False` (the other ranks of a multi-process job) reads an
    existing run directory but never writes one. `start_later=True` (a trainer that checks its set-up first)
    holds a run directory it would write in memory until `start_run_dir()`. `state_dict()` / `load_state_dict()`
    carry what a trainer checkpoint needs to resume exactly: the scheduler state and the current epoch's rollouts
    so far.
    """

    def __init__(
        self,
        scores_dir: str | Path | None = None,
        config: ScheduleConfig | None = None,
        *,
        run_dir: str | Path | None = None,
        write: bool = True,
        start_later: bool = False,
    ) -> None:
        self.run_dir = Path(run_dir) if run_dir is not None else None
        # A trainer checks its set-up before anything is written: until `start_run_dir()` a new run directory
        # (or an untrained one given another config) is kept in memory only.
        self._waiting = start_later and write and _starts_anew(self.run_dir, config)
        if self._waiting and scores_dir is None and rundir.holds_run(self.run_dir):
            scores_dir = rundir.load_run(self.run_dir).scores_dir  # the untrained run's scores
        self._open(None if self._waiting else self.run_dir, scores_dir, config, write=write and not self._waiting)

    def start_run_dir(self) -> None:
        """Keep the schedule in `run_dir` from now on, for a driver built with `start_later=True`: the run
        directory is written (or an untrained one started again) with this driver's scores and config, and
        epoch 0 drawn there. Nothing happens when the driver already keeps it, or keeps none."""
        if self._waiting:
            self._waiting = False
            self._open(self.run_dir, self.scores_dir, self.config, write=True)

    def _open(
        self, run_dir: Path | None, scores_dir: str | Path | None, config: ScheduleConfig | None, *, write: bool
    ) -> None:
        """Continue or start the run in `run_dir` (None: in memory), and draw epoch 0 when it waits for nothing."""
        self._run = _open_run(run_dir, scores_dir, config, write=write)
        if self._run is not None:
            self.scheduler, self.scores = open_scheduler(self._run)
            self.scores_dir = Path(self._run.scores_dir)
        else:
            self.scores_dir = Path(scores_dir)
            self.scores = load_scores(self.scores_dir)
            config = config or ScheduleConfig()
            self.scheduler = Scheduler(config, self.scores.prompts, scores=self.scores)
        self.write = write and run_dir is not None
        self.config = self.scheduler.config
        self.subset_size = self.scheduler.subset_size  # prompts per epoch, resolved for this prompt set
        self.history: list[dict[str, Any]] = []  # the records of the steps taken by this driver
        self._records: list[tuple[int, float]] = []
        self._epoch_started = time.perf_counter()
        # screen draws epoch 0 by measuring candidates with the policy, which a trainer hands over later
        # (`use_screener`); every other strategy draws it now.
        if self.scheduler.state.epoch < 0 and not self.screens:
            self._take()

    @property
    def screens(self) -> bool:
        """Whether the strategy measures candidates with the policy (screen) before each draw."""
        return POLICY in self.scheduler.strategy.about.needs

    def use_screener(self, screener: Screener) -> None:
        """The policy a screen strategy measures with from now on (see `gaincurate.schedule.run.screeners`)."""
        if self.screens:
            self.scheduler.use_screener(screener)

    def live_screener(self, model: Any, tokenizer: Any, *, keep: dict[str, Any] | None = None) -> Screener:
        """A screener measuring with `model` as it is at each draw, over this driver's scores and seed
        (`gaincurate.schedule.run.screeners.live_screener`; `keep`: the trainer's sampling, completions kept)."""
        from gaincurate.schedule.run.screeners import live_screener

        return live_screener(self.scores_dir, model, tokenizer, seed=self.config.seed, keep=keep)

    @property
    def screen_spent(self) -> Spent:
        """What screening has cost this process so far, a snapshot (zeros for a strategy that does not screen)."""
        policy = self.scheduler.policy
        return dataclasses.replace(policy.spent) if self.screens and policy is not None else Spent()

    def use_strategy(self, strategy: Any) -> None:
        """Draw with `strategy` from epoch 0 on, instead of the config's (before training; no run directory)."""
        if self.run_dir is not None or self.history or self._records:
            raise ConfigError("a strategy object replaces the config's only before training, without a run directory")
        self.scheduler = Scheduler(self.config, self.scores.prompts, strategy=strategy)
        if not self.screens:
            self._take()

    def subset_choice(self) -> str:
        """One line on how the subset size was chosen, for the trainer's log."""
        from gaincurate.schedule.sizes import subset_choice

        config = self.config
        return subset_choice(config.subset_size, self.scheduler.n_prompts, config.subset_multiple, self.subset_size)

    def prompt_table(self, data_format: str):
        """Every scored prompt, in gc_id order, as an epoch file's table in `data_format` (a trainer's dataset)."""
        from gaincurate.schedule.run.epochs import epoch_table

        return epoch_table(self.scores, self.scores.prompts.gc_ids, data_format=data_format, metadata={})

    def mark_finished(self, ended: bool) -> None:
        """The trainer ended (`gaincurate schedule status` then says the run is finished), or trains again."""
        if self.write:
            finished = self.epoch if ended else None
            if self._run.finished != finished:
                self._run = dataclasses.replace(self._run, finished=finished)
                rundir.save_run(self.run_dir, self._run)

    @property
    def plan(self) -> EpochPlan:
        """The epoch being trained: its prompts' gc_ids in rank order (screen draws epoch 0 on first use)."""
        if self.scheduler.state.epoch < 0:
            self._take()
        plan = self.scheduler.current
        assert plan is not None
        return plan

    @property
    def epoch(self) -> int:
        return self.scheduler.state.epoch

    @property
    def records(self) -> list[dict[str, Any]]:
        """The current epoch's rollouts so far, as feedback lines."""
        return [{"gc_id": gc_id, "reward": reward} for gc_id, reward in self._records]

    def record(self, gc_ids: Iterable[Any], rewards: Iterable[Any]) -> int:
        """Add rollouts of the current epoch; a reward of None or NaN (not applicable) is skipped."""
        added = []
        reward_min, reward_max = self.config.reward_min, self.config.reward_max
        for gc_id, reward in zip(gc_ids, rewards, strict=True):
            if reward is None or (isinstance(reward, float) and math.isnan(reward)):
                continue
            value = float(reward)
            if not reward_min <= value <= reward_max:
                fix = f"reward_min={value:g}" if value < reward_min else f"reward_max={value:g}"
                raise ConfigError(
                    f"reward {value:g} of gc_id {int(gc_id)} is outside [{reward_min:g}, reward_max={reward_max:g}]; "
                    f"if it is the reward of a {'wrong' if value < reward_min else 'right'} answer, pass "
                    f"ScheduleConfig({fix})"
                )
            added.append((int(gc_id), value))
        self._records.extend(added)
        return len(added)

    def replace_records(self, records: Iterable[Any]) -> None:
        """Set the current epoch's rollouts to `records` (`(gc_id, reward)` pairs), e.g. gathered from all ranks."""
        self._records = [(int(gc_id), float(reward)) for gc_id, reward in records]

    def rescore(self, *, model: Any = None, tokenizer: Any = None, checkpoint: str | Path | None = None):
        """What the newest model says of the prompts the strategy asks about now (fresh scores, answer
        likelihoods: `gaincurate.schedule.run.fresh`), or None when none are due.

        Pass the live model and its tokenizer (in-process trainers), or a checkpoint folder.
        """
        ids = self.scheduler.rescore_ids()
        if ids is None:
            return None
        from gaincurate.schedule.run.fresh import measure

        started = time.perf_counter()
        rescored = measure(self.scheduler.strategy, self.scores_dir, ids, checkpoint=checkpoint, model=model,
                           tokenizer=tokenizer)  # fmt: skip
        self._rescore_seconds = time.perf_counter() - started
        return rescored

    def step(self, *, rescored: Rescored | None = None, ang: float | None = None, checkpoint: str | None = None):
        """End the current epoch: summarize its rollouts, move mu, draw the next epoch. Returns the record."""
        if not self._records:
            raise ConfigError(
                f"no rollout reward was recorded for epoch {self.epoch}; record the rewards of the reward "
                "function that says whether an answer is right (see gaincurate.integrations.trl.GainCurriculum."
                "wrap_rewards, or the verl sampler's update)"
            )
        train_seconds = time.perf_counter() - self._epoch_started
        started = time.perf_counter()
        summary = self.scheduler.summarize(self.records)
        timings = {"feedback_s": time.perf_counter() - started, "train_s": train_seconds}
        if rescored is not None:
            timings["rescore_s"] = getattr(self, "_rescore_seconds", 0.0)
        archive = "".join(format_line(gc_id, reward) for gc_id, reward in self._records).encode()
        record = self._take(
            summary, rescored=rescored, ang=ang, archive=archive, checkpoint=checkpoint, timings=timings
        )
        self._records = []
        self._epoch_started = time.perf_counter()
        return record

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume mid-run: the scheduler state and this epoch's rollouts so far."""
        return {
            "version": STATE_DICT_VERSION,
            "schedule": self.scheduler.state.to_json(),
            "records": [[gc_id, reward] for gc_id, reward in self._records],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Return to a saved point (a trainer resuming from a checkpoint); the run directory follows."""
        if state.get("version") == 1:  # gaincurate 0.x: mu beside the state, for every strategy
            mu = state["schedule"].get("mu", 0.0)
            memory = state["schedule"].get("memory") or {}
            keeps_mu = "mu" in (self.scheduler.strategy.start(self.scheduler.prompts)[1] or {})
            state = {**state, "schedule": {**state["schedule"], "memory": {**memory, "mu": mu} if keeps_mu else memory}}
        elif state.get("version") != STATE_DICT_VERSION:
            raise ConfigError(
                f"the checkpoint's curriculum state has version {state.get('version')}; "
                f"this gaincurate reads 1 and {STATE_DICT_VERSION}: upgrade gaincurate to resume from it"
            )
        schedule = ScheduleState.from_json(state["schedule"])
        self.scheduler = Scheduler(self.config, self.scores.prompts, schedule, strategy=self.scheduler.strategy,
                                   filters=self.scheduler.filters)  # fmt: skip
        self._records = [(int(gc_id), float(reward)) for gc_id, reward in state["records"]]
        self._epoch_started = time.perf_counter()
        if self.write:
            self._run = dataclasses.replace(self._run, schedule=self.scheduler.state)
            rundir.save_run(self.run_dir, self._run)

    def _take(self, feedback: Feedback | None = None, **step: Any) -> dict[str, Any] | None:
        """One `take_step`, written to the run directory when this driver writes one."""
        result = take_step(
            self.scheduler, self.scores, run_dir=self.run_dir if self.write else None, run=self._run, feedback=feedback,
            **step,
        )  # fmt: skip
        if result.run is not None:
            self._run = result.run
        if result.record is not None:
            self.history.append(result.record)
            for warning in (result.record.get("readout") or {}).get("warnings", []):  # the trainer's log shows them
                logger.warning("gaincurate: epoch %d: %s", result.record["epoch"], warning)
        return result.record


def _starts_anew(run_dir: Path | None, config: ScheduleConfig | None) -> bool:
    """Whether opening `run_dir` writes it: it holds no run yet, or an untrained one that `config` changes."""
    if run_dir is None:
        return False
    if not rundir.holds_run(run_dir):
        return True
    return config is not None and rundir.untrained(run_dir) and rundir.load_run(run_dir).config != config


def _open_run(
    run_dir: Path | None, scores_dir: str | Path | None, config: ScheduleConfig | None, *, write: bool
) -> RunState | None:
    """The run an in-process driver continues or starts in `run_dir`; None when it keeps no run directory."""
    if run_dir is not None and rundir.holds_run(run_dir):
        run = rundir.load_run(run_dir)
        if config is not None and config != run.config and write and rundir.untrained(run_dir):
            rundir.clear_untrained(run_dir)  # never trained on: started again with this config
            return _open_run(run_dir, scores_dir, config, write=write)
        if config is not None and config != run.config:
            started, given = run.config.to_dict(), config.to_dict()
            key = next(k for k in sorted(started.keys() | given.keys()) if started.get(k) != given.get(k))
            raise ConfigError(
                f"{run_dir} was started and trained with {key}={started.get(key)!r}, not {key}={given.get(key)!r}; "
                "drop config= to continue it, or pick a new run_dir"
            )
        if scores_dir is not None and Path(scores_dir).resolve() != Path(run.scores_dir):
            raise ConfigError(
                f"{run_dir} schedules {run.scores_dir}, not {scores_dir}; drop scores_dir= or pick a new run_dir"
            )
        return run
    if run_dir is not None and write:
        if scores_dir is None:
            raise ConfigError(f"{run_dir} holds no schedule yet; pass scores_dir= to start one there")
        return init_run(run_dir, Path(scores_dir), config or ScheduleConfig())[0]
    if scores_dir is None:
        raise ConfigError("a curriculum needs scores_dir= (a `gaincurate score` output) or an existing run_dir=")
    return None
