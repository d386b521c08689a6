"""The `gaincurate` command line: thin Typer commands over the library.

Each command parses its flags, builds a frozen config, calls one library function and renders the
result with rich. Results go to stdout; progress and logs go to stderr. A `GaincurateError` is printed
as one line and exits with status 2 (set GAINCURATE_DEBUG=1 for the traceback); bugs are not caught.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from gaincurate.errors import GaincurateError

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
    rich_markup_mode="markdown",
    help="Choose which prompts an RL fine-tuning run trains on, and when (GAIN-RL angle concentration).",
)

Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or log lines on stderr.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout instead of tables.")]
ConfigFile = Annotated[
    str | None, typer.Option("--config", help="JSON or TOML file of option values; flags override it.")
]


def _stderr_console(quiet: bool) -> Any:
    from rich.console import Console

    return Console(stderr=True, quiet=quiet)


def _setup_logging(quiet: bool) -> None:
    from rich.logging import RichHandler

    handler = RichHandler(console=_stderr_console(quiet), show_path=False, show_time=False)
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, handlers=[handler], format="%(message)s")
    # transformers' own progress bars and warnings would duplicate ours.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


class RowProgress:
    """One rich progress bar on stderr with rows/s and ETA; silent when quiet or not a terminal."""

    def __init__(self, quiet: bool, description: str) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        console = _stderr_console(quiet)
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            disable=quiet or not console.is_terminal,
        )
        self._task = self._progress.add_task(description, total=None, rate="")

    def set_total(self, total: int) -> None:
        self._progress.update(self._task, total=total)

    def advance(self, rows: int) -> None:
        self._progress.advance(self._task, rows)
        speed = self._progress.tasks[0].speed
        self._progress.update(self._task, rate=f"{speed:.1f} rows/s" if speed else "")

    def __enter__(self) -> RowProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()


@app.command(
    epilog="Examples:\n\n"
    "* `gaincurate score --out scores` scores the bundled sample prompts with the embedded SmolLM2-135M.\n\n"
    "* `gaincurate score data/math.jsonl --model Qwen/Qwen2.5-0.5B-Instruct --out scores --limit 1000`\n\n"
    "* `gaincurate score my_prompts.parquet --prompt-column question --no-few-shot --debias length --out s`"
)
def score(
    dataset: Annotated[
        str | None,
        typer.Argument(
            help="A .json/.jsonl/.parquet/.arrow/.csv file, a save_to_disk folder or a Hub id. "
            "Default: the bundled sample math prompts."
        ),
    ] = None,
    out: Annotated[
        str | None, typer.Option("--out", "-o", help="Output directory for shards and manifest. [default: scores]")
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Hub id, local model folder or .gguf file. Default: embedded SmolLM2-135M.")
    ] = None,
    split: Annotated[str | None, typer.Option(help="Dataset split (Hub ids and saved DatasetDicts).")] = None,
    prompt_column: Annotated[str | None, typer.Option(help="Column holding the question. [default: problem]")] = None,
    answer_column: Annotated[
        str | None, typer.Option(help="Column holding the reference answer (for trainer exports). [default: answer]")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Score only the first N rows.")] = None,
    system_prompt: Annotated[
        str | None, typer.Option(help="System prompt text (default: a step-by-step, \\boxed{} instruction).")
    ] = None,
    no_system_prompt: Annotated[bool, typer.Option("--no-system-prompt", help="Use no system prompt.")] = False,
    few_shot: Annotated[
        str | None, typer.Option(help="JSON list of {question, answer} turns (default: one worked example).")
    ] = None,
    no_few_shot: Annotated[bool, typer.Option("--no-few-shot", help="Use no few-shot turns.")] = False,
    no_chat_template: Annotated[
        bool, typer.Option("--no-chat-template", help="Render plain 'Question:/Answer:' text instead.")
    ] = False,
    layer: Annotated[
        int | None, typer.Option(help="Decoder layer of the site; negative counts from the end. [default: -1]")
    ] = None,
    site: Annotated[str | None, typer.Option(help="mlp-input (default) or residual.")] = None,
    max_length: Annotated[
        int | None, typer.Option(help="Truncate prompts to N tokens, context first. [default: 4096]")
    ] = None,
    batch_tokens: Annotated[
        int | None, typer.Option(help="Padded tokens per forward batch. [default: 512 on CPU, 16384 on CUDA]")
    ] = None,
    no_prefix_cache: Annotated[
        bool, typer.Option("--no-prefix-cache", help="Run the shared system/few-shot prefix for every row.")
    ] = False,
    dtype: Annotated[str | None, typer.Option(help="auto, float32, bfloat16 or float16.")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda[:N].")] = None,
    backend: Annotated[str | None, typer.Option(help="Segment-sum backend: auto, torch or triton.")] = None,
    inter_weight: Annotated[float | None, typer.Option(help="w in score = intra + w * inter. [default: 1]")] = None,
    debias: Annotated[
        str | None, typer.Option(help="none, or length: rank by the residual after a log-length fit.")
    ] = None,
    embed: Annotated[bool, typer.Option("--embed", help="Also store the mean-pooled question embedding.")] = False,
    embed_layer: Annotated[int | None, typer.Option(help="Layer for --embed (default: the scoring layer).")] = None,
    shard_size: Annotated[int | None, typer.Option(help="Rows per shard (the unit of resume). [default: 1000]")] = None,
    num_shards: Annotated[
        int | None, typer.Option(help="Array jobs: split the work into K parts (with --shard-index).")
    ] = None,
    shard_index: Annotated[
        int | None, typer.Option(help="Array jobs: which part (0..K-1) this process writes; then `gaincurate merge`.")
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing scores directory.")] = False,
    config: ConfigFile = None,
    quiet: Quiet = False,
    as_json: AsJson = False,
) -> None:
    """Score every prompt by hidden-state angle concentration and write Arrow shards.

    Re-running the same command resumes after a crash; a different model or config is refused.
    """
    from gaincurate.config import build_config, load_config_file
    from gaincurate.prompts import load_few_shot
    from gaincurate.scoring import score as run_score

    _setup_logging(quiet or as_json)
    flags: dict[str, Any] = {
        "dataset": dataset, "out": out, "model": model, "split": split, "prompt_column": prompt_column,
        "answer_column": answer_column, "limit": limit, "layer": layer, "site": site, "max_length": max_length,
        "batch_tokens": batch_tokens, "dtype": dtype, "device": device, "backend": backend,
        "inter_weight": inter_weight, "debias": debias, "embed_layer": embed_layer, "shard_size": shard_size,
        "num_shards": num_shards, "shard_index": shard_index,
        "system_prompt": system_prompt,
    }  # fmt: skip
    flags["system_prompt"] = "" if no_system_prompt else system_prompt
    flags["few_shot"] = () if no_few_shot else (load_few_shot(few_shot) if few_shot else None)
    flags["chat_template"] = False if no_chat_template else None
    flags["embed"] = True if embed else None
    flags["prefix_cache"] = False if no_prefix_cache else None
    flags["overwrite"], flags["quiet"] = overwrite, quiet
    resolved = build_config(load_config_file(config), flags)
    if resolved.system_prompt == "":
        resolved = resolved.replace(system_prompt=None)

    with RowProgress(quiet or as_json, "scoring") as progress:
        manifest = run_score(resolved, progress=progress.advance, on_total=progress.set_total)
    if as_json:
        print(json.dumps(manifest, indent=2, sort_keys=True))
    elif not manifest["complete"]:
        print(f"Part {resolved.shard_index} of {resolved.num_shards} is written; run `gaincurate merge {resolved.out}` "
              "once every part has finished.")  # fmt: skip
    else:
        _print_score_result(manifest, resolved.out)


def _print_score_result(manifest: dict[str, Any], out: str) -> None:
    from rich.console import Console

    diagnostics, timings = manifest["diagnostics"], manifest["timings"]
    flagged = {k: v for k, v in diagnostics["status_counts"].items() if k != "ok"}
    Console().print(
        f"Scored {manifest['rows']} rows into [bold]{out}[/] in {timings['score_seconds']:.1f}s "
        f"({timings['shards_resumed']} shard(s) resumed); "
        f"Spearman(score, question tokens) = {diagnostics['spearman_score_vs_question_tokens']:+.3f}; "
        f"flagged rows: {sum(flagged.values())}.\nNext: gaincurate show {out}"
    )


def _print_summary(scores_dir: Path, against: list[str] | None = None, top: int = 5) -> None:
    from rich.console import Console

    from gaincurate.show import render, summarize

    render(Console(), summarize(scores_dir, against=against, top=top))


@app.command(
    epilog="Examples:\n\n* `gaincurate show scores`\n\n* `gaincurate show scores --against difficulty --top 10`\n\n"
    "* `gaincurate show scores --json | jq .spearman`"
)
def show(
    scores_dir: Annotated[Path, typer.Argument(help="A directory written by `gaincurate score`.")],
    against: Annotated[
        list[str] | None, typer.Option(help="Numeric input column to correlate the ranking with (repeatable).")
    ] = None,
    top: Annotated[int, typer.Option(help="How many top and bottom prompts to list.")] = 5,
    as_json: AsJson = False,
) -> None:
    """Show the top and bottom prompts, the score histogram, the length confound and the timings."""
    from gaincurate.show import summarize

    if as_json:
        print(json.dumps(summarize(scores_dir, against=against, top=top), indent=2, sort_keys=True))
        return
    _print_summary(scores_dir, against=against, top=top)


@app.command(epilog="Example:\n\n* `gaincurate merge scores` after every `--num-shards 8 --shard-index I` part has run")
def merge(
    scores_dir: Annotated[Path, typer.Argument(help="A directory scored with --num-shards/--shard-index.")],
    as_json: AsJson = False,
) -> None:
    """Complete the manifest of an array-job scoring run once all its parts are present."""
    from gaincurate.scoring import merge as run_merge

    manifest = run_merge(scores_dir)
    if as_json:
        print(json.dumps(manifest, indent=2, sort_keys=True))
    else:
        _print_score_result(manifest, str(scores_dir))


def _mount_subcommands() -> None:
    """Sub-apps live beside their libraries; their modules import no torch, so --help stays fast."""
    from gaincurate.difficulty.cli import app as difficulty_app
    from gaincurate.difficulty.cli import rollout
    from gaincurate.schedule.cli import app as schedule_app

    app.add_typer(schedule_app, name="schedule")
    app.add_typer(difficulty_app, name="difficulty")
    app.command("rollout")(rollout)


_mount_subcommands()


def main() -> None:
    """Console entry point: run the app, turning user errors into one line on stderr."""
    try:
        app(standalone_mode=False)
    except GaincurateError as error:
        if os.environ.get("GAINCURATE_DEBUG") == "1":
            raise
        print(f"gaincurate: error: {error}", file=sys.stderr)
        sys.exit(error.exit_code)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        print("gaincurate: aborted", file=sys.stderr)
        sys.exit(130)
    except Exception as error:  # click's usage errors arrive here in non-standalone mode
        import click

        if isinstance(error, click.ClickException):
            error.show()
            sys.exit(error.exit_code)
        raise
