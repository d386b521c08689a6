"""`gaincurate example NAME [ARGS]`: run a trainer script that ships with the package, from any directory.

gaincurate example                               # list them
gaincurate example trl-epoch --data ... --epoch 0
gaincurate example --path trl-epoch              # its installed file, to copy and edit
"""

from __future__ import annotations

from typing import Annotated

import typer

EXAMPLES_HELP = (
    "Examples:\n\n"
    "* `gaincurate schedule run --run run --epochs 3 --trainer-cmd 'gaincurate example trl-epoch --data {epoch_data} "
    "--checkpoint {checkpoint} --output-dir {output_dir} --feedback-file {feedback_file} --epoch {epoch}'`\n\n"
    "* `gaincurate example --path trl-epoch` prints the script's installed path"
)


def example(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="trl-epoch or trl-inprocess; none: list them.")] = None,
    path: Annotated[
        bool, typer.Option("--path", help="Print the script's installed path instead of running it.")
    ] = False,
) -> None:
    """Run a shipped trainer script; every argument after NAME goes to the script (`NAME --help` for its own)."""
    from gaincurate.examples import EXAMPLES, example_path, run_example

    if name is not None and name.startswith("-"):  # unknown options land in NAME, as the script's own do after it
        ctx.fail(f"{name} is not an option of `gaincurate example`; NAME comes first, the script's options after it")
    if name is None:
        for key, what in EXAMPLES.items():
            typer.echo(f"{key:15} {what}")
        return
    if path:
        typer.echo(str(example_path(name)))
        return
    code = run_example(name, list(ctx.args))
    if code:
        raise typer.Exit(code)


def register(app: typer.Typer, panel: str) -> None:
    # Options are parsed up to NAME only: `example --help` is ours, `example trl-epoch --help` the script's.
    settings = {"allow_extra_args": True, "ignore_unknown_options": True, "allow_interspersed_args": False}
    app.command(epilog=EXAMPLES_HELP, context_settings=settings, rich_help_panel=panel)(example)
