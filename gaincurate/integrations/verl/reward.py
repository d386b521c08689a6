"""verl reward functions that also write gaincurate feedback: one `{"gc_id", "reward"}` line per rollout.

The bundled one, for verl 0.9 and later (`reward.custom_reward_function`; verl 0.5-0.7 read the top-level
`custom_reward_function` instead):

    reward.custom_reward_function.path=pkg://gaincurate.integrations.verl.reward
    reward.custom_reward_function.name=compute_score
    +reward.custom_reward_function.reward_kwargs.feedback_file=run/rollouts.jsonl

`compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs)` has verl's signature. It
returns 1.0 when the response's last `\\boxed{...}` equals the ground truth under math-verify (so "3/4",
"\\frac{3}{4}" and "0.75" agree), else 0.0, whatever the `data_source`: the same check `gaincurate rollout`
makes, and rewards in the scheduler's default range [0, 1].

The feedback line goes to the `feedback_file` keyword when given (verl's `reward_kwargs` reach its reward
workers wherever Ray runs them), else to `$GAINCURATE_FEEDBACK_FILE` (`gaincurate schedule run` sets it; Ray
workers see it when `ray.init` starts them from the launch, not on a cluster started beforehand). Only rows
of a gaincurate export are recorded: those whose `extra_info` has our `gc_id`, and, for exports made before
it, those with an `index` (then the gc_id) and a `split` of "train" or none (verl's own validation files
carry "test" and no `gc_id`). verl's own `index` is never read as our id once `gc_id` is there: it counts rows
within a split, so it repeats across concatenated files.

`recording_score(fn)` wraps any other verl reward function (verl's own `default_compute_score`, say) so that
it writes the same lines; a dict result contributes its "score".
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from gaincurate.schedule.run.recorder import FEEDBACK_ENV
from gaincurate.schedule.run.recorder import feedback_file as recording_file

logger = logging.getLogger(__name__)


@functools.cache
def _checker() -> Callable[[str, Any], bool]:
    # Imported on first use: math-verify is an optional dependency, needed only where rewards are computed.
    from gaincurate.rollout.answers import AnswerChecker

    return AnswerChecker("boxed")


def compute_score(
    data_source: str | None,
    solution_str: str,
    ground_truth: Any,
    extra_info: Mapping[str, Any] | None = None,
    feedback_file: str | None = None,
    **kwargs: Any,
) -> float:
    """1.0 when the last boxed answer of `solution_str` matches `ground_truth` (math-verify), else 0.0.

    `data_source` is accepted and ignored, and so are the other keywords verl passes (it adds some per
    reward manager). The rollout's feedback line goes to `feedback_file` or `$GAINCURATE_FEEDBACK_FILE`.
    """
    del data_source, kwargs
    reward = 1.0 if _checker()(str(solution_str), ground_truth) else 0.0
    record_feedback(extra_info, reward, feedback_file)
    return reward


def recording_score(compute_score: Callable, path: str | Path | None = None) -> Callable:
    """Wrap a verl reward function so that each scored training rollout also writes a feedback line.

    The line goes to `path`, else the `feedback_file` keyword (popped before `compute_score` sees it), else
    `$GAINCURATE_FEEDBACK_FILE`. verl calls `compute_score(data_source, solution_str, ground_truth,
    extra_info, ...)`, by position or by keyword.
    """

    def scored(*args: Any, **kwargs: Any) -> Any:
        feedback_file = kwargs.pop("feedback_file", None)
        result = compute_score(*args, **kwargs)
        extra_info = kwargs.get("extra_info", args[3] if len(args) > 3 else None)
        record_feedback(extra_info, result, path or feedback_file)
        return result

    scored.__name__ = getattr(compute_score, "__name__", "compute_score")
    scored.__doc__ = compute_score.__doc__
    return scored


def exported_id(extra_info: Any) -> int | None:
    """The gc_id of an exported row from its `extra_info`: `gc_id`, or, in exports before it, `index` on a
    training row; None for a row that is not ours (verl's own files, validation rows)."""
    if not isinstance(extra_info, Mapping):
        return None
    if extra_info.get("gc_id") is not None:
        return int(extra_info["gc_id"])
    if extra_info.get("index") is None or extra_info.get("split", "train") not in ("train", None):
        return None
    return int(extra_info["index"])


def record_feedback(extra_info: Any, result: Any, feedback_file: str | Path | None = None) -> bool:
    """Append `{"gc_id": exported_id(extra_info), "reward": score}` for a row of an export; True when written."""
    gc_id = exported_id(extra_info)
    if gc_id is None:
        return False
    value = result.get("score") if isinstance(result, Mapping) else result
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    recorder = recording_file(feedback_file)
    if recorder is None:
        _warn_no_target()
        return False
    recorder([gc_id], [float(value)])
    return True


@functools.cache
def _warn_no_target() -> None:
    # Once per process: every rollout would repeat it.
    logger.warning(
        "gaincurate: no feedback file (pass +reward.custom_reward_function.reward_kwargs.feedback_file=PATH "
        "or set %s); rewards are not recorded",
        FEEDBACK_ENV,
    )
