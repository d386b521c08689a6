"""A decoder layer's elementwise work as Triton kernels (`gaincurate.kernels.elementwise`) while a forward runs on a
GPU in a half dtype, where transformers makes several passes over the activations: the rotary embedding of queries
and keys, and a gated MLP's activation and product (SwiGLU). Scoring's padded and packed forwards enter each where it
applies (`forward_kernels.fused_layers`); each joined them by the rule declared for it, speed and distance from the
float32 forward both (docs/benchmark-history.md, "SwiGLU and the rotary embedding fused on one GPU").

transformers' attention layers call their modeling module's `apply_rotary_pos_emb(q, k, cos, sin)`; `fused_rotary`
replaces it while forwards run, and `fused_swiglu` each MLP layer's forward, where a check on fixed inputs shows the
model's own code computes what the kernel does, to the half dtype's rounding. A call the kernel does not take runs the
model's own code. Imported when a forward runs, not with the command line.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import weakref
from types import ModuleType
from typing import Any


def half_on_gpu(model: Any, device: str) -> bool:
    """Whether `model` runs on a GPU in a half dtype: where the forward's fusions apply."""
    import torch

    return str(device).startswith("cuda") and model.dtype in (torch.float16, torch.bfloat16)


def triton_fusions_apply(model: Any, device: str) -> bool:
    """Whether `fused_rotary` and `fused_swiglu` may run `model`'s forward on `device`: a GPU in a half dtype, with
    Triton compiled for it. Where Triton is missing, broken or interpreted, the model's own forward runs."""
    return half_on_gpu(model, device) and _elementwise() is not None and not _elementwise().INTERPRETED


@contextlib.contextmanager
def forwards_replaced(model: Any, fusable: Any, fused_forward: Any) -> Any:
    """Run the forwards inside with each of `model`'s modules that `fusable` takes running `fused_forward(module)` as
    its own forward, then restore them."""
    swapped = [module for module in model.modules() if fusable(module)]
    for module in swapped:
        module.forward = fused_forward(module)
    try:
        yield
    finally:
        for module in swapped:
            del module.forward


@functools.cache
def _elementwise() -> ModuleType | None:
    """The fused kernels' module, imported once, or None where Triton does not import."""
    try:
        from gaincurate.kernels import elementwise
    except Exception:  # a broken Triton raises anything, not only ImportError: the model's own forward runs
        return None
    return elementwise


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


def fused_swiglu(model: Any) -> contextlib.AbstractContextManager:
    """Run the forwards inside with each gated MLP's activation and product, silu(gate(x)) * up(x), computed in one
    kernel (`kernels.elementwise.silu_mul`), then restore the layers.

    A layer is taken when its class is transformers' (or a hub model's own code) and named MLP, has `gate_proj`,
    `up_proj` and `down_proj` projections (`in_features` read from the first) and no forward of the instance's own,
    and on fixed rows gives what the fused forward gives, to the half dtype's rounding (`_swiglu_agrees`). An MLP with
    another activation (GELU's), or that gates the other projection, keeps its own forward.
    """
    return forwards_replaced(model, _swiglu_fusable, _swiglu_forward)


# layer -> whether it computes silu(gate) * up (`_swiglu_agrees`): checked once a layer
_SWIGLU_AGREES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _swiglu_fusable(module: Any) -> bool:
    if (not type(module).__module__.startswith("transformers") or not type(module).__name__.endswith("MLP")
            or "forward" in vars(module)
            or not all(callable(getattr(module, name, None)) for name in ("gate_proj", "up_proj", "down_proj"))
            or not isinstance(getattr(module.gate_proj, "in_features", None), int)):  # fmt: skip
        return False
    if module not in _SWIGLU_AGREES:
        _SWIGLU_AGREES[module] = _swiglu_agrees(module)
    return _SWIGLU_AGREES[module]


def _swiglu_forward(module: Any) -> Any:
    def forward(hidden_states: Any) -> Any:
        gate, up = module.gate_proj(hidden_states), module.up_proj(hidden_states)
        contiguous = gate.is_contiguous() and up.is_contiguous()
        if gate.shape != up.shape or not contiguous or not _on_kernel_device(gate, up):
            return type(module).forward(module, hidden_states)  # what the check did not see: the layer's own forward
        return module.down_proj(_elementwise().silu_mul(gate, up))

    return forward


def _swiglu_agrees(module: Any) -> bool:
    """Whether `module` on eight fixed rows gives the fused forward's output to within twice its dtype's epsilon in
    relative (Frobenius) norm. The two differ by where the intermediate is rounded, a fraction of that; another
    activation (GELU's differs from SiLU's by about a tenth) or the other projection gated, by far more. A layer
    whose forward fails on the rows does not."""
    import torch

    weight = next(module.parameters(), None)
    if weight is None:
        return False
    generator = torch.Generator().manual_seed(0)
    rows = torch.randn(8, module.gate_proj.in_features, generator=generator).to(weight)
    try:
        with torch.inference_mode():
            expected = module(rows).float()
            fused = _swiglu_forward(module)(rows).float()
    except Exception:  # a layer this cannot check keeps its own forward
        return False
    if expected.shape != fused.shape:
        return False
    bound = 2 * torch.finfo(weight.dtype).eps * torch.linalg.vector_norm(expected)
    return bool(torch.linalg.vector_norm(fused - expected) <= bound)
