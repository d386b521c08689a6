"""The policy's log-probability of a reference answer (gaincurate/scoring/likelihood.py).

Against a brute-force float64 forward of each row alone; batching and padding change nothing, with the padding mask
or without it as on a GPU; the rows of a scores
directory are scored with the prompt scoring built; on a tiny model, exp of it is the chance that sampling at
temperature 1 writes exactly the answer and stops (the reason the probe reads it).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import build_model, build_tokenizer

from gaincurate.errors import InputError
from gaincurate.scoring.likelihood import answer_ids, answer_logprobs, likelihoods, shared_prefix


@pytest.fixture(params=["cpu", "gpu", "packed"], ids=["cpu-forward", "gpu-forward", "packed-forward"])
def gpu_forward(request, monkeypatch):
    """Each batch runs the model as it is, as on a GPU in a half dtype (`forward_kernels.right_padded_forward`:
    attention without the padding mask, RMSNorm fused), or with its rows packed end to end as where a GPU's torch has
    variable-length attention (through its pure-torch specification, `packed_forward.varlen_reference`)."""
    from gaincurate import forward_kernels
    from gaincurate.packed_forward import varlen_reference
    from gaincurate.scoring import engine

    padded_gpu = request.param == "gpu"
    monkeypatch.setattr(forward_kernels, "right_padded_causal_applies", lambda model, device: padded_gpu)
    monkeypatch.setattr(forward_kernels, "fused_rms_norms_apply", lambda model, device: padded_gpu)
    if request.param == "packed":
        monkeypatch.setattr(engine, "default_varlen", lambda model, device: varlen_reference)
        monkeypatch.setattr(engine, "PACK_FROM_PADDING", 0.0)  # whatever the padding
    return request.param


@pytest.fixture(scope="module")
def tiny():
    tokenizer = build_tokenizer()
    return build_model("llama", len(tokenizer)), tokenizer


def brute_force(model, prompt: list[int], completion: list[int]) -> float:
    """One row alone, the whole model in float64, every position's logits: sum of log p(completion token)."""
    wide = model.double()
    try:
        with torch.no_grad():
            logits = wide(input_ids=torch.tensor([prompt + completion])).logits[0]
        logps = torch.log_softmax(logits, dim=-1)
        return float(sum(logps[len(prompt) - 1 + t, token] for t, token in enumerate(completion)))
    finally:
        model.float()


def test_it_is_the_sum_of_the_answer_tokens_log_probabilities(tiny, gpu_forward):
    model, tokenizer = tiny
    rng = np.random.default_rng(0)
    prompts = [rng.integers(3, len(tokenizer), size=n).tolist() for n in (5, 9, 2, 14)]
    completions = answer_ids(tokenizer, ["12", "7", "345", "0"])
    assert all(ids[-1] == tokenizer.eos_token_id for ids in completions)
    values = answer_logprobs(model, tokenizer, prompts, completions)
    expected = [brute_force(model, p, c) for p, c in zip(prompts, completions, strict=True)]
    assert values.dtype == np.float64
    assert np.allclose(values, expected, rtol=1e-5, atol=1e-5)
    for batch_tokens in (1, 20, 10_000):  # one row a batch, a few, all: padding and neighbours change nothing
        assert np.allclose(answer_logprobs(model, tokenizer, prompts, completions, batch_tokens=batch_tokens), values,
                           atol=1e-5)  # fmt: skip
    hotter = answer_logprobs(model, tokenizer, prompts, completions, temperature=2.0)
    assert np.all(np.abs(hotter - values) > 0)


def test_a_shared_prefix_runs_once_and_changes_nothing(tiny, gpu_forward):
    """Prompts that share their leading tokens (system prompt, few-shot turns) continue from its cache: the same
    values as each row alone in float64, whatever the batch size (issue 58: re-scoring cost more than scoring)."""
    model, tokenizer = tiny
    rng = np.random.default_rng(1)
    prefix = rng.integers(3, len(tokenizer), size=12).tolist()
    prompts = [prefix + rng.integers(3, len(tokenizer), size=n).tolist() for n in (1, 6, 3, 9)]
    assert shared_prefix(prompts) == prefix and shared_prefix([prefix, prefix]) == prefix[:-1]
    assert shared_prefix([[1, 2, 3], [1, 5, 6]]) == []  # one token in common: not worth a cache
    completions = answer_ids(tokenizer, ["4", "81", "0", "27"])
    expected = [brute_force(model, p, c) for p, c in zip(prompts, completions, strict=True)]
    for batch_tokens in (1, 7, 10_000):
        values = answer_logprobs(model, tokenizer, prompts, completions, batch_tokens=batch_tokens)
        assert np.allclose(values, expected, rtol=1e-5, atol=1e-5), (batch_tokens, values, expected)


@pytest.mark.parametrize("architecture", ["mistral", "granite"])
def test_a_sliding_window_shorter_than_the_prefix_or_a_scaled_head_changes_nothing(architecture):
    """Mistral's window (8 tokens) ends inside the shared prefix, whose cache keeps its last keys only; Granite divides
    its logits after the head. Each row as it is alone in float64."""
    tokenizer = build_tokenizer()
    model = build_model(architecture, len(tokenizer))
    rng = np.random.default_rng(2)
    prefix = rng.integers(3, len(tokenizer), size=12).tolist()
    prompts = [prefix + rng.integers(3, len(tokenizer), size=n).tolist() for n in (1, 6, 3, 9)]
    completions = answer_ids(tokenizer, ["4", "81", "0", "27"])
    expected = [brute_force(model, p, c) for p, c in zip(prompts, completions, strict=True)]
    values = answer_logprobs(model, tokenizer, prompts, completions)
    assert np.allclose(values, expected, rtol=1e-5, atol=1e-5), (values, expected)


def test_exp_of_it_is_the_chance_of_sampling_exactly_the_answer(tiny):
    """Temperature-1 sampling of len(answer) + 1 tokens: the share of samples equal to answer + EOS matches exp(logp)
    within four standard errors (a deterministic seed)."""
    model, tokenizer = tiny
    prompt = [5, 9, 11]
    answer = answer_ids(tokenizer, ["3"])[0]
    probability = float(np.exp(answer_logprobs(model, tokenizer, [prompt], [answer])[0]))
    torch.manual_seed(0)
    samples = 4000
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt] * samples), do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                             max_new_tokens=len(answer), min_new_tokens=len(answer), pad_token_id=0)  # fmt: skip
    hits = float((out[:, len(prompt) :] == torch.tensor(answer)).all(dim=1).float().mean())
    assert abs(hits - probability) < 4 * np.sqrt(probability * (1 - probability) / samples) + 1e-3


def test_rows_of_a_scores_directory_are_scored_with_the_prompt_scoring_built(tiny_llama, tmp_path):
    from trl_helpers import score_prompts

    from gaincurate.model import load_model, load_tokenizer, resolve_source
    from gaincurate.prompts import PromptEncoder
    from gaincurate.scoring.rescore import prompt_format, questions_and_answers

    scores = score_prompts(tiny_llama, tmp_path / "scores")
    source = resolve_source(str(tiny_llama))
    model, tokenizer = load_model(source, dtype="float32", device="cpu"), load_tokenizer(source)
    ids = [3, 0, 7]
    live = likelihoods(scores, ids, model=model, tokenizer=tokenizer)
    from_checkpoint = likelihoods(scores, ids, checkpoint=tiny_llama)
    assert np.allclose(live, from_checkpoint, atol=1e-6)
    config, fmt = prompt_format(scores)
    questions, answers = questions_and_answers(scores, ids, config.prompt_column, "answer")
    prompts = [e.input_ids.tolist() for e in PromptEncoder(tokenizer, fmt, config.max_length).encode(questions)]
    expected = [brute_force(model, p, c) for p, c in zip(prompts, answer_ids(tokenizer, answers), strict=True)]
    assert np.allclose(live, expected, atol=1e-5)
    with pytest.raises(InputError, match="gc_id 99 is not in"):
        likelihoods(scores, [99], model=model, tokenizer=tokenizer)


class _Asked(Exception):
    """Raised by a stand-in loader: what was asked for is all a test reads."""


DTYPES = [("cpu", True, "float32"), ("cuda", True, "bfloat16"), ("cuda:1", False, "float16")]


@pytest.mark.parametrize(("device", "bf16", "dtype"), DTYPES)
def test_a_checkpoint_is_measured_in_float32_on_a_cpu_and_in_the_gpus_half_dtype(device, bf16, dtype, tiny_llama,
                                                                                  tmp_path, monkeypatch):  # fmt: skip
    """On a CPU every SIMD path must give the recorded values; on a GPU the pass runs as scoring does there."""
    import torch
    from trl_helpers import score_prompts

    from gaincurate import model as models

    scores = score_prompts(tiny_llama, tmp_path / "scores")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16)
    monkeypatch.setattr(models, "resolve_device", lambda wanted: device)
    loaded = {}

    def load(source, *, dtype, device):
        loaded.update(dtype=dtype, device=device)
        raise _Asked

    monkeypatch.setattr(models, "load_model", load)
    with pytest.raises(_Asked):
        likelihoods(scores, [0], checkpoint=tiny_llama)
    assert loaded == {"dtype": dtype, "device": device}


def test_the_solution_kinds_are_brute_force_float64_sums_over_their_own_tokens(tiny_llama, tmp_path):
    """MATH-style rows (problem, solution, answer): `solution` is the reference solution's log-probability per token
    after the prompt; `answer-after-solution` the answer's (and the end token's) after prompt + solution part. Each
    against a float64 forward of the row alone; the template's two parts are tokenized apart."""
    from helpers import write_jsonl

    from gaincurate.model import load_model, load_tokenizer, resolve_source
    from gaincurate.prompts import PromptEncoder
    from gaincurate.scoring import score
    from gaincurate.scoring.config import RunOptions, ScoreConfig
    from gaincurate.scoring.rescore import prompt_format, questions_and_answers

    rows = [{"problem": f"What is {i} + {3 * i + 1}?", "solution": f"{i} and {3 * i + 1} make {4 * i + 1}",
             "answer": str(4 * i + 1)} for i in range(6)]  # fmt: skip
    data = write_jsonl(tmp_path / "rows.jsonl", rows)
    scores = tmp_path / "scores"
    score(ScoreConfig(dataset=str(data), model=str(tiny_llama), dtype="float32", device="cpu", backend="torch",
                      system_prompt="Solve it.", few_shot=()), RunOptions(out=str(scores), quiet=True))  # fmt: skip
    source = resolve_source(str(tiny_llama))
    model, tokenizer = load_model(source, dtype="float32", device="cpu"), load_tokenizer(source)
    ids, template = [4, 0, 2], "{solution}\nSo the answer is {answer}."
    config, fmt = prompt_format(scores)
    questions, answers = questions_and_answers(scores, ids, config.prompt_column, "answer")
    solutions = questions_and_answers(scores, ids, config.prompt_column, "solution")[1]
    prompts = [e.input_ids.tolist() for e in PromptEncoder(tokenizer, fmt, config.max_length).encode(questions)]
    cue = "\nSo the answer is "  # the text before {answer} goes with the solution
    heads = [tokenizer(solution + cue, add_special_tokens=False)["input_ids"] for solution in solutions]
    tails = answer_ids(tokenizer, answers, "{answer}.")

    def measured(of):
        return likelihoods(scores, ids, model=model, tokenizer=tokenizer, template=template, of=of,
                           solution_column="solution")  # fmt: skip

    per_token = [brute_force(model, p, h) / len(h) for p, h in zip(prompts, heads, strict=True)]
    assert np.allclose(measured("solution"), per_token, atol=1e-6)
    after = [brute_force(model, p + h, t) for p, h, t in zip(prompts, heads, tails, strict=True)]
    assert np.allclose(measured("answer-after-solution"), after, atol=1e-5)
    bare = [brute_force(model, p, c) for p, c in zip(prompts, answer_ids(tokenizer, answers), strict=True)]
    assert np.allclose(likelihoods(scores, ids, model=model, tokenizer=tokenizer), bare, atol=1e-5)  # the default
    with pytest.raises(InputError, match="reads each row's reference solution"):
        likelihoods(scores, ids, model=model, tokenizer=tokenizer, template=template, of="solution")
