"""Batch assembly for rollout replay: stored groups to TRL's padded tensors, and fresh + replayed rows joined.

TRL's GRPOTrainer passes a generation batch around as a dict of tensors: prompts left-padded, completions
right-padded, per-token tensors as wide as the completions. These helpers build that layout for replayed
groups and join it to the fresh rows, padding whichever side is narrower.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gaincurate.integrations.replay_buffer import RolloutGroup


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
