"""`--batch-tokens` on a GPU: what its free memory holds, not a timing.

The batch is the unit of cost on a GPU, and the largest batch that fits runs the matmuls nearest their peak. So the
budget is a share of the memory free before the weights load (less the weights), over what one token of a batch
holds at the peak of a truncated forward (`gpu_memory`), as a power of two within bounds (`gpu_batch_tokens`).
`gaincurate.scoring.tuning` records the choice in the manifest; the CPU's budget is measured instead
(`gaincurate.scoring.batch_size`).
"""

from __future__ import annotations

from typing import Any

# The rest of the free memory absorbs the allocator's fragmentation and transient buffers. A power of two keeps the
# budget when a little more or less memory is free; below the lower bound a large GPU idles between launches, above
# the upper one batches add only memory risk.
GPU_MEMORY_SHARE = 0.5
GPU_BATCH_TOKENS = (16_384, 131_072)
# The parts of a split run (torchrun ranks, array jobs) must agree, so they do not read their own free memory.
GPU_SPLIT_BATCH_TOKENS = 65_536


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


def gpu_batch_tokens(free_bytes: int, weight_bytes: int, token_bytes: int) -> int:
    """The padded-token budget a GPU with `free_bytes` free holds (module constants say how)."""
    fits = max(1, int((free_bytes - weight_bytes) * GPU_MEMORY_SHARE) // token_bytes)
    low, high = GPU_BATCH_TOKENS
    return min(max(1 << (fits.bit_length() - 1), low), high)
