"""Pilot completions kept in their trained group, in TRL in process: a committed prompt costs r pilot + n - r fresh.

A strategy that pilots (`pilot`: k x m candidates, r rollouts each of the policy at the epoch's start) measures
what it commits with rollouts the trainer would otherwise throw away. Here they join the trainer's own group:

* the curriculum's screener is wrapped (`keeping_pilots`) so that each pilot's completions (`PilotCompletions`:
  prompt and completion token ids, rewards, and mu, the per-token log-probs of the policy that sampled them) go to
  a `PilotStore` in memory; each pilot replaces the last one's, and nothing is written to the run directory;
* `PilotReuseMixin._generate_single_turn`: for a committed prompt with k = min(r, n - 1) stored completions, the
  trainer generates only n - k (the last k rows of its group are the stored ones, spliced in) and TRL scores and
  computes the group advantage over all n, as for any group. At least one row stays fresh, so every trained
  prompt still brings feedback of the current epoch;
* the reused rows carry an importance weight pi_old / mu (capped at 2, truncated importance sampling as replay's
  default): the pilot sampled with the policy at the epoch's start, up to steps_per_epoch - 1 optimizer steps ago.
  It is folded into TRL's loss inputs by `replay.loss.fold_replay_weights`, at the loss forward (whose
  log-probs are pi_old with TRL's one generation per optimizer step: `replay.loss_forward`, the hook
  rollout replay uses too) or from TRL's own old log-probs;
* each reused row is marked in the batch's `gc_reused` column, so the curriculum's feedback (`RecordingReward`) does
  not record its reward again: the pilot already fed it to the posterior.

Only what the pilot kept is reused: after a kill and resume the rest of that epoch rolls full groups (the pilot
in state.json keeps its measurement, not its completions). A reused completion must have been sampled from the very
prompt tokens the trainer renders; a group whose prompt differs is generated in full. Set-ups it cannot weigh
(`reuse_problems`: vLLM, several processes, rollout replay, tools, other losses) train full groups, with one warning.
TRL internals used (trl 1.16): `_generate_and_score_completions`, `_generate_single_turn`, `_compute_loss`,
`_get_per_token_logps_and_entropies`, `max_completion_length`, `num_generations`, `_metrics`.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from gaincurate.integrations.trl.replay.loss import fold_replay_weights
from gaincurate.integrations.trl.replay.loss_forward import LossForward
from gaincurate.integrations.trl.rewards import REUSED_COLUMN
from gaincurate.lab.strategies.screening import Metered, PilotCompletions, Screener, Screening, screener_for

logger = logging.getLogger(__name__)

REUSE_IS_CAP = 2.0  # cap on pi_old / mu, as replay's default (`ReplayConfig.replay_is_cap`)
SUPPORTED_LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo")  # the clipped-ratio losses the weight folds into
# Keys added to TRL's batch; TRL's shuffle and split carry them with the rows, its loss ignores them.
REUSED_KEY = "pilot_reused"  # [N] bool: a row taken from the pilot
BEHAVIOUR_KEY = "pilot_behaviour_logps"  # [N, C] mu of the reused rows (0 elsewhere)
LOSS_ORDER = (
    "reusing pilot completions expects TRL's _compute_loss to compute the policy log-probs (through "
    "_get_per_token_logps_and_entropies) before it reads advantages; pin trl to 1.16 or report it"
)


@dataclass
class PilotStore:
    """The last pilot's completions by gc_id, and the optimizer step they were sampled at; each taken once."""

    kept: dict[int, PilotCompletions] = field(default_factory=dict)
    step: int = 0
    fresh_rows: list[int] = field(default_factory=list)  # rows generated per training batch that reused any

    def keep(self, gc_ids: np.ndarray, screening: Screening, step: int) -> None:
        completions = screening.completions or []  # none kept: the epoch trains full groups
        if completions and len(completions) != len(gc_ids):
            raise ValueError(f"the screener kept completions for {len(completions)} of {len(gc_ids)} candidates")
        self.kept = {int(g): c for g, c in zip(gc_ids, completions, strict=False) if c is not None}
        self.step = int(step)

    def take(self, gc_id: int) -> PilotCompletions | None:
        return self.kept.pop(int(gc_id), None)


def keeping_pilots(screener: Screener, store: PilotStore, trainer: Any) -> Screener:
    """`screener`, its completions kept in `store` (what the pilot returned, at the trainer's current step)."""

    def screen(gc_ids: np.ndarray, epoch: int, rollouts: int) -> Screening:
        screening = screener(gc_ids, epoch, rollouts)
        store.keep(np.asarray(gc_ids), screening, trainer.state.global_step)
        return screening

    return screen


def reuse_problems(trainer: Any) -> list[str]:
    """What in this trainer's set-up keeps pilot completions out of its groups (empty: they can be reused)."""
    problems = []
    if trainer.accelerator.num_processes != 1:
        problems.append(f"{trainer.accelerator.num_processes} processes")
    if trainer.use_vllm or getattr(trainer, "use_transformers_continuous_batching", False):
        problems.append("use_vllm or continuous batching")
    if hasattr(trainer, "replay_buffer"):
        problems.append("rollout replay")
    if trainer.tools or trainer.environment_factories is not None or trainer.rollout_func is not None:
        problems.append("tools, environments or a rollout_func")
    if trainer.loss_type not in SUPPORTED_LOSS_TYPES or trainer.importance_sampling_level != "token":
        problems.append(f"loss_type={trainer.loss_type!r} at level {trainer.importance_sampling_level!r}")
    if trainer.num_generations < 2:
        problems.append("num_generations < 2")
    return problems


def pilot_sampling(trainer: Any) -> dict[str, Any]:
    """The trainer's own sampling settings, for a live pilot whose completions join its groups."""
    return {"temperature": float(trainer.temperature), "max_new_tokens": int(trainer.max_completion_length)}


def reuse_pilots(trainer: Any) -> PilotStore | None:
    """A store for the pilot's completions when the trainer can weigh them, else None (with one warning saying
    why)."""
    # `reusing_screener` gives the trainer's class PilotReuseMixin once this store is set.
    problems = reuse_problems(trainer)
    if problems:
        logger.warning(
            "gaincurate: the pilot's completions are not reused in the trained groups (%s); the trainer rolls "
            "full groups and the pilot rollouts are charged on top",
            "; ".join(problems),
        )
        return None
    trainer._pilot_store = PilotStore()

    def fold(inputs: dict[str, Any], logps: torch.Tensor) -> None:
        trainer._fold_pilot_weights(inputs, logps)  # looked up when it runs: the class is swapped after this

    trainer._pilot_loss_forward = LossForward(fold, LOSS_ORDER)
    return trainer._pilot_store


def reusing_screener(at: Any) -> Metered:
    """What `pilot` measures with in TRL (its `about.measure`, given the trainer): the live policy, whose completions
    are kept and reused in their trained groups when the trainer can weigh them (its class then gains
    `PilotReuseMixin`); otherwise the plain live screener, with one warning saying why."""
    trainer = at.trainer
    store = reuse_pilots(trainer)  # None: the pilot's completions are not reused
    # When they are, the live pilot samples as the trainer does and keeps what it sampled.
    screener = screener_for(at, keep=None if store is None else pilot_sampling(trainer))
    if store is None:
        return screener
    if not isinstance(trainer, PilotReuseMixin):
        trainer.__class__ = with_pilot_reuse(type(trainer))
    return Metered(keeping_pilots(screener.screener, store, trainer))


@functools.cache
def with_pilot_reuse(trainer_class: type) -> type:
    """`trainer_class` with `PilotReuseMixin` first in its bases."""
    return type(f"PilotReuse{trainer_class.__name__}", (PilotReuseMixin, trainer_class), {})


class PilotReuseMixin:
    """Trains a committed prompt's group on n - k fresh completions and its k pilot ones (inert without a store).

    A trainer's class gains it when its curriculum's strategy keeps the pilot's completions and the trainer can
    weigh them (`reusing_screener`)."""

    # Set by `reuse_pilots`; the class is given to a built trainer, whose __init__ has run.
    _pilot_store: PilotStore | None = None
    _pilot_loss_forward: LossForward | None = None
    _reuse_plan: dict[str, Any] | None = None

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        store = self._pilot_store
        if store is None or not store.kept or not self.model.training:
            return super()._generate_and_score_completions(inputs)
        plan = self._reuse_rows(inputs, store)
        if not plan:
            return super()._generate_and_score_completions(inputs)
        inputs = [{**row, REUSED_COLUMN: index in plan} for index, row in enumerate(inputs)]
        self._reuse_plan = {"rows": plan, "inputs": inputs}
        try:
            output = super()._generate_and_score_completions(inputs)
        finally:
            self._reuse_plan = None
        reused = [index for index in plan if inputs[index][REUSED_COLUMN]]  # a prompt that differed was not
        completion_ids = output["completion_ids"]
        mask = torch.zeros(completion_ids.size(0), dtype=torch.bool, device=completion_ids.device)
        behaviour = torch.zeros(completion_ids.shape, dtype=torch.float32, device=completion_ids.device)
        for index in reused:
            logps = torch.tensor(plan[index].logps, dtype=torch.float32)[: completion_ids.size(1)]
            behaviour[index, : len(logps)] = logps.to(behaviour.device)
            mask[index] = True
        if reused:
            output[REUSED_KEY], output[BEHAVIOUR_KEY] = mask, behaviour
        metrics = self._metrics["train"]
        metrics["pilot/reused_fraction"].append(len(reused) / len(inputs))
        metrics["pilot/staleness_steps"].append(float(self.state.global_step - store.step))
        return output

    def _reuse_rows(self, inputs: list[dict[str, Any]], store: PilotStore) -> dict[int, Any]:
        """Row -> the kept completion it takes: the last k rows of each group whose prompt the pilot kept."""
        n, plan = self.num_generations, {}
        for start in range(0, len(inputs) - n + 1, n):
            gc_ids = {row.get("gc_id") for row in inputs[start : start + n]}
            kept = store.take(next(iter(gc_ids))) if len(gc_ids) == 1 and None not in gc_ids else None
            if kept is None:
                continue
            k = min(len(kept.completion_ids), n - 1)
            for j in range(k):
                plan[start + n - k + j] = _Row(kept.prompt_ids, kept.completion_ids[j], kept.logps[j])
        return plan

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, *args, **kwargs):
        state = self._reuse_plan
        if state is None:
            return super()._generate_single_turn(
                prompt_ids, images, multimodal_fields, num_generations, *args, **kwargs
            )
        plan, inputs = state["rows"], state["inputs"]
        usable = {}
        if images is None and not multimodal_fields and len(prompt_ids) == len(inputs):
            usable = {i: row for i, row in plan.items() if list(prompt_ids[i]) == list(row.prompt_ids)}
        if len(usable) < len(plan):
            logger.warning("gaincurate: %d pilot completions were sampled from other prompt tokens than the "
                           "trainer's; their groups are generated in full", len(plan) - len(usable))  # fmt: skip
            for index in set(plan) - set(usable):
                inputs[index][REUSED_COLUMN] = False
        fresh = [i for i in range(len(prompt_ids)) if i not in usable]
        generated, _ = super()._generate_single_turn(
            [prompt_ids[i] for i in fresh], images, multimodal_fields, num_generations, *args, **kwargs
        )
        self._pilot_store.fresh_rows.append(len(fresh))
        completions: list[Any] = [None] * len(prompt_ids)
        for i, ids in zip(fresh, generated, strict=True):
            completions[i] = ids
        for i, row in usable.items():
            completions[i] = list(row.completion_ids[: self.max_completion_length])
        return completions, None

    # -- the loss forward: pi_old is known there, so the weight pi_old / mu is folded then --------------

    def _compute_loss(self, model, inputs):
        if REUSED_KEY not in inputs:  # a batch with reused rows comes only with a store (`reuse_pilots`)
            return super()._compute_loss(model, inputs)
        return self._pilot_loss_forward.compute_loss(super()._compute_loss, model, inputs)

    def _get_per_token_logps_and_entropies(self, *args: Any, **kwargs: Any):
        result = super()._get_per_token_logps_and_entropies(*args, **kwargs)
        return result if self._pilot_loss_forward is None else self._pilot_loss_forward.saw(result)

    def _fold_pilot_weights(self, inputs: dict[str, Any], logps: torch.Tensor) -> None:
        """Fold pi_old / mu into the reused rows' inputs, once: TRL's old log-probs when it computed them at
        generation, else the loss forward's (no optimizer step since generation). Fresh rows stay as they were."""
        reused = inputs.pop(REUSED_KEY).unsqueeze(1)
        behaviour = inputs.pop(BEHAVIOUR_KEY)
        old = inputs.get("old_per_token_logps")
        old = logps if old is None else old
        mask = inputs["completion_mask"]
        folded = fold_replay_weights(
            old, torch.where(reused, behaviour.to(old.dtype), old), inputs["advantages"], mask, REUSE_IS_CAP
        )
        inputs["old_per_token_logps"] = folded.old_logps
        inputs["advantages"] = folded.advantages
        weights = torch.exp(folded.log_weight[mask.bool() & reused])
        if weights.numel():
            self._metrics["train"]["pilot/is_weight_mean"].append(weights.mean().item())
            self._metrics["train"]["pilot/is_weight_max"].append(weights.max().item())


@dataclass(frozen=True)
class _Row:
    prompt_ids: list[int]
    completion_ids: list[int]
    logps: list[float]
