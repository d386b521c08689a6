"""Rollout replay for TRL's GRPOTrainer (the TRL adapter): generate for a fraction of each batch, replay the rest.

The second half of DOTS+RR (arXiv 2506.05316). Each generation round takes the first ceil(delta * B)
prompts of the batch the trainer's sampler delivered and generates for them as usual; the other prompt
slots are filled with rollout groups drawn uniformly from a FIFO buffer of recent groups. Staleness is
corrected by an importance weight inside the clipped loss (see `replay.loss`). Switch it on by swapping
the trainer class:

    from gaincurate.integrations.trl.replay import ReplayConfig, ReplayGRPOTrainer

    trainer = ReplayGRPOTrainer(
        model=model, reward_funcs=reward, args=grpo_config, train_dataset=dataset,
        replay_config=ReplayConfig(replay_fresh_fraction=0.5),
    )
    trainer.train()

or put `ReplayMixin` first in the bases of your own GRPOTrainer subclass. A curriculum still decides which
prompts are fresh: `class Trainer(CurriculumMixin, ReplayMixin, GRPOTrainer)` (`gaincurate.integrations.trl`),
or `curriculum.attach(ReplayGRPOTrainer(...))`, overrides `_get_train_sampler`.

Where the log-probs come from. The loss needs mu (the generating policy) for every stored token and pi_old
(the policy at the start of the step) for every replayed token.
* When TRL computes `old_per_token_logps` at generation (gradient_accumulation_steps is not a multiple
  of steps_per_generation * num_iterations, so a generation batch outlives an optimizer step), those are
  mu for the fresh rows, and one extra no-grad forward gives pi_old for the replayed rows.
* Otherwise (TRL's default: one generation per optimizer step) pi_old is exactly the policy the loss's own
  forward evaluates, so no extra forward runs: `_compute_loss` hands the loss forward's log-probs to
  `_use_loss_logps` (`replay.loss_forward`, a hook the lab's reuse of measuring rollouts shares),
  which records mu for the fresh rows and folds the weight into the replayed rows before TRL reads them. TRL's
  inputs hold NaN until then, so a TRL that read them earlier fails loudly.

TRL internals used (trl 1.x, checked against 1.16): wrapped `_generate_and_score_completions`,
`_calculate_rewards`, `_compute_loss`, `_get_per_token_logps_and_entropies`, `_save_checkpoint` and
`train`; called `_get_per_token_logps_and_entropies`; read `num_generations`, `scale_rewards`,
`multi_objective_aggregation`, `reward_weights`, `loss_type`, `importance_sampling_level`, `_tokenizer`,
`pad_to_multiple_of`, `_metrics`. The loss itself is TRL's, on `old_per_token_logps` and [B, T]
`advantages` that carry the replay weight. This is the one replay module that imports TRL.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gaincurate.errors import ConfigError
from gaincurate.integrations.trl.replay.batch import (
    count_prompt_groups,
    group_fields,
    join_batches,
    join_reference,
    join_rows,
    replay_tensors,
)
from gaincurate.integrations.trl.replay.buffer import REPLAY_BUFFER_FILE, ReplayBuffer, RolloutGroup
from gaincurate.integrations.trl.replay.config import ReplayConfig
from gaincurate.integrations.trl.replay.loss import (
    FoldedReplay,
    fold_replay_weights,
    group_advantages,
    group_has_signal,
)
from gaincurate.integrations.trl.replay.loss_forward import LossForward

try:
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint
    from trl import GRPOTrainer
except ImportError as error:  # pragma: no cover - depends on the install
    raise ImportError("rollout replay needs TRL: pip install 'gaincurate[trl]'") from error

try:
    from trl.models.utils import disable_gradient_checkpointing
except ImportError:  # pragma: no cover - moved in some TRL versions; it only silences a warning
    disable_gradient_checkpointing = None

logger = logging.getLogger(__name__)

# Losses of TRL's clipped-ratio family: the replay weight folds into their inputs (see the loss module).
SUPPORTED_LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo")
# Keys `_generate_and_score_completions` returns for text-only, tool-free, vLLM-free training.
_TEXT_OUTPUT_KEYS = frozenset(
    {
        "prompt_ids",
        "prompt_mask",
        "completion_ids",
        "completion_mask",
        "advantages",
        "num_items_in_batch",
        "old_per_token_logps",
        "ref_per_token_logps",
    }
)
# Keys replay adds to TRL's batch: TRL's shuffle and split carry them with the rows; its loss ignores them.
ROW_KEY = "replay_row"  # [N] row index in the generation batch
CAPTURE_KEY = "replay_capture"  # [N] bool: fresh row whose mu the loss forward records
REPLAYED_KEY = "replay_replayed"  # [N] bool: replayed row (weight folded at loss time)
BEHAVIOUR_KEY = "replay_behaviour_logps"  # [N, C] mu of replayed rows (folded at loss time)
ADVANTAGES_KEY = "replay_advantages"  # [N] advantages (folded at loss time; TRL's key holds NaN until then)
LOSS_ORDER = (
    "rollout replay expects TRL's _compute_loss to compute the policy log-probs (through "
    "_get_per_token_logps_and_entropies) before it reads advantages and old_per_token_logps; "
    "this TRL does not (or the loss is NaN). Pin trl to a tested version (1.16) or report it."
)


@dataclass(frozen=True)
class ReplayRound:
    """What one generation round did; `ReplayMixin.replay_history` keeps one per round."""

    step: int
    fresh_prompts: int
    replayed_uids: tuple[int, ...]
    stored_uids: tuple[int, ...] = ()


class ReplayMixin:
    """Adds rollout replay to a TRL `GRPOTrainer` subclass. Put it before the trainer in the bases."""

    def __init__(self, *args: Any, replay_config: ReplayConfig | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.replay_config = replay_config or ReplayConfig()
        self._check_replay_supported()
        batch_prompts = self.args.generation_batch_size // self.num_generations
        capacity = self.replay_config.buffer_capacity(batch_prompts)
        self.replay_buffer = ReplayBuffer(capacity=capacity, seed=self.replay_config.replay_seed)
        self.replay_history: list[ReplayRound] = []
        self._replay_rewards: torch.Tensor | None = None
        # Fresh groups waiting for their mu from the loss forward, and the mu rows recorded so far.
        self._pending_groups: list[dict[str, Any]] = []
        self._captured_logps: dict[int, torch.Tensor] = {}
        self._loss_forward = LossForward(self._use_loss_logps, LOSS_ORDER)

    def _check_replay_supported(self) -> None:
        problems = []
        if self.accelerator.num_processes != 1:
            problems.append(f"{self.accelerator.num_processes} processes (replay runs on one process)")
        if self.use_vllm:
            problems.append("use_vllm=True (the behaviour log-probs would be the trainer's, not vLLM's)")
        if self.tools or self.environment_factories is not None or self.rollout_func is not None:
            problems.append("tools, environments or a rollout_func")
        if self.loss_type not in SUPPORTED_LOSS_TYPES:
            problems.append(f"loss_type={self.loss_type!r} (supported: {', '.join(SUPPORTED_LOSS_TYPES)})")
        if self.importance_sampling_level != "token":
            problems.append(f"importance_sampling_level={self.importance_sampling_level!r} (use 'token')")
        if problems:
            raise ConfigError(
                "rollout replay does not support "
                + "; ".join(problems)
                + "; drop replay_config or change these settings"
            )

    # -- resume ------------------------------------------------------------------------------------

    def train(self, resume_from_checkpoint: str | bool | None = None, *args: Any, **kwargs: Any):
        checkpoint = resume_from_checkpoint
        if checkpoint is True:
            checkpoint = get_last_checkpoint(self.args.output_dir)  # None: the Trainer raises its own error
        if isinstance(checkpoint, str | os.PathLike):
            path = Path(checkpoint) / REPLAY_BUFFER_FILE
            if path.exists():
                self.replay_buffer = ReplayBuffer.load(path, capacity=self.replay_buffer.capacity)
            else:
                logger.warning("%s has no %s; replay starts from an empty buffer", checkpoint, REPLAY_BUFFER_FILE)
        output = super().train(resume_from_checkpoint, *args, **kwargs)
        self._flush_pending_groups()
        return output

    def _save_checkpoint(self, model, trial) -> None:
        self._flush_pending_groups()
        # Written before the Trainer's files so that trainer_state.json, which marks a checkpoint complete
        # for readers of the folder, never appears before the buffer does.
        if self.args.should_save:
            folder = Path(self._get_output_dir(trial=trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            self.replay_buffer.save(folder / REPLAY_BUFFER_FILE)
        super()._save_checkpoint(model, trial)

    # -- generation --------------------------------------------------------------------------------

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._replay_rewards = rewards_per_func.detach()
        return rewards_per_func

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        if not self.model.training:
            return super()._generate_and_score_completions(inputs)
        self._flush_pending_groups()
        batch_prompts = count_prompt_groups(inputs, self.num_generations)
        buffered = len(self.replay_buffer)
        num_fresh = self.replay_config.fresh_prompts(batch_prompts, buffered)

        self._replay_rewards = None
        fresh = super()._generate_and_score_completions(inputs[: num_fresh * self.num_generations])
        unexpected = sorted(set(fresh) - _TEXT_OUTPUT_KEYS)
        if unexpected:
            raise ConfigError(f"rollout replay handles text-only batches; this one also has {unexpected}")
        fresh_rewards = self._replay_rewards
        # None when TRL skips them (one generation per optimizer step): the loss forward supplies mu.
        fresh_behaviour = fresh.get("old_per_token_logps")

        replayed = self.replay_buffer.draw(batch_prompts - num_fresh)
        output = dict(fresh) if not replayed else self._merge_replayed(fresh, fresh_rewards, replayed)
        rows = output["prompt_ids"].size(0)
        device = output["prompt_ids"].device
        output[ROW_KEY] = torch.arange(rows, device=device)
        queued_rows = self._queue_fresh_groups(fresh, fresh_rewards, fresh_behaviour, num_fresh)
        if fresh_behaviour is None:
            capture = torch.zeros(rows, dtype=torch.bool, device=device)
            capture[queued_rows] = True
            output[CAPTURE_KEY] = capture

        metrics = self._metrics["train"]
        metrics["replay/replayed_fraction"].append(len(replayed) / batch_prompts)
        metrics["replay/buffer_groups"].append(float(buffered))
        if replayed:
            staleness = [self.state.global_step - group.step for group in replayed]
            metrics["replay/staleness_mean"].append(sum(staleness) / len(staleness))
        self.replay_history.append(
            ReplayRound(self.state.global_step, num_fresh, tuple(group.uid for group in replayed))
        )
        if fresh_behaviour is not None:
            self._flush_pending_groups()
        return output

    def _merge_replayed(
        self, fresh: dict[str, Any], fresh_rewards: torch.Tensor, replayed: list[RolloutGroup]
    ) -> dict[str, Any]:
        """Fresh rows, then the replayed groups' rows, as one TRL batch carrying the replay weight."""
        device = fresh["prompt_ids"].device
        pad_id = self._tokenizer.pad_token_id
        replay = replay_tensors(replayed, pad_id, self.pad_to_multiple_of, device)
        output = join_batches(fresh, replay, pad_id)
        completion_mask = output["completion_mask"]
        output["num_items_in_batch"] = self.accelerator.gather(completion_mask.sum()).sum()
        if "ref_per_token_logps" in fresh:
            output["ref_per_token_logps"] = join_reference(fresh, replay)
        rewards = torch.cat([fresh_rewards.to(device), *[group.rewards_per_func.to(device) for group in replayed]])
        advantages = group_advantages(
            rewards,
            self.reward_weights,
            self.num_generations,
            self.scale_rewards,
            self.multi_objective_aggregation,
        )

        replayed_rows = torch.arange(completion_mask.size(0), device=device) >= fresh["prompt_ids"].size(0)
        fresh_behaviour = fresh.get("old_per_token_logps")
        if fresh_behaviour is None:  # folded by `_use_loss_logps` once the loss forward gives pi_old
            zeros = torch.zeros(fresh["completion_mask"].shape, device=device)
            nan = float("nan")
            output.update(
                {
                    "advantages": torch.full_like(advantages, nan),
                    "old_per_token_logps": torch.full(completion_mask.shape, nan, device=device),
                    ADVANTAGES_KEY: advantages,
                    BEHAVIOUR_KEY: join_rows(zeros, replay["behaviour_logps"], 0.0),
                    REPLAYED_KEY: replayed_rows,
                }
            )
            return output
        # pi_old of the fresh rows is TRL's; for the replayed rows it takes one forward of this policy.
        replay_old = self._policy_logps(
            replay["prompt_ids"], replay["prompt_mask"], replay["completion_ids"], replay["completion_mask"]
        )
        old = join_rows(fresh_behaviour.float(), replay_old, 0.0)
        behaviour = join_rows(fresh_behaviour.float(), replay["behaviour_logps"], 0.0)
        folded = fold_replay_weights(old, behaviour, advantages, completion_mask, self.replay_config.replay_is_cap)
        output["old_per_token_logps"] = folded.old_logps.to(fresh_behaviour.dtype)
        output["advantages"] = folded.advantages
        self._log_weight_metrics(folded, completion_mask.bool() & replayed_rows.unsqueeze(1))
        return output

    @torch.no_grad()
    def _policy_logps(self, prompt_ids, prompt_mask, completion_ids, completion_mask) -> torch.Tensor:
        """Per-token log-probs of the current policy for completions; [N, C] float32."""
        guard = (
            disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs)
            if disable_gradient_checkpointing is not None
            else contextlib.nullcontext()
        )
        with guard:
            logps, _, _ = self._get_per_token_logps_and_entropies(
                self.model,
                torch.cat([prompt_ids, completion_ids], dim=1),
                torch.cat([prompt_mask, completion_mask], dim=1),
                completion_ids.size(1),
                batch_size=self.args.per_device_train_batch_size,
            )
        return logps.float()

    def _log_weight_metrics(self, folded: FoldedReplay, replayed_tokens: torch.Tensor) -> None:
        weights = torch.exp(folded.log_weight[replayed_tokens])
        if weights.numel():
            metrics = self._metrics["train"]
            metrics["replay/is_weight_mean"].append(weights.mean().item())
            metrics["replay/is_weight_max"].append(weights.max().item())
            metrics["replay/is_truncation_rate"].append(folded.truncated[replayed_tokens].float().mean().item())

    # -- storing fresh groups ----------------------------------------------------------------------

    def _queue_fresh_groups(self, fresh, fresh_rewards, fresh_behaviour, num_fresh: int) -> list[int]:
        """Queue this round's groups for the buffer and return their rows. With `replay_skip_zero_variance`
        (the default) a group whose rewards are all equal is never stored. They are stored once their mu is
        known."""
        group_size = self.num_generations
        queued_rows: list[int] = []
        for index in range(num_fresh):
            rows = range(index * group_size, (index + 1) * group_size)
            rewards = fresh_rewards[rows.start : rows.stop].detach().float().cpu()
            if self.replay_config.replay_skip_zero_variance and not group_has_signal(
                rewards, self.reward_weights, self.multi_objective_aggregation
            ):
                continue
            fields, width = group_fields(fresh, rows, rewards, self.state.global_step)
            behaviour = None
            if fresh_behaviour is not None:
                behaviour = fresh_behaviour[rows.start : rows.stop, :width].detach().float().cpu()
            self._pending_groups.append({"rows": rows, "width": width, "fields": fields, "behaviour": behaviour})
            queued_rows.extend(rows)
        return queued_rows

    def _flush_pending_groups(self) -> list[RolloutGroup]:
        """Move queued groups whose mu is known into the buffer, in generation order."""
        stored = []
        for pending in self._pending_groups:
            behaviour = pending["behaviour"]
            if behaviour is None:
                captured = [self._captured_logps.get(row) for row in pending["rows"]]
                if any(row is None for row in captured):  # its batch never reached the loss
                    logger.warning("a fresh group's log-probs were never computed; it is not stored")
                    continue
                behaviour = torch.stack([row[: pending["width"]] for row in captured])
            stored.append(self.replay_buffer.add(behaviour_logps=behaviour, **pending["fields"]))
        self._pending_groups, self._captured_logps = [], {}
        if stored and self.replay_history:
            last = self.replay_history[-1]
            uids = last.stored_uids + tuple(group.uid for group in stored)
            self.replay_history[-1] = dataclasses.replace(last, stored_uids=uids)
        return stored

    # -- the loss forward --------------------------------------------------------------------------

    def _compute_loss(self, model, inputs):
        if CAPTURE_KEY not in inputs and ADVANTAGES_KEY not in inputs:
            return super()._compute_loss(model, inputs)
        loss = self._loss_forward.compute_loss(super()._compute_loss, model, inputs)
        if ADVANTAGES_KEY in inputs and torch.isnan(loss).any():
            raise RuntimeError(LOSS_ORDER)
        return loss

    def _get_per_token_logps_and_entropies(self, *args: Any, **kwargs: Any):
        return self._loss_forward.saw(super()._get_per_token_logps_and_entropies(*args, **kwargs))

    def _use_loss_logps(self, inputs: dict[str, Any], logps: torch.Tensor) -> None:
        """The loss forward's log-probs are pi_old here (no optimizer step since generation): record them
        as mu for queued fresh rows, and fold the replay weight into the replayed rows' inputs."""
        if CAPTURE_KEY in inputs:
            for index in torch.nonzero(inputs[CAPTURE_KEY]).flatten().tolist():
                self._captured_logps[int(inputs[ROW_KEY][index])] = logps[index].float().cpu()
        if ADVANTAGES_KEY in inputs:
            replayed = inputs[REPLAYED_KEY].unsqueeze(1)
            behaviour = torch.where(replayed, inputs[BEHAVIOUR_KEY].to(logps.dtype), logps)
            mask = inputs["completion_mask"]
            folded = fold_replay_weights(
                logps, behaviour, inputs[ADVANTAGES_KEY], mask, self.replay_config.replay_is_cap
            )
            inputs["old_per_token_logps"] = folded.old_logps
            inputs["advantages"] = folded.advantages
            self._log_weight_metrics(folded, mask.bool() & replayed)


class ReplayGRPOTrainer(ReplayMixin, GRPOTrainer):
    """TRL's `GRPOTrainer` with rollout replay; takes GRPOTrainer's arguments plus `replay_config`."""
