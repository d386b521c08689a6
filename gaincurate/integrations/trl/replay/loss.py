"""The arithmetic of rollout replay: advantages from stored rewards and the importance-corrected loss.

Pure tensor functions that import torch only (no TRL, no trainer state), so each is tested on hand-built
tensors and the trainer adapter (`gaincurate.integrations.trl.replay.trainer`) is the one module that needs TRL.

The replay objective (DOTS+RR, arXiv 2506.05316), per completion token, with behaviour policy mu (the
policy that generated the rollout, its log-probs recorded at generation time), pi_old (the policy at the
start of the current step) and the current policy pi_theta:

    r     = pi_theta / mu
    r_old = min(pi_old / mu, cap)
    loss  = -min(r * A, clip(r, r_old * (1 - eps_low), r_old * (1 + eps_high)) * A)

`replay_token_loss` computes it literally; it is the reference. The trainer does not call it. Since
r_old > 0 it factors as

    loss = r_old * -min(c * A, clip(c, 1 - eps_low, 1 + eps_high) * A),  c = r / r_old = pi_theta / (mu r_old)

which is exactly TRL's clipped GRPO token loss with old log-probs `log mu + log r_old` and per-token
advantages `r_old * A` (r_old carries no gradient). `fold_replay_weights` produces those two tensors, so
TRL's own `_compute_loss` computes the replay loss unchanged, with the aggregation of its `loss_type`
(grpo, bnpo, dr_grpo, dapo: the clipped-ratio losses).
A fresh token has mu == pi_old, so r_old == 1 and the folded tensors are TRL's inputs, bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

# TRL adds this to the reward std before dividing (grpo_trainer.py, `std_rewards + 1e-4`).
_REWARD_STD_EPS = 1e-4


def nanstd(tensor: torch.Tensor, dim: int | None = None, keepdim: bool = False) -> torch.Tensor:
    """Bessel-corrected standard deviation ignoring NaN; NaN where fewer than two values are left.

    TRL's `trl.trainer.utils.nanstd` step for step (same operations and dtypes, so the same bits): advantages
    recomputed from stored rewards must equal the ones TRL computed at generation. A test compares the two.
    """
    mean = torch.nanmean(tensor, dim=dim, keepdim=True)
    variance = torch.nanmean((tensor - mean) ** 2, dim=dim, keepdim=True)
    count = torch.sum(~torch.isnan(tensor), dim=dim, keepdim=True)
    correction = count / (count - 1)
    correction = torch.where(count > 1, correction, torch.full_like(correction, float("nan")))
    variance *= correction
    std = torch.sqrt(variance)
    if keepdim:
        return std
    return std.squeeze() if dim is None else std.squeeze(dim)


def group_advantages(
    rewards_per_func: torch.Tensor,
    reward_weights: torch.Tensor,
    num_generations: int,
    scale_rewards: str,
    aggregation: str = "sum_then_normalize",
) -> torch.Tensor:
    """Advantages for consecutive groups of `num_generations` rows, the way TRL's GRPOTrainer computes them.

    `rewards_per_func` is [N, F], one column per reward function, NaN where a function abstained.
    `scale_rewards` is TRL's "group" | "batch" | "none"; `aggregation` its `multi_objective_aggregation`.
    A row whose every reward is NaN gets advantage 0, as in TRL.
    """
    rows, _ = rewards_per_func.shape
    if rows % num_generations:
        raise ValueError(f"{rows} reward rows do not split into groups of {num_generations}")
    weights = reward_weights.to(rewards_per_func.device, rewards_per_func.dtype)
    unscorable = torch.isnan(rewards_per_func).all(dim=1)
    if aggregation == "sum_then_normalize":
        rewards = (rewards_per_func * weights.unsqueeze(0)).nansum(dim=1)
        rewards[unscorable] = torch.nan
        grouped = rewards.view(-1, num_generations)
        mean = torch.nanmean(grouped, dim=1).repeat_interleave(num_generations)
        if scale_rewards in ("group", "none"):
            std = nanstd(grouped, dim=1).repeat_interleave(num_generations)
        elif scale_rewards == "batch":
            std = nanstd(rewards).expand_as(rewards) if rewards.numel() > 1 else torch.zeros_like(rewards)
        else:
            raise ValueError(f"unknown scale_rewards {scale_rewards!r}; TRL accepts 'group', 'batch', 'none'")
        advantages = rewards - mean
        if scale_rewards != "none":
            advantages = advantages / (std + _REWARD_STD_EPS)
    elif aggregation == "normalize_then_sum":
        grouped = rewards_per_func.view(-1, num_generations, rewards_per_func.shape[1])
        mean = torch.nanmean(grouped, dim=1, keepdim=True)
        std = nanstd(grouped, dim=1, keepdim=True)
        normalized = ((grouped - mean) / (std + _REWARD_STD_EPS)).view(rows, -1)
        rewards = (normalized * weights.unsqueeze(0)).nansum(dim=1)
        rewards[unscorable] = torch.nan
        std_all = nanstd(rewards).expand_as(rewards) if rewards.numel() > 1 else torch.zeros_like(rewards)
        advantages = (rewards - torch.nanmean(rewards)) / (std_all + _REWARD_STD_EPS)
    else:
        raise ValueError(f"unknown multi_objective_aggregation {aggregation!r}")
    return torch.nan_to_num(advantages, nan=0.0)


def group_has_signal(rewards_per_func: torch.Tensor, reward_weights: torch.Tensor, aggregation: str) -> bool:
    """False when the group's rewards are all equal: its advantages are all zero and replay teaches nothing.

    `rewards_per_func` is one group, [G, F]. Under "normalize_then_sum" each function is normalized on its
    own, so one varying function is enough; otherwise the weighted sum must vary. NaN rows are ignored.
    """
    scorable = ~torch.isnan(rewards_per_func).all(dim=1)
    if int(scorable.sum()) < 2:
        return False
    rows = rewards_per_func[scorable]
    if aggregation == "normalize_then_sum":
        columns = [rows[:, k] for k in range(rows.shape[1])]
    else:
        columns = [(rows * reward_weights.to(rows.dtype).unsqueeze(0)).nansum(dim=1)]
    for column in columns:
        column = column[~torch.isnan(column)]
        if column.numel() >= 2 and not torch.isclose(column.std(), torch.zeros((), dtype=column.dtype)):
            return True
    return False


@dataclass(frozen=True)
class FoldedReplay:
    """TRL-shaped inputs that make TRL's clipped loss compute the replay loss.

    `old_logps` goes into `inputs["old_per_token_logps"]`, `advantages` ([B, T]) into `inputs["advantages"]`.
    `log_weight` is log(pi_old / mu) before the cap, for metrics; `truncated` marks tokens the cap changed.
    """

    old_logps: torch.Tensor
    advantages: torch.Tensor
    log_weight: torch.Tensor
    truncated: torch.Tensor


def fold_replay_weights(
    old_logps: torch.Tensor,
    behaviour_logps: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    cap: float | None,
) -> FoldedReplay:
    """Fold the behaviour-policy weight r_old = min(pi_old / mu, cap) into TRL's (old log-probs, advantages).

    Shapes: log-probs and mask [B, T]; advantages [B] or [B, T]. Where `behaviour_logps == old_logps` (fresh
    rows) the weight is exactly 1 and the outputs equal the inputs. Masked positions get weight 1 so that
    padding can never produce inf * 0.
    """
    valid = mask.bool()
    log_weight = torch.where(valid, old_logps - behaviour_logps, torch.zeros_like(old_logps))
    capped = log_weight if cap is None else torch.clamp(log_weight, max=math.log(cap))
    truncated = valid & (capped < log_weight)
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(1)
    return FoldedReplay(
        old_logps=torch.where(valid, behaviour_logps + capped, old_logps),
        advantages=advantages * torch.exp(capped),
        log_weight=log_weight,
        truncated=truncated,
    )


def replay_token_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    behaviour_logps: torch.Tensor,
    advantages: torch.Tensor,
    epsilon_low: float,
    epsilon_high: float,
    cap: float | None,
) -> torch.Tensor:
    """The replay objective per token, written as in the paper. Reference for tests; [B, T] out."""
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(1)
    ratio = torch.exp(logps - behaviour_logps)
    ratio_old = torch.exp(old_logps - behaviour_logps)
    if cap is not None:
        ratio_old = torch.clamp(ratio_old, max=cap)
    clipped = torch.clamp(ratio, ratio_old * (1 - epsilon_low), ratio_old * (1 + epsilon_high))
    return -torch.min(ratio * advantages, clipped * advantages)
