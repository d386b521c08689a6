"""How the model's own forward runs on the device: which attention backend and mask, and its layers' elementwise
work fused (RMSNorm here, the rotary embedding and SwiGLU in `layer_fusions`).

Imported when a forward runs, not with the command line: neither is needed to parse a command.
"""

from __future__ import annotations

import contextlib
import weakref
from typing import Any

from gaincurate import layer_fusions


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
    config = model.config
    layer_types = getattr(config, "layer_types", None) or ["full_attention"]
    return (
        layer_fusions.half_on_gpu(model, device)  # what flash attention takes
        and getattr(model, "_supports_attention_backend", False)
        and config._attn_implementation == "sdpa"
        and getattr(config, "sliding_window", None) is None
        and all(kind == "full_attention" for kind in layer_types)
    )


def right_padded_forward(model: Any, device: str) -> contextlib.AbstractContextManager:
    """How a forward over rows padded on the right runs on `device`: attention by `right_padded_causal` where it
    applies, the layers by `fused_layers`."""
    stack = contextlib.ExitStack()
    if right_padded_causal_applies(model, device):
        stack.enter_context(right_padded_causal(model.config))
    stack.enter_context(fused_layers(model, device))
    return stack


def fused_layers(model: Any, device: str) -> contextlib.ExitStack:
    """The layers' elementwise work fused where each fusion applies: RMSNorm (`fused_rms_norms`), the rotary
    embedding and SwiGLU (`layer_fusions`), all on a GPU in a half dtype only; elsewhere the model's own."""
    stack = contextlib.ExitStack()
    if fused_rms_norms_apply(model, device):
        stack.enter_context(fused_rms_norms(model))
    if layer_fusions.triton_fusions_apply(model, device):
        stack.enter_context(layer_fusions.fused_rotary(model))
        stack.enter_context(layer_fusions.fused_swiglu(model))
    return stack


@contextlib.contextmanager
def attention_as(config: Any, name: str, function: Any) -> Any:
    """Run the forwards inside with `function` (transformers' attention-function contract) registered as `name` and
    taken for `config`'s attention, with no attention mask built; then restore `config`'s attention."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(name, function)
    AttentionMaskInterface.register(name, _no_mask)
    saved = config._attn_implementation
    config._attn_implementation = name
    try:
        yield
    finally:
        config._attn_implementation = saved


def right_padded_causal(config: Any) -> contextlib.AbstractContextManager:
    """Run the forwards inside with causal attention and no padding mask, then restore `config`'s attention.

    For rows padded on the right only, a causal model's real tokens never see a padded one (each comes after every
    real token of its row), so the padding mask changes nothing the scores read: without it attention takes flash's
    causal kernel, which skips the masked half and reads grouped key/value heads as they are, instead of the
    memory-efficient kernel over a materialised mask with the key/value heads copied out to every query head. With a
    cached prefix the query is the last tokens of the keys, so causality is aligned to the lower right.
    """
    return attention_as(config, RIGHT_PADDED_CAUSAL, _right_padded_causal_attention)


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


def fused_rms_norms_apply(model: Any, device: str) -> bool:
    """Whether `fused_rms_norms` may run `model`'s forward on `device`: a GPU in a half dtype, where the model's own
    RMSNorm takes about seven kernels over float32 copies of the hidden state. A CPU keeps the model's own (its
    scores are the recorded bytes) and so does float32 (nothing to save but the last bits)."""
    return layer_fusions.half_on_gpu(model, device)


def fused_rms_norms(model: Any) -> contextlib.AbstractContextManager:
    """Run the forwards inside with each of `model`'s RMSNorm layers computed by torch's fused `rms_norm` (one kernel
    on a GPU), then restore them.

    A layer is taken when its class computes what `rms_norm` does, to the half dtype's rounding: the class is
    transformers' (or a hub model's own code) and named RMSNorm, has a 1-D weight held here (not a sharded
    placeholder), an epsilon, no bias and no forward of the instance's own (another library's patch), and a copy of it
    gives `rms_norm`'s output on a fixed input with a fixed ramp of weights (`_agrees`). Norms that differ, say a
    weight applied as 1 + w, keep their own forward. The one difference left is where the result is rounded: once,
    after the weight, where transformers' RMSNorm rounds before it too.
    """
    return layer_fusions.forwards_replaced(model, _fusable, _fused_forward)


# layer -> whether it computes `rms_norm` (`_agrees`): checked once a layer, for its class's code may read settings
# of its own
_AGREES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _epsilon(module: Any) -> float | None:
    value = getattr(module, "variance_epsilon", getattr(module, "eps", None))
    return float(value) if isinstance(value, float | int) else None


def _fusable(module: Any) -> bool:
    import torch

    weight = getattr(module, "weight", None)
    # transformers' modules and hub models' own code ("transformers_modules"); another library's norms keep theirs
    if (not type(module).__module__.startswith("transformers") or not type(module).__name__.endswith("RMSNorm")
            or "forward" in vars(module)
            or not isinstance(weight, torch.nn.Parameter) or weight.dim() != 1 or not weight.numel()
            or _epsilon(module) is None
            or getattr(module, "bias", None) is not None):  # fmt: skip
        return False
    if module not in _AGREES:
        _AGREES[module] = _agrees(module)
    return _AGREES[module]


def _fused_forward(module: Any) -> Any:
    from torch.nn.functional import rms_norm

    weight, epsilon = module.weight, _epsilon(module)

    def forward(hidden_states: Any) -> Any:
        if hidden_states.dtype != weight.dtype:  # what the check did not see: the layer's own forward
            return type(module).forward(module, hidden_states)
        return rms_norm(hidden_states, hidden_states.shape[-1:], weight, epsilon)

    return forward


def _agrees(module: Any) -> bool:
    """Whether a copy of `module` with weights ramping from 0.25 to 2 gives `rms_norm`'s output on a fixed input,
    to within two units in the last place of its dtype. A layer that cannot be copied, or whose forward takes more
    than the hidden states or fails on them, does not."""
    import copy

    import torch

    weight = module.weight
    size = weight.shape[0]
    generator = torch.Generator().manual_seed(0)
    try:
        probe = copy.deepcopy(module)
        with torch.no_grad():
            probe.weight.copy_(torch.linspace(0.25, 2.0, size))
            rows = (torch.randn(8, size, generator=generator) * torch.linspace(0.1, 10.0, 8)[:, None]).to(weight)
            expected = probe(rows).float()
            fused = _fused_forward(probe)(rows).float()
    except Exception:  # a layer this cannot check (sharded weights, another signature) keeps its own forward
        return False
    if expected.shape != fused.shape:
        return False
    bound = 2 * torch.finfo(weight.dtype).eps * expected.abs() + torch.finfo(weight.dtype).tiny
    return bool(((fused - expected).abs() <= bound).all())
