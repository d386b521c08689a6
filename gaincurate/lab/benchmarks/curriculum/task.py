"""The arithmetic task of the CPU bench: seeded problems, exact answer checks, a character tokenizer, warm start.

A problem of `d` digits adds two `d`-digit integers, `"123+456"`, or (operator `*`) multiplies a `d`-digit integer
by one digit, `"123*7"`. The model answers with the digits of the result least significant first (`"975"` for 579),
then its end-of-sequence token: reversed digits let a tiny model carry from left to right, which is what makes
several digit lengths learnable at all. The answer column holds the reversed digits, so checking
is an exact string comparison.

The tokenizer has one token per character (digits, `+`, `=`, `*` for products, and the special tokens), with a
chat template that renders the question followed by `=`; `gaincurate score` and TRL build exactly the same prompt
from it. The warm-start model is a small Llama built with `from_config` and fine-tuned on answers (cross-entropy on
the answer tokens only), seeded, so every strategy and every seed of a bench starts from the same bytes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gaincurate.lab.benchmarks.curriculum import chain
from gaincurate.progress import NULL_PROGRESS, Progress

SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")
ALPHABET = "0123456789+="
OPERATORS = ("+", "*")
WARM_START_FILE = "warm_start.json"  # written last: its presence means the model folder is complete
# A fixed warm-up, not a fraction of the run, so a longer warm start passes through the same weights as a shorter one.
WARM_UP_STEPS = 250
# The question, then "=": the generation prompt. No role markers: the model sees only the arithmetic.
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['content'] }}{% endfor %}{% if add_generation_prompt %}={% endif %}"
)


def problems(
    digit_counts: Sequence[Sequence[int]], *, seed: int, exclude: set[str] = frozenset(), operator: str = "+"
) -> list[dict]:
    """Distinct problems: for each `(digits, count)`, `count` problems whose first operand has `digits` digits, seeded.

    Rows are `{"problem": "12+345", "answer": "753", "digits": 3}`; `answer` is the result reversed. Questions in
    `exclude` (another split's) are never drawn, so splits do not overlap.
    """
    rng = np.random.default_rng(seed)
    rows: list[dict] = []
    seen = set(exclude)
    for digits, count in digit_counts:
        low, high = operand_range(digits)
        if count > distinct_problems(digits, operator) - sum(1 for q in seen if _digits_of(q) == digits):
            raise ValueError(f"cannot draw {count} distinct {digits}-digit problems")

        def draw(low: int = low, high: int = high, digits: int = digits) -> dict:
            if operator == "+":
                a, b = (int(x) for x in rng.integers(low, high, size=2))
            else:
                a, b = int(rng.integers(low, high)), int(rng.integers(0, 10))
            return make_row(a, b, digits, operator)

        rows += chain.draw_distinct(draw, count, seen)
    return rows


def operand_range(digits: int) -> tuple[int, int]:
    """The `digits`-digit integers, `[low, high)`: 0-9 for one digit (so 0 and 1 are operands too)."""
    return (0 if digits == 1 else 10 ** (digits - 1)), 10**digits


def distinct_problems(digits: int, operator: str) -> int:
    """How many problems of `digits` digits exist: two such operands for a sum, one and a digit for a product."""
    low, high = operand_range(digits)
    return (high - low) * ((high - low) if operator == "+" else 10)


def make_row(a: int, b: int, digits: int, operator: str = "+") -> dict:
    result = a + b if operator == "+" else a * b
    return {"problem": f"{a}{operator}{b}", "answer": str(result)[::-1], "digits": int(digits)}


def sample_rows(rng: np.random.Generator, digits: Sequence[int], size: int, operator: str = "+") -> list[dict]:
    """`size` random problems (repeats allowed), each of a digit count drawn uniformly from `digits`."""
    chosen = rng.choice(np.asarray(digits), size=size)
    low = np.where(chosen == 1, 0, 10 ** (chosen - 1))
    high = 10**chosen
    a = rng.integers(low, high)
    b = rng.integers(low, high) if operator == "+" else rng.integers(0, 10, size=size)
    return [make_row(int(x), int(y), int(d), operator) for x, y, d in zip(a, b, chosen, strict=True)]


def _digits_of(question: str) -> int:
    return len(next(question.split(op, 1)[0] for op in OPERATORS if op in question))


def is_correct(completion: str, answer: str) -> bool:
    """Exact match of the completion (stripped) with the reversed-digit answer."""
    return completion.strip() == answer


def completion_text(completion: Any) -> str:
    """The text of a TRL completion: a string, or a conversation whose last message is the answer."""
    if isinstance(completion, str):
        return completion
    return completion[-1]["content"]


def arithmetic_reward(completions: list[Any], answer: list[str], **kwargs: Any) -> list[float]:
    """TRL reward: 1.0 for an exactly right answer, else 0.0."""
    return [float(is_correct(completion_text(c), a)) for c, a in zip(completions, answer, strict=True)]


def corrupt(rows: list[dict], noise: dict[int, float], rng: np.random.Generator) -> list[dict]:
    """Supervision with a systematic slip: for `digits` in `noise`, the result plus one, with that probability (a
    chain row's last step and answer: `chain.slip`).

    A model fine-tuned on it samples the right answer of such problems with about `1 - rate` probability (and the
    slip otherwise): a frontier family whose pass rate reinforcement learning can raise, since the slip is one rule.
    """
    draws = rng.random(len(rows))
    out = []
    for row, draw in zip(rows, draws, strict=True):
        if draw < noise.get(row["digits"], 0.0):
            row = chain.slip(row) if "solution" in row else {**row, "answer": str(int(row["answer"][::-1]) + 1)[::-1]}
        out.append(row)
    return out


def build_tokenizer(symbols: str = "+") -> Any:
    """A fast tokenizer with one token per character (offsets included, as scoring needs) and the chat template.

    `symbols` outside `ALPHABET` (an operator, the chain's comma) get the next ids, so the sums' vocabulary (and their
    models' bytes) never change.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = ALPHABET + "".join(c for c in dict.fromkeys(symbols) if c not in ALPHABET)
    vocab = {token: index for index, token in enumerate([*SPECIALS, *alphabet])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    backend.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.padding_side = "left"
    return tokenizer


def build_model(tokenizer: Any, *, layers: int, hidden: int, heads: int, seed: int) -> Any:
    """A random Llama of the given shape over the tokenizer's vocabulary, seeded."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=4 * hidden, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=64, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    return LlamaForCausalLM(config)


def sft_batch(tokenizer: Any, rows: list[dict]) -> dict[str, Any]:
    """Right-padded `question=answer</s>` sequences with labels on the answer and end token only (a chain row's answer
    comes after its reference solution: `chain.completion`)."""
    import torch

    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    sequences, labels = [], []
    for row in rows:
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": row["problem"]}], tokenize=False,
                                               add_generation_prompt=True)  # fmt: skip
        prompt_ids = tokenizer.encode(prompt, add_special_tokens=False)
        target = chain.completion(row) if "solution" in row else row["answer"]
        answer_ids = [*tokenizer.encode(target, add_special_tokens=False), eos]
        sequences.append(prompt_ids + answer_ids)
        labels.append([-100] * len(prompt_ids) + answer_ids)
    width = max(len(s) for s in sequences)
    input_ids = torch.tensor([s + [pad] * (width - len(s)) for s in sequences])
    attention = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in sequences])
    target = torch.tensor([lab + [-100] * (width - len(lab)) for lab in labels])
    return {"input_ids": input_ids, "attention_mask": attention, "labels": target}


def warm_start(
    folder: Path,
    *,
    digits: Sequence[int],
    steps: int,
    batch_size: int,
    learning_rate: float,
    shape: dict[str, int],
    seed: int,
    noise: Sequence[Sequence[float]] = (),
    operator: str = "+",
    task: str = "arith",
    progress: Progress = NULL_PROGRESS,
) -> dict[str, Any]:
    """Build the model and fine-tune it on fresh problems of `digits` digits (`task` "chain": of `digits` terms);
    save it (and its tokenizer) to `folder`.

    `noise`: `(digits, rate)` pairs; those problems are supervised with the slip of `corrupt` at that rate.
    Seeded throughout, so the same arguments give the same bytes. Returns what was done, with its seconds.
    """
    import torch

    started = time.perf_counter()
    tokenizer = build_tokenizer(chain.SYMBOLS if task == "chain" else operator)
    model = build_model(tokenizer, seed=seed, **shape)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.0)
    rng = np.random.default_rng([seed, 1])
    slips = {int(d): float(rate) for d, rate in noise}
    slip_rng = np.random.default_rng([seed, 2])
    model.train()
    progress.stage(f"warm start: {steps} supervised steps")
    progress.set_total(steps)
    losses = []
    for step in range(steps):
        # A warm-up keeps the first large steps from wrecking the embeddings.
        for group in optimizer.param_groups:
            group["lr"] = learning_rate * min(1.0, (step + 1) / min(WARM_UP_STEPS, steps))
        rows = (
            chain.sample_rows(rng, digits, batch_size)
            if task == "chain"
            else sample_rows(rng, digits, batch_size, operator)
        )
        batch = sft_batch(tokenizer, corrupt(rows, slips, slip_rng) if slips else rows)
        loss = model(**batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(float(loss.detach()))
        progress.advance(1)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    info = {
        "settings": {"digits": [int(d) for d in digits], "steps": steps, "batch_size": batch_size,
                     "learning_rate": learning_rate, "shape": dict(shape), "seed": seed,
                     "noise": [[int(d), float(r)] for d, r in noise], **_operator_setting(operator),
                     **({"task": task} if task != "arith" else {})},
        "final_loss": float(np.mean(losses[-20:])) if losses else None,
        "seconds": time.perf_counter() - started,
    }  # fmt: skip
    (folder / WARM_START_FILE).write_text(json.dumps(info, indent=2) + "\n")
    return info


def _operator_setting(operator: str) -> dict[str, str]:
    """The operator as a warm-start setting, left out for sums so their recorded settings stay as they were."""
    return {} if operator == "+" else {"operator": operator}
