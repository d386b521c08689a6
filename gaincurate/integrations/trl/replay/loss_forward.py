"""The loss forward's log-probs, handed to a trainer mixin that folds a weight into the batch before TRL reads it.

Rollout replay (`gaincurate.integrations.trl.replay.trainer`) and the lab's reuse of measuring rollouts both weigh rows
that another policy sampled, and with TRL's default (one generation per optimizer step) pi_old is exactly the
policy that the loss's own forward evaluates. TRL's `_compute_loss` (trl 1.16) computes the policy log-probs,
through `_get_per_token_logps_and_entropies`, before it reads `advantages` and `old_per_token_logps`. So a mixin
overrides both hooks and hands them to its own `LossForward`:

    def _compute_loss(self, model, inputs):
        return self._loss_forward.compute_loss(super()._compute_loss, model, inputs)

    def _get_per_token_logps_and_entropies(self, *args, **kwargs):
        return self._loss_forward.saw(super()._get_per_token_logps_and_entropies(*args, **kwargs))

and the first forward of the batch calls `use(inputs, logps)`, which rewrites the batch's inputs in place. Each
mixin holds its own `LossForward`, so two mixins in one trainer's bases never take each other's batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


class LossForward:
    """One batch waiting for the log-probs of its loss forward; `use(inputs, logps)` receives them, detached.

    `missed` is the error raised when TRL computed the loss without that forward first (a TRL whose
    `_compute_loss` reads the inputs before it computes the log-probs).
    """

    def __init__(self, use: Callable[[dict[str, Any], torch.Tensor], None], missed: str) -> None:
        self.use = use
        self.missed = missed
        self.waiting: dict[str, Any] | None = None

    def compute_loss(self, compute: Callable[[Any, dict[str, Any]], torch.Tensor], model: Any, inputs: dict[str, Any]):
        """`compute(model, inputs)` (TRL's `_compute_loss`), with `use` applied at its first log-prob forward."""
        self.waiting = inputs
        try:
            loss = compute(model, inputs)
            missed = self.waiting is not None
        finally:
            self.waiting = None
        if missed:
            raise RuntimeError(self.missed)
        return loss

    def saw(self, result: tuple[Any, ...]) -> tuple[Any, ...]:
        """`_get_per_token_logps_and_entropies`'s result, unchanged; the waiting batch, if any, gets its log-probs."""
        inputs, self.waiting = self.waiting, None
        if inputs is not None:
            self.use(inputs, result[0].detach())
        return result
