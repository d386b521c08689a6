"""`gaincurate difficulty ...`: predict prompt pass rates from embeddings and measured rollouts (DOTS).

    gaincurate difficulty predict scores/ --feedback ref.jsonl --out predicted.jsonl
    gaincurate difficulty fit scores/ --feedback ref.jsonl --out calibrator.npz
    gaincurate difficulty evaluate scores/ --feedback ref.jsonl --json

Results go to stdout (or --out); notes to stderr. The measured rollouts come from `gaincurate rollout`.
Each command's settings are its library config's fields (`PredictConfig`, `FitConfig`, `EvaluateConfig`), and
`--reward-max` is `ScheduleConfig.reward_max` (the same reading of the same feedback lines), generated with
`gaincurate.cli.fields`, so each default and its help are written once, in the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from gaincurate.cli.fields import (
    default_value,
    field_named,
    field_parameters,
    fixed_parameters,
    given,
    help_text,
    install,
)
from gaincurate.cli.options import AsJson, ConfigFile, command_group
from gaincurate.cli.render import Stdout, emit, json_line
from gaincurate.errors import ConfigError
from gaincurate.lab.difficulty.evaluate import EvaluateConfig
from gaincurate.lab.difficulty.fit import FitConfig
from gaincurate.lab.difficulty.jobs import PredictConfig
from gaincurate.schedule.config import ScheduleConfig

app = command_group(
    "Predict prompt pass rates from embeddings and measured rollouts (DOTS), and check the predictions."
)

EmbeddedScores = Annotated[Path, typer.Argument(help="Scores directory written by `gaincurate score --embed`.")]
FeedbackOption = Annotated[
    list[Path],
    typer.Option("--feedback", "-f", help="Feedback JSON lines with measured rollouts; repeat, oldest first."),
]


def _reward_max(values: dict[str, Any]) -> float:
    """`--reward-max` as given, else `ScheduleConfig.reward_max`'s default: a schedule reads feedback the same way."""
    given_value = values.get("reward_max")
    return default_value(field_named(ScheduleConfig, "reward_max")) if given_value is None else given_value


def _config(cls: type, values: dict[str, Any]) -> Any:
    """`cls` built from the options given (its own defaults for the rest); its ValueError is the user's ConfigError."""
    try:
        return cls(**given(cls, values))
    except ValueError as error:
        raise ConfigError(str(error)) from None


def predict(
    scores: EmbeddedScores,
    *,
    feedback: FeedbackOption,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write JSON lines here instead of stdout.")] = None,
    config: ConfigFile = None,
    as_json: AsJson = False,
    **values: Any,
) -> None:
    """Predict every prompt's pass rate by attention over the measured ones (leave-one-out for those).

    Without --out the predictions are JSON lines on stdout (one JSON list with --json).
    """
    from gaincurate.fileio import atomic_write_bytes
    from gaincurate.lab.difficulty.jobs import predict_scores

    rows = predict_scores(scores, feedback, config=_config(PredictConfig, values), reward_max=_reward_max(values))
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


def fit(
    scores: EmbeddedScores,
    *,
    feedback: FeedbackOption,
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the calibrator (.npz).")],
    config: ConfigFile = None,
    as_json: AsJson = False,
    **values: Any,
) -> None:
    """Fit a linear adapter and a calibration head on measured prompts, leave-one-out (CPU, torch)."""
    from gaincurate.lab.difficulty.jobs import fit_scores

    report = fit_scores(scores, feedback, out, config=_config(FitConfig, values), reward_max=_reward_max(values))

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


def evaluate(
    scores: Annotated[
        Path | None, typer.Argument(help="Scores directory written by `gaincurate score --embed` (not with --online).")
    ] = None,
    *,
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
    against: Annotated[
        list[str] | None,
        typer.Option(help="Numeric input column (a known difficulty label) to set beside the methods (repeatable)."),
    ] = None,
    # EvaluateConfig.fit's off switch, kept as the parameter `no_fit` so that a --config file's key stays `no_fit`.
    no_fit: Annotated[bool | None, typer.Option("--no-fit", help=help_text(field_named(EvaluateConfig, "fit")))] = None,
    config: ConfigFile = None,
    as_json: AsJson = False,
    **values: Any,
) -> None:
    """Hold out measured prompts, predict them from the rest, and compare with three baselines.

    With --online RUN: replay a run, predicting each epoch from the ones before it (beside the global mean and
    each prompt's own last measurement).
    """
    from gaincurate.lab.difficulty.jobs import evaluate_scores

    if online is not None:
        if scores is not None or feedback:
            raise ConfigError("--online RUN reads the scores and feedback of the run; drop SCORES and --feedback")
        report = _online(online)
        emit(report, as_json=as_json, human=lambda stdout: _draw_online(stdout, report))
        return
    if scores is None or not feedback:
        raise ConfigError("pass SCORES and --feedback FILE.jsonl (measured rollouts), or --online RUN")

    evaluate_config = _config(EvaluateConfig, {**values, "fit": False if no_fit else None})
    report = evaluate_scores(
        scores, feedback, config=evaluate_config, reward_max=_reward_max(values), against=against or ()
    )
    emit(report, as_json=as_json, human=lambda stdout: _draw_evaluation(stdout, report))


# `--reward-max`: ScheduleConfig's field, the reward of a correct rollout wherever feedback is read.
_REWARD_MAX = ("reward_max",)


def _register() -> None:
    """Each command with its config's fields as options (generated), in the order the options always had."""
    scores, feedback, out, *rest = fixed_parameters(predict)
    generated = field_parameters(PredictConfig, only=("tau_attn", "forget", "calibrator"))
    reward_max = field_parameters(ScheduleConfig, only=_REWARD_MAX)
    app.command()(install(predict, [scores], [feedback, out, *generated, *reward_max, *rest]))

    scores, feedback, out, *rest = fixed_parameters(fit)
    generated = field_parameters(FitConfig, only=("tau", "dim", "steps", "folds", "seed"))
    reward_max = field_parameters(ScheduleConfig, only=_REWARD_MAX)
    app.command()(install(fit, [scores], [feedback, out, *generated, *reward_max, *rest]))

    scores, feedback, online, against, no_fit, *rest = fixed_parameters(evaluate)
    generated = field_parameters(EvaluateConfig, only=("holdout", "repeats", "seed", "tau_attn"))
    reward_max = field_parameters(ScheduleConfig, only=_REWARD_MAX)
    app.command()(install(evaluate, [scores], [feedback, online, *generated, no_fit, *reward_max, against, *rest]))


_register()


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
    """`online_evaluation` of a run directory, with the run's own tau_attn, forget and calibrator."""
    from gaincurate.lab.difficulty.online import online_evaluation
    from gaincurate.schedule.run.reference_sets import measurements
    from gaincurate.schedule.run.rundir import holds_run, load_run

    if not holds_run(run_dir):  # `load_run`'s message names --run, the flag of the schedule's commands
        where = "does not exist" if not run_dir.exists() else "holds no run (no state.json)"
        raise ConfigError(
            f"--online {run_dir} {where}; pass the run directory given to `gaincurate schedule init --run`"
        )
    run = load_run(run_dir)
    found = measurements(run_dir, run)
    from gaincurate.schedule.strategies.dots import DotsStrategy

    config = run.config
    # A dots run predicts with its own settings; another strategy's run is read with dots' defaults.
    dots = config.options if config.strategy == DotsStrategy.name else DotsStrategy.about.options()
    report = online_evaluation(
        Path(run.scores_dir), found.feedback, references=found.references, tau_attn=dots.tau_attn,
        forget=dots.forget, reward_max=config.reward_max, reward_min=config.reward_min,
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
        f"tau_attn {report['tau_attn']:g}, forget {report['forget']:g}"
        + (f", calibrator {report['calibrator']}" if report["calibrator"] else "")
        + f"; {len(report['feedback'])} epochs of feedback, {len(report['references'])} other reference set(s)"
    )


def _mean_std(summary: dict[str, Any], metric: str) -> str:
    value, spread = summary[metric], summary[f"{metric}_std"]
    if value is None:
        return "-"
    return f"{value:.3f}" + (f" ± {spread:.3f}" if spread is not None else "")
