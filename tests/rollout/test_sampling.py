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


def test_the_draw_is_the_float64_inverse_of_each_rows_cumulative_distribution():
    """Against a brute-force float64 walk down each row's probabilities: the first token whose cumulative probability
    reaches (1 - u) of the total; a token of no probability (a -inf score) is never drawn, even at u's extremes."""
    import torch

    generator = torch.Generator().manual_seed(5)
    scores = torch.randn(6, 50, generator=generator) * 3
    scores[:, ::7] = float("-inf")
    uniforms = torch.rand(6, generator=generator, dtype=torch.float64)
    uniforms[:2] = torch.tensor([0.0, 1 - 2**-53], dtype=torch.float64)
    got = sampling.inverse_cdf_draw(scores, uniforms, temperature=0.7)
    for row in range(len(scores)):
        weights = [np.exp(np.float64(s) / 0.7) if np.isfinite(s) else 0.0 for s in scores[row].tolist()]
        reach, total = (1 - float(uniforms[row])) * sum(weights), 0.0
        expected = next(token for token, weight in enumerate(weights) if (total := total + weight) >= reach)
        assert int(got[row]) == expected and weights[expected] > 0


def test_each_token_is_drawn_with_its_probability():
    import torch

    probabilities = torch.tensor([0.5, 0.3, 0.15, 0.05])
    rows = 40_000
    uniforms = torch.rand(rows, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    drawn = sampling.inverse_cdf_draw(probabilities.log().expand(rows, -1), uniforms, temperature=1.0)
    shares = torch.bincount(drawn, minlength=4).double() / rows
    assert torch.allclose(shares, probabilities.double(), atol=4 * (0.25 / rows) ** 0.5)  # four standard errors
