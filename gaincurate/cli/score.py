"""`gaincurate score` and `gaincurate merge`: score prompts into Arrow shards, complete an array job.

    gaincurate score data.jsonl --out scores --model Qwen/Qwen2.5-0.5B-Instruct
    gaincurate score --config scores/manifest-config.json --out rescored     # any manifest's `config`
    gaincurate merge scores                                                  # after every array part ran

Scoring settings resolve as defaults, then `--config FILE` (a `ScoreConfig`/`RunOptions` table), then the
flags that were given. Flags default to None, meaning "not given", so the file and defaults show through.
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from gaincurate.cli.options import AsJson, ConfigFile, Device, Quiet, ScoreConfigFile
from gaincurate.cli.progress import RowProgress, setup_logging
from gaincurate.cli.render import emit
from gaincurate.errors import Interrupted, InterruptedCommand
from gaincurate.model import SITES
from gaincurate.scoring.config import BACKENDS, DEBIAS, RunOptions, ScoreConfig

SCORE_EXAMPLES = (
    "Examples:\n\n"
    "* `gaincurate score --out scores` scores the bundled sample prompts with the embedded SmolLM2-135M.\n\n"
    "* `gaincurate score data/math.jsonl --model Qwen/Qwen2.5-0.5B-Instruct --out scores --limit 1000`\n\n"
    "* `gaincurate score my_prompts.parquet --prompt-column question --no-few-shot --debias length --out s`\n\n"
    "* `torchrun --nproc-per-node 8 -m gaincurate score data.parquet --model M --out s` (docs/scale-out.md)"
)
MERGE_EXAMPLES = "Example:\n\n* `gaincurate merge scores` after every `--num-shards 8 --shard-index I` part has run"

Dataset = Annotated[
    str | None,
    typer.Argument(
        help="A .json/.jsonl/.parquet/.arrow/.csv file, a save_to_disk folder or a Hub id. "
        "Default: the bundled sample math prompts."
    ),
]
Out = Annotated[
    str | None, typer.Option("--out", "-o", help="Output directory for shards and manifest. [default: scores]")
]
Model = Annotated[
    str | None, typer.Option(help="Hub id, local model folder or .gguf file. Default: embedded SmolLM2-135M.")
]
Split = Annotated[str | None, typer.Option(help="Dataset split (Hub ids and saved DatasetDicts).")]
PromptColumn = Annotated[
    str | None,
    typer.Option(
        help="Column holding the question; A.B reads field B of struct column A. [default: problem; verl's: prompt]"
    ),
]
AnswerColumn = Annotated[
    str | None,
    typer.Option(
        help="Column holding the reference answer (for trainer exports), or a struct's field "
        "(`reward_model.ground_truth`). [default: answer; verl's layout: reward_model.ground_truth]"
    ),
]
Limit = Annotated[int | None, typer.Option(min=1, help="Score only the first N rows.")]
SystemPrompt = Annotated[str | None, typer.Option(help="System prompt text (default: a step-by-step, \\boxed{} one).")]
NoSystemPrompt = Annotated[bool, typer.Option("--no-system-prompt", help="Use no system prompt.")]
FewShot = Annotated[str | None, typer.Option(help="JSON file: a list of {question, answer} turns (default: one).")]
NoFewShot = Annotated[bool, typer.Option("--no-few-shot", help="Use no few-shot turns.")]
NoChatTemplate = Annotated[bool, typer.Option("--no-chat-template", help="Render plain 'Question:/Answer:' text.")]
Layer = Annotated[
    int | None, typer.Option(help="Decoder layer of the site; negative counts from the end. [default: -1]")
]
Site = Annotated[Literal[SITES] | None, typer.Option(help="Where the hidden states are read. [default: mlp-input]")]
MaxLength = Annotated[int | None, typer.Option(help="Truncate prompts to N tokens, context first. [default: 4096]")]
BatchTokens = Annotated[
    int | None, typer.Option(help="Padded tokens per forward batch. [default: measured on CPU, 16384 on CUDA]")
]
Dtype = Annotated[
    str | None,
    typer.Option(
        help="auto, float32, bfloat16, float16 or int8 (torchao). auto: on CPU the fastest measured here "
        "that ranks like float32. [default: auto]"
    ),
]
NoPrefixCache = Annotated[
    bool, typer.Option("--no-prefix-cache", help="Run the shared system/few-shot prefix for every row.")
]
Backend = Annotated[Literal[BACKENDS] | None, typer.Option(help="Segment-sum backend. [default: auto]")]
InterWeight = Annotated[float | None, typer.Option(help="w in score = intra + w * inter. [default: 1]")]
Debias = Annotated[
    Literal[DEBIAS] | None, typer.Option(help="length: rank by the residual after a log-length fit. [default: none]")
]
Embed = Annotated[
    bool, typer.Option("--embed", help="Store the mean-pooled question embedding (the default; dots needs it).")
]
NoEmbed = Annotated[
    bool, typer.Option("--no-embed", help="Leave the embedding out (2 bytes x hidden size per row); not for dots.")
]
EmbedLayer = Annotated[int | None, typer.Option(help="Layer for --embed (default: the scoring layer).")]
ShardRows = Annotated[
    int | None,
    typer.Option(
        "--shard-rows", "--shard-size", min=1,
        help="Rows per shard: the unit of resume. [default: the --out directory's, else 1000]",
    ),
]  # fmt: skip
Threads = Annotated[int | None, typer.Option(min=1, help="Torch CPU threads. [default: one per core]")]
NumShards = Annotated[int | None, typer.Option(help="Array jobs: split the work into K parts (with --shard-index).")]
ShardIndex = Annotated[
    int | None, typer.Option(help="Array jobs: which part (0..K-1) this process writes; then `gaincurate merge`.")
]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an existing scores directory.")]
AllowMissingAnswers = Annotated[
    bool,
    typer.Option(
        "--allow-missing-answers", help="Score rows without an answer (counted in the manifest) instead of refusing."
    ),
]


def score(
    dataset: Dataset = None,
    out: Out = None,
    model: Model = None,
    split: Split = None,
    prompt_column: PromptColumn = None,
    answer_column: AnswerColumn = None,
    limit: Limit = None,
    system_prompt: SystemPrompt = None,
    no_system_prompt: NoSystemPrompt = False,
    few_shot: FewShot = None,
    no_few_shot: NoFewShot = False,
    no_chat_template: NoChatTemplate = False,
    layer: Layer = None,
    site: Site = None,
    max_length: MaxLength = None,
    batch_tokens: BatchTokens = None,
    no_prefix_cache: NoPrefixCache = False,
    dtype: Dtype = None,
    device: Device = None,
    backend: Backend = None,
    inter_weight: InterWeight = None,
    debias: Debias = None,
    embed: Embed = False,
    no_embed: NoEmbed = False,
    embed_layer: EmbedLayer = None,
    shard_rows: ShardRows = None,
    threads: Threads = None,
    num_shards: NumShards = None,
    shard_index: ShardIndex = None,
    overwrite: Overwrite = False,
    allow_missing_answers: AllowMissingAnswers = False,
    config: ScoreConfigFile = None,
    quiet: Quiet = False,
    as_json: AsJson = False,
) -> None:
    """Score every prompt by hidden-state angle concentration and write Arrow shards.

    Re-running the same command resumes after a crash; a different model or config is refused.
    """
    resolved, options = resolve_score_config(dict(locals()))  # first, so `locals()` holds just the parameters
    setup_logging(quiet or as_json)  # before the heavy imports, so other libraries' bars see it
    from gaincurate.scoring import score as run_score

    try:
        with RowProgress("scoring", quiet=quiet or as_json) as progress:
            manifest = run_score(resolved, options, progress=progress)
    except Interrupted as stopped:
        raise InterruptedCommand(_what_was_kept(stopped)) from None
    emit(manifest, as_json=as_json, human=lambda stdout: _draw_result(stdout, manifest, options))


def merge(
    scores_dir: Annotated[Path, typer.Argument(help="A directory scored with --num-shards/--shard-index.")],
    config: ConfigFile = None,
    as_json: AsJson = False,
) -> None:
    """Complete the manifest of an array-job scoring run once all its parts are present."""
    from gaincurate.scoring import merge as run_merge

    manifest = run_merge(scores_dir)
    emit(
        manifest, as_json=as_json, human=lambda stdout: _draw_result(stdout, manifest, RunOptions(out=str(scores_dir)))
    )


# `score` flags passed on under their own names (None: not given, so the config file or the default applies).
_PASSED_ON = ("dataset", "out", "model", "split", "prompt_column", "answer_column", "limit", "layer", "site",
              "max_length", "batch_tokens", "dtype", "device", "backend", "inter_weight", "debias", "embed_layer",
              "shard_rows", "threads", "num_shards", "shard_index", "system_prompt")  # fmt: skip


def resolve_score_config(given: dict[str, Any]) -> tuple[ScoreConfig, RunOptions]:
    """Defaults, then `--config FILE`, then the flags given: the `no_*` switches become config values."""
    from gaincurate.prompts import load_few_shot
    from gaincurate.scoring.config import build_config

    flags = {name: given[name] for name in _PASSED_ON}
    if given["no_system_prompt"]:
        flags["system_prompt"] = ""
    flags["few_shot"] = (
        () if given["no_few_shot"] else (load_few_shot(given["few_shot"]) if given["few_shot"] else None)
    )
    flags["chat_template"] = False if given["no_chat_template"] else None
    flags["embed"] = False if given["no_embed"] else True if given["embed"] else None
    flags["prefix_cache"] = False if given["no_prefix_cache"] else None
    flags["overwrite"] = True if given["overwrite"] else None
    flags["allow_missing_answers"] = True if given["allow_missing_answers"] else None
    flags["quiet"] = True if given["quiet"] or given["as_json"] else None
    file_values = score_config_file(given["config"]) if given["config"] is not None else {}
    resolved, options = build_config(file_values, flags)
    if resolved.system_prompt == "":
        resolved = resolved.replace(system_prompt=None)
    return resolved, options


def score_config_file(path: Path) -> dict[str, Any]:
    """A scoring `--config FILE`: its keys are `ScoreConfig` and `RunOptions` fields, checked by type."""
    from gaincurate.config_file import read_config_file

    schema = {**typing.get_type_hints(ScoreConfig), **typing.get_type_hints(RunOptions), "shard_size": int | None}
    return read_config_file(path, schema)


def _what_was_kept(stopped: Interrupted) -> str:
    """Ctrl-C's line: "finished work is kept" only when a whole shard was finished."""
    if stopped.kept == 0:
        return (
            f"interrupted before the first shard ({stopped.piece_rows} rows) was complete, so nothing is kept "
            "and the same command starts over; a smaller --shard-rows keeps work more often"
        )
    return (
        f"interrupted; {stopped.kept} of {stopped.total} shards ({stopped.piece_rows} rows each) are kept in "
        f"{stopped.where}: run the same command again to resume"
    )


def _draw_result(stdout: Any, manifest: dict[str, Any], options: RunOptions) -> None:
    if manifest.get("already_complete"):
        stdout.line(f"{options.out} is already complete ({manifest['rows']} rows); nothing to score.")
        stdout.line(f"Next: gaincurate show {options.out}")
        return
    if not manifest["complete"]:
        stdout.line(
            f"Part {options.shard_index} of {options.num_shards} is written; run `gaincurate merge {options.out}` "
            "once every part has finished."
        )
        return
    diagnostics, timings = manifest["diagnostics"], manifest["timings"]
    flagged = {k: v for k, v in diagnostics["status_counts"].items() if k != "ok"}
    spearman = diagnostics["spearman_score_vs_question_tokens"]
    stdout.line(
        f"Scored {manifest['rows']} rows into {options.out} in {timings['score_seconds']:.1f}s "
        f"({timings['shards_resumed']} shard(s) resumed); Spearman(score, question tokens) = "
        f"{'n/a' if spearman is None else f'{spearman:+.3f}'}; flagged rows: {sum(flagged.values())}."
    )
    answers = manifest.get("answers") or {}
    if answers.get("column") and not answers.get("present"):
        stdout.line(
            f"No {answers['column']!r} column: {answers['missing']} row(s) scored without an answer "
            "(--allow-missing-answers); rewards that check answers need --answer-column NAME."
        )
    elif answers.get("missing"):
        stdout.line(f"{answers['missing']} row(s) have no {answers['column']!r} answer (--allow-missing-answers).")
    stdout.line(f"Next: gaincurate show {options.out}")


def register(app: typer.Typer) -> None:
    app.command(epilog=SCORE_EXAMPLES)(score)
    app.command(epilog=MERGE_EXAMPLES)(merge)
