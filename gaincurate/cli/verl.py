"""`gaincurate verl ...`: the files verl's own launch reads (docs/verl.md).

    gaincurate verl export --scores scores/ --out all_prompts.parquet

The command only writes files; verl itself is not imported (and need not be installed here).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gaincurate.cli.fields import field_named, help_text
from gaincurate.cli.options import AsJson, ConfigFile, command_group
from gaincurate.cli.render import emit
from gaincurate.schedule.config import ScheduleConfig

app = command_group("Files for verl's own launch: the full prompt set its one-launch curriculum and sampler pick from.")


@app.command()
def export(
    scores: Annotated[Path, typer.Option("--scores", help="Scores directory written by `gaincurate score`.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Parquet file to write (verl's data.train_files).")],
    data_source: Annotated[
        str | None,
        typer.Option(help=help_text(field_named(ScheduleConfig, "data_source"))),
    ] = None,
    config: ConfigFile = None,
    as_json: AsJson = False,
) -> None:
    """Write every scored prompt in verl's format, in gc_id order, with extra_info.gc_id = gc_id.

    The data's own data_source, prompt, ability, reward_model and extra_info keys come back unchanged.

    Train on it with the one-launch curriculum (verl 0.9.1) or the curriculum sampler (verl 0.5-0.7.1);
    each picks the epoch's rows from it. Example: `gaincurate verl export --scores scores/ --out all.parquet`.
    """
    from gaincurate.integrations.verl.sampler import export_prompts

    path = export_prompts(scores, out, data_source=data_source)
    emit({"out": str(path)}, as_json=as_json, human=lambda stdout: stdout.line(str(path)))
