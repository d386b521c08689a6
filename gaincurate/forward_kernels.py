"""How the model's own forward runs on the device: which attention backend and mask (the layers' elementwise work is
`layer_fusions`').

Imported when a forward runs, not with the command line: neither is needed to parse a command.
"""

from __future__ import annotations

import contextlib
from typing import Any


def attention_for_many_shapes() -> contextlib.AbstractContextManager:
    """torch's attention without its cuDNN backend, for forwards over batches of many widths. cuDNN builds a plan for
    each new input shape, which on a GPU costs more than a short batch's whole forward; flash and memory-efficient
    attention take any shape at once (docs/scale-out.md, "Throughput on one GPU"). A CPU has no cuDNN attention."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])


# The attention implementation registered with transformers for rows padded on the right only.
RIGHT_PADDED_CAUSAL = "gaincurate_right_padded_causal"


def right_padded_causal_applies(model: Any, device: str) -> bool:
    """Whether `right_padded_causal` may run `model`'s forward on `device`: a GPU in a half dtype (where flash
    attention runs), a model that takes transformers' attention functions and uses SDPA, and every layer's attention
    plain causal (no sliding window). Elsewhere the forward keeps transformers' padding mask."""
    from gaincurate.layer_fusions import half_on_gpu

    config = model.config
    layer_types = getattr(config, "layer_types", None) or ["full_attention"]
    return (
        half_on_gpu(model, device)  # what flash attention takes
        and getattr(model, "_supports_attention_backend", False)
        and config._attn_implementation == "sdpa"
        and getattr(config, "sliding_window", None) is None
        and all(kind == "full_attention" for kind in layer_types)
    )


def right_padded_forward(model: Any, device: str) -> contextlib.AbstractContextManager:
    """How a forward over rows padded on the right runs on `device`: attention by `right_padded_causal` where it
    applies, the layers' elementwise work by `fused_layers`."""
    from gaincurate.layer_fusions import fused_layers

    stack = contextlib.ExitStack()
    if right_padded_causal_applies(model, device):
        stack.enter_context(right_padded_causal(model.config))
    stack.enter_context(fused_layers(model, device))
    return stack


@contextlib.contextmanager
def right_padded_causal(config: Any) -> Any:
    """Run the forwards inside with causal attention and no padding mask, then restore `config`'s attention.

    For rows padded on the right only, a causal model's real tokens never see a padded one (each comes after every
    real token of its row), so the padding mask changes nothing the scores read: without it attention takes flash's
    causal kernel, which skips the masked half and reads grouped key/value heads as they are, instead of the
    memory-efficient kernel over a materialised mask with the key/value heads copied out to every query head. With a
    cached prefix the query is the last tokens of the keys, so causality is aligned to the lower right.
    """
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(RIGHT_PADDED_CAUSAL, _right_padded_causal_attention)
    AttentionMaskInterface.register(RIGHT_PADDED_CAUSAL, _no_mask)
    saved = config._attn_implementation
    config._attn_implementation = RIGHT_PADDED_CAUSAL
    try:
        yield
    finally:
        config._attn_implementation = saved


def _no_mask(*args: Any, **kwargs: Any) -> None:
    return None


def _right_padded_causal_attention(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple:
    """transformers' attention-function contract: `query` [B, H, Tq, D], `key`/`value` [B, Hkv, Tk, D] ->
    ([B, Tq, H, D], no weights)."""
    from torch.nn.attention.bias import causal_lower_right
    from torch.nn.functional import scaled_dot_product_attention

    queries, keys = query.shape[2], key.shape[2]
    causal = {"is_causal": True} if queries == keys else {"attn_mask": causal_lower_right(queries, keys)}
    output = scaled_dot_product_attention(query, key, value, dropout_p=dropout, scale=scaling,
                                          enable_gqa=query.shape[1] != key.shape[1], **causal)  # fmt: skip
    return output.transpose(1, 2).contiguous(), None
