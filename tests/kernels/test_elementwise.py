"""The fused rotary and SiLU-and-product kernels (gaincurate.kernels.elementwise) against float64, and the fusions
that run them in scoring's forward (gaincurate.layer_fusions) against transformers' own code.

Run: TRITON_INTERPRET=1 pytest -m triton tests/kernels (the interpreter, on CPU tensors), and pytest -m gpu on CUDA.
The kernel's compile for sm_80 and sm_90 is checked with the segment-sum kernels' (test_kernel_triton.py), in one
child process. The interpreter rounds float32 to bfloat16 by truncation, a compiled kernel to nearest: the bounds
allow one unit in the last place either way.
"""

from __future__ import annotations

import pytest
import torch

HALVES = [torch.bfloat16, torch.float16]


@pytest.fixture(params=[pytest.param("cpu", marks=pytest.mark.triton, id="interpreted"),
                        pytest.param("cuda", marks=pytest.mark.gpu, id="cuda")])  # fmt: skip
def device(request) -> str:
    """The CPU through Triton's interpreter (the kernel leg), or a GPU with the kernels compiled."""
    request.getfixturevalue("interpreter" if request.param == "cpu" else "cuda")
    return request.param


def _within_one_unit(got: torch.Tensor, exact: torch.Tensor) -> None:
    """|got - exact| within one unit in the last place of `got`'s dtype at |exact| (normal numbers)."""
    finfo = torch.finfo(got.dtype)
    error = (got.double() - exact).abs()
    assert bool((error <= finfo.eps * exact.abs() + finfo.tiny).all()), float((error / exact.abs()).max())


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


# (rows, query heads, key heads, tokens, head width, rows of angles): the 0.5B class's heads, odd counts, packed
# rows, no tokens at all
ROTARY_SHAPES = [(2, 14, 2, 9, 64, 2), (3, 5, 1, 7, 12, 1), (1, 4, 4, 33, 128, 1), (2, 4, 2, 0, 8, 2)]


@pytest.mark.parametrize("dtype", HALVES, ids=str)
@pytest.mark.parametrize("shape", ROTARY_SHAPES, ids=str)
def test_rotary_is_the_float64_rotation_rounded_once(device, dtype, shape):
    """Queries and keys as transformers' attention hands them over (transposed views of [B, T, H, D]): each result
    keeps its input's layout and is the float64 rotation to one unit in the last place."""
    from gaincurate.kernels.elementwise import rotary

    rows, heads, key_heads, tokens, width, angle_rows = shape
    generator = torch.Generator().manual_seed(width)
    q = torch.randn(rows, tokens, heads, width, generator=generator).to(device, dtype).transpose(1, 2)
    k = torch.randn(rows, tokens, key_heads, width, generator=generator).to(device, dtype).transpose(1, 2)
    angles = torch.rand(angle_rows, tokens, width // 2, generator=generator) * 20
    cos, sin = (torch.cat((part, part), dim=-1).to(device, dtype) for part in (angles.cos(), angles.sin()))

    got = rotary(q, k, cos, sin)
    for out, x in zip(got, (q, k), strict=True):
        assert out.shape == x.shape and out.stride() == x.stride()
        x64, cos64, sin64 = (t.cpu().double() for t in (x, cos[:, None], sin[:, None]))
        _within_one_unit(out.cpu(), x64 * cos64 + _rotate_half(x64) * sin64)


def _qwen2(**changes):
    from transformers import AutoModelForCausalLM, Qwen2Config

    shape = dict(vocab_size=64, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2)  # fmt: skip
    return AutoModelForCausalLM.from_config(Qwen2Config(**(shape | changes))).eval()


def test_the_fused_forward_keeps_the_models_hidden_states(device):
    """A bfloat16 Qwen2 with its rotary embedding fused: the modeling module's rotary function is taken, the last
    hidden states stay within the model's own bfloat16 distance from float32, and the module is as it was after."""
    from transformers.models.qwen2 import modeling_qwen2

    from gaincurate.layer_fusions import fused_rotary

    torch.manual_seed(0)
    model = _qwen2().to(device, torch.bfloat16)
    ids = torch.randint(0, 64, (3, 11), device=device)
    own_rotary = modeling_qwen2.apply_rotary_pos_emb

    def hidden(base):
        with torch.inference_mode():
            return base.model(input_ids=ids).last_hidden_state.float()

    plain = hidden(model)
    exact = hidden(_float32_copy(model))
    with fused_rotary(model):
        assert modeling_qwen2.apply_rotary_pos_emb is not own_rotary
        fused = hidden(model)
    assert modeling_qwen2.apply_rotary_pos_emb is own_rotary
    own_distance = float((plain - exact).abs().max())
    assert float((fused - exact).abs().max()) <= 1.5 * own_distance
    assert not torch.equal(fused, plain)  # the kernel ran: rounded once, not at every step


def _float32_copy(model):
    copy = _qwen2().to(next(model.parameters()).device)
    copy.load_state_dict({name: tensor.float() for name, tensor in model.state_dict().items()})
    return copy.eval()


def test_a_rotary_function_that_computes_something_else_keeps_its_own(device, monkeypatch):
    """A modeling module whose rotary function turns the other way is left as it is."""
    from transformers.models.qwen2 import modeling_qwen2

    from gaincurate.layer_fusions import fused_rotary

    own_rotary = modeling_qwen2.apply_rotary_pos_emb

    def backwards(q, k, cos, sin, unsqueeze_dim=1):
        return own_rotary(q, k, cos, -sin, unsqueeze_dim)

    monkeypatch.setattr(modeling_qwen2, "apply_rotary_pos_emb", backwards)
    model = _qwen2().to(device, torch.bfloat16)
    with fused_rotary(model):
        assert modeling_qwen2.apply_rotary_pos_emb is backwards


def test_calls_the_kernel_does_not_take_go_to_the_models_own(device):
    """Inside the fusion, another model of the same modeling module, in float32, runs transformers' own rotary
    embedding: the same bits as without the fusion."""
    from gaincurate.layer_fusions import fused_rotary

    torch.manual_seed(0)
    model = _qwen2().to(device, torch.bfloat16)
    other = _qwen2().to(device)  # float32, the same modeling module
    ids = torch.randint(0, 64, (2, 7), device=device)
    with torch.inference_mode():
        expected = other.model(input_ids=ids).last_hidden_state
        with fused_rotary(model):
            got = other.model(input_ids=ids).last_hidden_state
    assert torch.equal(got, expected)


# (shape) of gate and up: the 0.5B class's MLP width, a count that is no multiple of 16, one element, none
SILU_SHAPES = [(3, 4864), (5, 7, 9), (1,), (0, 8)]


@pytest.mark.parametrize("dtype", HALVES, ids=str)
@pytest.mark.parametrize("shape", SILU_SHAPES, ids=str)
def test_silu_mul_is_the_float64_product_rounded_once(device, dtype, shape):
    from gaincurate.kernels.elementwise import silu_mul

    generator = torch.Generator().manual_seed(len(shape))
    gate, up = (torch.randn(shape, generator=generator).mul(4).to(device, dtype) for _ in range(2))

    got = silu_mul(gate, up)
    assert got.shape == gate.shape and got.dtype == dtype
    g64, u64 = gate.cpu().double(), up.cpu().double()
    _within_one_unit(got.cpu(), g64 * torch.sigmoid(g64) * u64)


def test_the_fused_swiglu_keeps_the_models_hidden_states(device):
    """A bfloat16 Qwen2 with its MLPs' SiLU and product fused: each MLP layer is taken, the last hidden states stay
    within the model's own bfloat16 distance from float32, and every layer is as it was after."""
    from gaincurate.layer_fusions import fused_swiglu

    torch.manual_seed(0)
    model = _qwen2().to(device, torch.bfloat16)
    ids = torch.randint(0, 64, (3, 11), device=device)
    mlps = [module for module in model.modules() if type(module).__name__ == "Qwen2MLP"]

    def hidden(base):
        with torch.inference_mode():
            return base.model(input_ids=ids).last_hidden_state.float()

    plain = hidden(model)
    exact = hidden(_float32_copy(model))
    with fused_swiglu(model):
        assert len(mlps) == 2 and all("forward" in vars(mlp) for mlp in mlps)
        fused = hidden(model)
    assert not any("forward" in vars(mlp) for mlp in mlps)
    own_distance = float((plain - exact).abs().max())
    assert float((fused - exact).abs().max()) <= 1.5 * own_distance
    assert not torch.equal(fused, plain)  # the kernel ran: the activation rounded once, not twice


def test_an_mlp_with_another_activation_keeps_its_own(device):
    """GELU's MLP computes something else than silu(gate) * up: the check leaves its layers as they are."""
    from gaincurate.layer_fusions import fused_swiglu

    model = _qwen2(hidden_act="gelu").to(device, torch.bfloat16)
    with fused_swiglu(model):
        assert not any("forward" in vars(module) for module in model.modules())
