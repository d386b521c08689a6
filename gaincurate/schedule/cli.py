"""`gaincurate schedule ...`: thin commands over `gaincurate.schedule.run` and `.loop`.

    gaincurate schedule init --scores scores/ --run run/ --seed 1
    gaincurate schedule next --run run/                                 # writes run/epoch-0000.parquet
    gaincurate schedule next --run run/ --feedback rollouts.jsonl       # updates mu, writes epoch 1
    gaincurate schedule run --run run/ --epochs 10 --trainer-cmd 'python train.py {epoch_data} ...'
    gaincurate schedule status --run run/ [--json]

Each command parses, builds a frozen config, calls one library function and renders: results go to
stdout, progress to stderr.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from gaincurate.schedule.config import ScheduleConfig

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    help="Turn prompt scores and trainer feedback into each epoch's training data (GAIN-RL curriculum).",
)
out = Console(soft_wrap=True)
err = Console(stderr=True)


class StrategyName(StrEnum):
    gain = "gain"
    uniform = "uniform"
    length = "length"
    dots = "dots"


class RescoreMode(StrEnum):
    none = "none"
    subset = "subset"
    window = "window"
    full = "full"


class DataFormat(StrEnum):
    trl = "trl"
    verl = "verl"


class AngleSignal(StrEnum):
    raw = "raw"
    centered = "centered"


RunOption = Annotated[Path, typer.Option("--run", help="Run directory (state.json, epoch files, history).")]
FRACTION = "Below 1: a fraction of the prompt count N."


@app.command()
def init(
    scores: Annotated[Path, typer.Option("--scores", help="Scores directory written by `gaincurate score`.")],
    run: RunOption,
    strategy: Annotated[
        StrategyName,
        typer.Option(help="gain: by score; length: shortest first; uniform: baseline; dots: pass rate near --target."),
    ] = StrategyName.gain,
    subset_size: Annotated[
        float | None, typer.Option(help=f"Prompts per epoch (default 256/7500 of N). {FRACTION}")
    ] = None,
    sigma: Annotated[
        float | None, typer.Option(help=f"Gaussian width in ranks (default 2/15 of N). {FRACTION}")
    ] = None,
    step_size: Annotated[
        float | None, typer.Option(help=f"n, the step scale of mu (default 1/15 of N). {FRACTION}")
    ] = None,
    alpha: Annotated[float | None, typer.Option(help="tanh sharpness (default 2).")] = None,
    beta: Annotated[float | None, typer.Option(help="Target accuracy (default 0.5).")] = None,
    adj_min: Annotated[float | None, typer.Option(help=f"Lower clamp of a step (default 0). {FRACTION}")] = None,
    adj_max: Annotated[
        float | None, typer.Option(help=f"Upper clamp of a step (default 2/15 of N). {FRACTION}")
    ] = None,
    reward_max: Annotated[float | None, typer.Option(help="Reward of a correct rollout (default 1).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of every epoch's draw (default 0).")] = None,
    rescore: Annotated[RescoreMode | None, typer.Option(help="Re-score from checkpoints (default none).")] = None,
    rescore_every: Annotated[int | None, typer.Option(help="Re-score every K epochs (default 1).")] = None,
    rescore_nproc: Annotated[
        int | None, typer.Option(help="Re-score with N processes via torchrun (default 1: in process).")
    ] = None,
    data_format: Annotated[DataFormat | None, typer.Option("--format", help="Epoch file layout (default trl).")] = None,
    angle_signal: Annotated[
        AngleSignal | None, typer.Option(help="Angle term: raw score or centered (default raw).")
    ] = None,
    target: Annotated[float | None, typer.Option(help="dots: the pass rate to aim at (default 0.5).")] = None,
    tau: Annotated[float | None, typer.Option(help="dots: selection temperature (default 1e-3).")] = None,
    tau_attn: Annotated[float | None, typer.Option(help="dots: attention temperature (default 0.1).")] = None,
    decay: Annotated[
        float | None, typer.Option(help="dots: weight per epoch of a measurement's age (default 1: none).")
    ] = None,
    reference: Annotated[
        str | None, typer.Option(help="dots: feedback JSON lines measured before epoch 0 (`gaincurate rollout`).")
    ] = None,
) -> None:
    """Create a run directory for a scores directory."""
    from gaincurate.schedule.run import init_run

    given = {
        "strategy": strategy.value, "subset_size": subset_size, "sigma": sigma, "step_size": step_size,
        "alpha": alpha, "beta": beta, "adj_min": adj_min, "adj_max": adj_max, "reward_max": reward_max,
        "seed": seed, "rescore": rescore and rescore.value, "rescore_every": rescore_every,
        "rescore_nproc": rescore_nproc,
        "format": data_format and data_format.value, "angle_signal": angle_signal and angle_signal.value,
        "target": target, "tau": tau, "tau_attn": tau_attn, "decay": decay, "reference": reference,
    }  # fmt: skip
    config = ScheduleConfig(**{key: value for key, value in given.items() if value is not None})
    state, params = init_run(run, scores, config)
    out.print(f"{run}: {params.n_prompts} prompts, strategy {params.strategy}, resolved to rank units:")
    table = Table(show_header=False)
    for key, value in params.to_dict().items():
        table.add_row(key, f"{value:g}" if isinstance(value, float) else str(value))
    out.print(table)
    out.print(f"next: gaincurate schedule next --run {run}")


@app.command("next")
def next_(
    run: RunOption,
    feedback: Annotated[Path | None, typer.Option(help="The last epoch's rollouts, JSON lines.")] = None,
    checkpoint: Annotated[Path | None, typer.Option(help="Newest checkpoint (or the trainer's output dir).")] = None,
) -> None:
    """Consume the last epoch's feedback, move mu and write the next epoch (epoch 0 on the first call)."""
    from gaincurate.schedule.run import advance

    step = advance(run, feedback=feedback, checkpoint=checkpoint, progress=err.print)
    if step.record is not None:
        record = step.record
        ang = "n/a" if record["ang"] is None else f"{record['ang']:.4f} ({record['ang_source']})"
        out.print(
            f"epoch {record['epoch']}: acc {record['accuracy']:.3f} over {record['rollouts']} rollouts, "
            f"ang {ang}, delta {record['delta']:+.1f}, mu {record['mu']:.1f} -> {record['mu_next']:.1f}"
        )
    for notice in step.notices:
        err.print(f"note: {notice}")
    # Only the Gaussian strategies draw around mu; the others log it without using it.
    drawn = f"around mu {step.mu:.1f}" if step.strategy in ("gain", "length") else f"by {step.strategy}"
    out.print(f"epoch {step.epoch}: {step.subset_size} prompts {drawn} -> {step.path}")


@app.command("run")
def run_(
    run: RunOption,
    epochs: Annotated[int, typer.Option(help="Train until this many epochs are done (resumes where it stopped).")],
    trainer_cmd: Annotated[
        str,
        typer.Option(help="Shell command per epoch; {epoch_data} {checkpoint} {output_dir} {feedback_file} {epoch}."),
    ],
    feedback_file: Annotated[
        str | None, typer.Option(help="Where the trainer writes feedback (default RUN/feedback-NNNN.jsonl).")
    ] = None,
    output_dir: Annotated[
        Path | None, typer.Option(help="The trainer's checkpoint folder (default RUN/trainer).")
    ] = None,
    initial_checkpoint: Annotated[str, typer.Option(help="{checkpoint} before the trainer has saved one.")] = "",
) -> None:
    """Run the whole loop: train an epoch with any trainer command, read its feedback, update, repeat."""
    from gaincurate.schedule.loop import run_loop

    result = run_loop(
        run,
        epochs=epochs,
        trainer_cmd=trainer_cmd,
        feedback_file=feedback_file,
        output_dir=output_dir,
        initial_checkpoint=initial_checkpoint,
        progress=err.print,
    )
    trained = ", ".join(map(str, result.trained)) or "none (already done)"
    out.print(f"trained epochs: {trained}; epoch {result.epoch} is written and waiting, mu {result.mu:.1f}")


@app.command()
def status(
    run: RunOption,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Show the current epoch, mu and per-epoch accuracy, angle and steps; write a plot into RUN."""
    from gaincurate.schedule.plot import write_plot
    from gaincurate.schedule.run import run_status

    report = run_status(run)
    report["plot"] = str(write_plot(run, report))
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    table = Table(title=f"{run}: epoch {report['epoch']}, mu {report['mu']:.1f} of {report['n_prompts'] - 1}")
    for column in ("epoch", "mu", "acc", "ang", "delta", "mu next"):
        table.add_column(column, justify="right")
    for line in report["history"]:
        ang = "-" if line["ang"] is None else f"{line['ang']:.4f}"
        table.add_row(
            str(line["epoch"]), f"{line['mu']:.1f}", f"{line['accuracy']:.3f}", ang, f"{line['delta']:+.1f}",
            f"{line['mu_next']:.1f}",
        )  # fmt: skip
    if report["epoch"] >= 0:
        waiting = "trained, feedback archived" if report["trained"] else "waiting for training"
        table.add_row(str(report["epoch"]), f"{report['mu']:.1f}", "-", "-", "-", waiting)
    out.print(table)
    out.print(f"plot: {report['plot']}")
