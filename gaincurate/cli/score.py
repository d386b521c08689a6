"""`gaincurate score` and `gaincurate merge`: score prompts into Arrow shards, complete an array job.

    gaincurate score data.jsonl --out scores --model Qwen/Qwen2.5-0.5B-Instruct
    gaincurate score --config scores/manifest-config.json --out rescored     # any manifest's `config`
    gaincurate merge scores                                                  # after every array part ran

Scoring settings resolve as defaults, then `--config FILE` (a `ScoreConfig`/`RunOptions` table), then the
flags that were given. The options are generated from those two dataclasses' fields (`gaincurate.cli.fields`),
each default and its help written once, in the field; they default to None, meaning "not given", so the file
and the defaults show through.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from gaincurate.cli.fields import field_named, field_parameters, fixed_parameters, help_text, install
from gaincurate.cli.options import AsJson, ConfigFile, Quiet, ScoreConfigFile
from gaincurate.cli.progress import RowProgress, setup_logging
from gaincurate.cli.render import emit
from gaincurate.errors import Interrupted, InterruptedCommand, settings_from_file, shell_word
from gaincurate.scoring.config import RunOptions, ScoreConfig

SCORE_EXAMPLES = (
    "Examples:\n\n"
    "* `gaincurate score --out scores` scores the bundled sample prompts with the embedded SmolLM2-135M.\n\n"
    "* `gaincurate score data/math.jsonl --model Qwen/Qwen2.5-0.5B-Instruct --out scores --limit 1000`\n\n"
    "* `gaincurate score my_prompts.parquet --prompt-column question --no-few-shot --debias length --out s`\n\n"
    "* `torchrun --nproc-per-node 8 -m gaincurate score data.parquet --model M --out s` (docs/scale-out.md)"
)
MERGE_EXAMPLES = "Example:\n\n* `gaincurate merge scores` after every `--num-shards 8 --shard-index I` part has run"

Dataset = Annotated[str | None, typer.Argument(help=help_text(field_named(ScoreConfig, "dataset")))]
# Switches that set a field to "none" rather than a value of their own, so they are not fields themselves.
# `score --help` in panels, the common options first: the settings most runs leave alone are grouped by what they set.
_PANELS = {
    "data columns": ("split", "prompt_column", "answer_column", "allow_missing_answers", "drop_duplicates"),
    "prompt format": ("system_prompt", "few_shot", "chat_template", "max_length"),
    "what is stored": ("layer", "site", "inter_weight", "debias", "embed", "embed_layer"),
    "speed": ("batch_tokens", "prefix_cache", "dtype", "device", "backend", "threads"),
    "array jobs and shards": ("num_shards", "shard_index", "shard_rows"),
}
PANEL_OF = {name: panel for panel, names in _PANELS.items() for name in names}
NoSystemPrompt = Annotated[
    bool, typer.Option("--no-system-prompt", help="Use no system prompt.", rich_help_panel="prompt format")
]
NoFewShot = Annotated[
    bool, typer.Option("--no-few-shot", help="Use no few-shot turns.", rich_help_panel="prompt format")
]


def score(
    dataset: Dataset = None,
    *,
    no_system_prompt: NoSystemPrompt = False,
    no_few_shot: NoFewShot = False,
    config: ScoreConfigFile = None,
    quiet: Quiet = False,
    as_json: AsJson = False,
    **settings: Any,
) -> None:
    """Score every prompt in one model pass: the embedding dots and probe read, GAIN-RL's angle concentration.

    Writes Arrow shards; re-running the same command resumes after a crash; a different model or config is refused.
    """
    switches = {"no_system_prompt": no_system_prompt, "no_few_shot": no_few_shot, "quiet": quiet, "as_json": as_json}
    resolved, options, as_json = resolve_score_config({"dataset": dataset, "config": config, **switches, **settings})
    quiet = options.quiet or as_json  # the command line's or the config file's
    setup_logging(quiet)  # before the heavy imports, so other libraries' bars see it
    from gaincurate.scoring import score as run_score

    try:
        with RowProgress("scoring", quiet=quiet) as progress:
            manifest = run_score(resolved, options, progress=progress)
    except Interrupted as stopped:
        raise InterruptedCommand(_what_was_kept(stopped)) from None
    emit(manifest, as_json=as_json, human=lambda stdout: _draw_result(stdout, manifest, options))


def _with_setting_options(command: Any) -> Any:
    """`score` taking every `ScoreConfig` and `RunOptions` field as an option, generated from the fields; the
    `--no-system-prompt` and `--no-few-shot` switches right after the fields they empty."""
    dataset, *fixed = fixed_parameters(command)
    after = {"system_prompt": fixed.pop(0), "few_shot": fixed.pop(0)}
    generated = [
        *field_parameters(RunOptions, only=("out",)),
        *field_parameters(ScoreConfig, exclude=("dataset",), panels=PANEL_OF),
        *field_parameters(RunOptions, exclude=("out", "quiet"), panels=PANEL_OF),  # --quiet is every command's
    ]
    ordered = []
    for parameter in generated:
        ordered += [parameter, after[parameter.name]] if parameter.name in after else [parameter]
    return install(command, [dataset], [*ordered, *fixed])


_with_setting_options(score)


def merge(
    scores_dir: Annotated[Path, typer.Argument(help="A directory scored with --num-shards/--shard-index.")],
    config: ConfigFile = None,
    as_json: AsJson = False,
) -> None:
    """Complete the manifest of an array-job scoring run once all its parts are present."""
    from gaincurate.scoring import merge as run_merge

    manifest = run_merge(scores_dir)
    options = RunOptions(out=str(scores_dir))
    emit(manifest, as_json=as_json, human=lambda stdout: _draw_result(stdout, manifest, options, command="merge"))


def resolve_score_config(given: dict[str, Any]) -> tuple[ScoreConfig, RunOptions, bool]:
    """Defaults, then `--config FILE`, then the flags given (None: not given): the `no_*` switches become values.
    Also whether to print JSON: `--json`, or `json = true` in the file."""
    from gaincurate.prompts import load_few_shot
    from gaincurate.scoring.config import build_config

    file_values = score_config_file(given["config"]) if given["config"] is not None else {}
    given = given | {key: given[key] or bool(file_values.pop(name, False)) for name, key in _FILE_SWITCHES.items()}
    names = {field.name for cls in (ScoreConfig, RunOptions) for field in dataclasses.fields(cls)}
    flags = {name: value for name, value in given.items() if name in names}
    if given["no_system_prompt"]:
        flags["system_prompt"] = ""
    flags["few_shot"] = (
        () if given["no_few_shot"] else (load_few_shot(given["few_shot"]) if given["few_shot"] else None)
    )
    flags["quiet"] = True if given["quiet"] or given["as_json"] else None
    if given["config"] is not None:  # a bad value the file gave is named as its key (the settings' checks)
        settings_from_file(given["config"], lambda name: name in file_values and flags.get(name) is None)
    resolved, options = build_config(file_values, flags)
    if resolved.system_prompt == "":
        resolved = resolved.replace(system_prompt=None)
    return resolved, options, given["as_json"]


# The switches of `score` that are no setting, as a config file names them (their long names), and their parameters.
_FILE_SWITCHES = {"json": "as_json", "no_system_prompt": "no_system_prompt", "no_few_shot": "no_few_shot"}


def score_config_file(path: Path) -> dict[str, Any]:
    """A scoring `--config FILE`: its keys are `ScoreConfig` and `RunOptions` fields, checked by type, and `score`'s
    switches by their long names (`json = true`, as every command takes it)."""
    from gaincurate.config_file import read_config_file

    schema = {**typing.get_type_hints(ScoreConfig), **typing.get_type_hints(RunOptions)}
    fields = [*dataclasses.fields(ScoreConfig), *dataclasses.fields(RunOptions)]
    schema |= {field.name: Literal[field.metadata["choices"]] for field in fields if field.metadata.get("choices")}
    return read_config_file(path, schema | dict.fromkeys(_FILE_SWITCHES, bool | None))


def _what_was_kept(stopped: Interrupted) -> str:
    """Ctrl-C's line: "finished work is kept" only when a whole shard was finished."""
    if stopped.kept == 0:
        return (
            f"interrupted before the first shard ({stopped.piece_rows} rows) was complete, so nothing is kept "
            "and the same command starts over; a smaller --shard-rows keeps work more often"
        )
    again = (
        "the same command without --overwrite (which would delete them)" if stopped.overwrite else "the same command"
    )
    return (
        f"interrupted; {stopped.kept} of {stopped.total} shards ({stopped.piece_rows} rows each) are kept in "
        f"{stopped.where}: run {again} again to resume"
    )


def _draw_result(stdout: Any, manifest: dict[str, Any], options: RunOptions, command: str = "score") -> None:
    if manifest.get("already_complete"):
        stdout.line(f"{options.out} is already complete ({manifest['rows']} rows); nothing to {command}.")
        stdout.line(f"Next: gaincurate show {shell_word(options.out)}")
        return
    if not manifest["complete"]:
        stdout.line(
            f"Part {options.shard_index} of {options.num_shards} is written; run "
            f"`gaincurate merge {shell_word(options.out)}` once every part has finished."
        )
        return
    diagnostics, timings = manifest["diagnostics"], manifest["timings"]
    flagged = {k: v for k, v in diagnostics["status_counts"].items() if k != "ok"}
    if manifest.get("debiased"):
        scored = manifest["rows"] - diagnostics["unscored_rows"]  # a row without a score is not ranked
        stdout.line(
            f"Re-ranked the {scored} scored rows of {options.out} with --debias "
            f"{manifest['config']['debias']} in {timings['debias_seconds']:.2f}s, without scoring or loading the "
            f"model (the scoring pass's timings are kept); Spearman(score, question tokens) = "
            f"{_spearman_words(diagnostics)}."
        )
        stdout.line(f"Next: gaincurate show {shell_word(options.out)}")
        return
    stdout.line(
        f"Scored {manifest['rows']} rows into {options.out} in {timings['score_seconds']:.1f}s "
        f"({timings['shards_resumed']} shard(s) resumed); Spearman(score, question tokens) = "
        f"{_spearman_words(diagnostics)}; flagged rows: {sum(flagged.values())}."
    )
    answers = manifest.get("answers") or {}
    if answers.get("column") and not answers.get("present"):
        stdout.line(
            f"No {answers['column']!r} column: {answers['missing']} row(s) scored without an answer "
            "(--allow-missing-answers); rewards that check answers need --answer-column NAME."
        )
    elif answers.get("missing"):
        stdout.line(f"{answers['missing']} row(s) have no {answers['column']!r} answer (--allow-missing-answers).")
    stdout.line(f"Next: gaincurate show {shell_word(options.out)}")


def _spearman_words(diagnostics: dict[str, Any]) -> str:
    """How far the ranking is a length sort: the raw score's, and the debiased ranking's when there is one."""
    raw, debiased = (diagnostics.get(f"spearman_{name}_vs_question_tokens") for name in ("score", "debiased"))
    words = "n/a" if raw is None else f"{raw:+.3f}"
    return words if debiased is None else f"{words} raw, {debiased:+.3f} debiased"


def register(app: typer.Typer, panel: str) -> None:
    app.command(epilog=SCORE_EXAMPLES, rich_help_panel=panel)(score)


def register_merge(app: typer.Typer, panel: str) -> None:
    app.command(epilog=MERGE_EXAMPLES, rich_help_panel=panel)(merge)
