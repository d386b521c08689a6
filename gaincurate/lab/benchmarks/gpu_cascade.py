"""Rows padded on the right attending to a shared prefix in two calls merged by their log-sum-exp (cascade attention),
where scoring's padded forward attends to the prefix and to the row in one call over keys joined in the cache.

Scoring continues every row of a batch from the prefix's one-row cache: each layer's cache update copies the rows'
keys and values after the prefix's, and the queries, the last of those keys, attend causally aligned to the lower
right, which torch runs through flash attention only (`gpu_forward`'s docstring). Here the prefix's keys and values
stay apart: each row attends to its own tokens causally aligned to the upper left (query and key lengths equal, which
cuDNN's kernel takes) and to the prefix's with no mask, and the two outputs merge by their log-sum-exps,

    attention over both = own + (over the prefix - own) * sigmoid(lse_prefix - lse_own),

one lerp over the outputs, its weight rounded to their dtype. torch's public attention returns no log-sum-exp, so on
a GPU both calls go to torch's own cuDNN attention operator (`aten._scaled_dot_product_cudnn_attention`, a private
operator: its signature is torch 2.11-2.13's), checked once on the device against `reference_with_lse`; elsewhere the
reference itself runs (float64 where the inputs are), so the CPU checks the forward that the GPU times. A variant of
`bench gpu --forward-variants`, not scoring's forward.

Imported when the forward variants run, not with the command line.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# The attention implementation registered with transformers for the cascade.
CASCADE_PREFIX = "gaincurate_cascade_prefix"


def reference_with_lse(query: Any, key: Any, value: Any, *, causal: bool, scale: float | None = None) -> tuple:
    """Attention of `query` [B, H, Tq, D] over `key`/`value` [B, Hkv, Tk, D] (each key/value head shared by H / Hkv
    query heads), causal aligned to the lower right when `causal`: (output [B, H, Tq, D] in the query's dtype,
    log-sum-exp of the scaled scores [B, H, Tq]), through `packed_forward.varlen_reference` with the B rows end to
    end."""
    import torch

    from gaincurate.packed_forward import varlen_reference

    rows, heads, queries, width = query.shape
    keys = key.shape[2]
    packed = [t.transpose(1, 2).reshape(rows * t.shape[2], t.shape[1], width) for t in (query, key, value)]
    cu_q, cu_k = torch.arange(rows + 1) * queries, torch.arange(rows + 1) * keys
    output, lse = varlen_reference(*packed, cu_q, cu_k, queries, keys, causal=causal, scale=scale)
    output, lse = output.reshape(rows, queries, heads, width), lse.reshape(rows, queries, heads)
    return output.transpose(1, 2), lse.transpose(1, 2)


def cudnn_with_lse(query: Any, key: Any, value: Any, *, causal: bool, scale: float | None = None) -> tuple:
    """`reference_with_lse`'s contract through torch's cuDNN attention operator, its key/value heads as given."""
    import torch

    output, lse = torch.ops.aten._scaled_dot_product_cudnn_attention(
        query, key, value, None, True, 0.0, causal, False, scale=scale)[:2]  # fmt: skip
    return output, lse.reshape(query.shape[:3])  # torch allocates it [B, H, Tq, 1]


def _repeating_heads(attend: Callable) -> Callable:
    """`attend` with each key/value head copied out to its query heads first."""

    def call(query: Any, key: Any, value: Any, *, causal: bool, scale: float | None = None) -> tuple:
        groups = query.shape[1] // key.shape[1]
        key, value = (t.repeat_interleave(groups, dim=1) for t in (key, value))
        return attend(query, key, value, causal=causal, scale=scale)

    return call


@functools.cache
def attention_with_lse(device: str, dtype: Any) -> tuple[Callable, str]:
    """(attention returning its log-sum-exp, what runs it) on `device` in `dtype`: on a GPU torch's cuDNN operator
    with grouped key/value heads where it reads them as the reference does, else with the heads repeated; elsewhere
    the reference. Raises RuntimeError where the operator reads neither way as the reference does (its log-sum-exp
    in another base, say)."""
    if not device.startswith("cuda"):
        return reference_with_lse, "the reference (no GPU)"
    import torch

    generator = torch.Generator().manual_seed(0)
    query, key, value = (torch.randn(2, heads, 96, 64, generator=generator).to(device, dtype) for heads in (4, 2, 2))
    # the row's own keys (as many as its queries, causal) and a prefix's (another length, no mask)
    cases = ((key, value, True), (key[:, :, :40].contiguous(), value[:, :, :40].contiguous(), False))
    candidates = ((cudnn_with_lse, "cuDNN, grouped heads"), (_repeating_heads(cudnn_with_lse), "cuDNN, heads repeated"))
    for attend, how in candidates:
        if all(_agrees(attend, query, *case) for case in cases):
            return attend, how
    raise RuntimeError(f"torch {torch.__version__}'s cuDNN attention does not read as the reference does")


def _agrees(attend: Callable, query: Any, key: Any, value: Any, causal: bool) -> bool:
    """Whether `attend` gives the reference's output and log-sum-exp on one small case, to a half dtype's rounding."""
    import torch

    try:
        output, lse = attend(query, key, value, causal=causal)
    except RuntimeError:
        return False
    expected, expected_lse = reference_with_lse(*(t.float() for t in (query, key, value)), causal=causal)
    return all(torch.allclose(got.float(), want, atol=2e-2) for got, want in ((output, expected), (lse, expected_lse)))


@dataclass(frozen=True)
class _Cascade:
    attend: Callable
    prefix: dict[int, tuple[Any, Any]]  # layer index -> the prefix's keys and values, [B, Hkv, P, D] each


def cascade_attention(
    config: Any, prefix: dict[int, tuple[Any, Any]], attend: Callable
) -> contextlib.AbstractContextManager:
    """Run the forwards inside (rows padded on the right, positions counted after the prefix, no attention mask and
    no cache) with each row attending to its own tokens and to `prefix`'s keys and values through `attend`; then
    restore `config`'s attention."""
    from gaincurate.forward_kernels import attention_as

    return attention_as(config, CASCADE_PREFIX, functools.partial(_cascade_attention, _Cascade(attend, prefix)))


def _cascade_attention(state: _Cascade, module: Any, query: Any, key: Any, value: Any, attention_mask: Any,
                       dropout: float = 0.0, scaling: float | None = None, **kwargs: Any) -> tuple:  # fmt: skip
    """transformers' attention-function contract: `query` [B, H, T, D], `key`/`value` [B, Hkv, T, D] ->
    ([B, T, H, D], no weights)."""
    import torch

    own, own_lse = state.attend(query, key, value, causal=True, scale=scaling)
    prefix_keys, prefix_values = state.prefix[module.layer_idx]
    over_prefix, prefix_lse = state.attend(query, prefix_keys, prefix_values, causal=False, scale=scaling)
    exact = torch.promote_types(own_lse.dtype, torch.float32)
    weight = torch.sigmoid(prefix_lse.to(exact) - own_lse.to(exact))[..., None].to(own.dtype)
    return torch.lerp(own, over_prefix, weight).transpose(1, 2).contiguous(), None


def cascade_forward(base: Any, ids: Any, cache: Any, attend: Callable) -> Callable[[], Any]:
    """What runs `ids` (rows padded on the right) through `base` after the prefix whose one-row cache is `cache`, the
    prefix attended apart: the last hidden state at the rows' own positions, as `gpu_forward.batch_forward` gives."""
    import torch

    rows, tokens = ids.shape
    layers = [layer for layer in cache.layers if layer.keys is not None and layer.keys.numel()]
    prefix = {index: tuple(t.expand(rows, -1, -1, -1).contiguous() for t in (layer.keys, layer.values))
              for index, layer in enumerate(layers)}  # fmt: skip
    length = layers[0].keys.shape[2]
    positions = torch.arange(length, length + tokens, device=ids.device).expand(rows, tokens)

    def run() -> Any:
        with torch.inference_mode(), cascade_attention(base.config, prefix, attend):
            return base(input_ids=ids, position_ids=positions, use_cache=False).last_hidden_state

    return run
