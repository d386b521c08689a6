"""Seeded, batched sampling: a row's scores and draws do not depend on what shares its batch."""

from __future__ import annotations

import numpy as np

from gaincurate.rollout import sampling
from gaincurate.rollout.config import RolloutConfig


def test_a_left_padded_row_sees_what_it_sees_alone(tiny_llama, monkeypatch):
    """Batching, left padding and the shared prefill change no row's next-token scores (nor its seed)."""
    from transformers import AutoTokenizer

    from gaincurate.model import load_model, resolve_source

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    model = load_model(resolve_source(str(tiny_llama)), dtype="float32", device="cpu")
    recorded: list[list] = []
    original = sampling.seeded_sampler

    def recording_sampler(seeds, temperature):
        sampler = original(seeds, temperature)
        steps: list = []
        recorded.append(steps)

        def call(input_ids, scores):
            steps.append(scores.clone())
            return type(sampler).__call__(sampler, input_ids, scores)

        return call

    monkeypatch.setattr(sampling, "seeded_sampler", recording_sampler)
    short = tokenizer("What is 2 + 3?")["input_ids"]
    long = tokenizer("Compute the sum of the first 10 positive integers. If x + 4 = 9, what is x?")["input_ids"]
    config = RolloutConfig(scores="unused", out="unused", samples=2, max_new_tokens=5, temperature=1.0)
    batched, _ = sampling.generate_batch(model, [long, short], [1, 2], config, pad_id=0, stop_ids=[2], device="cpu")
    alone, _ = sampling.generate_batch(model, [short], [2], config, pad_id=0, stop_ids=[2], device="cpu")
    assert batched[2:] == alone
    for step_batched, step_alone in zip(recorded[0], recorded[1], strict=True):
        np.testing.assert_allclose(step_batched[2:].numpy(), step_alone.numpy(), atol=1e-4)
