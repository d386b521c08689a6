"""Test-only pieces for the rollout-replay tests: `GenerationCounter` records what TRL generated, call by call.

The workload itself (word-level tokenizer, tiny random Llama, prompts, parity reward) is the replay benchmark's,
`gaincurate.lab.benchmarks.replay`: the tests and the bench train on the same builders.
"""

from __future__ import annotations

from typing import Any


class GenerationCounter:
    """Mixin recording, per call to TRL's `_generate`, the trainer step and the prompt rows."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.generation_calls: list[dict[str, Any]] = []

    def _generate(self, prompts: list):
        self.generation_calls.append({"step": self.state.global_step, "rows": len(prompts), "prompts": list(prompts)})
        return super()._generate(prompts)


def buffer_sizes_before_rounds(history, capacity: int) -> list[int]:
    """Groups in the buffer at the start of each round of a `replay_history`, from what each round stored."""
    sizes, size = [], 0
    for round_ in history:
        sizes.append(size)
        size = min(capacity, size + len(round_.stored_uids))
    return sizes
