"""How the model's forward runs: the attention backends scoring allows; attention without the padding mask, RMSNorm,
the rotary embedding and SwiGLU fused, each where it applies (gaincurate.forward_kernels)."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, GPT2Config

import gaincurate.forward_kernels as forward_kernels


def test_attention_for_many_shapes_leaves_out_cudnn_only():
    query = torch.randn(2, 4, 8, 16)
    mask = torch.ones(2, 1, 8, 8, dtype=torch.bool).tril()
    expected = torch.nn.functional.scaled_dot_product_attention(query, query, query, attn_mask=mask)

    with forward_kernels.attention_for_many_shapes():
        assert not torch.backends.cuda.cudnn_sdp_enabled()
        assert torch.backends.cuda.flash_sdp_enabled() and torch.backends.cuda.mem_efficient_sdp_enabled()
        got = torch.nn.functional.scaled_dot_product_attention(query, query, query, attn_mask=mask)
    assert torch.equal(got, expected)  # on a CPU, the same backend as without it


def _qwen2(**changes):
    from transformers import Qwen2Config

    shape = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2)  # fmt: skip
    return AutoModelForCausalLM.from_config(Qwen2Config(**(shape | changes))).eval()


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
# (device, dtype, head width, tolerance): a CPU in float32 runs the materialised masks; a GPU in bfloat16 runs flash,
# at the head widths of the 0.5B and 1.5B classes, against the memory-efficient kernel over the mask.
DEVICES = [pytest.param("cpu", torch.float32, 8, 1e-5, id="cpu"),
           pytest.param("cuda", torch.bfloat16, 64, 2e-2, marks=[pytest.mark.gpu, CUDA], id="cuda-64"),
           pytest.param("cuda", torch.bfloat16, 128, 2e-2, marks=[pytest.mark.gpu, CUDA], id="cuda-128")]  # fmt: skip


@pytest.mark.parametrize(("device", "dtype", "head", "tolerance"), DEVICES)
@pytest.mark.parametrize("prefix", [0, 5], ids=["whole-rows", "after-a-cached-prefix"])
def test_right_padded_rows_attend_alike_without_the_padding_mask(prefix, device, dtype, head, tolerance):
    """Rows of 9, 4 and 1 tokens padded on the right to 9 (after `prefix` cached tokens): without the mask, every
    real token's hidden states match the masked forward's, and the config's attention is restored after."""
    from transformers import DynamicCache

    from gaincurate.model import SiteForward
    from gaincurate.scoring.engine import expand_cache

    torch.manual_seed(0)
    model = _qwen2(hidden_size=4 * head, head_dim=head).to(device, dtype)
    site = SiteForward(model, layer=-1, site="residual", prune=False)
    lengths, width = [9, 4, 1], 9
    ids = torch.randint(1, 64, (len(lengths), width), device=device)
    mask = torch.zeros(len(lengths), prefix + width, dtype=torch.long, device=device)
    mask[:, :prefix] = 1
    for row, length in enumerate(lengths):
        ids[row, length:] = 0
        mask[row, prefix : prefix + length] = 1
    head_ids = torch.randint(1, 64, (1, prefix), device=device)

    def forward():
        cache = None
        if prefix:
            cache = DynamicCache(config=model.config)
            site(head_ids, torch.ones_like(head_ids), cache=cache)
            cache = expand_cache(cache, len(lengths), model.config)
        return site(ids, mask, cache=cache).float()

    masked = forward()
    with forward_kernels.right_padded_causal(model.config):
        assert model.config._attn_implementation == forward_kernels.RIGHT_PADDED_CAUSAL
        unmasked = forward()
    assert model.config._attn_implementation == "sdpa"
    scale = float(masked.abs().max())
    for row, length in enumerate(lengths):
        torch.testing.assert_close(unmasked[row, :length], masked[row, :length], rtol=0, atol=tolerance * scale)


def test_the_padding_mask_goes_only_on_a_gpu_in_a_half_dtype_with_plain_causal_attention():
    half = _qwen2().to(torch.bfloat16)
    assert forward_kernels.right_padded_causal_applies(half, "cuda:0")
    assert not forward_kernels.right_padded_causal_applies(half, "cpu")
    assert not forward_kernels.right_padded_causal_applies(_qwen2(), "cuda")  # float32: no flash kernel
    windowed = _qwen2(use_sliding_window=True, sliding_window=4, max_window_layers=0).to(torch.bfloat16)
    assert not forward_kernels.right_padded_causal_applies(windowed, "cuda")
    eager = _qwen2(attn_implementation="eager").to(torch.bfloat16)
    assert not forward_kernels.right_padded_causal_applies(eager, "cuda")
    gpt2 = AutoModelForCausalLM.from_config(GPT2Config(vocab_size=64, n_embd=32, n_layer=1, n_head=4))
    assert forward_kernels.right_padded_causal_applies(gpt2.to(torch.bfloat16), "cuda") == (
        gpt2._supports_attention_backend and gpt2.config._attn_implementation == "sdpa"
    )


def _causal_lm(family: str, dtype: torch.dtype, device: str = "cpu"):
    import transformers

    shape = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=8)  # fmt: skip
    config = getattr(transformers, f"{family}Config")(**shape)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():  # weights away from 1, so a norm that reads them otherwise gives other outputs
        for name, parameter in model.named_parameters():
            if "norm" in name:
                parameter.copy_(torch.rand_like(parameter) + 0.5)
    return model.to(device, dtype)


def _own_forwards(model) -> list[str]:
    return [name for name, module in model.named_modules() if "forward" in vars(module)]


# (family, RMSNorm layers taken): two per decoder layer and the final one; Qwen3 also normalises each head's queries
# and keys; Gemma applies its weight as 1 + w, so no layer of it computes `rms_norm` and each keeps its own forward.
FAMILIES = [("Llama", 5), ("Qwen2", 5), ("Qwen3", 9), ("Gemma", 0)]


NORM_DEVICES = [pytest.param("cpu", torch.float32, 1e-5, id="cpu-float32"),
                pytest.param("cpu", torch.bfloat16, 3e-2, id="cpu-bfloat16"),
                pytest.param("cuda", torch.bfloat16, 3e-2, marks=[pytest.mark.gpu, CUDA], id="cuda")]  # fmt: skip


@pytest.mark.parametrize(("family", "taken"), FAMILIES, ids=[family for family, _ in FAMILIES])
@pytest.mark.parametrize(("device", "dtype", "tolerance"), NORM_DEVICES)
def test_fused_rms_norms_give_the_models_own_hidden_states(family, taken, device, dtype, tolerance):
    """Every layer whose class computes `rms_norm` runs as one fused call inside the context, a layer that computes
    something else keeps its own forward, the hidden states stay within the dtype's rounding, and every layer has its
    own forward back after."""
    model = _causal_lm(family, dtype, device)
    ids = torch.randint(1, 64, (3, 7), device=device)
    with torch.inference_mode():
        plain = model.model(input_ids=ids).last_hidden_state.float()
        with forward_kernels.fused_rms_norms(model):
            assert len(_own_forwards(model)) == taken
            fused = model.model(input_ids=ids).last_hidden_state.float()
    assert _own_forwards(model) == []
    if taken == 0:
        assert torch.equal(fused, plain)
    else:
        torch.testing.assert_close(fused, plain, rtol=0, atol=tolerance * float(plain.abs().max()))


def test_a_norm_with_a_forward_of_its_own_is_left_to_it():
    """A layer patched by another library (or hooked) keeps that forward inside the context and after it."""
    model = _causal_lm("Llama", torch.bfloat16)
    patched = model.model.norm
    patched.forward = lambda hidden_states: hidden_states
    own = patched.forward
    with forward_kernels.fused_rms_norms(model):
        assert patched.forward is own
        assert len(_own_forwards(model)) == 5  # the other four, and this one's own
    assert _own_forwards(model) == ["model.norm"] and patched.forward is own


def test_fused_rms_norms_go_only_on_a_gpu_in_a_half_dtype():
    half = _qwen2().to(torch.bfloat16)
    assert forward_kernels.fused_rms_norms_apply(half, "cuda:0")
    assert forward_kernels.fused_rms_norms_apply(_qwen2().to(torch.float16), "cuda")
    assert not forward_kernels.fused_rms_norms_apply(half, "cpu")  # a CPU's scores are the recorded bytes
    assert not forward_kernels.fused_rms_norms_apply(_qwen2(), "cuda")  # float32


def test_the_padded_and_packed_forwards_fuse_the_layers_each_fusion_where_it_applies(monkeypatch):
    """Both scoring forwards enter `fused_layers`, which enters the fused RMSNorm, the rotary kernel and SwiGLU's
    where they apply (a GPU in a half dtype) and none elsewhere."""
    import contextlib
    import functools

    from gaincurate import layer_fusions, packed_forward

    entered = []

    def recorder(name):
        @contextlib.contextmanager
        def fusion(model):
            entered.append(name)
            yield

        return fusion

    monkeypatch.setattr(forward_kernels, "fused_rms_norms", recorder("rms_norm"))
    monkeypatch.setattr(layer_fusions, "fused_rotary", recorder("rotary"))
    monkeypatch.setattr(layer_fusions, "fused_swiglu", recorder("swiglu"))
    monkeypatch.setattr(layer_fusions, "triton_fusions_apply", forward_kernels.fused_rms_norms_apply)
    monkeypatch.setattr(packed_forward, "packed_attention", lambda *args: contextlib.nullcontext())  # needs a GPU
    half = _qwen2().to(torch.bfloat16)
    rows = packed_forward.pack_rows([[1, 2, 3]])
    for device, expected in (("cuda", ["rms_norm", "rotary", "swiglu"]), ("cpu", [])):
        for forward in (functools.partial(forward_kernels.right_padded_forward, half, device),
                        functools.partial(packed_forward.packed_forward, half, device, rows, None, None)):  # fmt: skip
            entered.clear()
            with forward():
                pass
            assert entered == expected


class _HubRMSNorm(torch.nn.Module):
    """A hub model's own norm: RMSNorm, or with `offset` its weight applied as 1 + w (a setting of the layer)."""

    __module__ = "transformers_modules.someone.model"

    def __init__(self, size: int, offset: bool = False) -> None:
        super().__init__()
        self.weight, self.eps, self.offset = torch.nn.Parameter(torch.rand(size) + 0.5), 1e-6, offset

    def forward(self, hidden_states):
        variance = hidden_states.float().pow(2).mean(-1, keepdim=True)
        normed = (hidden_states.float() * torch.rsqrt(variance + self.eps)).to(hidden_states.dtype)
        return (1 + self.weight if self.offset else self.weight) * normed


class _GatedRMSNorm(_HubRMSNorm):
    __module__ = _HubRMSNorm.__module__

    def forward(self, hidden_states, gate):  # takes more than the hidden states
        return super().forward(hidden_states) * gate


class _ShardedRMSNorm(_HubRMSNorm):
    __module__ = _HubRMSNorm.__module__

    def __deepcopy__(self, memo):  # as a layer whose weight lives across processes may
        raise RuntimeError("cannot copy a sharded parameter")


def test_each_layer_is_checked_and_one_that_differs_takes_more_or_cannot_be_copied_keeps_its_own():
    layers = torch.nn.ModuleDict({"plain": _HubRMSNorm(16), "offset": _HubRMSNorm(16, offset=True),
                                  "gated": _GatedRMSNorm(16), "sharded": _ShardedRMSNorm(16)})  # fmt: skip
    with forward_kernels.fused_rms_norms(layers):
        assert _own_forwards(layers) == ["plain"]
    assert _own_forwards(layers) == []
