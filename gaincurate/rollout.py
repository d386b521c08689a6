"""`gaincurate rollout`: measure pass rates by sampling answers and checking them with math-verify.

    gaincurate rollout scores/ --out reference.jsonl --samples 4 --reference-size 256

For each chosen prompt of a scores directory, the model samples `samples` completions of the prompt
built exactly as for scoring (the manifest's system prompt, few-shot turns and chat template). The
last `\\boxed{...}` of each completion (or, with `--answer-format any`, the answer math-verify finds
anywhere in it) is checked against the answer column with `math-verify`, and one
feedback line `{"gc_id": int, "reward": 1.0 | 0.0}` is written per rollout: the same format a trainer
writes, so `gaincurate difficulty` and `gaincurate schedule --strategy dots` read it as a reference set.

Determinism and resume:

* every rollout (gc_id, sample) has its own `torch.Generator`, seeded from (seed, gc_id, sample); the
  draw is made by a logits processor inside `generate` (which then takes the argmax of a one-hot), so
  a completion never depends on what else shares its batch;
* batches are fixed up front from the full id list (length-sorted, `batch_size // samples` prompts
  each), so a resumed run pads and computes every batch exactly as an uninterrupted one;
* the lines of finished batches are appended, flushed and fsynced; a restart keeps the complete
  prompt groups of the file, cuts a torn tail (half a line, or half a group), and skips what is done.
  The settings are kept in `OUT.rollout.json`; resuming with other settings is refused.

Generation lives in `gaincurate.difficulty.sampling`, answer checking in `gaincurate.difficulty.answers`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gaincurate.difficulty import sampling
from gaincurate.difficulty.answers import ANSWER_FORMATS, AnswerChecker, check_answer, last_boxed
from gaincurate.errors import ConfigError, InputError

__all__ = ["RolloutConfig", "RolloutResult", "check_answer", "last_boxed", "run_rollouts"]

log = logging.getLogger(__name__)

SIDECAR_SUFFIX = ".rollout.json"
REFERENCE_STREAM = 7  # seed-sequence branch for drawing the reference ids, apart from sampling streams

ProgressHook = Callable[[int], None]


@dataclass(frozen=True, kw_only=True)
class RolloutConfig:
    """What `gaincurate rollout` was asked to do (the settings a resume must match are in `OUT.rollout.json`)."""

    scores: str
    out: str
    model: str | None = None  # None: the model recorded in the scores manifest
    samples: int = 4
    reference_size: int | None = None  # None (and no ids_file): every prompt
    ids_file: str | None = None
    max_new_tokens: int = 256
    temperature: float = 0.7
    seed: int = 0
    answer_column: str | None = None  # None: the manifest's answer column
    answer_format: str = "boxed"  # see gaincurate.difficulty.answers
    batch_size: int = 32  # sequences per generate call, rounded down to whole prompt groups
    dtype: str = "auto"
    device: str = "auto"
    threads: int | None = None  # torch intra-op threads while generating; None: torch's default
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.threads is not None and (isinstance(self.threads, bool) or self.threads < 1):
            raise ConfigError(f"--threads must be 1 or more; got {self.threads!r}")
        for flag, value, low in [
            ("--samples", self.samples, 1),
            ("--max-new-tokens", self.max_new_tokens, 1),
            ("--batch-size", self.batch_size, 1),
        ]:
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{flag} must be a whole number {low} or more; got {value!r}")
        if self.reference_size is not None and (isinstance(self.reference_size, bool) or self.reference_size < 1):
            raise ConfigError(f"--reference-size must be 1 or more; got {self.reference_size!r}")
        if self.reference_size is not None and self.ids_file is not None:
            raise ConfigError("pass either --reference-size or --ids, not both")
        if not (isinstance(self.temperature, int | float) and 0 <= self.temperature < float("inf")):
            raise ConfigError(f"--temperature must be 0 (greedy) or more; got {self.temperature!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"--seed must be a whole number 0 or more; got {self.seed!r}")
        if self.answer_format not in ANSWER_FORMATS:
            raise ConfigError(f"--answer-format must be one of {', '.join(ANSWER_FORMATS)}; got {self.answer_format!r}")

    @property
    def prompts_per_batch(self) -> int:
        return max(1, self.batch_size // self.samples)


@dataclass
class RolloutResult:
    out: str
    prompts: int
    prompts_resumed: int
    rollouts_written: int
    mean_reward: float | None  # over the whole output file
    generated_tokens: int
    truncated_rollouts: int  # rollouts that reached max_new_tokens without stopping
    generate_seconds: float
    load_seconds: float
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def tokens_per_second(self) -> float | None:
        return self.generated_tokens / self.generate_seconds if self.generate_seconds > 0 else None

    @property
    def rollouts_per_second(self) -> float | None:
        return self.rollouts_written / self.generate_seconds if self.generate_seconds > 0 else None

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "tokens_per_second": self.tokens_per_second,
            "rollouts_per_second": self.rollouts_per_second,
        }


# ---------------------------------------------------------------------------------------------------
# Output file: complete prompt groups only


def complete_prefix(path: Path, samples: int) -> tuple[list[int], int, list[float]]:
    """gc_ids whose `samples` lines are all in `path`, the byte length of that prefix, and its rewards.

    Lines are written a prompt group at a time, so only the tail can be torn: half a line, or part of a
    group. Anything else (a bad line in the middle, a gc_id repeated later) means the file is not ours.
    """
    if not path.exists():
        return [], 0, []
    data = path.read_bytes()
    done: list[int] = []
    rewards: list[float] = []
    offset, kept, group_id, group = 0, 0, None, []
    for raw in data.splitlines(keepends=True):
        if not raw.endswith(b"\n"):
            break  # a torn last line
        try:
            record = json.loads(raw)
            gc_id, reward = int(record["gc_id"]), float(record["reward"])
        except (ValueError, KeyError, TypeError):
            raise InputError(
                f"{path} has a malformed line at byte {offset}; it is not a rollout file, pick another --out"
            ) from None
        if gc_id != group_id:
            if group:
                raise InputError(
                    f"{path}: gc_id {group_id} has {len(group)} of {samples} lines before gc_id "
                    f"{gc_id}; it was written with other settings, pick another --out"
                )
            group_id = gc_id
        group.append(reward)
        offset += len(raw)
        if len(group) == samples:
            if gc_id in done:
                raise InputError(f"{path} holds gc_id {gc_id} twice; pick another --out")
            done.append(gc_id)
            rewards.extend(group)
            kept, group_id, group = offset, None, []
    return done, kept, rewards


def _append_lines(path: Path, lines: list[str]) -> None:
    with path.open("ab") as file:
        file.write("".join(lines).encode())
        file.flush()
        os.fsync(file.fileno())


# ---------------------------------------------------------------------------------------------------
# The run


@dataclass(frozen=True)
class _Inputs:
    gc_ids: np.ndarray
    questions: list[str]
    answers: list[str | None]
    prompt_config: dict[str, Any]
    dataset_fingerprint: str | None
    model_spec: str | None
    answer_column: str


def choose_ids(all_ids: np.ndarray, *, reference_size: int | None, ids_file: str | None, seed: int) -> np.ndarray:
    """The gc_ids to roll out, ascending: from --ids, a seeded sample of --reference-size, or all."""
    all_ids = np.asarray(all_ids, dtype=np.int64)
    if ids_file is not None:
        path = Path(ids_file)
        if not path.is_file():
            raise InputError(f"--ids {ids_file} does not exist; pass a file of gc_ids, one per line")
        try:
            text = path.read_text().strip()
            values = json.loads(text) if text.startswith("[") else [int(t) for t in text.replace(",", " ").split()]
            chosen = np.asarray(sorted({int(v) for v in values}), dtype=np.int64)
        except (ValueError, TypeError):
            raise InputError(f"--ids {ids_file} must hold whole gc_ids, one per line (or a JSON list)") from None
        unknown = np.setdiff1d(chosen, all_ids)
        if len(unknown):
            raise InputError(f"--ids {ids_file} names gc_id {int(unknown[0])}, which is not in the scores directory")
        if not len(chosen):
            raise InputError(f"--ids {ids_file} names no gc_id")
        return chosen
    if reference_size is None:
        return np.sort(all_ids)
    if reference_size > len(all_ids):
        raise ConfigError(f"--reference-size {reference_size} is more than the {len(all_ids)} prompts")
    rng = np.random.default_rng([seed, REFERENCE_STREAM])
    return np.sort(rng.choice(np.sort(all_ids), size=reference_size, replace=False))


def _read_inputs(config: RolloutConfig) -> _Inputs:
    from gaincurate.shards import read_manifest, read_scores

    manifest = read_manifest(Path(config.scores))
    prompt_config = manifest.get("config", {})
    prompt_column = prompt_config.get("prompt_column", "problem")
    answer_column = config.answer_column or prompt_config.get("answer_column")
    if not answer_column:
        raise ConfigError(f"{config.scores} was scored without an answer column; pass --answer-column NAME")
    columns = manifest.get("dataset", {}).get("columns")
    if columns is not None and answer_column not in columns:
        raise InputError(
            f"{config.scores} has no column {answer_column!r}; available: {', '.join(columns)}. Pass --answer-column"
        )
    table = read_scores(Path(config.scores))
    if answer_column not in table.column_names:
        raise InputError(f"{config.scores} has no column {answer_column!r}; pass --answer-column NAME")
    all_ids = table.column("gc_id").to_numpy(zero_copy_only=False).astype(np.int64)
    chosen = choose_ids(all_ids, reference_size=config.reference_size, ids_file=config.ids_file, seed=config.seed)
    rows = np.searchsorted(all_ids, chosen)
    questions = table.column(prompt_column).take(rows).to_pylist()
    answers = table.column(answer_column).take(rows).to_pylist()
    return _Inputs(
        gc_ids=chosen,
        questions=["" if q is None else str(q) for q in questions],
        answers=[None if a is None else str(a) for a in answers],
        prompt_config=prompt_config,
        dataset_fingerprint=manifest.get("dataset", {}).get("fingerprint"),
        model_spec=config.model if config.model is not None else prompt_config.get("model"),
        answer_column=answer_column,
    )


def _sidecar(out: Path) -> Path:
    return out.with_name(out.name + SIDECAR_SUFFIX)


def _check_settings(out: Path, settings: dict[str, Any], overwrite: bool) -> bool:
    """Whether an existing output is resumed; refuses one written with other settings."""
    sidecar = _sidecar(out)
    if overwrite or not out.exists():
        return False
    if not sidecar.is_file():
        raise ConfigError(f"--out {out} exists but has no {sidecar.name}; pick another --out or pass --overwrite")
    previous = json.loads(sidecar.read_text()).get("settings", {})
    differing = sorted(k for k in set(previous) | set(settings) if previous.get(k) != settings.get(k))
    if differing:
        key = differing[0]
        raise ConfigError(
            f"--out {out} was written with {key}={previous.get(key)!r}, this run has {key}={settings.get(key)!r}; "
            "pick another --out, or --overwrite to start again"
        )
    return True


def run_rollouts(
    config: RolloutConfig, progress: ProgressHook | None = None, on_total: Callable[[int], None] | None = None
) -> RolloutResult:
    """Roll out the chosen prompts into `config.out`, resuming a matching partial file."""
    from gaincurate.fileio import atomic_write_json
    from gaincurate.model import load_model, load_tokenizer, resolve_device, resolve_dtype, resolve_source
    from gaincurate.model import source_fingerprint as model_fingerprint

    inputs = _read_inputs(config)
    checker = AnswerChecker(config.answer_format)
    source = resolve_source(inputs.model_spec)
    device = resolve_device(config.device)
    dtype = resolve_dtype(config.dtype, device)
    out = Path(config.out)
    settings = {
        "scores_dataset": inputs.dataset_fingerprint,
        "model": source.display,
        "model_fingerprint": model_fingerprint(source),
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
    resuming = _check_settings(out, settings, config.overwrite)
    done, keep_bytes, rewards = complete_prefix(out, config.samples) if resuming else ([], 0, [])
    unknown = set(done) - set(inputs.gc_ids.tolist())
    if unknown:
        raise InputError(
            f"--out {out} holds gc_id {min(unknown)}, which this run does not roll out; pick another --out"
        )

    tokenizer = load_tokenizer(source)
    prompt_ids = sampling.render_prompts(tokenizer, inputs.questions, inputs.prompt_config)
    load_started = time.perf_counter()
    model = load_model(source, dtype=dtype, device=device)
    load_seconds = time.perf_counter() - load_started

    # Everything is checked: now the output may change.
    out.parent.mkdir(parents=True, exist_ok=True)
    if not resuming:
        out.write_bytes(b"")
    elif out.stat().st_size != keep_bytes:
        os.truncate(out, keep_bytes)
    atomic_write_json(_sidecar(out), {"settings": settings, "config": asdict(config)})

    finished = set(done)
    if on_total:
        on_total(len(inputs.gc_ids))
    if progress and finished:
        progress(len(finished))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    stop_ids = sampling.stop_ids(model, tokenizer)
    generated_tokens, truncated, generate_seconds, written = 0, 0, 0.0, 0
    with sampling.torch_threads(config.threads):
        for batch in sampling.plan_batches([len(p) for p in prompt_ids], config.prompts_per_batch):
            todo = [i for i in batch if int(inputs.gc_ids[i]) not in finished]
            if not todo:
                continue
            started = time.perf_counter()
            completions, counts = sampling.generate_batch(
                model,
                [prompt_ids[i] for i in batch],
                [int(inputs.gc_ids[i]) for i in batch],
                config,
                pad_id=pad_id,
                stop_ids=stop_ids,
                device=device,
            )
            generate_seconds += time.perf_counter() - started
            lines = []
            for position, index in enumerate(batch):
                if index not in todo:
                    continue
                for sample in range(config.samples):
                    row = position * config.samples + sample
                    reward = (
                        1.0
                        if checker(tokenizer.decode(completions[row], skip_special_tokens=True), inputs.answers[index])
                        else 0.0
                    )
                    rewards.append(reward)
                    generated_tokens += counts[row]
                    truncated += len(completions[row]) == counts[row] == config.max_new_tokens
                    lines.append(json.dumps({"gc_id": int(inputs.gc_ids[index]), "reward": reward}) + "\n")
            _append_lines(out, lines)
            written += len(lines)
            finished.update(int(inputs.gc_ids[i]) for i in todo)
            if progress:
                progress(len(todo))
    return RolloutResult(
        out=str(out),
        prompts=len(inputs.gc_ids),
        prompts_resumed=len(done),
        rollouts_written=written,
        mean_reward=float(np.mean(rewards)) if rewards else None,
        generated_tokens=generated_tokens,
        truncated_rollouts=int(truncated),
        generate_seconds=generate_seconds,
        load_seconds=load_seconds,
        settings=settings,
    )
