"""Tiny offline models and tokenizers for tests: nothing is downloaded, everything is built from a config."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

CHATML_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# SmolLM2-Instruct's template as shipped: it injects its own system prompt when none is given.
SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# A Llama-3-like template that trims contents and writes a BOS token itself.
LLAMA_LIKE_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{{ '<|start|>' + message['role'] + '<|sep|>\n\n' "
    "+ message['content'] | trim + '<|end|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start|>assistant<|sep|>\n\n' }}{% endif %}"
)

# Gemma 2's template as shipped: no system role (it raises), user and model turns alternate, contents trimmed.
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}"
    "{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}"
)

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<|im_start|>", "<|im_end|>", "<|start|>", "<|end|>", "<|sep|>"]

CORPUS = [
    "What is 2 + 3? The answer is 5. A baker fills 3 trays with 12 muffins each and sells 20 muffins.",
    "How many are left? Solve the following math problem. Think it through step by step, then write only",
    "the final answer inside \\boxed{}. You are a helpful assistant. system user assistant Question Answer",
    "Compute the sum of the first 10 positive integers. If x + 4 = 9, what is x? Find 15% of 80.",
    "A train travels 60 km in 1 hour. The trays hold 3 * 12 = 36 muffins. After selling 20, 36 - 20 = 16.",
    "0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ .,;:!?()[]{}+-*/=%$#@&^_|<>'\"\\ \n",
]


def build_tokenizer(chat_template: str | None = CHATML_TEMPLATE):
    """A small byte-level BPE fast tokenizer trained in memory, with offsets and a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(CORPUS * 4, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    tokenizer.chat_template = chat_template
    return tokenizer


def build_model(architecture: str, vocab_size: int):
    """A 2-layer random model of the given family, small enough to run in milliseconds on CPU."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, GPT2Config, LlamaConfig, Qwen2Config

    torch.manual_seed(0)
    if architecture == "llama":
        config = LlamaConfig(
            vocab_size=vocab_size, hidden_size=48, intermediate_size=96, num_hidden_layers=3,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        )  # fmt: skip
    elif architecture == "qwen2":
        config = Qwen2Config(
            vocab_size=vocab_size, hidden_size=48, intermediate_size=96, num_hidden_layers=3,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        )  # fmt: skip
    elif architecture == "gpt2":
        config = GPT2Config(vocab_size=vocab_size, n_embd=48, n_layer=3, n_head=4, n_positions=512)
    elif architecture in ("mistral", "granite"):  # a sliding window shorter than a prompt; logits scaled after the head
        extra = {"sliding_window": 8} if architecture == "mistral" else {"logits_scaling": 4.0}
        config = AutoConfig.for_model(
            architecture, vocab_size=vocab_size, hidden_size=48, intermediate_size=96, num_hidden_layers=3,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, **extra,
        )  # fmt: skip
    else:
        raise ValueError(architecture)
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()


def save_tiny_model(folder: Path, architecture: str, chat_template: str | None = CHATML_TEMPLATE) -> Path:
    """Write a tokenizer + random model to `folder`, loadable with `--model folder`."""
    tokenizer = build_tokenizer(chat_template)
    model = build_model(architecture, len(tokenizer))
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(folder)
    model.save_pretrained(folder)
    return folder


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


PROBLEMS = [
    {"problem": "What is 2 + 3?", "answer": "5", "difficulty": 1},
    {"problem": "Compute the sum of the first 10 positive integers.", "answer": "55", "difficulty": 2},
    {"problem": "If x + 4 = 9, what is x?", "answer": "5", "difficulty": 1},
    {"problem": "Find 15% of 80.", "answer": "12", "difficulty": 2},
    {"problem": "A train travels 60 km in 1 hour. How far does it go in 3 hours at the same speed?",
     "answer": "180", "difficulty": 3},
    {"problem": "7", "answer": "7", "difficulty": 1},
    {"problem": "A baker fills 3 trays with 12 muffins each and sells 20 muffins. How many are left?",
     "answer": "16", "difficulty": 3},
    {"problem": "What is (12 * 12) - (11 * 13)? Explain your steps and give the final answer.",
     "answer": "1", "difficulty": 4},
]  # fmt: skip


def run_cli(args: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    """Run `gaincurate ARGS` in this process; return (exit code, stdout, stderr)."""
    from gaincurate.cli import main

    monkeypatch.setattr(sys, "argv", ["gaincurate", *args])
    code = 0
    try:
        main()
    except SystemExit as done:
        code = done.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def score_in_process(args: list[object]) -> None:
    """`gaincurate score ARGS` in this process on one torch thread, for a reference run the test does not check for what
    users see: torch is imported here already (a console script spends 5-8 s CPU starting), and one thread gives the
    bytes the console script gives under OMP_NUM_THREADS=1."""
    import contextlib
    import io

    import torch

    from gaincurate.cli import main

    threads = torch.get_num_threads()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            main(["score", *map(str, args), "--threads", "1"])
    except SystemExit as done:
        assert not done.code, f"the reference run failed: exit {done.code}"
    finally:
        torch.set_num_threads(threads)


def chi_square(counts: np.ndarray, probabilities: np.ndarray) -> tuple[float, int]:
    """Pearson's statistic and degrees of freedom, cells expecting fewer than 5 draws pooled into one bin."""
    expected = probabilities * counts.sum()
    small = expected < 5
    observed_bins, expected_bins = counts[~small], expected[~small]
    if small.any():
        observed_bins = np.append(observed_bins, counts[small].sum())
        expected_bins = np.append(expected_bins, expected[small].sum())
    statistic = float((((observed_bins - expected_bins) ** 2) / expected_bins).sum())
    return statistic, len(expected_bins) - 1


def score_helper_problems(model: Path, root: Path) -> Path:
    """A scores directory of the helper problems (3 rewordings each, with answers), scored with `model` on CPU."""
    from gaincurate.scoring import score
    from gaincurate.scoring.config import RunOptions, ScoreConfig

    rows = [{**row, "problem": f"{row['problem']} (version {k})"} for k in range(3) for row in PROBLEMS]
    data = write_jsonl(root / "problems.jsonl", rows)
    out = root / "scores"
    config = ScoreConfig(dataset=str(data), model=str(model), dtype="float32", device="cpu", few_shot=())
    score(config, RunOptions(out=str(out), quiet=True))
    return out


def score_sample_prompts(model: Path, root: Path, count: int) -> Path:
    """The bundled sample's first `count` prompts with their answers, scored with `model` on CPU into `root/scores`."""
    from gaincurate.data import load_sample
    from gaincurate.scoring import score
    from gaincurate.scoring.config import RunOptions, ScoreConfig

    data = write_jsonl(root / "prompts.jsonl", load_sample()[:count])
    config = ScoreConfig(dataset=str(data), model=str(model), dtype="float32", device="cpu", few_shot=())
    score(config, RunOptions(out=str(root / "scores"), quiet=True))
    return root / "scores"
