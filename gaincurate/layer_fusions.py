"""A decoder layer's elementwise work fused while a forward runs on a GPU in a half dtype: RMSNorm as torch's
`rms_norm`, the rotary embedding of queries and keys as one Triton kernel (`gaincurate.kernels.elementwise`), where
transformers runs several passes over the activations. (SwiGLU's activation and product as one kernel was measured
slower than transformers' two on an H200, and taken out: docs/benchmark-history.md.)

`fused_layers` enters each where it applies. Each takes a model's layers only where a check on fixed inputs shows
they compute what the fused code does, to the half dtype's rounding; a call the fused code does not take runs the
model's own. Imported when a forward runs, not with the command line.
"""

from __future__ import annotations

import contextlib
import sys
import weakref
from types import ModuleType
from typing import Any


def fused_layers(model: Any, device: str) -> contextlib.AbstractContextManager:
    """The layers' elementwise work fused where each fusion applies, else as the model does: RMSNorm by
    `fused_rms_norms`, the rotary embedding by `fused_rotary`. Every forward of
    scoring and the likelihood, padded or packed, runs inside it."""
    stack = contextlib.ExitStack()
    if fused_rms_norms_apply(model, device):
        stack.enter_context(fused_rms_norms(model))
    if fused_rotary_applies(model, device):
        stack.enter_context(fused_rotary(model))
    return stack


def fused_rms_norms_apply(model: Any, device: str) -> bool:
    """Whether `fused_rms_norms` may run `model`'s forward on `device`: a GPU in a half dtype, where the model's own
    RMSNorm takes about seven kernels over float32 copies of the hidden state. A CPU keeps the model's own (its
    scores are the recorded bytes) and so does float32 (nothing to save but the last bits)."""
    return half_on_gpu(model, device)


def half_on_gpu(model: Any, device: str) -> bool:
    import torch

    return str(device).startswith("cuda") and model.dtype in (torch.float16, torch.bfloat16)


@contextlib.contextmanager
def fused_rms_norms(model: Any) -> Any:
    """Run the forwards inside with each of `model`'s RMSNorm layers computed by torch's fused `rms_norm` (one kernel
    on a GPU), then restore them.

    A layer is taken when its class computes what `rms_norm` does, to the half dtype's rounding: the class is
    transformers' (or a hub model's own code) and named RMSNorm, has a 1-D weight held here (not a sharded
    placeholder), an epsilon, no bias and no forward of the instance's own (another library's patch), and a copy of it
    gives `rms_norm`'s output on a fixed input with a fixed ramp of weights (`_rms_agrees`). Norms that differ, say a
    weight applied as 1 + w, keep their own forward. The one difference left is where the result is rounded: once,
    after the weight, where transformers' RMSNorm rounds before it too.
    """
    swapped = [module for module in model.modules() if _rms_fusable(module)]
    for module in swapped:
        module.forward = _rms_forward(module)
    try:
        yield
    finally:
        for module in swapped:
            del module.forward


# layer -> whether it computes `rms_norm` (`_rms_agrees`): checked once a layer, for its class's code may read settings
# of its own
_RMS_AGREES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _epsilon(module: Any) -> float | None:
    value = getattr(module, "variance_epsilon", getattr(module, "eps", None))
    return float(value) if isinstance(value, float | int) else None


def _rms_fusable(module: Any) -> bool:
    import torch

    weight = getattr(module, "weight", None)
    # transformers' modules and hub models' own code ("transformers_modules"); another library's norms keep theirs
    if (not type(module).__module__.startswith("transformers") or not type(module).__name__.endswith("RMSNorm")
            or "forward" in vars(module)
            or not isinstance(weight, torch.nn.Parameter) or weight.dim() != 1 or not weight.numel()
            or _epsilon(module) is None
            or getattr(module, "bias", None) is not None):  # fmt: skip
        return False
    if module not in _RMS_AGREES:
        _RMS_AGREES[module] = _rms_agrees(module)
    return _RMS_AGREES[module]


def _rms_forward(module: Any) -> Any:
    from torch.nn.functional import rms_norm

    weight, epsilon = module.weight, _epsilon(module)

    def forward(hidden_states: Any) -> Any:
        if hidden_states.dtype != weight.dtype:  # what the check did not see: the layer's own forward
            return type(module).forward(module, hidden_states)
        return rms_norm(hidden_states, hidden_states.shape[-1:], weight, epsilon)

    return forward


def _rms_agrees(module: Any) -> bool:
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
            fused = _rms_forward(probe)(rows).float()
    except Exception:  # a layer this cannot check (sharded weights, another signature) keeps its own forward
        return False
    if expected.shape != fused.shape:
        return False
    bound = 2 * torch.finfo(weight.dtype).eps * expected.abs() + torch.finfo(weight.dtype).tiny
    return bool(((fused - expected).abs() <= bound).all())


def fused_rotary_applies(model: Any, device: str) -> bool:
    """Whether `fused_rotary` may run `model`'s forward on `device`: a GPU in a half dtype, with
    Triton compiled for it. Where Triton is missing, broken or interpreted, the model's own forward runs."""
    return half_on_gpu(model, device) and _elementwise() is not None and not _elementwise().INTERPRETED


# The one attempt to import the fused kernels: [module or None], empty before it
_ELEMENTWISE: list[ModuleType | None] = []


def _elementwise() -> ModuleType | None:
    if not _ELEMENTWISE:
        try:
            from gaincurate.kernels import elementwise
        except Exception:  # a broken Triton raises anything, not only ImportError: the model's own forward runs
            elementwise = None
        _ELEMENTWISE.append(elementwise)
    return _ELEMENTWISE[0]


def _on_kernel_device(*tensors: Any) -> bool:
    """Whether the fused kernels take `tensors`: in one half dtype, on a GPU (or any device when the kernels are
    interpreted, as in the tests), the last dimension contiguous."""
    import torch

    from gaincurate.kernels.launch import interpret_requested

    kind = tensors[0].dtype
    return all(
        tensor.dtype == kind and (tensor.is_cuda or interpret_requested()) and tensor.stride(-1) == 1
        for tensor in tensors
    ) and kind in (torch.float16, torch.bfloat16)


def _within_rounding(got: Any, expected: Any, scale: Any) -> bool:
    """|got - expected| within two units in the last place of `expected`'s dtype at `scale` (elementwise, float32)."""
    import torch

    finfo = torch.finfo(expected.dtype)
    return bool(((got.float() - expected.float()).abs() <= 2 * finfo.eps * scale + finfo.tiny).all())


@contextlib.contextmanager
def fused_rotary(model: Any) -> Any:
    """Run the forwards inside with the rotary embedding of queries and keys computed in one kernel
    (`kernels.elementwise.rotary`), then restore it.

    transformers' attention layers call their modeling module's `apply_rotary_pos_emb(q, k, cos, sin)`. While the
    forwards run, that function is replaced in the namespace of each of `model`'s modeling modules whose function,
    called on fixed queries and keys of the model's heads and width, gives what the kernel gives to the half dtype's
    rounding (`_rotary_agrees`). A call the kernel does not take (a CPU, float32, a rotary width short of the head's,
    other arguments or shapes) goes to the module's own function, so other models of that module are unaffected.
    """
    config = model.config
    heads = config.num_attention_heads
    # the forward's own heads and width: the check compiles the kernel the forward runs, not one more
    shape = (heads, getattr(config, "num_key_value_heads", None) or heads,
             getattr(config, "head_dim", None) or config.hidden_size // heads)  # fmt: skip
    namespaces = {sys.modules.get(type(module).__module__) for module in model.modules()
                  if type(module).__module__.startswith("transformers")}  # fmt: skip
    weight = next(model.parameters())
    replaced = {}
    for namespace in namespaces:
        own = getattr(namespace, "apply_rotary_pos_emb", None)
        if callable(own) and _rotary_agrees(own, shape, weight):
            replaced[namespace] = own
            namespace.apply_rotary_pos_emb = _rotary_function(own)
    try:
        yield
    finally:
        for namespace, own in replaced.items():
            namespace.apply_rotary_pos_emb = own


def _rotary_function(own: Any) -> Any:
    def apply_rotary_pos_emb(q: Any, k: Any, cos: Any, sin: Any, *args: Any, **kwargs: Any) -> Any:
        if (args or kwargs) and (*args, *kwargs.values()) != (1,) or not _rotary_takes(q, k, cos, sin):
            return own(q, k, cos, sin, *args, **kwargs)
        return _elementwise().rotary(q, k, cos, sin)

    return apply_rotary_pos_emb


def _rotary_takes(q: Any, k: Any, cos: Any, sin: Any) -> bool:
    """Whether `kernels.elementwise.rotary` takes these: queries and keys [B, H, T, D], angles [B or 1, T, D] of one
    layout, D even, each in one half dtype on the kernel's device."""
    return (q.dim() == k.dim() == 4 and cos.dim() == 3 and cos.shape == sin.shape and cos.stride() == sin.stride()
            and q.shape[-1] == k.shape[-1] == cos.shape[-1] and q.shape[-1] % 2 == 0
            and q.shape[0] == k.shape[0] and cos.shape[0] in (1, q.shape[0])
            and q.shape[2] == k.shape[2] == cos.shape[1]
            and _on_kernel_device(q, k, cos, sin))  # fmt: skip


# (function, (query heads, key heads, width), dtype, device) -> whether it computes what `rotary` does
_ROTARY_AGREES: dict[tuple, bool] = {}


def _rotary_agrees(own: Any, shape: tuple[int, int, int], weight: Any) -> bool:
    """Whether `own` on fixed queries, keys and angles of `shape` (query heads, key heads, width) gives the kernel's
    output, to two units in the last place at each output's scale (the sum of its two products' magnitudes), laid
    out as transformers' attention hands them over. A function that fails on them does not."""
    import torch

    key = (own, shape, weight.dtype, str(weight.device))
    if key in _ROTARY_AGREES:
        return _ROTARY_AGREES[key]
    *heads, width = shape
    generator = torch.Generator().manual_seed(0)
    q, k = (torch.randn(2, 5, count, width, generator=generator).to(weight).transpose(1, 2) for count in heads)
    angles = torch.rand(1, 5, width // 2, generator=generator) * 5
    cos, sin = (torch.cat((part, part), dim=-1).to(weight) for part in (angles.cos(), angles.sin()))
    agrees = False
    if width % 2 == 0 and _rotary_takes(q, k, cos, sin):
        try:
            expected = own(q, k, cos, sin)
            fused = _elementwise().rotary(q, k, cos, sin)
            agrees = all(
                _within_rounding(
                    got,
                    want,
                    x.float().abs() * cos.float().abs() + x.float().roll(width // 2, -1).abs() * sin.float().abs(),
                )
                for got, want, x in zip(fused, expected, (q, k), strict=True)
            )
        except Exception:  # a function this cannot check (another signature, partial rotary) keeps its own
            agrees = False
    _ROTARY_AGREES[key] = agrees
    return agrees
