"""Batch assembly for rollout replay: stored groups to TRL's padded tensors, and fresh + replayed rows joined.

TRL's GRPOTrainer passes a generation batch around as a dict of tensors: prompts left-padded, completions
right-padded, per-token tensors as wide as the completions. These helpers build that layout for replayed
groups, join it to the fresh rows (padding whichever side is narrower), cut a fresh group down to what the
buffer stores, and check that a sampler's batch is made of whole prompt groups. Pure tensor code: no trainer.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from gaincurate.errors import ConfigError
from gaincurate.integrations.trl.replay.buffer import RolloutGroup


def pad_rows(rows: list[torch.Tensor], value: float, side: str, multiple: int | None) -> torch.Tensor:
    """Stack 1-D tensors of different lengths into [N, W], padding on `side` to a multiple of `multiple`."""
    width = max(row.numel() for row in rows)
    if multiple:
        width = -(-width // multiple) * multiple
    return torch.stack([pad_columns(row.unsqueeze(0), width, value, side)[0] for row in rows])


def pad_columns(tensor: torch.Tensor, width: int, value: float, side: str = "right") -> torch.Tensor:
    """Widen [N, W] to [N, width] with `value` on `side`; unchanged when already that wide."""
    missing = width - tensor.size(1)
    if missing <= 0:
        return tensor
    return F.pad(tensor, (missing, 0) if side == "left" else (0, missing), value=value)


def join_rows(first: torch.Tensor, second: torch.Tensor, value: float, side: str = "right") -> torch.Tensor:
    """Concatenate two [N, W] batches along rows after padding both to the wider width."""
    width = max(first.size(1), second.size(1))
    return torch.cat([pad_columns(first, width, value, side), pad_columns(second, width, value, side)])


def replay_tensors(
    groups: list[RolloutGroup], pad_id: int, multiple: int | None, device: torch.device
) -> dict[str, torch.Tensor]:
    """The replayed groups' rows in TRL's layout: prompt_ids/mask (left-padded), completion_ids/mask,
    behaviour_logps and, when every group has them, ref_logps (right-padded); long ids and masks."""
    prompts = [group.prompt_ids for group in groups for _ in range(group.num_generations)]

    def rows(name: str) -> list[torch.Tensor]:
        return [row for group in groups for row in getattr(group, name)]

    tensors = {
        "prompt_ids": pad_rows(prompts, pad_id, "left", multiple).long(),
        "prompt_mask": pad_rows([torch.ones_like(p) for p in prompts], 0, "left", multiple).long(),
        "completion_ids": pad_rows(rows("completion_ids"), pad_id, "right", multiple).long(),
        "completion_mask": pad_rows(rows("completion_mask"), 0, "right", multiple).long(),
        "behaviour_logps": pad_rows(rows("behaviour_logps"), 0.0, "right", multiple).float(),
    }
    if all(group.ref_logps is not None for group in groups):
        tensors["ref_logps"] = pad_rows(rows("ref_logps"), 0.0, "right", multiple).float()
    return {name: tensor.to(device) for name, tensor in tensors.items()}


def used_width(completion_mask: torch.Tensor) -> int:
    """Columns up to the last unmasked token of any row (at least 1): the rest is padding."""
    used = torch.nonzero(completion_mask.any(dim=0))
    return int(used.max()) + 1 if used.numel() else 1


def join_batches(fresh: dict[str, Any], replay: dict[str, torch.Tensor], pad_id: int) -> dict[str, torch.Tensor]:
    """The fresh rows, then the replayed rows (from `replay_tensors`): prompt and completion ids and masks."""
    return {
        "prompt_ids": join_rows(fresh["prompt_ids"], replay["prompt_ids"], pad_id, "left"),
        "prompt_mask": join_rows(fresh["prompt_mask"], replay["prompt_mask"], 0, "left"),
        "completion_ids": join_rows(fresh["completion_ids"], replay["completion_ids"], pad_id),
        "completion_mask": join_rows(fresh["completion_mask"], replay["completion_mask"], 0),
    }


def join_reference(fresh: dict[str, Any], replay: dict[str, torch.Tensor]) -> torch.Tensor:
    """Reference log-probs of the fresh rows, then the replayed ones; every replayed group must have them."""
    if "ref_logps" not in replay:
        raise ConfigError(
            "the replay buffer holds groups stored without reference log-probs (beta was 0 when "
            "they were generated); resume with the same beta, or delete replay_buffer.safetensors "
            "to start afresh"
        )
    return join_rows(fresh["ref_per_token_logps"], replay["ref_logps"], 0.0)


def group_fields(fresh: dict[str, Any], rows: range, rewards: torch.Tensor, step: int) -> tuple[dict[str, Any], int]:
    """The buffer fields (RolloutGroup's, but uid and behaviour_logps) of one fresh group, and its used width.

    The prompt loses its padding and the completions their all-padding columns; ids and masks are stored in
    narrow dtypes, since the buffer lives in host memory and in every checkpoint.
    """
    selected = slice(rows.start, rows.stop)
    mask = fresh["completion_mask"][selected]
    width = used_width(mask)
    ref = fresh.get("ref_per_token_logps")
    fields = {
        "step": step,
        "prompt_ids": fresh["prompt_ids"][rows.start][fresh["prompt_mask"][rows.start].bool()].cpu(),
        "completion_ids": fresh["completion_ids"][selected, :width].to("cpu", torch.int32),
        "completion_mask": mask[:, :width].to("cpu", torch.uint8),
        "rewards_per_func": rewards,
        "ref_logps": None if ref is None else ref[selected, :width].detach().float().cpu(),
    }
    return fields, width


def count_prompt_groups(inputs: list[dict[str, Any]], group_size: int) -> int:
    """Prompt groups in a generation batch; each group must be `group_size` consecutive rows of one prompt."""
    if len(inputs) % group_size:
        raise ConfigError(
            f"the generation batch has {len(inputs)} rows, not a multiple of "
            f"num_generations={group_size}; a custom sampler must repeat each prompt num_generations "
            "times in a row (like TRL's RepeatSampler)"
        )
    for start in range(0, len(inputs), group_size):
        if any(row.get("prompt") != inputs[start].get("prompt") for row in inputs[start : start + group_size]):
            raise ConfigError(
                f"rows {start}..{start + group_size - 1} of the generation batch are not one prompt "
                f"repeated num_generations={group_size} times; give the sampler "
                "mini_repeat_count=num_generations"
            )
    return len(inputs) // group_size
