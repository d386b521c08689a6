"""`gaincurate show DIR`: the top and bottom prompts, the score histogram, the length confound and the timings.

gaincurate show scores --against difficulty --top 10
gaincurate show scores --json | jq .spearman
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from gaincurate.cli.options import AsJson, ConfigFile, ScoresDirArgument
from gaincurate.cli.render import emit

SHOW_EXAMPLES = (
    "Examples:\n\n* `gaincurate show scores`\n\n* `gaincurate show scores --against difficulty --top 10`\n\n"
    "* `gaincurate show scores --json | jq .spearman`"
)


def show(
    scores_dir: ScoresDirArgument,
    against: Annotated[
        list[str] | None, typer.Option(help="Numeric input column to correlate the ranking with (repeatable).")
    ] = None,
    top: Annotated[int, typer.Option(min=0, help="How many top and bottom prompts to list.")] = 5,
    config: ConfigFile = None,
    as_json: AsJson = False,
) -> None:
    """Show the top and bottom prompts, the score histogram, the length confound and the timings."""
    from gaincurate.shards import read_manifest
    from gaincurate.show import render, summarize

    summary = summarize(scores_dir, against=against, top=top)
    summary["default_reads"] = default_reads(read_manifest(scores_dir), summary["columns"])
    emit(summary, as_json=as_json, human=lambda stdout: render(stdout.console, summary))


# What each signal a strategy may need is, in `show`'s words (`About.needs`).
SIGNAL_WORDS = {
    "embeddings": "the question embeddings",
    "likelihood": "the policy's likelihood of each reference answer, refreshed between epochs",
    "scores": "this angle score",
    "fresh_scores": "this angle score, refreshed between epochs",
}


def default_reads(manifest: dict[str, Any], columns: list[str]) -> str:
    """Which signals the default strategy reads on these scores, so that what `show` prints first says whether this
    ranking is the one a run draws by."""
    from gaincurate.difficulty.reference import RESCORE_HINT
    from gaincurate.schedule.config import DEFAULT_STRATEGY, ScheduleConfig
    from gaincurate.schedule.strategies.contract import EMBEDDINGS, LIKELIHOOD

    config = ScheduleConfig(strategy=DEFAULT_STRATEGY).resolved(manifest)
    needs = set(config.strategy_class.about.needs) & set(SIGNAL_WORDS)
    if EMBEDDINGS in needs and "gc_embedding" not in columns:  # `schedule init` refuses these scores, with this hint
        cannot = f"the default strategy ({DEFAULT_STRATEGY}) cannot run on these scores (no gc_embedding column)"
        return f"{cannot}: {RESCORE_HINT}"
    if getattr(config.options, "likelihood", False):
        needs.add(LIKELIHOOD)  # decided from the manifest as a run would decide it
    read = " and ".join(SIGNAL_WORDS[need] for need in sorted(needs)) or "none of these columns"
    ranked = "reads this score" if needs & {"scores", "fresh_scores"} else "does not rank by this score"
    return f"the default strategy ({DEFAULT_STRATEGY}) {ranked}: it fits pass rates on {read}"


def register(app: typer.Typer, panel: str) -> None:
    app.command(epilog=SHOW_EXAMPLES, rich_help_panel=panel)(show)
