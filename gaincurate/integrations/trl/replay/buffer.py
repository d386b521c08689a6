"""A FIFO buffer of recent rollout groups for rollout replay, with seeded draws and checkpoint files.

A group is one prompt with its `num_generations` completions, their rewards and the log-probs of the
policy that generated them. `ReplayBuffer.add` keeps the newest `capacity` groups, `draw(k)` picks k of
them uniformly without replacement with its own seeded numpy Generator, and `save`/`load` write the
whole buffer (groups, draw RNG state, id counter) to one safetensors file, atomically, so that a resumed
run draws exactly what the uninterrupted run would have drawn.

    buffer = ReplayBuffer(capacity=64, seed=0)
    buffer.add(group)
    groups = buffer.draw(4)
    buffer.save(checkpoint_dir / REPLAY_BUFFER_FILE)
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gaincurate.errors import InputError
from gaincurate.fileio import atomic_write

REPLAY_BUFFER_FILE = "replay_buffer.safetensors"
_FORMAT = "gaincurate-replay-buffer"
_FORMAT_VERSION = 1
_TENSOR_FIELDS = ("prompt_ids", "completion_ids", "completion_mask", "behaviour_logps", "rewards_per_func")


@dataclass(frozen=True, eq=False)
class RolloutGroup:
    """One prompt's rollouts, as stored for replay.

    uid: unique, increasing id (assigned by the buffer).
    step: the trainer's global step when the group was generated.
    prompt_ids: [P] prompt tokens, no padding.
    completion_ids, completion_mask: [G, C], right-padded; the mask is TRL's loss mask.
    behaviour_logps: [G, C] float32 log-probs of the generating policy (mu).
    rewards_per_func: [G, F] float32, one column per reward function, NaN where one abstained.
    ref_logps: [G, C] reference-model log-probs when the trainer has a KL term (beta != 0), else None.
    """

    uid: int
    step: int
    prompt_ids: torch.Tensor
    completion_ids: torch.Tensor
    completion_mask: torch.Tensor
    behaviour_logps: torch.Tensor
    rewards_per_func: torch.Tensor
    ref_logps: torch.Tensor | None = None

    @property
    def num_generations(self) -> int:
        return self.completion_ids.shape[0]

    def same_as(self, other: RolloutGroup) -> bool:
        """Equal ids, steps and tensors (NaN rewards compare equal)."""
        if (self.uid, self.step) != (other.uid, other.step) or (self.ref_logps is None) != (other.ref_logps is None):
            return False
        pairs = [(getattr(self, name), getattr(other, name)) for name in _TENSOR_FIELDS]
        if self.ref_logps is not None:
            pairs.append((self.ref_logps, other.ref_logps))
        return all(a.shape == b.shape and torch.equal(a.nan_to_num(-7.0), b.nan_to_num(-7.0)) for a, b in pairs)


class ReplayBuffer:
    """FIFO of the newest `capacity` rollout groups with seeded uniform draws."""

    def __init__(self, capacity: int, seed: int) -> None:
        if capacity < 1:
            raise ValueError(f"replay capacity must be at least 1 group, got {capacity}")
        self.capacity = capacity
        self._groups: deque[RolloutGroup] = deque(maxlen=capacity)
        self._rng = np.random.default_rng(seed)
        self._next_uid = 0

    def __len__(self) -> int:
        return len(self._groups)

    def __iter__(self) -> Iterator[RolloutGroup]:
        return iter(self._groups)

    def add(self, **fields) -> RolloutGroup:
        """Store a group from `fields` (RolloutGroup's fields but uid), evicting the oldest when full."""
        group = RolloutGroup(uid=self._next_uid, **fields)
        self._next_uid += 1
        self._groups.append(group)
        return group

    def draw(self, count: int) -> list[RolloutGroup]:
        """`count` distinct groups, uniformly at random, in draw order. Draws nothing (and uses no
        randomness) when `count` is 0."""
        if count > len(self._groups):
            raise ValueError(f"cannot draw {count} groups from a buffer holding {len(self._groups)}")
        if count == 0:
            return []
        picks = self._rng.choice(len(self._groups), size=count, replace=False)
        return [self._groups[int(index)] for index in picks]

    # -- checkpoint files ---------------------------------------------------------------------------

    def save(self, path: Path) -> None:
        """Write the buffer to one safetensors file (tensors plus a JSON header), atomically."""
        from safetensors.torch import save_file

        tensors: dict[str, torch.Tensor] = {}
        groups_meta = []
        for position, group in enumerate(self._groups):
            for name in _TENSOR_FIELDS:
                tensors[f"{position:06d}.{name}"] = getattr(group, name).contiguous().cpu()
            if group.ref_logps is not None:
                tensors[f"{position:06d}.ref_logps"] = group.ref_logps.contiguous().cpu()
            groups_meta.append({"uid": group.uid, "step": group.step, "has_ref": group.ref_logps is not None})
        state = {
            "capacity": self.capacity,
            "next_uid": self._next_uid,
            "rng_state": self._rng.bit_generator.state,
            "groups": groups_meta,
        }
        metadata = {"format": _FORMAT, "version": str(_FORMAT_VERSION), "state": json.dumps(state)}
        atomic_write(Path(path), lambda tmp: save_file(tensors, str(tmp), metadata=metadata))

    @classmethod
    def load(cls, path: Path, capacity: int | None = None) -> ReplayBuffer:
        """Read a buffer written by `save`. A smaller `capacity` than the saved one keeps the newest groups.
        The draw RNG continues from its saved state (the seed it started from no longer matters)."""
        from safetensors import safe_open

        path = Path(path)
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            if metadata.get("format") != _FORMAT:
                raise InputError(f"{path} is not a gaincurate replay buffer; delete it or point to the right file")
            if int(metadata.get("version", -1)) != _FORMAT_VERSION:
                raise InputError(
                    f"{path} has replay-buffer format version {metadata.get('version')}, this gaincurate "
                    f"reads {_FORMAT_VERSION}; resume with the gaincurate version that wrote it"
                )
            state = json.loads(metadata["state"])
            buffer = cls(capacity=capacity or state["capacity"], seed=0)
            buffer._rng.bit_generator.state = state["rng_state"]
            buffer._next_uid = state["next_uid"]
            for position, meta in enumerate(state["groups"]):
                fields = {name: handle.get_tensor(f"{position:06d}.{name}") for name in _TENSOR_FIELDS}
                if meta["has_ref"]:
                    fields["ref_logps"] = handle.get_tensor(f"{position:06d}.ref_logps")
                buffer._groups.append(RolloutGroup(uid=meta["uid"], step=meta["step"], **fields))
        return buffer
