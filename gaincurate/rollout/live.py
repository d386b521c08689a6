"""Rollouts of a model already in memory (a trainer's live policy), checked as `gaincurate rollout` checks them.

`run_rollouts` loads a model from disk and writes a resumable file; a trainer that holds the policy in
process (a TRL curriculum whose strategy measures the live policy) wants the pass rates now, from the weights it
is training. The prompts, sampling seeds and answer check are the same as `gaincurate rollout`'s, so a
checkpoint rolled out from disk with the same settings gives the same rewards up to numerics.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gaincurate.errors import InputError
from gaincurate.rollout import sampling
from gaincurate.rollout.answers import AnswerChecker
from gaincurate.rollout.config import RolloutConfig
from gaincurate.rollout.inputs import read_inputs


@dataclass
class LiveRollouts:
    """What `roll_live` measured: correct rollouts per prompt and the tokens generated; with `keep`, per prompt
    its token ids, its completions (stop token included when they stopped), each one's correctness and mu, the
    per-token log-probs of the model that sampled it at the sampling temperature."""

    correct: np.ndarray
    tokens: int
    prompt_ids: list[list[int]] = field(default_factory=list)
    completions: list[list[list[int]]] = field(default_factory=list)
    rewards: list[list[float]] = field(default_factory=list)
    logps: list[list[list[float]]] = field(default_factory=list)


def completion_logps(
    model: Any, prompt: Sequence[int], completions: Sequence[Sequence[int]], temperature: float
) -> list[list[float]]:
    """Per-token log-probs of each completion of `prompt` under `model` at `temperature` (float64 lists), as a
    sampler drawing from softmax(logits / temperature) gave them: the behaviour policy of a kept rollout."""
    import torch

    if not temperature > 0:
        raise ValueError("log-probs of sampled completions need a temperature above 0")
    device = next(model.parameters()).device
    width = max(len(c) for c in completions)
    rows = torch.zeros((len(completions), len(prompt) + width), dtype=torch.long)
    mask = torch.zeros_like(rows)
    for row, completion in enumerate(completions):
        tokens = list(prompt) + list(completion)
        rows[row, : len(tokens)] = torch.tensor(tokens)
        mask[row, : len(tokens)] = 1
    was_training = model.training
    model.eval()  # as it sampled: no dropout
    try:
        with torch.no_grad():
            logits = model(input_ids=rows.to(device), attention_mask=mask.to(device)).logits.float()
    finally:
        model.train(was_training)
    start = len(prompt) - 1
    logps = torch.log_softmax(logits[:, start : start + width] / temperature, dim=-1)
    picked = logps.gather(-1, rows[:, len(prompt) :].unsqueeze(-1).to(device)).squeeze(-1).double().cpu()
    return [picked[row, : len(c)].tolist() for row, c in enumerate(completions)]


def roll_live(
    model: Any, tokenizer: Any, config: RolloutConfig, gc_ids: np.ndarray, *, keep: bool = False
) -> LiveRollouts:
    """Correct rollouts out of `config.samples` for each of `gc_ids` (in that order), and the tokens generated.

    `config` gives the scores directory and the sampling settings; its `out`, `model`, `device` and `dtype` are
    not used (the model is the one given, where it is). The model is put in eval mode meanwhile. `keep`: also
    the completions and their behaviour log-probs, so that a trainer can train on them (`LiveRollouts`).
    """
    import torch

    # The caller names the prompts, answered or not: one without a gold answer counts no correct rollout.
    inputs = read_inputs(dataclasses.replace(config, reference_size=None, ids_file=None), answered_only=False)
    gc_ids = np.asarray(gc_ids, dtype=np.int64)
    rows = np.searchsorted(inputs.gc_ids, gc_ids)
    rows = np.clip(rows, 0, len(inputs.gc_ids) - 1)
    unknown = gc_ids[inputs.gc_ids[rows] != gc_ids]
    if len(unknown):
        raise InputError(f"gc_id {int(unknown[0])} is not in {config.scores}")
    prompt_ids = sampling.render_prompts(tokenizer, [inputs.questions[r] for r in rows], inputs.prompt_config)
    checker = AnswerChecker(config.answer_format)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    stops = sampling.stop_ids(model, tokenizer)
    device = str(next(model.parameters()).device)
    result = LiveRollouts(np.zeros(len(gc_ids), dtype=np.int64), 0)
    stop_set = set(stops)
    was_training = model.training
    model.eval()
    try:
        with sampling.torch_threads(config.threads), torch.no_grad():
            for batch in sampling.plan_batches([len(p) for p in prompt_ids], config.prompts_per_batch):
                completions, counts = sampling.generate_batch(
                    model, [prompt_ids[i] for i in batch], [int(gc_ids[i]) for i in batch], config,
                    pad_id=pad_id, stop_ids=stops, device=device, keep_stop=keep,
                )  # fmt: skip
                result.tokens += sum(counts)
                # The checker reads the answer without its stop token, kept or not.
                texts = tokenizer.batch_decode(
                    [c[:-1] if c and c[-1] in stop_set else c for c in completions], skip_special_tokens=True
                )
                outcomes = []
                for row, text in enumerate(texts):  # prompt by prompt, sample by sample
                    index = batch[row // config.samples]
                    outcomes.append(bool(checker(text, inputs.answers[rows[index]])))
                    result.correct[index] += outcomes[-1]
                if keep:
                    _keep(result, model, config, batch, prompt_ids, completions, outcomes)
    finally:
        model.train(was_training)
    return result


def _keep(
    result: LiveRollouts,
    model: Any,
    config: RolloutConfig,
    batch: list,
    prompts: list,
    completions: list,
    outcomes: list,
) -> None:
    """Keep one batch's prompts, completions, rewards and behaviour log-probs in `result`, at each prompt's index."""
    if not result.prompt_ids:
        for name in ("prompt_ids", "completions", "rewards", "logps"):
            setattr(result, name, [None] * len(result.correct))
    samples = config.samples
    for position, index in enumerate(batch):
        mine = [list(c) for c in completions[position * samples : (position + 1) * samples]]
        result.prompt_ids[index] = list(prompts[index])
        result.completions[index] = mine
        result.rewards[index] = [float(o) for o in outcomes[position * samples : (position + 1) * samples]]
        result.logps[index] = completion_logps(model, prompts[index], mine, config.temperature)
