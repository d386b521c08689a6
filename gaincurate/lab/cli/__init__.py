"""The lab's commands on `gaincurate`: `bench ...`, `difficulty ...` and `signal check`.

`register` is an entry point in the `gaincurate.commands` group (pyproject.toml): `gaincurate.cli` calls it only
when the command line is not a product command, so a run of `score`, `schedule`, `show`, ... never imports the lab.
"""

from __future__ import annotations

import typer


def register(app: typer.Typer, panel: str) -> None:
    """Add the lab's command groups to `app`, in `panel` of its help."""
    from gaincurate.lab.cli import bench, bench_tools, difficulty

    app.add_typer(bench.bench_app, name="bench", rich_help_panel=panel)
    app.add_typer(difficulty.app, name="difficulty", rich_help_panel=panel)
    app.add_typer(bench.signal_app, name="signal", rich_help_panel=panel)
    bench_tools.register(bench.bench_app)  # bench scoring|kernel|gpu|replay|profile, after curriculum
