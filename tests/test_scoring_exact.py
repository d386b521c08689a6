"""The pipeline's scores equal a brute-force float64 O(T^2) cosine computation on tiny models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from gaincurate.metrics import concentration
from gaincurate.prompts import CONTEXT, QUESTION, PromptEncoder
from gaincurate.scoring import score
from gaincurate.scoring.config import RunOptions, ScoreConfig
from gaincurate.shards import read_scores

CASES = {
    # name: config overrides
    "batch-padding": {"batch_tokens": 100_000},
    "no-prefix-cache": {"prefix_cache": False, "batch_tokens": 100_000},
    "one-per-batch": {"batch_tokens": 1},
    "truncation": {"max_length": 40},
    "no-context": {"system_prompt": None, "few_shot": ()},
    "plain-text": {"chat_template": False},
    "residual-layer-1": {"site": "residual", "layer": 1},
    "inter-weight-8": {"inter_weight": 8.0},
}


def _site_module(model, architecture: str, layer: int, site: str):
    blocks = model.transformer.h if architecture == "gpt2" else model.model.layers
    block = blocks[layer]
    if site == "residual":
        return block
    return block.ln_2 if architecture == "gpt2" else block.post_attention_layernorm


def site_hidden(model, architecture, prompt, *, layer: int, site: str) -> torch.Tensor:
    """Full float64 forward of one prompt: the hidden states at `site` of `layer`, `[T, D]`."""
    captured = {}

    def hook(module, args, output):
        captured["h"] = output[0] if isinstance(output, tuple) else output

    handle = _site_module(model, architecture, layer, site).register_forward_hook(hook)
    with torch.no_grad():
        model(input_ids=torch.from_numpy(prompt.input_ids)[None])
    handle.remove()
    hidden = captured["h"][0].double()
    if hidden.dim() == 1:  # some blocks return [B, T, D] without a tuple
        hidden = hidden[None]
    return hidden


def brute_force(model, architecture, prompt, *, layer: int, site: str, inter_weight: float) -> tuple[float, ...]:
    """Full float64 forward of one prompt, then the cosine matrix over its labelled tokens."""
    hidden = site_hidden(model, architecture, prompt, layer=layer, site=site)
    unit = hidden / hidden.norm(dim=-1, keepdim=True)
    cosine = (unit @ unit.T).numpy()
    labels = prompt.segment_ids
    question, context = np.flatnonzero(labels == QUESTION), np.flatnonzero(labels == CONTEXT)
    block = cosine[np.ix_(question, question)]
    off_diagonal = ~np.eye(len(question), dtype=bool)
    intra = block[off_diagonal].mean() if len(question) >= 2 else np.nan
    inter = cosine[np.ix_(question, context)].mean() if len(context) and len(question) else np.nan
    total = intra if np.isnan(inter) else intra + inter_weight * inter
    return intra, inter, total


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("architecture", ["llama", "qwen2", "gpt2", "mistral"])
def test_scores_equal_bruteforce(architecture, case, tiny_models, problems_file, tmp_path):
    folder = tiny_models[architecture]
    config = ScoreConfig(
        dataset=str(problems_file), model=str(folder), dtype="float32", device="cpu", backend="torch",
        **CASES[case],
    )  # fmt: skip
    manifest = score(config, RunOptions(out=str(tmp_path / "scores"), shard_rows=5))
    table = read_scores(tmp_path / "scores")
    # The shared system/few-shot prefix is computed once unless switched off (truncated rows run in full).
    if case != "truncation":
        assert (manifest["timings"]["prefix_tokens_reused"] > 0) == config.prefix_cache

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float64).eval()
    prompts = PromptEncoder(tokenizer, config.prompt_format, config.max_length).encode(table["problem"].to_pylist())
    layer = config.layer % model.config.num_hidden_layers
    expected = np.array(
        [brute_force(model, architecture, p, layer=layer, site=config.site, inter_weight=config.inter_weight)
         for p in prompts]
    )  # fmt: skip
    got = np.stack([table[c].to_numpy() for c in ("gc_intra", "gc_inter", "gc_score")], axis=1)

    assert np.array_equal(np.isnan(got), np.isnan(expected))
    assert np.nanmax(np.abs(got - expected)) <= 1e-5
    assert table["gc_question_tokens"].to_pylist() == [p.question_tokens for p in prompts]
    assert table["gc_context_tokens"].to_pylist() == [p.context_tokens for p in prompts]
    if case == "truncation":
        assert any(table["gc_truncated"].to_pylist())
    if case == "no-context":
        assert np.isnan(got[:, 1]).all()


def test_concentration_matches_pairwise_definition_on_random_vectors():
    rng = np.random.default_rng(0)
    for n_question, n_context in [(2, 0), (5, 3), (17, 1), (1, 4), (0, 3)]:
        hidden = rng.normal(size=(n_question + n_context, 33))
        unit = hidden / np.linalg.norm(hidden, axis=1, keepdims=True)
        sums = np.stack([unit[:n_question].sum(0), unit[n_question:].sum(0)])[None]
        intra, inter, total = concentration(sums, np.array([[n_question, n_context]]), inter_weight=2.5)
        cosine = unit @ unit.T
        pairs = [cosine[i, j] for i in range(n_question) for j in range(n_question) if i != j]
        cross = [cosine[i, n_question + j] for i in range(n_question) for j in range(n_context)]
        expected_intra = np.mean(pairs) if pairs else np.nan
        expected_inter = np.mean(cross) if cross else np.nan
        np.testing.assert_allclose(intra[0], expected_intra, atol=1e-12, equal_nan=True)
        np.testing.assert_allclose(inter[0], expected_inter, atol=1e-12, equal_nan=True)
        expected_total = expected_intra if np.isnan(expected_inter) else expected_intra + 2.5 * expected_inter
        np.testing.assert_allclose(total[0], expected_total, atol=1e-12, equal_nan=True)


# name: (scoring layer, embed layer); the tiny models have 3 layers, so -1 and 2 name the same one.
EMBED_CASES = {"default": (-1, None), "first": (-1, 0), "middle": (-1, 1), "named-last": (-1, 2),
               "site-0": (0, None), "deeper-than-site": (0, 2)}  # fmt: skip


@pytest.mark.parametrize("site", ["mlp-input", "residual"])
def test_embed_layer_takes_the_embedding_from_that_layer(site, tiny_llama, problems_file, tmp_path):
    base = ScoreConfig(dataset=str(problems_file), model=str(tiny_llama), dtype="float32", device="cpu",
                       backend="torch", site=site, embed=True)  # fmt: skip
    tables = {}
    for name, (layer, embed_layer) in EMBED_CASES.items():
        score(base.replace(layer=layer, embed_layer=embed_layer), RunOptions(out=str(tmp_path / name)))
        tables[name] = read_scores(tmp_path / name)

    def embeddings(name: str) -> np.ndarray:
        return np.array(tables[name]["gc_embedding"].to_pylist(), dtype=np.float64)

    # No --embed-layer means the scoring layer: the very bytes of naming that layer.
    assert (tmp_path / "default" / "shard-00000.arrow").read_bytes() == (
        tmp_path / "named-last" / "shard-00000.arrow"
    ).read_bytes()
    assert not np.allclose(embeddings("first"), embeddings("middle"), rtol=1e-2, atol=1e-6)
    assert not np.allclose(embeddings("middle"), embeddings("default"), rtol=1e-2, atol=1e-6)
    # Where the embedding comes from never changes a score, even when the forward has to run further.
    for name, (layer, _) in EMBED_CASES.items():
        same_site = "default" if layer == -1 else "site-0"
        np.testing.assert_array_equal(tables[name]["gc_score"], tables[same_site]["gc_score"], err_msg=name)

    # Each embedding is the mean of the question's hidden states at that layer's site (float64 reference).
    model = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float64).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    encoder = PromptEncoder(tokenizer, base.prompt_format, base.max_length)
    prompts = encoder.encode(tables["default"]["problem"].to_pylist())
    for name, layer in (("first", 0), ("middle", 1), ("default", 2), ("deeper-than-site", 2)):
        question = [torch.from_numpy(p.segment_ids == QUESTION) for p in prompts]
        expected = [site_hidden(model, "llama", p, layer=layer, site=site)[mask].mean(0).numpy()
                    for p, mask in zip(prompts, question, strict=True)]  # fmt: skip
        np.testing.assert_allclose(embeddings(name), np.stack(expected), rtol=1e-3, atol=1e-6)  # stored as float16


def test_a_float16_overflow_at_a_template_token_changes_no_score(tiny_llama, problems_file, tmp_path):
    """float16 can overflow a hidden state, most often at a template token (a "massive activation"). That token is
    not scored, so every row keeps a finite score, the one float32 gives within float16's rounding."""
    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    template = tokenizer.convert_tokens_to_ids("<|im_start|>")
    with torch.no_grad():  # that token's residual in one feature, which the MLP's norm scales past float16's range
        model.model.embed_tokens.weight[template] = 0.0
        model.model.embed_tokens.weight[template, 5] = 100.0
        model.model.layers[0].post_attention_layernorm.weight[5] = 1.2e4
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    scores = {}
    for dtype in ("float16", "float32"):
        config = ScoreConfig(dataset=str(problems_file), model=str(tmp_path / "model"), dtype=dtype, device="cpu",
                             backend="torch", layer=0, embed=False)  # fmt: skip
        score(config, RunOptions(out=str(tmp_path / dtype)))
        scores[dtype] = read_scores(tmp_path / dtype)
    assert scores["float16"]["gc_status"] == scores["float32"]["gc_status"]
    np.testing.assert_allclose(scores["float16"]["gc_score"].to_numpy(), scores["float32"]["gc_score"].to_numpy(),
                               atol=1e-2, equal_nan=True)  # fmt: skip


def test_a_row_the_forward_leaves_without_a_finite_score_is_flagged():
    """A non-finite hidden state in the question or context leaves the row's score NaN: `not_finite`, not `ok`."""
    from gaincurate.prompts import EncodedPrompt
    from gaincurate.scoring.run import STATUS_NOT_FINITE, score_columns

    labels = np.array([CONTEXT, QUESTION, QUESTION])
    prompts = [EncodedPrompt(np.arange(3), labels, False, status) for status in ("ok", "ok", "one_question_token")]
    result = {"intra": [0.5, np.nan, np.nan], "inter": [0.1, 0.1, 0.1], "score": [0.6, np.nan, np.nan]}
    columns = score_columns(prompts, np.arange(3), result, ["a", "b", "c"], [None] * 3)
    assert columns["gc_status"].to_pylist() == ["ok", STATUS_NOT_FINITE, "one_question_token"]
