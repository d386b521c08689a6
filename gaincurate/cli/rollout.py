"""`gaincurate rollout`: measure pass rates by sampling answers and checking them with math-verify.

    gaincurate rollout scores/ --out ref.jsonl --samples 4 --reference-size 256

Writes one {"gc_id", "reward"} feedback line per rollout (the input of `difficulty` and `schedule init
--strategy dots --reference`); re-running the same command resumes. The options are `RolloutConfig`'s fields.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from gaincurate.cli.fields import field_parameters, fixed_parameters, given, install
from gaincurate.cli.options import AsJson, ConfigFile, Quiet, ScoresDirArgument
from gaincurate.cli.progress import RowProgress, setup_logging
from gaincurate.cli.render import Stdout, emit
from gaincurate.rollout.config import RolloutConfig


def rollout(
    scores: ScoresDirArgument,
    *,
    config: ConfigFile = None,
    quiet: Quiet = False,
    as_json: AsJson = False,
    **values: Any,
) -> None:
    """Measure pass rates: sample answers with `generate` and check them with math-verify.

    Writes one {"gc_id", "reward"} line per rollout; re-running the same command resumes.
    """
    setup_logging(quiet or as_json)  # before the heavy imports, so other libraries' bars see it
    given_values = {name: str(value) if isinstance(value, Path) else value for name, value in values.items()}
    rollout_config = RolloutConfig(scores=str(scores), **given(RolloutConfig, given_values))
    from gaincurate.rollout.job import run_rollouts

    with RowProgress("rollouts (prompts)", quiet=quiet or as_json) as progress:
        result = run_rollouts(rollout_config, progress=progress)

    def draw(stdout: Stdout) -> None:
        rate = "-" if result.mean_reward is None else f"{result.mean_reward:.3f}"
        speed = (
            "-"
            if result.tokens_per_second is None
            else f"{result.tokens_per_second:.1f} tokens/s, {result.rollouts_per_second:.2f} rollouts/s"
        )
        stdout.line(
            f"{rollout_config.out}: {result.prompts} prompts x {rollout_config.samples} samples "
            f"({result.prompts_resumed} resumed), "
            f"{result.rollouts_written} rollouts written ({result.truncated_rollouts} cut at --max-new-tokens), "
            f"mean reward {rate}; {speed}"
        )

    emit(result.to_dict(), as_json=as_json, human=draw)


def register(app: typer.Typer, panel: str) -> None:
    """`rollout` taking `RolloutConfig`'s fields as options (generated from the fields), before --config."""
    scores, *fixed = fixed_parameters(rollout)
    app.command(rich_help_panel=panel)(
        install(rollout, [scores], [*field_parameters(RolloutConfig, exclude=("scores",)), *fixed])
    )
