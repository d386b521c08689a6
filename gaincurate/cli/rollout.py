"""`gaincurate rollout`: measure pass rates by sampling answers and checking them with math-verify.

    gaincurate rollout scores/ --out ref.jsonl --samples 4 --reference-size 256

Writes one {"gc_id", "reward"} feedback line per rollout (the input of `difficulty` and `schedule init
--strategy dots --reference`); re-running the same command resumes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from gaincurate.cli.options import AsJson, ConfigFile, Device, Dtype, Quiet, ScoresDirArgument
from gaincurate.cli.progress import RowProgress, setup_logging
from gaincurate.cli.render import Stdout, emit
from gaincurate.rollout.answers import ANSWER_FORMATS

AnswerFormat = Annotated[
    Literal[ANSWER_FORMATS],
    typer.Option(
        help="boxed: the last \\boxed{} is the answer (as GRPO rewards check); "
        "any: math-verify finds it (box, 'the answer is', last expression)."
    ),
]


def rollout(
    scores: ScoresDirArgument,
    out: Annotated[Path, typer.Option("--out", "-o", help="Feedback JSON lines to write (resumed if present).")],
    model: Annotated[str | None, typer.Option(help="Model to sample (default: the scores manifest's).")] = None,
    samples: Annotated[int, typer.Option(help="Rollouts per prompt.")] = 4,
    reference_size: Annotated[
        int | None, typer.Option(help="Roll out a seeded sample of K prompts (default: all).")
    ] = None,
    ids: Annotated[Path | None, typer.Option(help="File of gc_ids to roll out, one per line.")] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Longest completion in tokens.")] = 256,
    temperature: Annotated[float, typer.Option(help="Sampling temperature (0: greedy).")] = 0.7,
    seed: Annotated[int, typer.Option(help="Seed of the reference sample and of every rollout.")] = 0,
    answer_column: Annotated[str | None, typer.Option(help="Gold answers (default: the manifest's).")] = None,
    answer_format: AnswerFormat = "boxed",
    batch_size: Annotated[int, typer.Option(help="Sequences per generate call (whole prompt groups).")] = 32,
    dtype: Dtype = None,
    device: Device = None,
    threads: Annotated[
        int | None, typer.Option(help="CPU threads for torch (1 is often fastest on a busy shared CPU).")
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Start --out again instead of resuming.")] = False,
    config: ConfigFile = None,
    quiet: Quiet = False,
    as_json: AsJson = False,
) -> None:
    """Measure pass rates: sample answers with `generate` and check them with math-verify.

    Writes one {"gc_id", "reward"} line per rollout; re-running the same command resumes.
    """
    from gaincurate.errors import ConfigError
    from gaincurate.rollout.config import RolloutConfig

    setup_logging(quiet or as_json)  # before the heavy imports, so other libraries' bars see it
    try:
        rollout_config = RolloutConfig(
            scores=str(scores), out=str(out), model=model, samples=samples, reference_size=reference_size,
            ids_file=None if ids is None else str(ids), max_new_tokens=max_new_tokens, temperature=temperature,
            seed=seed, answer_column=answer_column, answer_format=answer_format, batch_size=batch_size,
            dtype=dtype or "auto", device=device or "auto", threads=threads, overwrite=overwrite,
        )  # fmt: skip
    except ValueError as error:
        raise ConfigError(str(error)) from None
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
            f"{out}: {result.prompts} prompts x {rollout_config.samples} samples ({result.prompts_resumed} resumed), "
            f"{result.rollouts_written} rollouts written ({result.truncated_rollouts} cut at --max-new-tokens), "
            f"mean reward {rate}; {speed}"
        )

    emit(result.to_dict(), as_json=as_json, human=draw)


def register(app: typer.Typer) -> None:
    app.command()(rollout)
