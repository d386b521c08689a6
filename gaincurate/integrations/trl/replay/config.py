"""The rollout-replay settings: how much of each batch to replay, how big the buffer is, what it keeps.

`ReplayConfig` is a frozen dataclass validated at construction; `ReplayGRPOTrainer` takes one as
`replay_config`. It imports nothing heavy, so configs can be built and checked without torch or TRL.

    config = ReplayConfig(replay_fresh_fraction=0.5, replay_capacity_batches=2)
    config.fresh_prompts(batch_prompts=8, buffered_groups=3)  # 5: the buffer cannot fill 4 slots yet
    config.buffer_capacity(batch_prompts=8)  # 16 prompt groups
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gaincurate.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class ReplayConfig:
    """How much to replay, what the buffer holds, and how to weight replayed rollouts.

    replay_fresh_fraction: delta, the fraction of each generation batch's prompts generated fresh, in (0, 1].
        The rest come from the buffer once it holds enough groups; until then fresh prompts fill the gap.
    replay_capacity: buffer size in prompt groups; None = `replay_capacity_batches` generation batches' worth.
    replay_capacity_batches: buffer size in generation batches when `replay_capacity` is None (>= 1). A group
        then stays in the buffer for about replay_capacity_batches / delta rounds when every fresh group is
        stored, so the default 4 with delta = 0.5 replays rollouts up to ~8 rounds old.
    replay_skip_zero_variance: never store a group whose rewards are all equal (the default). Its advantages
        are all zero, so replaying it fills a batch slot with no gradient; False stores every fresh group.
    replay_is_cap: upper bound on the behaviour weight pi_old / mu (truncated importance sampling, >= 1);
        None leaves it untruncated as the published code does.
    replay_seed: seed of the numpy Generator that draws replayed groups.
    """

    replay_fresh_fraction: float = 0.5
    replay_capacity: int | None = None
    replay_capacity_batches: int = 4
    replay_skip_zero_variance: bool = True
    replay_is_cap: float | None = 2.0
    replay_seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.replay_fresh_fraction <= 1.0:
            raise ConfigError(
                f"replay_fresh_fraction={self.replay_fresh_fraction} is outside (0, 1]; use e.g. 0.5 to "
                "generate half of each batch fresh (0 would never refresh the buffer)"
            )
        if self.replay_capacity is not None and self.replay_capacity < 1:
            raise ConfigError(f"replay_capacity={self.replay_capacity} must be a positive number of prompt groups")
        if self.replay_capacity_batches < 1:
            raise ConfigError(
                f"replay_capacity_batches={self.replay_capacity_batches} must be a positive number of "
                "generation batches (4 is the default)"
            )
        if self.replay_is_cap is not None and not self.replay_is_cap >= 1.0:
            raise ConfigError(
                f"replay_is_cap={self.replay_is_cap} must be >= 1 (a weight of 1 means no correction), "
                "or None for an untruncated weight"
            )

    def fresh_prompts(self, batch_prompts: int, buffered_groups: int) -> int:
        """Prompts to generate for: ceil(delta * B), more while the buffer cannot fill the rest."""
        target = math.ceil(self.replay_fresh_fraction * batch_prompts - 1e-9)
        return min(batch_prompts, max(target, batch_prompts - buffered_groups))

    def buffer_capacity(self, batch_prompts: int) -> int:
        """Buffer size in prompt groups for generation batches of `batch_prompts` prompts."""
        return self.replay_capacity or self.replay_capacity_batches * batch_prompts
