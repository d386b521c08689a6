"""Reward functions that also record each rollout's reward as gaincurate feedback, `(gc_id, reward)`.

TRL (and any trainer that calls reward functions with the dataset columns as keywords) passes `gc_id`
to the reward function, so wrapping it is all a trainer script needs: in process the rewards go to the
curriculum (`GainCurriculum.wrap_rewards`), out of process to the feedback file that
`gaincurate schedule run` reads (`record_rewards(func)`). Rollouts of an evaluation (`eval_dataset`) are not
training feedback and are never recorded (`trainer_is_training`).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gaincurate.errors import ConfigError
from gaincurate.schedule.run.recorder import feedback_file

# The column a trainer that trains on completions it did not generate adds to a batch (a strategy's own measuring
# rollouts, reused): True for such a row, whose reward was recorded when it was measured, so it is not recorded again.
REUSED_COLUMN = "gc_reused"


class RecordingReward:
    """A TRL reward function that also hands each rollout's `(gc_id, reward)` to `sink`.

    TRL sees the wrapped function's name (for its logs) and calls it exactly as before.
    """

    def __init__(
        self,
        reward_func: Callable,
        sink: Callable,
        when: Callable[[], bool] | None = None,
        check: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.reward_func = reward_func
        self.sink = sink
        self.when = when
        self.check = check  # called with the keyword columns before the reward function runs; raises to refuse
        self.__name__ = getattr(reward_func, "__name__", type(reward_func).__name__)
        functools.update_wrapper(self, reward_func, assigned=("__module__", "__qualname__", "__doc__"), updated=())

    def _keep(self, rewards: Sequence[Any], kwargs: dict[str, Any]) -> None:
        if not (self.when() if self.when is not None else trainer_is_training(kwargs)):
            return
        gc_ids = kwargs.get("gc_id")
        if gc_ids is None:
            raise ConfigError(
                "the reward function got no gc_id column; train on a gaincurate dataset "
                "(curriculum.train_dataset() or an epoch file) with GRPOConfig(remove_unused_columns=False)"
            )
        reused = kwargs.get(REUSED_COLUMN)
        if reused is not None:  # reused rows were fed back when they were measured: only the fresh ones now
            kept = [i for i, flag in enumerate(reused) if not flag]
            gc_ids, rewards = [gc_ids[i] for i in kept], [rewards[i] for i in kept]
        self.sink(list(gc_ids), list(rewards))

    def __call__(self, *args: Any, **kwargs: Any) -> list[Any]:
        if self.check is not None:
            self.check(kwargs)
        rewards = self.reward_func(*args, **kwargs)
        self._keep(rewards, kwargs)
        return rewards


class AsyncRecordingReward(RecordingReward):
    """`RecordingReward` for an async reward function (TRL awaits those concurrently)."""

    async def __call__(self, *args: Any, **kwargs: Any) -> list[Any]:
        if self.check is not None:
            self.check(kwargs)
        rewards = await self.reward_func(*args, **kwargs)
        self._keep(rewards, kwargs)
        return rewards


def trainer_is_training(columns: dict[str, Any]) -> bool:
    """Whether the trainer calling a reward function with `columns` is training rather than evaluating.

    TRL's trainers pass every reward function `log_metric`, a method of the trainer itself, and tell training from
    evaluation by whether the model is in training mode; this asks the same. A caller that passes no such method
    (a trainer other than TRL's, a direct call) is taken to be training: pass `when=` to decide otherwise.
    """
    trainer = getattr(columns.get("log_metric"), "__self__", None)
    model = getattr(trainer, "model", None)
    return model is None or bool(getattr(model, "training", True))


def record_rewards(
    reward_func: Callable,
    *,
    path: str | Path | None = None,
    sink: Callable[[Sequence[Any], Sequence[Any]], None] | None = None,
    when: Callable[[], bool] | None = None,
    check: Callable[[dict[str, Any]], None] | None = None,
) -> RecordingReward:
    """Wrap a TRL reward function so every rollout's reward is also recorded as gaincurate feedback.

    `path`: append JSON lines to this file (out of process; default `$GAINCURATE_FEEDBACK_FILE`, which
    `gaincurate schedule run` sets). `sink(gc_ids, rewards)`: call this instead (in process). `when()`:
    record only while it returns True; without it, only while the calling TRL trainer trains, so that evaluation
    rollouts are never feedback (`trainer_is_training`). `check(kwargs)`: called before each call, to refuse one
    (it raises).
    """
    if sink is None:
        sink = feedback_file(path)
        if sink is None:
            raise ConfigError("record_rewards needs path= (or $GAINCURATE_FEEDBACK_FILE, set by `schedule run`)")
    # TRL's own test (trl.trainer.utils.is_async_callable), without importing trl here.
    target = reward_func.func if isinstance(reward_func, functools.partial) else reward_func
    is_async = inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(type(target).__call__)
    return (AsyncRecordingReward if is_async else RecordingReward)(reward_func, sink, when, check)
