"""`--batch-tokens` on a GPU: what its free memory holds, not a timing.

The batch is the unit of cost on a GPU, and the largest batch that fits runs the matmuls nearest their peak. So the
budget is a share of the memory free before the weights load (less the weights), over what one token of a batch
holds at the peak of a truncated forward (`gpu_memory`), as a power of two within bounds (`budget`).
`gpu_batch_tokens` is the manifest's record of the choice (the CPU's budget is measured instead:
`gaincurate.scoring.batch_size`); `hidden_bytes`, what the backend's choice weighs on a GPU.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# The rest of the free memory absorbs the allocator's fragmentation and transient buffers. A power of two keeps the
# budget when a little more or less memory is free; below the lower bound a large GPU idles between launches, above
# the upper one batches add only memory risk.
GPU_MEMORY_SHARE = 0.5
GPU_BATCH_TOKENS = (16_384, 131_072)


def gpu_memory(model_config: Any, dtype: str, max_length: int | None) -> tuple[int, int]:
    """(bytes of the weights, bytes one token of a batch holds at the peak of a truncated inference forward), upper
    estimates from the config: the residual stream and its norms, the attention's projections, the MLP's three
    intermediate rows, the key/value cache of every layer (a prefix-cached batch keeps it), a row of the attention
    mask, and the float32 unit vectors and sums of the segment kernel."""
    size = 4 if dtype == "float32" else 2
    hidden = model_config.hidden_size
    # GPT-2's config names no intermediate size (n_inner None): its MLP is 4 x hidden, as most are at most.
    intermediate = (
        getattr(model_config, "intermediate_size", None) or getattr(model_config, "n_inner", None) or 4 * hidden
    )
    heads = model_config.num_attention_heads
    head_dim = getattr(model_config, "head_dim", None) or hidden // heads
    key_value = 2 * (getattr(model_config, "num_key_value_heads", None) or heads) * head_dim
    layers = model_config.num_hidden_layers
    width = max_length or getattr(model_config, "max_position_embeddings", 4096)
    tied = getattr(model_config, "tie_word_embeddings", False)
    weights = model_config.vocab_size * hidden * (1 if tied else 2)
    weights += layers * (hidden * (2 * hidden + key_value) + 3 * hidden * intermediate)
    activations = size * (6 * hidden + 3 * intermediate + key_value * layers + width) + 2 * 4 * hidden
    return size * weights, activations


def budget(free_bytes: int, weight_bytes: int, token_bytes: int) -> int:
    """The padded-token budget a GPU with `free_bytes` free holds (module constants say how)."""
    fits = max(1, int((free_bytes - weight_bytes) * GPU_MEMORY_SHARE) // token_bytes)
    low, high = GPU_BATCH_TOKENS
    return min(max(1 << (fits.bit_length() - 1), low), high)


def gpu_batch_tokens(device: str, dtype: str, max_length: int | None, model_config: Any) -> dict[str, Any]:
    """The manifest's record of what the GPU's free memory holds (asked only by `tuning.resolve_batch_tokens`)."""
    import torch

    free, _ = torch.cuda.mem_get_info(torch.device(device))
    weights, per_token = gpu_memory(model_config, dtype, max_length)
    low, high = GPU_BATCH_TOKENS
    reason = (f"{GPU_MEMORY_SHARE:.0%} of the {free / 2**30:.1f} GiB free on {device} less {weights / 2**30:.1f} "
              f"GiB of weights, at {per_token / 1024:.0f} KiB a token, a power of two in {low:,}-{high:,}")  # fmt: skip
    chosen = budget(free, weights, per_token)
    return {"chosen": chosen, "how": "device", "reason": reason, "free_bytes": free, "token_bytes": per_token}


# Characters per token of prompt text, a rough mean for English and mathematics: only the backend's choice reads it.
CHARS_PER_TOKEN = 4


def hidden_bytes(characters: np.ndarray, model: Any) -> int:
    """The hidden-state bytes a whole run's segment sums read, estimated from its rows' characters (the same for
    every part and every resume of the run, so each picks the same backend)."""
    tokens = int(np.sum(characters, dtype=np.int64)) // CHARS_PER_TOKEN
    return tokens * model.config.hidden_size * next(model.parameters()).element_size()
