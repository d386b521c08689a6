"""The policy's log-probability of each prompt's reference answer: one teacher-forced forward over prompt + answer.

For a reward that checks a short exact answer, sampled at temperature 1, the chance that the policy writes the
reference answer and then stops is the prompt's expected pass rate, measured without sampling: the sum over the
answer's tokens (and the end-of-sequence token) of log p(token | everything before it). The `probe` strategy
(`gaincurate.schedule.strategies.probe`) reads it as a feature, refreshed between epochs from the live model (TRL
in process) or the newest checkpoint (`schedule step`, verl), through the same hooks as re-scoring.

    logps = answer_logprobs(model, tokenizer, prompt_ids, answer_ids)             # token ids in, float64 out
    logps = likelihoods(scores_dir, [3, 7], model=model, tokenizer=tokenizer)     # rows of a scores directory
    logps = likelihoods(scores_dir, [3, 7], checkpoint="out/checkpoint-40")

The prompt is built exactly as scoring built it (the directory's manifest: template, system prompt, few-shot
turns), so it is the prompt the trainer samples from. What is measured (`of`, one of KINDS; the probe reads
`answer`, the bench's pool instrument all three):

* `answer`: the completion `template.format(answer=...)` (default: the answer alone, right after the generation
  prompt), then end-of-sequence, summed. Where the policy writes reasoning first it is a proxy (the answer without
  the reasoning), whose worth the probe's fit measures rather than assumes.
* `solution`: the reference solution, per token: the template's text before `{answer}` (all of it when it has
  none) with the row's solution in `{solution}`, its log-probability divided by its token count (a reference
  solution is one of many correct ones, so its total says little; its per-token rate says how familiar it is).
* `answer-after-solution`: the template's text from `{answer}` on, then end-of-sequence, summed, with the solution
  part above appended to the prompt: how surely the policy concludes from the reference reasoning.

The two parts are tokenized apart (a BPE token spanning the seam is split there). Unlike scoring, this runs the
whole model and its LM head, but only over the measured positions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gaincurate.errors import InputError

DEFAULT_TEMPLATE = "{answer}"
CPU_LIKELIHOOD_TOKENS = 8192  # padded tokens per forward on a CPU; a GPU's budget is what its free memory holds
KINDS = ("answer", "solution", "answer-after-solution")  # what `likelihoods` measures (the module docstring)


def likelihood_dtype(device: str) -> str:
    """The dtype a checkpoint is loaded in to measure likelihoods on `device`: float32 on a CPU, so that every CPU
    path gives the same values; on a GPU the half dtype scoring takes there (`model.resolve_dtype`), which runs the
    forward that scoring runs (flash attention, its layers fused) and rounds the likelihoods far less than they differ
    between prompts (docs/strategies.md, "The answer's likelihood on a GPU")."""
    from gaincurate.model import resolve_dtype

    return resolve_dtype("auto", device) if str(device).startswith("cuda") else "float32"


def answer_ids(tokenizer: Any, answers: Sequence[Any], template: str = DEFAULT_TEMPLATE) -> list[list[int]]:
    """Token ids of each completion that a correct answer is: the template's text, then end-of-sequence."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise InputError("the tokenizer has no end-of-sequence token, so an answer's end cannot be scored")
    texts = [template.format(answer=answer) for answer in answers]
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return [list(ids) + [int(eos)] for ids in encoded]


def reasoning_ids(
    tokenizer: Any, solutions: Sequence[Any], answers: Sequence[Any] | None, template: str, of: str
) -> tuple[list[list[int]], list[list[int]]]:
    """(context, measured) token ids of each row for `of` "solution" or "answer-after-solution": the context goes
    after the prompt, the measured tokens after it (the module docstring says which part of `template` is which)."""
    head, marker, tail = template.partition("{answer}")
    encode = tokenizer([head.format(solution=s) for s in solutions], add_special_tokens=False)["input_ids"]
    if of == "solution":
        return [[] for _ in solutions], [list(ids) for ids in encode]
    if not marker or answers is None:
        raise ValueError(f"answer-after-solution needs a template with {{answer}} and the answers; got {template!r}")
    return [list(ids) for ids in encode], answer_ids(tokenizer, answers, marker + tail)


def answer_logprobs(
    model: Any,
    tokenizer: Any,
    prompt_ids: Sequence[Sequence[int]],
    completion_ids: Sequence[Sequence[int]],
    *,
    temperature: float = 1.0,
    batch_tokens: int | None = None,
    varlen: Callable | None = None,
) -> np.ndarray:
    """sum_t log p(completion_t | prompt, completion_<t) for each row, at `temperature`, float64.

    The leading tokens every prompt shares (system prompt, few-shot turns, role headers) run once, as scoring runs
    them (`gaincurate.scoring.engine.SharedPrefix`): each batch continues from their key/value cache. The rest of each
    row is batched as `forward_batches` says, padded on the right (a causal model never sees the padding of its own
    row, so the forward runs as `forward_kernels.right_padded_forward` says); the LM head runs only
    at the positions that predict a completion token. `batch_tokens`: padded tokens per forward (default:
    CPU_LIKELIHOOD_TOKENS on a CPU, what free memory holds on a GPU). Where scoring would pack such rows
    (`engine.packs`: a variable-length attention, by default `engine.default_varlen`'s on a GPU whose torch has one,
    and enough padding to repay it) these are packed the same way, prompt and completion per row, end to end
    (`_packed_logprobs`).
    """
    import torch

    from gaincurate.forward_kernels import attention_for_many_shapes, right_padded_forward
    from gaincurate.scoring.engine import default_varlen, expand_cache, packs

    if len(prompt_ids) != len(completion_ids):
        raise ValueError(f"{len(prompt_ids)} prompts but {len(completion_ids)} completions")
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    rows = [list(map(int, p)) + list(map(int, c)) for p, c in zip(prompt_ids, completion_ids, strict=True)]
    shared = shared_prefix(prompt_ids)
    lengths = [len(row) - len(shared) for row in rows]
    if batch_tokens is None:
        batch_tokens = _likelihood_budget(model, device, max(lengths, default=1))
    result = np.zeros(len(rows), dtype=np.float64)
    varlen = varlen if varlen is not None else default_varlen(model, str(device))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), attention_for_many_shapes():
            with right_padded_forward(model, str(device)):  # the batches' forward, so one path per token
                prefix = _prefix_cache(model, shared, device) if shared else None
            plan = forward_batches(lengths, batch_tokens, str(device))
            if packs(varlen, sum(len(batch) * width for batch, width in plan), sum(lengths)):
                return _packed_logprobs(model, rows, prompt_ids, len(shared), prefix, varlen, batch_tokens,
                                        temperature)  # fmt: skip
            for batch, width in plan:
                ids = torch.full((len(batch), width), pad, dtype=torch.long)
                mask = torch.zeros((len(batch), len(shared) + width), dtype=torch.long)
                mask[:, : len(shared)] = 1
                for slot, row in enumerate(batch):
                    ids[slot, : len(rows[row]) - len(shared)] = torch.tensor(rows[row][len(shared) :])
                    mask[slot, : len(rows[row])] = 1
                cache = None if prefix is None else expand_cache(prefix, len(batch), model.config)
                with right_padded_forward(model, str(device)):
                    values = _completion_logprobs(model, ids.to(device), mask.to(device), cache, batch, prompt_ids,
                                                  rows, len(shared), temperature)  # fmt: skip
                result[batch] = values
    finally:
        if was_training:
            model.train()
    return result


def forward_batches(lengths: Sequence[int], batch_tokens: int, device: str) -> list[tuple[list[int], int]]:
    """(rows, padded width) of each forward. On a GPU the scoring engine's plan (`engine.pack_batches`): rows of one
    bucket width, few and large batches. On a CPU, which pays for every padded token: rows longest first, each batch
    as many as fit at its longest row's width."""
    from gaincurate.scoring.engine import on_gpu, pack_batches, padded_width

    if on_gpu(device):
        return [
            (batch, padded_width(lengths[batch[0]], device)) for batch in pack_batches(lengths, batch_tokens, device)
        ]
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches, start = [], 0
    while start < len(order):
        width = lengths[order[start]]
        batch = order[start : start + max(1, batch_tokens // max(width, 1))]
        batches.append((batch, width))
        start += len(batch)
    return batches


def _likelihood_budget(model: Any, device: Any, longest: int) -> int:
    """The likelihood pass's own padded tokens per forward, apart from a scoring run's `--batch-tokens` (it runs the
    whole model and its LM head, on a model already loaded): CPU_LIKELIHOOD_TOKENS on a CPU; on a GPU what its free
    memory holds beside the loaded model."""
    from gaincurate.scoring.engine import on_gpu

    if not on_gpu(str(device)):
        return CPU_LIKELIHOOD_TOKENS
    import torch

    from gaincurate.scoring.gpu_budget import budget, gpu_memory

    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    free, _ = torch.cuda.mem_get_info(device)
    return budget(free, 0, gpu_memory(model.config, dtype, longest)[1])


def shared_prefix(prompt_ids: Sequence[Sequence[int]]) -> list[int]:
    """The leading tokens all prompts share, leaving each at least its last token (whose hidden state predicts the
    completion's first); empty when that is fewer than two tokens."""
    if not prompt_ids:
        return []
    first = list(map(int, prompt_ids[0]))
    length = min(len(p) for p in prompt_ids) - 1
    for prompt in prompt_ids[1:]:
        length = next((i for i in range(length) if int(prompt[i]) != first[i]), length)
    return first[:length] if length >= 2 else []


def _prefix_cache(model: Any, prefix: list[int], device: Any) -> Any:
    """The key/value cache of the shared prefix, computed once."""
    import torch
    from transformers import DynamicCache

    from gaincurate.model import cache_keyword

    cache = DynamicCache(config=model.config)
    model(input_ids=torch.tensor([prefix], device=device), use_cache=True, **{cache_keyword(model): cache})
    return cache


def _completion_targets(batch, prompt_ids, rows, offset, starts=None) -> tuple[list[int], list[int], list[int]]:
    """(slot, position predicting a completion token, that token) for every completion token of the batch, its rows
    after `offset` shared tokens: padded one to a slot, or packed end to end from `starts`."""
    slots, positions, targets = [], [], []
    for slot, row in enumerate(batch):
        start, end = len(prompt_ids[row]), len(rows[row])
        first = (starts[slot] if starts is not None else 0) - 1 - offset
        slots.extend([slot] * (end - start))
        positions.extend(range(first + start, first + end))
        targets.extend(rows[row][start:end])
    return slots, positions, targets


def _completion_logprobs(model, ids, mask, cache, batch, prompt_ids, rows, offset, temperature) -> np.ndarray:
    """One batch after the shared prefix (`offset` tokens, in `cache`): the hidden state before each completion
    token, through the LM head, log-softmax, gathered."""
    from gaincurate.model import cache_keyword

    slots, positions, targets = _completion_targets(batch, prompt_ids, rows, offset)
    decoder, _ = _decoder_and_head(model)
    given = {"input_ids": ids, "attention_mask": mask, "use_cache": cache is not None}
    given[cache_keyword(decoder if decoder is not None else model)] = cache
    return _logprobs_at(model, given, (slots, positions), slots, targets, len(batch), temperature)


def _logprobs_at(model, given, at, slots, targets, count, temperature) -> np.ndarray:
    """The forward of `given`: the hidden state at each `at` (batch rows, positions) through the LM head, log-softmax
    at `temperature`, the `targets`' log-probabilities summed into `count` sums by `slots`."""
    import torch

    decoder, head = _decoder_and_head(model)
    # A model without a separate decoder: the full logits, read at those positions.
    logits = head(decoder(**given).last_hidden_state[at]) if decoder is not None else model(**given).logits[at]
    logps = torch.log_softmax(logits.float() / temperature, dim=-1)
    picked = logps[torch.arange(len(targets)), torch.tensor(targets, device=logps.device)].double().cpu().numpy()
    sums = np.zeros(count, dtype=np.float64)
    np.add.at(sums, np.asarray(slots, dtype=np.int64), picked)
    return sums


def _packed_logprobs(model, rows, prompt_ids, offset, prefix, varlen, batch_tokens, temperature) -> np.ndarray:
    """`answer_logprobs` with each batch's rows (after the `offset` shared tokens, whose cache is `prefix`) laid end
    to end, attending through `varlen` (`gaincurate.packed_forward`): no padding, the prefix's keys and values read
    once by every row."""
    from gaincurate.packed_forward import fill_batches, pack_rows, packed_forward, prefix_key_values

    device = next(model.parameters()).device
    layers = prefix_key_values(prefix) if prefix is not None else None
    result = np.zeros(len(rows), dtype=np.float64)
    for batch in fill_batches([len(row) - offset for row in rows], batch_tokens):
        packed = pack_rows([rows[row][offset:] for row in batch], offset)
        slots, positions, targets = _completion_targets(batch, prompt_ids, rows, offset, packed.starts)
        given = {"input_ids": packed.input_ids.to(device), "position_ids": packed.position_ids.to(device),
                 "attention_mask": None, "use_cache": False}  # fmt: skip
        with packed_forward(model, str(device), packed, varlen, layers):
            result[batch] = _logprobs_at(model, given, (0, positions), slots, targets, len(batch), temperature)
    return result


def _decoder_and_head(model: Any) -> tuple[Any, Any]:
    """The base model (final norm included) and the LM head of a causal LM, or (None, None) when it has no such split
    (or changes its logits after the head: Gemma's softcapping, Cohere's and Granite's scaling), so the full forward
    is used instead."""
    config = getattr(model, "config", None)
    if getattr(config, "final_logit_softcapping", None) or getattr(config, "logit_scale", None):
        return None, None
    if getattr(config, "logits_scaling", 1) not in (None, 1):
        return None, None
    get_decoder, get_head = getattr(model, "get_decoder", None), getattr(model, "get_output_embeddings", None)
    if get_decoder is None or get_head is None:
        return None, None
    decoder, head = get_decoder(), get_head()
    return (decoder, head) if decoder is not None and head is not None else (None, None)


def likelihoods(
    scores_dir: Path,
    ids: Sequence[int],
    *,
    checkpoint: str | Path | None = None,
    model: Any = None,
    tokenizer: Any = None,
    template: str = DEFAULT_TEMPLATE,
    answer_column: str | None = None,
    of: str = "answer",
    solution_column: str | None = None,
) -> np.ndarray:
    """The likelihood (`of`, one of KINDS) of rows `ids` (gc_id) of a scores directory, with a checkpoint or a live
    model.

    The prompts are built as the directory's scoring built them; the answers are its `answer_column` (the
    manifest's, unless given), the solutions its `solution_column` (`of` other than "answer"). Returns float64
    values in the order of `ids`.
    """
    from gaincurate.prompts import PromptEncoder
    from gaincurate.scoring.config import prompt_tokens
    from gaincurate.scoring.rescore import prompt_format, questions_and_answers

    config, fmt = prompt_format(scores_dir)
    if of not in KINDS:
        raise ValueError(f"of must be one of {', '.join(KINDS)}; got {of!r}")
    column = answer_column or config.answer_column
    if not column and of != "solution":
        raise InputError(
            f"{scores_dir} names no answer column, so the policy's likelihood of the answer cannot be measured; "
            "score the data with --answer-column NAME"
        )
    if of != "answer" and not solution_column:
        raise InputError(f"the likelihood of {of} reads each row's reference solution: name its column")
    answer_column = column if of != "solution" else None
    questions, answers = questions_and_answers(scores_dir, ids, config.prompt_column, answer_column)
    solutions = None if of == "answer" else questions_and_answers(scores_dir, ids, config.prompt_column,
                                                                  solution_column)[1]  # fmt: skip
    if (model is None) != (tokenizer is None):
        raise InputError("likelihoods needs both a live model and its tokenizer, or a checkpoint")
    if model is None:
        if checkpoint is None:
            raise InputError("likelihoods needs a checkpoint or a live model")
        from gaincurate.model import load_model, resolve_device
        from gaincurate.scoring.rescore import checkpoint_source, checkpoint_tokenizer

        source = checkpoint_source(checkpoint, config.model)
        tokenizer = checkpoint_tokenizer(source, config)
        device = resolve_device(config.device)
        model = load_model(source, dtype=likelihood_dtype(device), device=device)
    encoder = PromptEncoder(tokenizer, fmt, prompt_tokens(config.max_length, model.config))
    prompts = [encoded.input_ids for encoded in encoder.encode(questions)]
    if solutions is None:
        return answer_logprobs(model, tokenizer, prompts, answer_ids(tokenizer, answers, template))
    contexts, measured = reasoning_ids(tokenizer, solutions, answers, template, of)
    if any(not tokens for tokens in measured):
        raise InputError(f"a row's {of} has no tokens under the template {template!r}: nothing to measure")
    sums = answer_logprobs(model, tokenizer, [list(p) + c for p, c in zip(prompts, contexts, strict=True)], measured)
    return sums / np.asarray([len(tokens) for tokens in measured], dtype=np.float64) if of == "solution" else sums
