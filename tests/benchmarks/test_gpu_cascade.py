"""The shared prefix attended apart (`gpu_cascade`): two attention calls merged by their log-sum-exp read, in float64,
what one call over the prefix's keys joined to the row's does, and the forward built on them what each row run whole
does. On a CPU the reference runs the calls; the device's operator is checked against it before the bench uses it."""

from __future__ import annotations

import pytest
import torch

from gaincurate.lab.benchmarks.gpu import TINY
from gaincurate.lab.benchmarks.gpu_cascade import (
    _agrees,
    _Cascade,
    _cascade_attention,
    _repeating_heads,
    attention_with_lse,
    cascade_forward,
    reference_with_lse,
)


class _Layer:
    layer_idx = 0


def test_the_merged_calls_read_as_one_call_over_the_joined_keys():
    from torch.nn.attention.bias import causal_lower_right
    from torch.nn.functional import scaled_dot_product_attention

    generator = torch.Generator().manual_seed(0)
    rows, heads, kv_heads, tokens, prefix, width = 3, 6, 2, 11, 17, 8

    def draw(*shape: int, spread: float = 3.0) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, dtype=torch.float64) * spread

    query, key = draw(rows, heads, tokens, width), draw(rows, kv_heads, tokens, width)
    value = draw(rows, kv_heads, tokens, width, spread=1.0)
    prefix_keys = draw(1, kv_heads, prefix, width).expand(rows, -1, -1, -1)
    prefix_values = draw(1, kv_heads, prefix, width, spread=1.0).expand(rows, -1, -1, -1)

    state = _Cascade(reference_with_lse, {0: (prefix_keys, prefix_values)})
    got, weights = _cascade_attention(state, _Layer(), query, key, value, None, scaling=width**-0.5)
    joined = [torch.cat(parts, dim=2) for parts in ((prefix_keys, key), (prefix_values, value))]
    expected = scaled_dot_product_attention(query, *joined, attn_mask=causal_lower_right(tokens, prefix + tokens),
                                            enable_gqa=True).transpose(1, 2)  # fmt: skip

    assert weights is None and got.shape == (rows, tokens, heads, width)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("prefix_length", [7, 40])
def test_the_forward_with_the_prefix_apart_reads_what_each_row_run_whole_gives(prefix_length):
    from transformers import AutoModelForCausalLM, Qwen2Config

    from gaincurate.lab.benchmarks.gpu_forward import _prefix_cache, padded_batch

    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=512, max_position_embeddings=256, initializer_range=0.5, **TINY["tiny"])
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float64).eval()
    ids, lengths, _ = padded_batch(3, 32, config.vocab_size, "cpu")
    prefix = torch.randint(0, config.vocab_size, (1, prefix_length))

    got = cascade_forward(model.model, ids, _prefix_cache(model.model, prefix), reference_with_lse)()
    assert model.config._attn_implementation == "sdpa"  # restored after the forward
    for row, length in enumerate(lengths.tolist()):
        whole = torch.cat([prefix[0], ids[row, :length]])[None]
        with torch.inference_mode():
            expected = model.model(input_ids=whole, use_cache=False).last_hidden_state[0, prefix_length:]
            alone = model.model(input_ids=ids[row : row + 1, :length], use_cache=False).last_hidden_state[0]
        torch.testing.assert_close(got[row, :length], expected, rtol=1e-10, atol=1e-10)
        assert (got[row, :length] - alone).abs().max() > 1e-2  # the prefix's part counts


def test_an_operator_is_used_only_where_it_reads_as_the_reference():
    generator = torch.Generator().manual_seed(1)
    query, key, value = (torch.randn(2, heads, 24, 16, generator=generator) for heads in (4, 2, 2))

    def log2_sum_exp(*args, **kwargs):  # another base, as a kernel's own statistics may keep it
        output, lse = reference_with_lse(*args, **kwargs)
        return output, lse / torch.log(torch.tensor(2.0))

    def equal_heads_only(query, key, value, **kwargs):
        if query.shape[1] != key.shape[1]:
            raise RuntimeError("grouped heads not supported")
        return reference_with_lse(query, key, value, **kwargs)

    for keys, values, causal in ((key, value, True), (key[:, :, :9], value[:, :, :9], False)):
        assert _agrees(reference_with_lse, query, keys, values, causal)
        assert not _agrees(log2_sum_exp, query, keys, values, causal)
        assert not _agrees(equal_heads_only, query, keys, values, causal)
        assert _agrees(_repeating_heads(equal_heads_only), query, keys, values, causal)
    assert attention_with_lse("cpu", torch.bfloat16) == (reference_with_lse, "the reference (no GPU)")
