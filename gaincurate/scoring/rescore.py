"""Re-scoring chosen rows of a scores directory with a newer checkpoint, or a live model inside a trainer.

The prompt format, site, layer and metric settings come from the directory's manifest, so the fresh
scores are comparable with the stored ones. Used by `gaincurate schedule` and the trainer integrations.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gaincurate.adapters import ADAPTER_CONFIG, has_tokenizer, is_adapter_folder, peft_unwrapped
from gaincurate.errors import ConfigError, GaincurateError, InputError, ModelError
from gaincurate.model import (
    ModelSource,
    SiteForward,
    load_tokenizer,
    resolve_device,
    resolve_dtype,
    resolve_source,
)
from gaincurate.progress import NULL_PROGRESS, Progress
from gaincurate.prompts import PromptEncoder, for_column
from gaincurate.scoring.config import RunOptions, ScoreConfig, prompt_tokens, split_config
from gaincurate.scoring.dtype import load_in
from gaincurate.scoring.engine import Scorer, find_shared_prefix
from gaincurate.shards import read_manifest, read_scores


def rescore(
    scores_dir: Path,
    ids: Sequence[int],
    *,
    checkpoint: str | Path | None = None,
    model: Any = None,
    tokenizer: Any = None,
    progress: Progress = NULL_PROGRESS,
    nproc: int = 1,
) -> np.ndarray:
    """Re-score rows `ids` (gc_id) of a scores directory with a checkpoint folder or a live model.

    Returns gc_score in the order of `ids`. With `nproc` > 1 (checkpoints only) the rows are scored by
    `torchrun --nproc-per-node nproc -m gaincurate score`.
    """
    config, fmt = prompt_format(scores_dir)
    questions = questions_and_answers(scores_dir, ids, config.prompt_column)[0]
    if (model is None) != (tokenizer is None):
        raise ConfigError("rescore needs both a live model and its tokenizer, or a checkpoint")
    if nproc > 1 and model is None and checkpoint is not None:
        return _rescore_in_processes(config, questions, checkpoint, nproc)
    if model is None:
        if checkpoint is None:
            raise ConfigError("rescore needs --checkpoint or a live model")
        source = checkpoint_source(checkpoint, config.model)
        device = resolve_device(config.device)
        tokenizer = checkpoint_tokenizer(source, config)
        dtype = config.dtype if config.dtype == "int8" else resolve_dtype(config.dtype, device)
        model = load_in(source, dtype, device)
        site = SiteForward(model, layer=config.layer, site=config.site)
    else:
        device = str(next(model.parameters()).device)
        site = SiteForward(peft_unwrapped(model), layer=config.layer, site=config.site, prune=False)
    was_training = model.training
    model.eval()
    try:
        encoder = PromptEncoder(tokenizer, fmt, prompt_tokens(config.max_length, model.config))
        prefix = find_shared_prefix(encoder) if config.prefix_cache else None
        scorer = Scorer(site, device=device, backend=config.backend, config=config.replace(embed=False), prefix=prefix,
                        batch_tokens=config.batch_tokens)  # fmt: skip
        result = scorer.score(encoder.encode(questions), progress)
    finally:
        site.close()
        if was_training:
            model.train()
    return result["score"]


def checkpoint_source(checkpoint: str | Path | None, scored_model: str | None) -> ModelSource:
    """A checkpoint (None: the embedded model) as a model to load. An adapter's base is the one its config names, or
    else `scored_model`, the model the prompts were scored with (a base of another shape is refused:
    `gaincurate.adapters`)."""
    scored = None
    if checkpoint is not None and is_adapter_folder(Path(checkpoint)):
        with contextlib.suppress(ModelError):  # the scored model gone: the adapter's own base, if it names one here
            scored = resolve_source(scored_model)
    return resolve_source(None if checkpoint is None else str(checkpoint), scored_with=scored)


def checkpoint_tokenizer(source: ModelSource, config: ScoreConfig) -> Any:
    """The checkpoint's own tokenizer, or the scored model's when the trainer saved the model alone (a script's
    `model.save_pretrained` without `tokenizer.save_pretrained`): training does not change the tokenizer."""
    if source.kind == "folder" and not has_tokenizer(source.folder):
        return load_tokenizer(resolve_source(config.model))
    return load_tokenizer(source)


def prompt_format(scores_dir: Path) -> tuple[ScoreConfig, Any]:
    """The scoring config of a scores directory, in the dtype its scores were computed in (what `auto` chose), and
    the prompt format its prompts were built with."""
    manifest = read_manifest(scores_dir)
    config, _ = split_config(manifest["config"])
    config = config.replace(dtype=manifest.get("dtype") or config.dtype)  # a fresh score comparable with the stored
    # Scores without the `as_is` mark wrapped even TRL's `prompt` column in the question format: re-score them alike.
    fmt = for_column(config.prompt_format, config.prompt_column)
    return config, dataclasses.replace(fmt, as_is=fmt.as_is and manifest.get("prompt_format") == "as_is")


def questions_and_answers(
    scores_dir: Path, ids: Sequence[int], prompt_column: str, answer_column: str | None = None
) -> tuple[list[Any], list[Any] | None]:
    """The prompt text of rows `ids` (and their answers, given `answer_column`), in that order."""
    from gaincurate.columns import column_values, has_column

    columns = ["gc_id", prompt_column] + ([answer_column.split(".")[0]] if answer_column else [])
    table = read_scores(scores_dir, columns=list(dict.fromkeys(columns)))
    id_column = table.column("gc_id").to_numpy()
    position = {int(gc_id): i for i, gc_id in enumerate(id_column)}
    missing = [i for i in ids if int(i) not in position]
    if missing:
        raise InputError(f"gc_id {missing[0]} is not in {scores_dir}; it holds ids 0..{len(id_column) - 1}")
    rows = table.take([position[int(i)] for i in ids])
    questions = rows.column(prompt_column).to_pylist()
    if not answer_column:
        return questions, None
    if not has_column(rows, answer_column):
        raise InputError(f"{scores_dir} has no column {answer_column!r}; score the data with its answer column")
    return questions, column_values(rows, answer_column)


class RescoreError(GaincurateError):
    """Re-scoring with torchrun failed or was stopped; the CLI exits with `exit_code` (128 + N after signal N)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _rescore_in_processes(config: ScoreConfig, questions: list[Any], checkpoint: str | Path, nproc: int) -> np.ndarray:
    """Score `questions` with the multi-process `score` path, reusing the scores directory's config.

    torchrun runs under `gaincurate.supervisor`, as `schedule run`'s trainer does: a signal to us stops its workers
    too, and so does our death. Its output goes to a log kept (and named) only when it fails."""
    import shlex
    import shutil
    import sys
    import tempfile

    from gaincurate.supervisor import Stopped, supervise

    with tempfile.TemporaryDirectory(prefix="gaincurate-rescore-") as tmp:
        folder = Path(tmp)
        data = folder / "rows.jsonl"
        data.write_text("".join(json.dumps({config.prompt_column: q}) + "\n" for q in questions))
        model = _workers_model(checkpoint_source(checkpoint, config.model), str(checkpoint), config, folder)
        settings = config.replace(
            dataset=str(data), split=None, limit=None, model=model, embed=False, debias="none",
            answer_column=None,
        ).to_dict()  # fmt: skip
        shard_rows = max(1, math.ceil(len(questions) / (2 * nproc)))
        settings.update(RunOptions(out=str(folder / "scores"), quiet=True, shard_rows=shard_rows).to_dict())
        (folder / "config.json").write_text(json.dumps(settings))
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
                   "-m", "gaincurate", "score", "--config", str(folder / "config.json")]  # fmt: skip
        log = folder / "torchrun.log"
        try:
            code = supervise(shlex.join(command), env=os.environ, log=log)
        except Stopped as stopped:
            raise RescoreError(
                f"stopped by {stopped} while re-scoring with {nproc} processes (torchrun); its workers were stopped "
                "too, and a step is recorded only once it finishes: run the same command again to redo it",
                exit_code=128 + stopped.signum,
            ) from None
        if code != 0:
            handle, kept = tempfile.mkstemp(prefix="gaincurate-rescore-", suffix=".log")  # outlives `folder`
            os.close(handle)
            shutil.copyfile(log, kept)
            raise RescoreError(
                f"re-scoring with {nproc} processes (torchrun) failed with exit code {code}{_cause(log)}; the full "
                f"log is {kept}: fix what it names and run the same command again"
            )
        return read_scores(folder / "scores")["gc_score"].to_numpy(zero_copy_only=False).astype(np.float64)


def _workers_model(source: ModelSource, checkpoint: str, config: ScoreConfig, folder: Path) -> str:
    """The checkpoint as each worker loads it; a worker knows no scored model to fall back on. Where it could not
    load the checkpoint as saved, the checkpoint's files are linked into `folder`: an adapter's config then names
    the base found here (its own may name none), and a model saved without its tokenizer gets the scored model's."""
    adapter = source.kind == "adapter" and source.base is not None
    untokenized = source.kind == "folder" and not has_tokenizer(source.folder)
    if not (adapter or untokenized):
        return checkpoint
    linked = folder / "checkpoint"
    linked.mkdir()
    for file in Path(source.folder).iterdir():
        if not (adapter and file.name == ADAPTER_CONFIG):
            (linked / file.name).symlink_to(file.resolve())
    if untokenized:
        checkpoint_tokenizer(source, config).save_pretrained(linked)
    if adapter:
        base = source.base
        named = base.folder if base.kind == "hub" else str(Path(base.folder, base.gguf_file or "").resolve())
        adapter_config = json.loads((Path(source.folder) / ADAPTER_CONFIG).read_text())
        (linked / ADAPTER_CONFIG).write_text(json.dumps({**adapter_config, "base_model_name_or_path": named}))
    return str(linked)


def _cause(log: Path) -> str:
    """The workers' own one-line error (`gaincurate: error: ...`) from torchrun's log, when one wrote it."""
    with log.open("rb") as file:
        file.seek(max(0, file.seek(0, os.SEEK_END) - 64 * 1024))  # a failing worker's line is near the end
        lines = file.read().decode(errors="replace").splitlines()
    said = [line.split("gaincurate: error:", 1)[1].strip() for line in lines if "gaincurate: error:" in line]
    return f": a worker says {said[-1][:500]}" if said else ""
