"""Held-out evaluation for the bench: greedy accuracy, sampled pass rate, and per-prompt pass rates.

Prompts are rendered exactly as TRL renders them for training (the tokenizer's chat template with the
generation prompt). Greedy decoding gives `accuracy`; `samples` completions per prompt at the training
temperature give `sampled_accuracy`, their mean pass rate. Sampling draws from its own `torch.Generator`,
seeded per call, so evaluating never touches the random stream that training draws from, and the same model
gives the same figures. The oracle measures pool prompts with the same sampler (`sample_prompts`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

Check = Callable[[str, Any], bool]


@dataclass(frozen=True)
class Evaluation:
    accuracy: float  # greedy
    sampled_accuracy: float  # mean pass rate over `samples` sampled completions per prompt
    rollouts: int
    tokens: int


class _SeededSample:
    """A logits processor that draws each next token from its own generator (then generate takes the argmax)."""

    def __init__(self, generator: torch.Generator, temperature: float) -> None:
        self.generator = generator
        self.temperature = temperature

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        probabilities = torch.softmax(scores.float() / self.temperature, dim=-1)
        tokens = torch.multinomial(probabilities.cpu(), 1, generator=self.generator).to(scores.device)
        chosen = torch.full_like(scores, -float("inf"))
        return chosen.scatter_(1, tokens, 0.0)


def prompt_ids(tokenizer: Any, conversations: Sequence[list[dict[str, str]]]) -> list[list[int]]:
    """Token ids of each conversation with the generation prompt, as TRL builds its training prompts."""
    texts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations]
    return [tokenizer.encode(text, add_special_tokens=False) for text in texts]


@torch.no_grad()
def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[list[int]],
    *,
    max_new_tokens: int,
    batch_size: int,
    temperature: float | None = None,
    seed: int = 0,
    keep_end: bool = False,
) -> list[list[int]]:
    """Completion token ids (end token and padding removed) for each prompt; greedy when `temperature` is None.
    `keep_end`: each completion that stopped keeps its end token, as a trainer's completion ids do."""
    from transformers import LogitsProcessorList

    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    stops = _stops(tokenizer)
    generator = torch.Generator().manual_seed(seed)
    processors = LogitsProcessorList([_SeededSample(generator, temperature)] if temperature is not None else [])
    was_training = model.training
    model.eval()
    out: list[list[int]] = []
    try:
        for start in range(0, len(prompts), batch_size):
            batch = prompts[start : start + batch_size]
            width = max(len(p) for p in batch)
            input_ids = torch.tensor([[pad] * (width - len(p)) + list(p) for p in batch], device=device)
            attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch], device=device)
            generated = model.generate(
                input_ids=input_ids, attention_mask=attention, max_new_tokens=max_new_tokens, do_sample=False,
                logits_processor=processors, pad_token_id=pad, eos_token_id=tokenizer.eos_token_id,
                temperature=None, top_p=None, top_k=None,
            )  # fmt: skip
            for row in generated[:, width:].tolist():
                cut = next((i for i, token in enumerate(row) if token in stops), len(row))
                out.append(row[: cut + (keep_end and cut < len(row))])
    finally:
        if was_training:
            model.train()
    return out


def _stops(tokenizer: Any) -> set[int]:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return {tokenizer.eos_token_id, pad}


@dataclass(frozen=True)
class Sampled:
    """`samples` completions of each prompt: pass rates, tokens generated (end tokens not counted), and, to train
    on, each prompt's token ids, its completions (end token kept when they stopped) and their correctness."""

    rates: np.ndarray
    tokens: int
    prompt_ids: list[list[int]]
    completions: list[list[list[int]]]
    correct: np.ndarray  # [prompts, samples]


def sample_prompts(
    model: Any,
    tokenizer: Any,
    conversations: Sequence[list[dict[str, str]]],
    answers: Sequence[Any],
    check: Check,
    *,
    samples: int,
    temperature: float | None,
    max_new_tokens: int,
    batch_size: int,
    seed: int,
) -> Sampled:
    """Sample and check `samples` completions of each conversation."""
    ids = prompt_ids(tokenizer, conversations)
    repeated = [p for p in ids for _ in range(samples)]
    completions = generate(
        model, tokenizer, repeated, max_new_tokens=max_new_tokens, batch_size=batch_size,
        temperature=temperature, seed=seed, keep_end=True,
    )  # fmt: skip
    stops = _stops(tokenizer)
    bare = [c[:-1] if c and c[-1] in stops else c for c in completions]
    texts = tokenizer.batch_decode(bare, skip_special_tokens=True)
    correct = np.array([check(text, answers[i // samples]) for i, text in enumerate(texts)], dtype=np.float64)
    correct = correct.reshape(len(ids), samples)
    grouped = [completions[i * samples : (i + 1) * samples] for i in range(len(ids))]
    return Sampled(correct.mean(axis=1), sum(len(c) for c in bare), ids, grouped, correct)


def evaluate(sample: Callable[[int, float | None], Sampled], *, samples: int, temperature: float) -> Evaluation:
    """Greedy accuracy and the sampled pass rate on the held-out prompts; `sample(samples, temperature)` samples and
    checks each prompt's completions (`sample_prompts`, temperature None: greedy)."""
    greedy, sampled = sample(1, None), sample(samples, temperature)
    return Evaluation(
        accuracy=float(greedy.rates.mean()),
        sampled_accuracy=float(sampled.rates.mean()),
        rollouts=len(greedy.rates) * (1 + samples),
        tokens=greedy.tokens + sampled.tokens,
    )


def zero_variance_groups(rewards: Sequence[float], group_size: int) -> tuple[int, int]:
    """(groups whose rewards are all equal, groups) over consecutive groups of `group_size` rollouts."""
    values = np.asarray(rewards, dtype=np.float64).reshape(-1, group_size)
    return int(np.sum(values.max(axis=1) == values.min(axis=1))), len(values)
