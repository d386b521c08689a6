"""`gaincurate difficulty ...`: predict prompt pass rates from embeddings and measured rollouts (DOTS).

    gaincurate difficulty predict scores/ --feedback ref.jsonl --out predicted.jsonl
    gaincurate difficulty fit scores/ --feedback ref.jsonl --out calibrator.npz
    gaincurate difficulty evaluate scores/ --feedback ref.jsonl --json

Results go to stdout (or --out); notes to stderr. The measured rollouts come from `gaincurate rollout`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from gaincurate.cli.options import AsJson, ConfigFile, FlagErrors
from gaincurate.cli.render import Stdout, emit, json_line
from gaincurate.errors import ConfigError

app = typer.Typer(
    cls=FlagErrors,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    help="Predict prompt pass rates from embeddings and measured rollouts (DOTS), and check the predictions.",
)

EmbeddedScores = Annotated[Path, typer.Argument(help="Scores directory written by `gaincurate score --embed`.")]
FeedbackOption = Annotated[
    list[Path],
    typer.Option("--feedback", "-f", help="Feedback JSON lines with measured rollouts; repeat, oldest first."),
]
TauAttn = Annotated[float, typer.Option(help="Attention temperature on cosine similarity.")]
RewardMax = Annotated[float, typer.Option(help="Reward of a correct rollout.")]
Seed = Annotated[int, typer.Option(help="Seed of the splits and the fit.")]


@app.command()
def predict(
    scores: EmbeddedScores,
    feedback: FeedbackOption,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write JSON lines here instead of stdout.")] = None,
    tau_attn: TauAttn = 0.1,
    decay: Annotated[float, typer.Option(help="Weight per feedback file of age (1: all alike).")] = 1.0,
    calibrator: Annotated[Path | None, typer.Option(help="A calibrator from `difficulty fit`.")] = None,
    reward_max: RewardMax = 1.0,
    config: ConfigFile = None,
    as_json: AsJson = False,
) -> None:
    """Predict every prompt's pass rate by attention over the measured ones (leave-one-out for those).

    Without --out the predictions are JSON lines on stdout (one JSON list with --json).
    """
    from gaincurate.difficulty.jobs import predict_scores
    from gaincurate.fileio import atomic_write_bytes

    rows = predict_scores(
        scores, feedback, tau_attn=tau_attn, decay=decay, reward_max=reward_max, calibrator_path=calibrator
    )
    if out is None:
        emit(rows, as_json=as_json, human=lambda stdout: stdout.write("".join(map(json_line, rows))))
        return
    atomic_write_bytes(out, "".join(map(json_line, rows)).encode())
    written = {"out": str(out), "prompts": len(rows), "measured": sum(row["measured"] is not None for row in rows)}
    emit(
        written,
        as_json=as_json,
        human=lambda stdout: stdout.line(
            f"{out}: {written['prompts']} prompts ({written['measured']} measured, predicted leave-one-out)"
        ),
    )


@app.command()
def fit(
    scores: EmbeddedScores,
    feedback: FeedbackOption,
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the calibrator (.npz).")],
    tau_attn: TauAttn = 0.1,
    dim: Annotated[int, typer.Option(help="Adapter output dimension.")] = 32,
    steps: Annotated[int, typer.Option(help="Adam steps (full batch).")] = 200,
    folds: Annotated[int, typer.Option(help="Cross-fitting folds for leave-one-out predictions.")] = 5,
    seed: Seed = 0,
    reward_max: RewardMax = 1.0,
    config: ConfigFile = None,
    as_json: AsJson = False,
) -> None:
    """Fit a linear adapter and a calibration head on measured prompts, leave-one-out (CPU, torch)."""
    from gaincurate.difficulty.calibrate import FitConfig
    from gaincurate.difficulty.jobs import fit_scores

    try:
        fit_config = FitConfig(dim=dim, steps=steps, folds=folds, seed=seed, tau=tau_attn)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    report = fit_scores(scores, feedback, out, config=fit_config, reward_max=reward_max)

    def draw(stdout: Stdout) -> None:
        fitted, raw = report["loo_fit"], report["loo_attention"]
        # --folds 0: every model saw every label, so no reference prompt has an honest calibrated prediction.
        quality = (
            "not cross-fitted (--folds 0), so no leave-one-out fit quality"
            if fitted is None
            else f"leave-one-out Pearson {fitted['pearson']:.3f} (attention alone {raw['pearson']:.3f}), "
            f"MAE {fitted['mae']:.3f} (attention alone {raw['mae']:.3f})"
        )
        stdout.line(
            f"{out}: fitted on {report['reference_prompts']} prompts; {quality}; "
            f"head w={report['weight']:.3f} b={report['bias']:.3f}"
        )

    emit(report, as_json=as_json, human=draw)


@app.command()
def evaluate(
    scores: Annotated[
        Path | None, typer.Argument(help="Scores directory written by `gaincurate score --embed` (not with --online).")
    ] = None,
    feedback: Annotated[
        list[Path] | None,
        typer.Option("--feedback", "-f", help="Feedback JSON lines with measured rollouts; repeat, oldest first."),
    ] = None,
    online: Annotated[
        Path | None,
        typer.Option(
            help="A run directory: predict each epoch t+1 from the feedback up to t only, as the run's dots did, "
            "and score it against what t+1 measured (replaces SCORES and --feedback)."
        ),
    ] = None,
    holdout: Annotated[float, typer.Option(help="Fraction of measured prompts held out per repeat.")] = 0.2,
    repeats: Annotated[int, typer.Option(help="Seeded splits to average over.")] = 5,
    seed: Seed = 0,
    tau_attn: TauAttn = 0.1,
    no_fit: Annotated[bool, typer.Option("--no-fit", help="Skip the fitted adapter (no torch needed).")] = False,
    reward_max: RewardMax = 1.0,
    against: Annotated[
        list[str] | None,
        typer.Option(help="Numeric input column (a known difficulty label) to set beside the methods (repeatable)."),
    ] = None,
    config: ConfigFile = None,
    as_json: AsJson = False,
) -> None:
    """Hold out measured prompts, predict them from the rest, and compare with three baselines.

    With --online RUN: replay a run, predicting each epoch from the ones before it (beside the global mean and
    each prompt's own last measurement).
    """
    from gaincurate.difficulty.evaluate import EvaluateConfig
    from gaincurate.difficulty.jobs import evaluate_scores

    if online is not None:
        if scores is not None or feedback:
            raise ConfigError("--online RUN reads the scores and feedback of the run; drop SCORES and --feedback")
        report = _online(online)
        emit(report, as_json=as_json, human=lambda stdout: _draw_online(stdout, report))
        return
    if scores is None or not feedback:
        raise ConfigError("pass SCORES and --feedback FILE.jsonl (measured rollouts), or --online RUN")

    try:
        evaluate_config = EvaluateConfig(holdout=holdout, repeats=repeats, seed=seed, tau_attn=tau_attn, fit=not no_fit)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    report = evaluate_scores(scores, feedback, config=evaluate_config, reward_max=reward_max, against=against or ())
    emit(report, as_json=as_json, human=lambda stdout: _draw_evaluation(stdout, report))


def _draw_evaluation(stdout: Stdout, report: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(
        title=f"{report['held_out']} of {report['prompts']} measured prompts held out, "
        f"{report['repeats']} repeats (mean ± std)"
    )
    for column in ("method", "Pearson", "Spearman", "MAE"):
        table.add_column(column, justify="left" if column == "method" else "right")
    for name, summary in report["methods"].items():
        table.add_row(name, *(_mean_std(summary, metric) for metric in ("pearson", "spearman", "mae")))
    stdout.print(table)
    ceiling = report["noise_ceiling"]
    stdout.line(
        f"mean pass rate {report['mean_pass_rate']:.3f}; noise ceiling on Pearson "
        f"{'-' if ceiling is None else f'{ceiling:.3f}'} (binomial noise of the measured rates)"
    )
    solved = report["measured"]
    stdout.line(
        f"measured prompts: {solved['never']} never solved, {solved['sometimes']} sometimes, {solved['always']} always"
    )
    for name, wins in report["attention_vs"].items():
        pearson_wins = "" if wins["pearson_higher"] is None else f"higher Pearson in {wins['pearson_higher']}, "
        stdout.line(f"attention vs {name}: {pearson_wins}lower MAE in {wins['mae_lower']} of {wins['splits']} splits")
    for column, compared in report.get("against", {}).items():
        correlation = "-" if compared["pearson"] is None else f"{compared['pearson']:.3f}"
        line = f"{column} (all measured prompts, not held out): Pearson {correlation}"
        if compared["by_value"]:
            levels = ", ".join(f"{level['value']:g}: {level['mean_pass_rate']:.3f}" for level in compared["by_value"])
            line += f"; mean pass rate by value {levels}"
        stdout.line(line)


def _online(run_dir: Path) -> dict[str, Any]:
    """`online_evaluation` of a run directory, with the run's own tau_attn, decay and calibrator."""
    from gaincurate.difficulty.online import online_evaluation
    from gaincurate.schedule.run.reference import measurements
    from gaincurate.schedule.run.rundir import load_run

    run = load_run(run_dir)
    found = measurements(run_dir, run)
    from gaincurate.schedule.strategies.dots import DotsOptions

    config = run.config
    # A dots run predicts with its own settings; another strategy's run is read with dots' defaults.
    dots = config.options if isinstance(config.options, DotsOptions) else DotsOptions()
    report = online_evaluation(
        Path(run.scores_dir), found.feedback, references=found.references, tau_attn=dots.tau_attn,
        decay=dots.forget, reward_max=config.reward_max, reward_min=config.reward_min,
        calibrator_path=None if dots.calibrator is None else Path(dots.calibrator),
    )  # fmt: skip
    return {"run": str(run_dir), "strategy": config.strategy, **report}


def _draw_online(stdout: Stdout, report: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(
        title=f"{report['run']}: each epoch t+1 predicted from the feedback up to t (Pearson / Spearman / MAE)"
    )
    for column in ("t -> t+1", "prompts", "dots", "neighbours", "global mean", "own last (n)", "dots, same n"):
        table.add_column(column, justify="right")

    def cell(summary: dict[str, Any]) -> str:
        return " / ".join(
            "-" if summary[key] is None else f"{summary[key]:.2f}" for key in ("pearson", "spearman", "mae")
        )

    def row(label: str, line: dict[str, Any]) -> list[str]:
        methods = line["methods"]
        mae = methods["global_mean"]["mae"]
        own = f"({line['remeasured']}) {cell(methods['own_last'])}"
        return [label, str(line["prompts"]), cell(methods["dots"]), cell(methods["neighbours"]),
                "-" if mae is None else f"{mae:.2f}", own, cell(methods["dots_remeasured"])]  # fmt: skip

    for line in report["per_epoch"]:
        table.add_row(*row(f"{line['epoch']} -> {line['predicted_epoch']}", line))
    table.add_row(*row("pooled", report["pooled"]))
    stdout.print(table)
    stdout.line(
        f"tau_attn {report['tau_attn']:g}, decay {report['decay']:g}"
        + (f", calibrator {report['calibrator']}" if report["calibrator"] else "")
        + f"; {len(report['feedback'])} epochs of feedback, {len(report['references'])} other reference set(s)"
    )


def _mean_std(summary: dict[str, Any], metric: str) -> str:
    value, spread = summary[metric], summary[f"{metric}_std"]
    if value is None:
        return "-"
    return f"{value:.3f}" + (f" ± {spread:.3f}" if spread is not None else "")
