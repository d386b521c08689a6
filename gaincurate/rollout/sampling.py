"""Batched, seeded sampling with `transformers` `generate` for `gaincurate rollout`.

* `render_prompts` builds each prompt exactly as the scores directory did (system prompt, few-shot
  turns, chat template) with `gaincurate.prompts.build_messages`.
* `generate_batch` left-pads the distinct prompts, prefills each once, repeats its key/value cache
  for the samples, and lets `generate` continue. Every rollout (gc_id, sample) draws one uniform a step
  from its own `torch.Generator`, seeded from (seed, gc_id, sample), inside a logits processor, and its
  token is that uniform's place in the row's cumulative distribution (`inverse_cdf_draw`), computed where
  the logits are; `generate` then takes the argmax of the one-hot it returns. So a completion depends on
  its own seed only, not on which other rows share the batch, and the logits never leave the GPU.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from gaincurate.errors import ConfigError
from gaincurate.model import cache_keyword

if TYPE_CHECKING:
    from gaincurate.rollout.inputs import PromptValue

log = logging.getLogger(__name__)


class SamplingSettings(Protocol):
    """What `generate_batch` reads of a run's settings (`RolloutConfig` has these fields)."""

    @property
    def samples(self) -> int: ...

    @property
    def max_new_tokens(self) -> int: ...

    @property
    def temperature(self) -> float: ...

    @property
    def seed(self) -> int: ...


def rollout_seed(seed: int, gc_id: int, sample: int) -> int:
    """A 64-bit seed for one rollout, independent of batching and of every other rollout."""
    return int(np.random.SeedSequence([seed, gc_id, sample]).generate_state(1, np.uint64)[0])


def inverse_cdf_draw(scores: Any, uniforms: Any, temperature: float) -> Any:
    """Each row's token from its scores at `temperature` and its uniform u in [0, 1): the first token whose cumulative
    probability reaches (1 - u) of the row's total, so a token is drawn with its probability and never one of none.
    The cumulative sum runs in float64 over each row alone: a row's draw does not depend on the others."""
    import torch

    cumulative = torch.softmax(scores.float() / temperature, dim=-1).double().cumsum(-1)
    reach = (1 - uniforms.to(cumulative.device, torch.float64)) * cumulative[:, -1]
    return torch.searchsorted(cumulative, reach[:, None]).squeeze(-1)


def seeded_sampler(seeds: Sequence[int], temperature: float) -> Any:
    """A logits processor that samples each row with its own generator and returns a one-hot mask.

    `generate` runs greedy (argmax) on its output, so the token is exactly the sampled one. Each row
    draws one uniform per step whatever the other rows do, so its completion depends only on its own seed.
    Only the uniforms cross to the device (a number a row), where `inverse_cdf_draw` reads the logits.
    """
    import torch
    from transformers import LogitsProcessor

    class SeededSampler(LogitsProcessor):
        def __init__(self) -> None:
            self.generators = [torch.Generator().manual_seed(s) for s in seeds]

        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
            if temperature == 0:
                chosen = scores.argmax(-1)
            else:
                uniforms = torch.cat([torch.rand(1, generator=g, dtype=torch.float64) for g in self.generators])
                chosen = inverse_cdf_draw(scores, uniforms, temperature)
            mask = torch.full_like(scores, float("-inf"))
            return mask.scatter_(1, chosen[:, None], 0.0)

    return SeededSampler()


def render_prompts(tokenizer: Any, questions: Sequence[PromptValue], prompt_config: dict[str, Any]) -> list[list[int]]:
    """Token ids of each prompt, built like the scores directory's: system prompt, few-shot, template; or TRL's
    own `prompt` column (text or chat messages) as it is, as scoring and training render it."""
    from gaincurate.prompts import PromptFormat, for_column, is_messages, render_with_spans

    fmt = PromptFormat(
        system_prompt=prompt_config.get("system_prompt"),
        few_shot=tuple(dict(s) for s in prompt_config.get("few_shot") or ()),
        chat_template=prompt_config.get("chat_template", True),
    )
    fmt = for_column(fmt, str(prompt_config.get("prompt_column")))
    texts = [render_with_spans(tokenizer, question, fmt)[0] for question in questions]
    # A chat template writes its own BOS; plain text needs the tokenizer's (as in scoring).
    special = (not fmt.chat_template or fmt.as_is) and not any(is_messages(q) for q in questions)
    encoded = tokenizer(texts, add_special_tokens=special)
    ids = [list(row) for row in encoded["input_ids"]]
    max_length = prompt_config.get("max_length")
    if max_length and any(len(row) > max_length for row in ids):
        log.warning("some prompts are longer than the scoring --max-length %d; they are generated in full", max_length)
    return ids


def plan_batches(lengths: Sequence[int], prompts_per_batch: int) -> list[list[int]]:
    """Indices grouped into fixed batches, longest prompts first (ties by index): less left padding."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    return [order[i : i + prompts_per_batch] for i in range(0, len(order), prompts_per_batch)]


def default_threads() -> int:
    import torch

    return torch.get_num_threads()


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run with `threads` torch intra-op threads, restoring the previous count afterwards.

    On a CPU shared with other busy processes, one thread can decode many times faster than two:
    threads that wait for a descheduled peer at every small matmul spin instead of working.
    """
    if threads is None:
        yield
        return
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def stop_ids(model: Any, tokenizer: Any) -> list[int]:
    ids = model.generation_config.eos_token_id if model.generation_config is not None else None
    ids = [] if ids is None else [ids] if isinstance(ids, int) else list(ids)
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    if not ids:
        raise ConfigError(
            "the tokenizer has no end-of-sequence token, so generation could not stop; pick another model"
        )
    return ids


def generate_batch(
    model: Any,
    prompts: list[list[int]],
    gc_ids: list[int],
    config: SamplingSettings,
    *,
    pad_id: int,
    stop_ids: list[int],
    device: str,
    keep_stop: bool = False,
) -> tuple[list[list[int]], list[int]]:
    """Sample `config.samples` completions of each prompt in one left-padded `generate` call.

    Each distinct prompt is prefilled once (all but its last token) and its key/value cache repeated
    for its samples, so the prompt is not run `samples` times; `generate` continues from that cache.
    Returns each row's completion tokens (up to, not including, the stop token) and its generated
    token count (the stop token included), rows ordered prompt by prompt, sample by sample. `keep_stop`: the
    completions end with their stop token when they stopped (as a trainer's completion ids do).
    """
    import torch
    from transformers import DynamicCache, GenerationConfig, LogitsProcessorList

    width = max(len(prompt) for prompt in prompts)
    input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        input_ids[row, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
        attention_mask[row, width - len(prompt) :] = 1
    input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
    seeds = [rollout_seed(config.seed, gc_id, k) for gc_id in gc_ids for k in range(config.samples)]
    generation = GenerationConfig(
        do_sample=False, max_new_tokens=config.max_new_tokens, pad_token_id=pad_id, eos_token_id=stop_ids
    )
    # `generate` numbers the positions of a left-padded row from its first real token; the prefill must
    # number them the same way, or the cached keys and the new tokens disagree on where they are.
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    with torch.inference_mode():
        cache = DynamicCache(config=model.config)
        if width > 1:
            prefix = slice(0, width - 1)
            model(
                input_ids=input_ids[:, prefix],
                attention_mask=attention_mask[:, prefix],
                position_ids=position_ids[:, prefix],
                use_cache=True,
                **{cache_keyword(model): cache},
                logits_to_keep=1,
            )
        cache.batch_repeat_interleave(config.samples)
        output = model.generate(
            input_ids=input_ids.repeat_interleave(config.samples, dim=0),
            attention_mask=attention_mask.repeat_interleave(config.samples, dim=0),
            generation_config=generation,
            **{cache_keyword(model): cache},
            logits_processor=LogitsProcessorList([seeded_sampler(seeds, config.temperature)]),
        )
    completions, counts = [], []
    stops = set(stop_ids)
    for tokens in output[:, width:].tolist():
        end = next((i for i, token in enumerate(tokens) if token in stops), None)
        completions.append(tokens if end is None else tokens[: end + keep_stop])
        counts.append(len(tokens) if end is None else end + 1)
    return completions, counts
