"""Rollouts of a model already in memory (a trainer's live policy), checked as `gaincurate rollout` checks them.

`run_rollouts` loads a model from disk and writes a resumable file; a trainer that holds the policy in
process (the TRL curriculum's `screen` strategy) wants the pass rates now, from the weights it is
training. The prompts, sampling seeds and answer check are the same as `gaincurate rollout`'s, so a
checkpoint rolled out from disk with the same settings gives the same rewards up to numerics.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from gaincurate.errors import InputError
from gaincurate.rollout import sampling
from gaincurate.rollout.answers import AnswerChecker
from gaincurate.rollout.config import RolloutConfig
from gaincurate.rollout.inputs import read_inputs


def roll_live(model: Any, tokenizer: Any, config: RolloutConfig, gc_ids: np.ndarray) -> tuple[np.ndarray, int]:
    """Correct rollouts out of `config.samples` for each of `gc_ids` (in that order), and the tokens generated.

    `config` gives the scores directory and the sampling settings; its `out`, `model`, `device` and `dtype` are
    not used (the model is the one given, where it is). The model is put in eval mode meanwhile.
    """
    import torch

    inputs = read_inputs(dataclasses.replace(config, reference_size=None, ids_file=None))
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
    correct = np.zeros(len(gc_ids), dtype=np.int64)
    tokens = 0
    was_training = model.training
    model.eval()
    try:
        with sampling.torch_threads(config.threads), torch.no_grad():
            for batch in sampling.plan_batches([len(p) for p in prompt_ids], config.prompts_per_batch):
                completions, counts = sampling.generate_batch(
                    model, [prompt_ids[i] for i in batch], [int(gc_ids[i]) for i in batch], config,
                    pad_id=pad_id, stop_ids=stops, device=device,
                )  # fmt: skip
                tokens += sum(counts)
                texts = tokenizer.batch_decode(completions, skip_special_tokens=True)
                for row, text in enumerate(texts):  # prompt by prompt, sample by sample
                    index = batch[row // config.samples]
                    correct[index] += bool(checker(text, inputs.answers[rows[index]]))
    finally:
        model.train(was_training)
    return correct, tokens
