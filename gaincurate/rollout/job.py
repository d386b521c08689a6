"""`run_rollouts`: the resumable rollout job behind `gaincurate rollout`.

    gaincurate rollout scores/ --out reference.jsonl --samples 4 --reference-size 256

For each chosen prompt of a scores directory, the model samples `samples` completions of the prompt
built exactly as for scoring (the manifest's system prompt, few-shot turns and chat template). The
last `\\boxed{...}` of each completion (or, with `--answer-format any`, the answer math-verify finds
anywhere in it) is checked against the answer column with `math-verify`, and one
feedback line `{"gc_id": int, "reward": 1.0 | 0.0}` is written per rollout: the same format a trainer
writes, so `gaincurate difficulty` and `gaincurate schedule --strategy dots` read it as a reference set. A prompt
without a gold answer is left out (`gaincurate.rollout.inputs.answered_choice`), and a stage line counts them.

Determinism and resume:

* every rollout (gc_id, sample) has its own `torch.Generator`, seeded from (seed, gc_id, sample); the
  draw is made by a logits processor inside `generate` (which then takes the argmax of a one-hot), so
  a completion never depends on what else shares its batch (`gaincurate.rollout.sampling`);
* batches are fixed up front from the full id list (length-sorted, `batch_size // samples` prompts
  each), so a resumed run pads and computes every batch exactly as an uninterrupted one;
* the lines of finished batches are appended and fsynced; a restart keeps the complete prompt groups
  of the file, cuts a torn tail (half a line, or half a group), and skips what is done
  (`gaincurate.rollout.output`).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gaincurate.errors import InputError
from gaincurate.feedback_lines import append_rollouts
from gaincurate.progress import NULL_PROGRESS, Progress
from gaincurate.rollout import sampling
from gaincurate.rollout.answers import AnswerChecker
from gaincurate.rollout.config import RolloutConfig, RolloutResult
from gaincurate.rollout.inputs import Inputs, read_inputs
from gaincurate.rollout.output import check_settings, claim_output, complete_prefix, start_output


@dataclass
class _Counts:
    """What the generation loop has done so far."""

    rewards: list[float]  # every reward of the output file, resumed ones first
    finished: set[int]  # gc_ids whose lines are all in the output file
    generated_tokens: int = 0
    truncated: int = 0
    generate_seconds: float = 0.0
    written: int = 0


@dataclass(frozen=True, kw_only=True)
class _Roller:
    """A loaded model and tokenizer, and what each batch needs to sample and check its rollouts."""

    model: Any
    tokenizer: Any
    checker: AnswerChecker
    config: RolloutConfig
    inputs: Inputs
    prompt_ids: list[list[int]]
    pad_id: int
    stop_ids: list[int]
    device: str

    def roll(self, batch: list[int], todo: list[int], counts: _Counts) -> None:
        """Generate one fixed batch, check the answers of its unfinished prompts, append their lines durably.

        The whole batch is generated even when part of it is done, so padding (hence every row's numbers)
        is the same as in an uninterrupted run.
        """
        config, gc_ids = self.config, self.inputs.gc_ids
        started = time.perf_counter()
        completions, tokens = sampling.generate_batch(
            self.model,
            [self.prompt_ids[i] for i in batch],
            [int(gc_ids[i]) for i in batch],
            config,
            pad_id=self.pad_id,
            stop_ids=self.stop_ids,
            device=self.device,
        )
        counts.generate_seconds += time.perf_counter() - started
        ids, rewards = [], []
        for position, index in enumerate(batch):
            if index not in todo:
                continue
            for sample in range(config.samples):
                row = position * config.samples + sample
                text = self.tokenizer.decode(completions[row], skip_special_tokens=True)
                ids.append(int(gc_ids[index]))
                rewards.append(1.0 if self.checker(text, self.inputs.answers[index]) else 0.0)
                counts.generated_tokens += tokens[row]
                counts.truncated += len(completions[row]) == tokens[row] == config.max_new_tokens
        counts.rewards.extend(rewards)
        counts.written += append_rollouts(config.out, ids, rewards, sync=True)
        counts.finished.update(int(gc_ids[i]) for i in todo)


def run_rollouts(config: RolloutConfig, progress: Progress = NULL_PROGRESS) -> RolloutResult:
    """Roll out the chosen prompts into `config.out`, resuming a matching partial file; the file is held for the whole
    run, so a second run into it is refused (`claim_output`)."""
    with claim_output(Path(config.out)):
        return _roll_out(config, progress)


def _roll_out(config: RolloutConfig, progress: Progress) -> RolloutResult:
    """`run_rollouts`, with `config.out` held."""
    from gaincurate.model import load_model, load_tokenizer, resolve_device, resolve_dtype
    from gaincurate.scoring.rescore import checkpoint_source

    inputs = read_inputs(config)
    checker = AnswerChecker(config.answer_format)
    source = checkpoint_source(inputs.model_spec, inputs.prompt_config.get("model"))  # an adapter: its base as scored
    device = resolve_device(config.device)
    dtype = resolve_dtype(config.dtype, device)
    out = Path(config.out)
    settings = _settings(config, inputs, source, dtype=dtype, device=device)
    resuming = check_settings(out, settings, config.overwrite)
    done, keep_bytes, rewards = complete_prefix(out, config.samples) if resuming else ([], 0, [])
    unknown = set(done) - set(inputs.gc_ids.tolist())
    if unknown:
        raise InputError(
            f"--out {out} holds gc_id {min(unknown)}, which this run does not roll out; pick another --out"
        )

    if inputs.note:
        progress.stage(inputs.note)
    progress.stage(f"loading {source.display}")
    tokenizer = load_tokenizer(source)
    prompt_ids = sampling.render_prompts(tokenizer, inputs.questions, inputs.prompt_config)
    load_started = time.perf_counter()
    model = load_model(source, dtype=dtype, device=device)
    load_seconds = time.perf_counter() - load_started

    # Everything is checked: now the output may change.
    start_output(out, resuming=resuming, keep_bytes=keep_bytes, settings=settings, config=config)
    counts = _Counts(rewards=rewards, finished=set(done))
    progress.set_total(len(inputs.gc_ids))
    if counts.finished:
        progress.advance(len(counts.finished))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    roller = _Roller(
        model=model,
        tokenizer=tokenizer,
        checker=checker,
        config=config,
        inputs=inputs,
        prompt_ids=prompt_ids,
        pad_id=pad_id,
        stop_ids=sampling.stop_ids(model, tokenizer),
        device=device,
    )
    with sampling.torch_threads(config.threads):
        for batch in sampling.plan_batches([len(p) for p in prompt_ids], config.prompts_per_batch):
            todo = [i for i in batch if int(inputs.gc_ids[i]) not in counts.finished]
            if todo:
                roller.roll(batch, todo, counts)
                progress.advance(len(todo))
    return RolloutResult(
        out=str(out),
        prompts=len(inputs.gc_ids),
        prompts_resumed=len(done),
        rollouts_written=counts.written,
        mean_reward=float(np.mean(counts.rewards)) if counts.rewards else None,
        generated_tokens=counts.generated_tokens,
        truncated_rollouts=int(counts.truncated),
        generate_seconds=counts.generate_seconds,
        load_seconds=load_seconds,
        settings=settings,
    )


def _settings(config: RolloutConfig, inputs: Inputs, source: Any, *, dtype: str, device: str) -> dict[str, Any]:
    """What decides the sampled tokens and rewards: a resume must match every one of them."""
    from gaincurate.model_identity import source_fingerprint

    return {
        "scores_dataset": inputs.dataset_fingerprint,
        "model": source.display,
        "model_fingerprint": source_fingerprint(source),
        "samples": config.samples,
        "max_new_tokens": config.max_new_tokens,
        "temperature": float(config.temperature),
        "seed": config.seed,
        "answer_column": inputs.answer_column,
        "answer_format": config.answer_format,
        "prompts_per_batch": config.prompts_per_batch,
        "dtype": dtype,
        "device": device,
        # Thread count can change floating-point reduction order, hence sampled tokens: part of a resume's identity.
        "threads": config.threads if config.threads is not None else sampling.default_threads(),
        "ids_sha256": hashlib.sha256(inputs.gc_ids.tobytes()).hexdigest()[:16],
        "prompts": len(inputs.gc_ids),
    }
