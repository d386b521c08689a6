"""`gaincurate schedule ...`: thin commands over `gaincurate.schedule.driver` and `gaincurate.integrations.command`.

    gaincurate schedule init --scores scores/ --run run/ --seed 1
    gaincurate schedule next --run run/                                 # writes run/epoch-0000.parquet
    gaincurate schedule next --run run/ --feedback rollouts.jsonl       # updates mu, writes epoch 1
    gaincurate schedule run --run run/ --epochs 10 --trainer-cmd 'python train.py {epoch_data} ...'
    gaincurate schedule status --run run/ [--json] [--plot status.png]

`init`'s options that share a `ScheduleConfig` field's name reach the config as given (None: not given, so the
config's default applies); a new strategy option needs only its `Annotated` alias (`schedule_options`) and a
parameter here.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from gaincurate.cli.options import AsJson, ConfigFile, Quiet, StrategyOption
from gaincurate.cli.progress import RowProgress
from gaincurate.cli.render import Stdout, emit, note
from gaincurate.cli.schedule_options import (
    AdjMax,
    AdjMin,
    Alpha,
    AngleSignal,
    Band,
    Beta,
    Calibrator,
    DataFormat,
    DataSource,
    Decay,
    Direction,
    ExploreMax,
    ExploreMin,
    Forget,
    MuControl,
    Prior,
    Ranking,
    Reference,
    ReferenceEvery,
    ReferenceSize,
    Rescore,
    RescoreEvery,
    RescoreNproc,
    RewardMax,
    RewardRange,
    ScoresOption,
    ScreenFactor,
    ScreenRollouts,
    Seed,
    Sigma,
    SkipZeroVariance,
    StepSize,
    SubsetMultiple,
    SubsetSize,
    SweepRate,
    Target,
    TargetZeroVariance,
    Tau,
    TauAttn,
)
from gaincurate.errors import ConfigError
from gaincurate.schedule.config import DEFAULT_STRATEGY, MU_STRATEGIES

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    help="Turn prompt scores and trainer feedback into each epoch's training data (GAIN-RL curriculum).",
)

RunOption = Annotated[Path, typer.Option("--run", help="Run directory (state.json, epoch files, history).")]


@app.command()
def init(
    scores: ScoresOption,
    run: RunOption,
    strategy: StrategyOption = DEFAULT_STRATEGY,
    subset_size: SubsetSize = None,
    subset_multiple: SubsetMultiple = None,
    sigma: Sigma = None,
    step_size: StepSize = None,
    alpha: Alpha = None,
    beta: Beta = None,
    adj_min: AdjMin = None,
    adj_max: AdjMax = None,
    reward_max: RewardMax = None,
    reward_range: RewardRange = None,
    seed: Seed = None,
    rescore: Rescore = None,
    rescore_every: RescoreEvery = None,
    rescore_nproc: RescoreNproc = None,
    data_format: DataFormat = None,
    data_source: DataSource = None,
    angle_signal: AngleSignal = None,
    target: Target = None,
    tau: Tau = None,
    tau_attn: TauAttn = None,
    decay: Decay = None,
    reference: Reference = None,
    reference_every: ReferenceEvery = None,
    reference_size: ReferenceSize = None,
    calibrator: Calibrator = None,
    prior: Prior = None,
    forget: Forget = None,
    explore_min: ExploreMin = None,
    explore_max: ExploreMax = None,
    target_zero_variance: TargetZeroVariance = None,
    skip_zero_variance: SkipZeroVariance = False,
    screen_factor: ScreenFactor = None,
    screen_rollouts: ScreenRollouts = None,
    band: Band = None,
    ranking: Ranking = None,
    mu_control: MuControl = None,
    sweep_rate: SweepRate = None,
    direction: Direction = None,
    config: ConfigFile = None,
    as_json: AsJson = False,
) -> None:
    """Create a run directory for a scores directory."""
    schedule_config = _schedule_config(dict(locals()))  # first, so `locals()` holds just the parameters
    from gaincurate.schedule.driver import init_run
    from gaincurate.schedule.sizes import subset_choice
    from gaincurate.schedule.update import angle_source_note

    _, params = init_run(run, scores, schedule_config)
    resolved = params.to_dict()
    chosen = subset_choice(schedule_config.subset_size, params.n_prompts, params.subset_multiple, params.subset_size)
    notes = [chosen, *([angle_source_note(params)] if params.strategy in MU_STRATEGIES else [])]

    def draw(stdout: Stdout) -> None:
        from rich.table import Table

        for line in notes:
            stdout.line(line)
        stdout.line(f"{run}: {params.n_prompts} prompts, strategy {params.strategy}, resolved to rank units:")
        table = Table(show_header=False)
        for key, value in resolved.items():
            table.add_row(key, f"{value:g}" if isinstance(value, float) else str(value))
        stdout.print(table)
        stdout.line(f"next: gaincurate schedule next --run {run}")

    emit({"run": str(run), "params": resolved, "notes": notes}, as_json=as_json, human=draw)


# `init` parameters that are not `ScheduleConfig` fields under their own names.
_NOT_CONFIG = (
    "scores", "run", "config", "as_json", "data_format", "prior", "reward_range", "skip_zero_variance", "band",
)  # fmt: skip


def _schedule_config(given: dict[str, Any]) -> Any:
    """`ScheduleConfig` from `init`'s parameters: given values only, the comma pairs parsed."""
    from gaincurate.schedule.config import ScheduleConfig

    values = {key: value for key, value in given.items() if key not in _NOT_CONFIG}
    values |= {"format": given["data_format"], "skip_zero_variance": given["skip_zero_variance"] or None}
    values |= {"prior": given["prior"] and _pair(given["prior"]), "band": given["band"] and _pair(given["band"])}
    if given["calibrator"] is not None:  # read at every step, so kept as an absolute path
        values |= {"calibrator": str(Path(given["calibrator"]).resolve())}
    if given["reward_range"] is not None:
        low, high = _pair(given["reward_range"])
        if given["reward_max"] is not None and given["reward_max"] != high:
            raise ConfigError(
                f"--reward-range {given['reward_range']} and --reward-max {given['reward_max']:g} disagree; "
                "pass one of them"
            )
        values |= {"reward_min": low, "reward_max": high}
    return ScheduleConfig(**{key: value for key, value in values.items() if value is not None})


def _pair(text: str) -> tuple[float, float]:
    """`A,B` as two numbers (`_pair_parser` checked the form); ScheduleConfig checks their range."""
    low, high = (float(part) for part in text.split(","))
    return low, high


@app.command("next")
def next_(
    run: RunOption,
    feedback: Annotated[Path | None, typer.Option(help="The last epoch's rollouts, JSON lines.")] = None,
    checkpoint: Annotated[Path | None, typer.Option(help="Newest checkpoint (or the trainer's output dir).")] = None,
    config: ConfigFile = None,
    quiet: Quiet = False,
    as_json: AsJson = False,
) -> None:
    """Consume the last epoch's feedback, move mu and write the next epoch (epoch 0 on the first call)."""
    from gaincurate.schedule.driver import advance

    with RowProgress("re-scoring", quiet=quiet or as_json) as progress:
        step = advance(run, feedback=feedback, checkpoint=checkpoint, progress=progress)
    uses_mu = step.strategy in MU_STRATEGIES
    for notice in step.notices:
        if not (quiet or as_json):
            note(f"note: {notice}")
    result = {
        "epoch": step.epoch, "path": str(step.path), "subset_size": step.subset_size, "strategy": step.strategy,
        "mu": step.mu if uses_mu else None, "record": _for_strategy(step.record, uses_mu), "notices": step.notices,
    }  # fmt: skip
    emit(result, as_json=as_json, human=lambda stdout: _draw_step(stdout, result))


def _draw_step(stdout: Stdout, result: dict[str, Any]) -> None:
    record = result["record"]
    if record is not None:
        ang = "n/a" if record["ang"] is None else f"{record['ang']:.4f} ({record['ang_source']})"
        if record["ang_source"] == "stored":  # not model signal: logged, but the angle term is off
            ang = ang[:-1] + ", angle term off)" if record["ang"] is not None else "off"
        move = "" if result["mu"] is None else f", delta {record['delta']:+.1f}, mu {record['mu']:.1f} -> "
        move += "" if result["mu"] is None else f"{record['mu_next']:.1f}"
        stdout.line(
            f"epoch {record['epoch']}: acc {record['accuracy']:.3f} over {record['rollouts']} rollouts, ang {ang}{move}"
        )
    drawn = f"by {result['strategy']}" if result["mu"] is None else f"around mu {result['mu']:.1f}"
    stdout.line(f"epoch {result['epoch']}: {result['subset_size']} prompts {drawn} -> {result['path']}")


def _for_strategy(line: dict[str, Any] | None, uses_mu: bool) -> dict[str, Any] | None:
    """A history line as shown: mu and its step are null for the strategies that never draw around mu."""
    if line is None or uses_mu:
        return line
    return {**line, **{key: None for key in ("mu", "mu_next", "delta") if key in line}}


@app.command("run")
def run_(
    run: RunOption,
    epochs: Annotated[int, typer.Option(help="Train until this many epochs are done (resumes where it stopped).")],
    trainer_cmd: Annotated[
        str,
        typer.Option(
            help="Shell command per epoch; {epoch_data} {checkpoint} {output_dir} {feedback_file} {epoch} {run_dir}."
        ),
    ],
    feedback_file: Annotated[
        str | None, typer.Option(help="Where the trainer writes feedback (default RUN/feedback-NNNN.jsonl).")
    ] = None,
    output_dir: Annotated[
        Path | None, typer.Option(help="The trainer's checkpoint folder (default RUN/trainer).")
    ] = None,
    initial_checkpoint: Annotated[str, typer.Option(help="{checkpoint} before the trainer has saved one.")] = "",
    config: ConfigFile = None,
    quiet: Quiet = False,
    as_json: AsJson = False,
) -> None:
    """Run the whole loop: train an epoch with any trainer command, read its feedback, update, repeat."""
    from gaincurate.integrations.command import run_loop

    with RowProgress("re-scoring", quiet=quiet or as_json) as progress:
        result = run_loop(
            run, epochs=epochs, trainer_cmd=trainer_cmd, feedback_file=feedback_file, output_dir=output_dir,
            initial_checkpoint=initial_checkpoint, progress=progress,
            echo=None if quiet else sys.stderr,  # the trainer's output, bounded (its full log is in RUN/logs/)
        )  # fmt: skip
    from gaincurate.schedule.rundir import load_run

    uses_mu = load_run(run).config.strategy in MU_STRATEGIES
    done = {"trained": result.trained, "epoch": result.epoch, "mu": result.mu if uses_mu else None}

    def draw(stdout: Stdout) -> None:
        trained = ", ".join(map(str, result.trained)) or "none (already done)"
        mu = f", mu {result.mu:.1f}" if uses_mu else ""
        stdout.line(f"trained epochs: {trained}; epoch {result.epoch} is written and waiting{mu}")

    emit(done, as_json=as_json, human=draw)


@app.command()
def status(
    run: RunOption,
    plot: Annotated[
        Path | None, typer.Option(help="Also draw the run into this file: a PNG for .png, a text chart otherwise.")
    ] = None,
    config: ConfigFile = None,
    as_json: AsJson = False,
) -> None:
    """Show the current epoch, per-epoch accuracy, angle and steps (mu only for the strategies that use it)."""
    from gaincurate.schedule.driver import run_status
    from gaincurate.schedule.plot import save_plot
    from gaincurate.schedule.rundir import load_run

    report = run_status(run) | {"finished": load_run(run).is_finished}
    if plot is not None:
        report["plot"] = str(save_plot(plot, report))
    uses_mu = report["params"]["strategy"] in MU_STRATEGIES
    shown = {
        **report, "uses_mu": uses_mu, "mu": report["mu"] if uses_mu else None,
        "history": [_for_strategy(line, uses_mu) for line in report["history"]],
    }  # fmt: skip
    emit(shown, as_json=as_json, human=lambda stdout: _draw_status(stdout, shown))


def _draw_status(stdout: Stdout, report: dict[str, Any]) -> None:
    from rich.table import Table

    uses_mu = report["uses_mu"]
    where = (
        f"mu {report['mu']:.1f} of {report['n_prompts'] - 1}" if uses_mu else f"strategy {report['params']['strategy']}"
    )
    finished = report["finished"]
    stage = f"finished after {report['epoch']} epochs" if finished else f"epoch {report['epoch']}"
    table = Table(title=f"{report['run']}: {stage}, {where}")
    drawn = "selection" in report or any("selection" in line for line in report["history"])
    mu_columns = ["mu", "acc", "ang", "delta", "mu next"] if uses_mu else ["acc", "ang", "rollouts", "state"]
    for column in ("epoch", *mu_columns, *(["selected"] if drawn else [])):
        table.add_column(column, justify="right")
    for line in report["history"]:
        ang = "-" if line["ang"] is None else f"{line['ang']:.4f}"
        cells = (
            [f"{line['mu']:.1f}", f"{line['accuracy']:.3f}", ang, f"{line['delta']:+.1f}", f"{line['mu_next']:.1f}"]
            if uses_mu
            else [f"{line['accuracy']:.3f}", ang, str(line["rollouts"]), "trained"]
        )
        table.add_row(str(line["epoch"]), *cells, *([_selection(line.get("selection"))] if drawn else []))
    if report["epoch"] >= 0:
        waiting = "trained, feedback archived" if report["trained"] else "waiting for training"
        waiting = "drawn, not trained: finished" if finished else waiting
        cells = [f"{report['mu']:.1f}", "-", "-", "-", waiting] if uses_mu else ["-", "-", "-", waiting]
        table.add_row(str(report["epoch"]), *cells, *([_selection(report.get("selection"))] if drawn else []))
    stdout.print(table)
    if finished:
        stdout.line(
            f"finished: the trainer ended after {report['epoch']} epochs; epoch {report['epoch']} is drawn but not "
            "trained. To train on, run the trainer again (`schedule run --epochs` more, or train() with more epochs)"
        )
    if "plot" in report:
        stdout.line(f"plot: {report['plot']}")


def _selection(info: dict | None) -> str:
    """How an epoch was drawn: mopps's posterior (mean ± sd), screen's screening, the band, GRESO's skips."""
    if not info:
        return "-"
    parts = []
    if "posterior_mean" in info:
        parts.append(f"pass rate {info['posterior_mean']:.2f} ± {info['posterior_sd']:.2f}")
    if "screened" in info:
        chosen = info.get("chosen_pass_rate")
        rate = "" if chosen is None else f", kept pass rate {chosen:.2f}"
        screened = f"screened {info['screened']} ({info['screen_rollouts']} rollouts)"
        parts.append(f"{screened}, {info['in_band']} in band{rate}")
    elif "band" in info:
        low, high = info["band"]
        parts.append(f"{info.get('band_kept', '?')} in band [{low:g}, {high:g}]")
    if "skipped" in info:
        parts.append(f"{info['skipped']} skipped")
    return ", ".join(parts) or "-"
