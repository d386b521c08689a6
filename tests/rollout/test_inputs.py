"""What a rollout samples from: the prompts of a scores directory, rendered exactly as scoring rendered them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import write_jsonl

from gaincurate.rollout import sampling
from gaincurate.rollout.config import RolloutConfig
from gaincurate.rollout.inputs import read_inputs
from gaincurate.rollout.job import run_rollouts
from gaincurate.rollout.live import roll_live

CONVERSATIONS = [
    [{"role": "system", "content": "Answer in a box."}, {"role": "user", "content": "What is 2 + 3?"}],
    [{"role": "user", "content": "What is 10 - 4?"}],
    [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 3 * 3?"},
        {"role": "assistant", "content": "Let me think."},
        {"role": "user", "content": "And 3 * 4?"},
    ],
]


@pytest.fixture(scope="module")
def message_scores(tiny_llama, tmp_path_factory) -> Path:
    """TRL's conversational `prompt` column (chat messages), with answers, scored with the tiny Llama."""
    from gaincurate.scoring import score
    from gaincurate.scoring.config import RunOptions, ScoreConfig

    root = tmp_path_factory.mktemp("messages")
    rows = [{"prompt": messages, "answer": str(k)} for k, messages in enumerate(CONVERSATIONS)]
    data = write_jsonl(root / "conversations.jsonl", rows)
    config = ScoreConfig(
        dataset=str(data), model=str(tiny_llama), dtype="float32", device="cpu", prompt_column="prompt"
    )
    score(config, RunOptions(out=str(root / "scores"), quiet=True))
    return root / "scores"


def scored_prompt_ids(scores: Path, tokenizer, values: list) -> list[list[int]]:
    """The token ids scoring gives these prompt values, with the scores directory's own prompt format."""
    from gaincurate.prompts import PromptEncoder
    from gaincurate.scoring.rescore import prompt_format

    _, fmt = prompt_format(scores)
    return [encoded.input_ids.tolist() for encoded in PromptEncoder(tokenizer, fmt, None).encode(values)]


def test_chat_messages_are_rolled_out_through_the_chat_template_as_scored(
    message_scores, tiny_llama, tmp_path, monkeypatch
):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    config = RolloutConfig(scores=str(message_scores), out=str(tmp_path / "out.jsonl"), samples=2, max_new_tokens=3,
                           dtype="float32", device="cpu", threads=1)  # fmt: skip
    inputs = read_inputs(config)
    assert inputs.questions == CONVERSATIONS  # the messages themselves, not their text
    templated = [tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in CONVERSATIONS]
    expected = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in templated]  # as TRL renders them
    assert scored_prompt_ids(message_scores, tokenizer, CONVERSATIONS) == expected
    assert sampling.render_prompts(tokenizer, inputs.questions, inputs.prompt_config) == expected

    sampled: dict[int, list[int]] = {}
    original = sampling.generate_batch

    def recording_generate(model, prompts, gc_ids, settings, **kwargs):
        sampled.update(zip(gc_ids, prompts, strict=True))
        return original(model, prompts, gc_ids, settings, **kwargs)

    monkeypatch.setattr(sampling, "generate_batch", recording_generate)
    run_rollouts(config)
    assert [sampled[gc_id] for gc_id in range(len(CONVERSATIONS))] == expected
    sampled.clear()

    from gaincurate.model import load_model, resolve_source

    model = load_model(resolve_source(str(tiny_llama)), dtype="float32", device="cpu")
    roll_live(model, tokenizer, config, np.array([2, 0]))
    assert sampled == {2: expected[2], 0: expected[0]}
