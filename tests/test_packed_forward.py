"""Rows packed end to end (gaincurate.packed_forward), checked on a CPU: the attention of a row over a shared prefix
and over its own tokens, merged by their log-sum-exp, is attention over the two concatenated; and scoring packed
rows through the pure-torch variable-length attention gives the padded path's hidden states and scores.

torch's variable-length flash attention needs CUDA; `varlen_reference` is its specification, and the engine passes
it where a GPU would pass torch's. What the GPU itself gives is `gaincurate bench gpu`'s and the `gpu` test below.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import PROBLEMS

from gaincurate.packed_forward import fill_batches, merge_by_log_sum_exp, pack_rows, varlen_reference
from gaincurate.scoring import engine
from gaincurate.scoring.config import SCORE_TOLERANCE, ScoreConfig

SHIPPED_PACK_FROM_PADDING = engine.PACK_FROM_PADDING


@pytest.fixture(autouse=True)
def rows_always_pack(monkeypatch):
    """Rows pack whatever their padding (a CPU's exact widths carry none), unless a test sets the threshold."""
    monkeypatch.setattr(engine, "PACK_FROM_PADDING", 0.0)


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _attention(query, key, value, causal_from: int | None):
    """Plain softmax attention in float64 over [T, H, D] tensors, key/value heads shared by H / Hkv query heads;
    query i sees key j when j <= causal_from + i (None: every key)."""
    repeat = query.shape[1] // key.shape[1]
    key, value = key.repeat_interleave(repeat, dim=1), value.repeat_interleave(repeat, dim=1)
    scores = torch.einsum("qhd,khd->hqk", query, key) / query.shape[-1] ** 0.5
    if causal_from is not None:
        allowed = torch.ones(len(query), len(key), dtype=torch.bool).tril(causal_from)
        scores = scores.masked_fill(~allowed, float("-inf"))
    return torch.einsum("hqk,khd->qhd", scores.softmax(-1), value)


@pytest.mark.parametrize(("heads", "kv_heads"), [(4, 4), (6, 2)], ids=["MHA", "GQA"])
def test_attention_over_prefix_and_row_merged_by_log_sum_exp_is_attention_over_both(heads, kv_heads):
    """Three rows of 5, 1 and 9 tokens after a 7-token prefix, float64: each row's attention over the prefix (no
    mask) and over its own tokens (causal), merged, equals attention over prefix + row with the causal mask."""
    generator = torch.Generator().manual_seed(0)
    lengths, prefix, dim = [5, 1, 9], 7, 16

    def draw(tokens, count):
        return torch.randn(tokens, count, dim, generator=generator, dtype=torch.float64)

    prefix_keys, prefix_values = draw(prefix, kv_heads), draw(prefix, kv_heads)
    query, key, value = draw(sum(lengths), heads), draw(sum(lengths), kv_heads), draw(sum(lengths), kv_heads)
    starts = torch.tensor([0, *lengths]).cumsum(0)

    own, own_lse = varlen_reference(query, key, value, starts, starts, max(lengths), max(lengths), causal=True)
    whole_q, whole_prefix = torch.tensor([0, sum(lengths)]), torch.tensor([0, prefix])
    over_prefix, prefix_lse = varlen_reference(query, prefix_keys, prefix_values, whole_q, whole_prefix,
                                               sum(lengths), prefix, causal=False)  # fmt: skip
    merged = merge_by_log_sum_exp(own, own_lse, over_prefix, prefix_lse)

    for row, (low, high) in enumerate(zip(starts[:-1].tolist(), starts[1:].tolist(), strict=True)):
        keys, values = torch.cat([prefix_keys, key[low:high]]), torch.cat([prefix_values, value[low:high]])
        expected = _attention(query[low:high], keys, values, causal_from=prefix)
        torch.testing.assert_close(merged[low:high], expected, rtol=0, atol=1e-12, msg=f"row {row}")


def test_the_reference_log_sum_exp_is_the_softmax_denominator():
    generator = torch.Generator().manual_seed(1)
    query, key = (torch.randn(4, 2, 8, generator=generator, dtype=torch.float64) for _ in range(2))
    bounds = torch.tensor([0, 4])
    _, lse = varlen_reference(query, key, key, bounds, bounds, 4, 4, causal=False, scale=0.5)
    expected = torch.logsumexp(torch.einsum("qhd,khd->qhk", query, key) * 0.5, dim=-1)
    torch.testing.assert_close(lse, expected, rtol=0, atol=1e-12)


def test_packed_rows_count_positions_per_row_after_the_prefix():
    rows = pack_rows([[5, 6, 7], [8], [9, 10]], first_position=4)
    assert rows.input_ids.tolist() == [[5, 6, 7, 8, 9, 10]]
    assert rows.position_ids.tolist() == [[4, 5, 6, 4, 4, 5]]
    assert rows.starts == [0, 3, 4, 6] and rows.longest == 3


def test_batches_fill_to_the_budget_longest_first_and_keep_every_row_once():
    lengths = np.random.default_rng(5).integers(1, 300, size=900).tolist()
    batches = fill_batches(lengths, 4096)
    assert sorted(i for batch in batches for i in batch) == list(range(900))
    for batch in batches[:-1]:
        assert 4096 - 300 < sum(lengths[i] for i in batch) <= 4096
    assert fill_batches([5000, 10], 4096) == [[0], [1]]  # a row past the budget goes alone


def _scorer(folder, *, varlen, dtype=torch.float32, embed=False):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from gaincurate.model import SiteForward
    from gaincurate.prompts import PromptEncoder
    from gaincurate.scoring.engine import Scorer, find_shared_prefix

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).eval()
    config = ScoreConfig(dtype="float32", device="cpu", embed=embed)
    encoder = PromptEncoder(tokenizer, config.prompt_format, config.max_length)
    site = SiteForward(model, layer=-1, site="mlp-input")
    prefix = find_shared_prefix(encoder)
    assert prefix is not None
    scorer = Scorer(site, device="cpu", backend="torch", config=config, prefix=prefix, batch_tokens=96, varlen=varlen)
    return scorer, encoder


@pytest.mark.parametrize("architecture", ["llama", "qwen2"])
def test_packed_rows_score_as_the_padded_path_does(tiny_models, architecture):
    """The bundled-style problems (and one row too long for the shared prefix's cache to matter) on a tiny model in
    float32: packed through the reference attention, every score and embedding within SCORE_TOLERANCE of the exact
    widths the CPU runs, in several packed batches."""
    questions = [row["problem"] for row in PROBLEMS] * 3
    padded, encoder = _scorer(tiny_models[architecture], varlen=None, embed=True)
    packed, _ = _scorer(tiny_models[architecture], varlen=varlen_reference, embed=True)
    prompts = encoder.encode(questions)
    expected, got = padded.score(prompts), packed.score(prompts)
    tolerance = SCORE_TOLERANCE["float32"]
    for name in ("intra", "inter", "score"):
        np.testing.assert_allclose(got[name], expected[name], rtol=0, atol=tolerance.score, err_msg=name)
    for row, vector in enumerate(expected["embedding"]):
        moved = np.linalg.norm(got["embedding"][row] - vector)
        assert moved <= tolerance.embedding * np.linalg.norm(vector), row
    assert packed.stats.batches > 1 and packed.stats.padded_tokens == packed.stats.tokens  # no padding
    assert packed.stats.prefix_tokens_reused == padded.stats.prefix_tokens_reused > 0


def test_rows_pack_only_where_padding_them_would_cost_at_least_the_threshold(tiny_models, monkeypatch):
    """A CPU's exact widths carry no padding, so at the shipped threshold the same rows run padded; with none they
    pack; the manifest's `packed_batches` counts which."""
    for pack_from, packs in ((SHIPPED_PACK_FROM_PADDING, False), (0.0, True)):
        monkeypatch.setattr(engine, "PACK_FROM_PADDING", pack_from)
        scorer, encoder = _scorer(tiny_models["llama"], varlen=varlen_reference)
        scorer.score(encoder.encode([row["problem"] for row in PROBLEMS]))
        assert scorer.stats.batches > 0
        assert scorer.stats.packed_batches == (scorer.stats.batches if packs else 0)


@pytest.mark.parametrize("architecture", ["llama", "qwen2"])
def test_packed_hidden_states_are_the_padded_rows_in_float64(tiny_models, architecture):
    """Hidden states at the site in float64: each packed row's equal the same row's computed alone after the
    prefix's cache, to float64 rounding."""
    from transformers import DynamicCache

    from gaincurate.packed_forward import packed_forward, prefix_key_values
    from gaincurate.scoring.engine import expand_cache

    scorer, encoder = _scorer(tiny_models[architecture], varlen=varlen_reference, dtype=torch.float64)
    site, offset = scorer.site, len(scorer.prefix.input_ids)
    prompts = encoder.encode([row["problem"] for row in PROBLEMS[:4]])
    head = torch.from_numpy(scorer.prefix.input_ids)[None]
    cache = DynamicCache(config=site.base.config)
    site(head, torch.ones_like(head), cache=cache)
    rows = pack_rows([prompt.input_ids[offset:] for prompt in prompts], offset)
    with packed_forward(site.base, "cpu", rows, varlen_reference, prefix_key_values(cache)):
        packed = site.capture(rows.input_ids, None, position_ids=rows.position_ids)[site.layer_index][0]
    for row, prompt in enumerate(prompts):
        ids = torch.from_numpy(prompt.input_ids[offset:])[None]
        mask = torch.ones((1, len(prompt.input_ids)), dtype=torch.long)
        alone = site(ids, mask, cache=expand_cache(cache, 1, site.base.config))[0]
        low, high = rows.starts[row], rows.starts[row + 1]
        torch.testing.assert_close(packed[low:high], alone, rtol=0, atol=1e-10)


@pytest.mark.gpu
@CUDA
def test_torch_varlen_attention_on_cuda_matches_the_reference():
    """On a GPU: torch's variable-length attention as `cuda_varlen` calls it (grouped heads, the causal flag or
    window, the scale, the log-sum-exp's layout) against the reference, in bfloat16."""
    from gaincurate.packed_forward import cuda_varlen

    varlen, why_not = cuda_varlen()
    assert varlen is not None, why_not
    generator = torch.Generator().manual_seed(2)
    lengths = [37, 1, 130, 64]
    starts = torch.tensor([0, *lengths]).cumsum(0).to(torch.int32)
    query, key, value = (torch.randn(sum(lengths), heads, 64, generator=generator) for heads in (12, 2, 2))
    for causal in (True, False):
        expected = varlen_reference(query.double(), key.double(), value.double(), starts, starts, 130, 130,
                                    causal=causal, scale=0.1)  # fmt: skip
        cuda = [t.to("cuda", torch.bfloat16) for t in (query, key, value)]
        got = varlen(*cuda, starts.cuda(), starts.cuda(), 130, 130, causal=causal, scale=0.1)
        torch.testing.assert_close(got[0].double().cpu(), expected[0], rtol=0, atol=2e-2)
        torch.testing.assert_close(got[1].double().cpu(), expected[1], rtol=0, atol=2e-2)


@pytest.mark.gpu
@CUDA
def test_packed_rows_on_cuda_score_within_tolerance_of_padded_buckets(tiny_models, monkeypatch):
    """On a GPU in bfloat16, at a head width flash attention takes: the scorer packs through torch's varlen
    attention (whatever the padding, as throughout this file), and its scores are within the bfloat16
    SCORE_TOLERANCE of the same rows padded to buckets."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config

    from gaincurate.model import SiteForward
    from gaincurate.prompts import PromptEncoder

    tokenizer = AutoTokenizer.from_pretrained(tiny_models["qwen2"])
    torch.manual_seed(0)
    shape = dict(hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=64)  # fmt: skip
    model = AutoModelForCausalLM.from_config(Qwen2Config(vocab_size=len(tokenizer), **shape))
    model = model.to("cuda", torch.bfloat16).eval()
    config = ScoreConfig(dtype="bfloat16", device="cuda")
    encoder = PromptEncoder(tokenizer, config.prompt_format, config.max_length)
    prompts = encoder.encode([row["problem"] for row in PROBLEMS] * 4)
    site = SiteForward(model, layer=-1, site="mlp-input", prune=False)
    prefix = engine.find_shared_prefix(encoder)

    def scores() -> tuple:
        scorer = engine.Scorer(site, device="cuda", backend="torch", config=config, prefix=prefix, batch_tokens=256)
        return scorer.score(prompts), scorer

    packed, packed_scorer = scores()
    assert packed_scorer.varlen is not None and packed_scorer.stats.padded_tokens == packed_scorer.stats.tokens
    monkeypatch.setattr(engine, "default_varlen", lambda model, device: None)
    padded, padded_scorer = scores()
    assert padded_scorer.varlen is None and padded_scorer.stats.padded_tokens > padded_scorer.stats.tokens
    np.testing.assert_allclose(packed["score"], padded["score"], rtol=0, atol=SCORE_TOLERANCE["bfloat16"].score)
