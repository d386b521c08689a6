"""`gaincurate show DIR`: the top and bottom prompts, the score histogram, the length confound and the timings.

gaincurate show scores --against difficulty --top 10
gaincurate show scores --json | jq .spearman
"""

from __future__ import annotations

from typing import Annotated

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
    from gaincurate.show import render, summarize

    summary = summarize(scores_dir, against=against, top=top)
    emit(summary, as_json=as_json, human=lambda stdout: render(stdout.console, summary))


def register(app: typer.Typer, panel: str) -> None:
    app.command(epilog=SHOW_EXAMPLES, rich_help_panel=panel)(show)
