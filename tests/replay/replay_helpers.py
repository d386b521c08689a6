"""Builders for the rollout-replay tests: a word-level tokenizer, a tiny random Llama, prompts and a reward.

Everything is built offline from a config. `GenerationCounter` records what TRL generated, call by call.
"""

from __future__ import annotations

from typing import Any

WORDS = tuple(f"w{i}" for i in range(60))
_SPECIAL = ("<pad>", "<eos>", "<unk>")


def build_tokenizer():
    """A word-level tokenizer over `WORDS`; pad id 0, eos id 1, the words from id 3."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: index for index, token in enumerate(_SPECIAL + WORDS)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")


def build_model(tokenizer, *, hidden_size: int = 32, layers: int = 2, seed: int = 0):
    """A random Llama small enough for CPU tests."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config)


def build_prompts(count: int, words_per_prompt: int = 3):
    """`count` distinct plain-text prompts of `WORDS`."""
    from datasets import Dataset

    prompts = [" ".join(WORDS[(i + k * 7) % len(WORDS)] for k in range(words_per_prompt)) for i in range(count)]
    return Dataset.from_dict({"prompt": prompts})


def parity_reward(completion_ids: list[list[int]], **_: Any) -> list[float]:
    """1 when the completion's token ids sum to an odd number: varied rewards from a random model."""
    return [float(sum(ids) % 2) for ids in completion_ids]


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
