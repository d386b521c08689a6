"""`--batch-tokens` on CPU, chosen by timing a few sizes once per machine instead of one fixed number.

The best padded-token budget per forward batch depends on the CPU and on the dtype, and not through the
matmuls alone: padding grows with the budget, and once the matmuls are fast (bf16 on AMX), the attention,
norms and activations of padded rows are most of the time, so the forward slows down where the matmuls still
speed up. A probe of the linear layers alone therefore picks wrong (docs/benchmark-history.md, "Batch size",
has the figures).

So the sizes are timed on the scoring engine itself (`Scorer`: shared prefix, packing, truncated
forward), run on a one-layer, random-weight model of the same architecture in the chosen dtype, over
the run's own first `SAMPLE_ROWS` prompts: the same work per layer as the real forward, padding
included, at a thirtieth of its cost for a 30-layer model. Interleaved rounds; least time wins. The
result is cached per machine, model, dtype and thread count (measured on the first run's prompts).
"""

from __future__ import annotations

import time
from typing import Any

from gaincurate.prompts import EncodedPrompt, PromptEncoder
from gaincurate.scoring.config import ScoreConfig

BATCH_SIZES = (256, 512, 1024, 2048)
SAMPLE_ROWS = 128
BUDGET_SECONDS = 2.0  # once per machine, model and dtype
_VOCAB = 1024  # the probe model's vocabulary: token ids are folded into it, their values do not matter


def one_layer_model(model_config: Any, dtype: str) -> Any:
    """A random one-layer model of `model_config`'s architecture, with a small vocabulary, in `dtype`."""
    import copy

    import torch
    from transformers import AutoModelForCausalLM

    from gaincurate.scoring.dtype import convert_model, load_dtype

    config = copy.deepcopy(model_config)
    config.num_hidden_layers, config.vocab_size = 1, _VOCAB
    for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
        if isinstance(getattr(config, name, None), int) and getattr(config, name) >= _VOCAB:
            setattr(config, name, None)
    if hasattr(config, "layer_types") and config.layer_types:
        config.layer_types = config.layer_types[:1]
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, load_dtype(dtype))).eval()
    return convert_model(model, dtype) if dtype == "int8" else model


def measure_batch_sizes(
    model_config: Any,
    dtype: str,
    config: ScoreConfig,
    encoder: PromptEncoder,
    questions: list[str],
    sizes: tuple[int, ...] = BATCH_SIZES,
    budget: float = BUDGET_SECONDS,
) -> dict[str, float]:
    """Seconds per computed token of the engine at each size, keyed by the size as a string (JSON keys)."""
    import numpy as np
    import torch

    from gaincurate.model import SiteForward
    from gaincurate.scoring.engine import Scorer, find_shared_prefix

    prompts = [_folded(prompt) for prompt in encoder.encode(questions[:SAMPLE_ROWS])]
    prefix = find_shared_prefix(encoder) if config.prefix_cache else None
    if prefix is not None:
        prefix = type(prefix)(np.remainder(prefix.input_ids, _VOCAB), prefix.segment_ids)
    site = SiteForward(one_layer_model(model_config, dtype), layer=0, site=config.site, prune=False)
    settings = config.replace(embed=False)
    best = dict.fromkeys(sizes, float("inf"))
    tokens = dict.fromkeys(sizes, 1)

    def scorer(size: int) -> Scorer:
        return Scorer(site, device="cpu", backend="torch", config=settings, prefix=prefix, batch_tokens=size)

    started = time.perf_counter()
    with torch.inference_mode():
        scorer(sizes[0]).score(prompts[:8])  # warm-up: kernels built, prefix run
        for _ in range(10):  # interleaved rounds: a burst of load hits every size alike
            for size in sizes:
                engine = scorer(size)
                start = time.perf_counter()
                engine.score(prompts)
                best[size] = min(best[size], time.perf_counter() - start)
                tokens[size] = max(engine.stats.tokens, 1)
            if time.perf_counter() - started > budget:
                break
    site.close()
    return {str(size): best[size] / tokens[size] for size in sizes}


def _folded(prompt: EncodedPrompt) -> EncodedPrompt:
    import dataclasses

    import numpy as np

    return dataclasses.replace(prompt, input_ids=np.remainder(prompt.input_ids, _VOCAB))


def choose_batch_tokens(timings: dict[str, float]) -> tuple[int, str]:
    """The fastest size and a one-line reason, from seconds per token by size."""
    best = min(timings.values())
    size = min(int(key) for key, value in timings.items() if value == best)
    by_size = sorted(timings.items(), key=lambda item: int(item[0]))
    measured = ", ".join(f"{key}: {best / value:.2f}" for key, value in by_size)
    return size, f"the fastest on the scoring engine, one layer (relative speed by size: {measured})"
