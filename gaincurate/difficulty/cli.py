"""`gaincurate difficulty ...` and `gaincurate rollout`: thin commands over the difficulty jobs.

    gaincurate rollout scores/ --out ref.jsonl --samples 4 --reference-size 256
    gaincurate difficulty predict scores/ --feedback ref.jsonl --out predicted.jsonl
    gaincurate difficulty fit scores/ --feedback ref.jsonl --out calibrator.npz
    gaincurate difficulty evaluate scores/ --feedback ref.jsonl --json

Results go to stdout (or --out); progress and notes to stderr.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    help="Predict prompt pass rates from embeddings and measured rollouts (DOTS), and check the predictions.",
)

ScoresArgument = Annotated[Path, typer.Argument(help="Scores directory written by `gaincurate score --embed`.")]
FeedbackOption = Annotated[
    list[Path],
    typer.Option("--feedback", "-f", help="Feedback JSON lines with measured rollouts; repeat, oldest first."),
]
TauAttn = Annotated[float, typer.Option(help="Attention temperature on cosine similarity.")]
RewardMax = Annotated[float, typer.Option(help="Reward of a correct rollout.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON on stdout instead of a table.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar on stderr.")]


def _echo_json(data: object) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True))


@app.command()
def predict(
    scores: ScoresArgument,
    feedback: FeedbackOption,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write JSON lines here instead of stdout.")] = None,
    tau_attn: TauAttn = 0.1,
    decay: Annotated[float, typer.Option(help="Weight per feedback file of age (1: all alike).")] = 1.0,
    calibrator: Annotated[Path | None, typer.Option(help="A calibrator from `difficulty fit`.")] = None,
    reward_max: RewardMax = 1.0,
) -> None:
    """Predict every prompt's pass rate by attention over the measured ones (leave-one-out for those)."""
    from gaincurate.difficulty.jobs import predict_scores
    from gaincurate.fileio import atomic_write_bytes

    rows = predict_scores(
        scores, feedback, tau_attn=tau_attn, decay=decay, reward_max=reward_max, calibrator_path=calibrator
    )
    text = "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows)
    if out is None:
        typer.echo(text, nl=False)
        return
    atomic_write_bytes(out, text.encode())
    measured = sum(row["measured"] is not None for row in rows)
    typer.echo(f"{out}: {len(rows)} prompts ({measured} measured, predicted leave-one-out)")


@app.command()
def fit(
    scores: ScoresArgument,
    feedback: FeedbackOption,
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the calibrator (.npz).")],
    tau_attn: TauAttn = 0.1,
    dim: Annotated[int, typer.Option(help="Adapter output dimension.")] = 32,
    steps: Annotated[int, typer.Option(help="Adam steps (full batch).")] = 200,
    folds: Annotated[int, typer.Option(help="Cross-fitting folds for leave-one-out predictions.")] = 5,
    seed: Annotated[int, typer.Option(help="Seed of the folds and the fit.")] = 0,
    reward_max: RewardMax = 1.0,
    as_json: AsJson = False,
) -> None:
    """Fit a linear adapter and a calibration head on measured prompts, leave-one-out (CPU, torch)."""
    from gaincurate.difficulty.calibrate import FitConfig
    from gaincurate.difficulty.jobs import fit_scores
    from gaincurate.errors import ConfigError

    try:
        config = FitConfig(dim=dim, steps=steps, folds=folds, seed=seed, tau=tau_attn)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    report = fit_scores(scores, feedback, out, config=config, reward_max=reward_max)
    if as_json:
        _echo_json(report)
        return
    fitted, raw = report["loo_fit"], report["loo_attention"]
    typer.echo(
        f"{out}: fitted on {report['reference_prompts']} prompts; leave-one-out Pearson "
        f"{fitted['pearson']:.3f} (attention alone {raw['pearson']:.3f}), MAE {fitted['mae']:.3f} "
        f"(attention alone {raw['mae']:.3f}); head w={report['weight']:.3f} b={report['bias']:.3f}"
    )


@app.command()
def evaluate(
    scores: ScoresArgument,
    feedback: FeedbackOption,
    holdout: Annotated[float, typer.Option(help="Fraction of measured prompts held out per repeat.")] = 0.2,
    repeats: Annotated[int, typer.Option(help="Seeded splits to average over.")] = 5,
    seed: Annotated[int, typer.Option(help="Seed of the splits.")] = 0,
    tau_attn: TauAttn = 0.1,
    no_fit: Annotated[bool, typer.Option("--no-fit", help="Skip the fitted adapter (no torch needed).")] = False,
    reward_max: RewardMax = 1.0,
    against: Annotated[
        list[str] | None,
        typer.Option(help="Numeric input column (a known difficulty label) to set beside the methods (repeatable)."),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Hold out measured prompts, predict them from the rest, and compare with three baselines."""
    from rich.console import Console
    from rich.table import Table

    from gaincurate.difficulty.evaluate import EvaluateConfig
    from gaincurate.difficulty.jobs import evaluate_scores
    from gaincurate.errors import ConfigError

    try:
        config = EvaluateConfig(holdout=holdout, repeats=repeats, seed=seed, tau_attn=tau_attn, fit=not no_fit)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    report = evaluate_scores(scores, feedback, config=config, reward_max=reward_max, against=against or ())
    if as_json:
        _echo_json(report)
        return
    table = Table(
        title=f"{report['held_out']} of {report['prompts']} measured prompts held out, "
        f"{report['repeats']} repeats (mean ± std)"
    )
    for column in ("method", "Pearson", "Spearman", "MAE"):
        table.add_column(column, justify="left" if column == "method" else "right")

    def cell(summary: dict, metric: str) -> str:
        value, spread = summary[metric], summary[f"{metric}_std"]
        if value is None:
            return "-"
        return f"{value:.3f}" + (f" ± {spread:.3f}" if spread is not None else "")

    for name, summary in report["methods"].items():
        table.add_row(name, cell(summary, "pearson"), cell(summary, "spearman"), cell(summary, "mae"))
    console = Console()
    console.print(table)
    ceiling = report["noise_ceiling"]
    console.print(
        f"mean pass rate {report['mean_pass_rate']:.3f}; noise ceiling on Pearson "
        f"{'-' if ceiling is None else f'{ceiling:.3f}'} (binomial noise of the measured rates)"
    )
    solved = report["measured"]
    console.print(
        f"measured prompts: {solved['never']} never solved, {solved['sometimes']} sometimes, {solved['always']} always"
    )
    for name, wins in report["attention_vs"].items():
        pearson_wins = "" if wins["pearson_higher"] is None else f"higher Pearson in {wins['pearson_higher']}, "
        console.print(f"attention vs {name}: {pearson_wins}lower MAE in {wins['mae_lower']} of {wins['splits']} splits")
    for column, compared in report.get("against", {}).items():
        correlation = "-" if compared["pearson"] is None else f"{compared['pearson']:.3f}"
        line = f"{column} (all measured prompts, not held out): Pearson {correlation}"
        if compared["by_value"]:
            levels = ", ".join(f"{level['value']:g}: {level['mean_pass_rate']:.3f}" for level in compared["by_value"])
            line += f"; mean pass rate by value {levels}"
        console.print(line)


def rollout(
    scores: ScoresArgument,
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
    answer_format: Annotated[
        str,
        typer.Option(
            help="boxed: the last \\boxed{} is the answer (as GRPO rewards check); "
            "any: math-verify finds it (box, 'the answer is', last expression)."
        ),
    ] = "boxed",
    batch_size: Annotated[int, typer.Option(help="Sequences per generate call (whole prompt groups).")] = 32,
    dtype: Annotated[str, typer.Option(help="auto, float32, bfloat16 or float16.")] = "auto",
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:N].")] = "auto",
    threads: Annotated[
        int | None, typer.Option(help="CPU threads for torch (1 is often fastest on a busy shared CPU).")
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Start --out again instead of resuming.")] = False,
    quiet: Quiet = False,
    as_json: AsJson = False,
) -> None:
    """Measure pass rates: sample answers with `generate` and check them with math-verify.

    Writes one {"gc_id", "reward"} line per rollout; re-running the same command resumes.
    """
    from gaincurate.cli import RowProgress, _setup_logging
    from gaincurate.errors import ConfigError
    from gaincurate.rollout import RolloutConfig, run_rollouts

    _setup_logging(quiet or as_json)
    try:
        config = RolloutConfig(
            scores=str(scores),
            out=str(out),
            model=model,
            samples=samples,
            reference_size=reference_size,
            ids_file=None if ids is None else str(ids),
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            seed=seed,
            answer_column=answer_column,
            answer_format=answer_format,
            batch_size=batch_size,
            dtype=dtype,
            device=device,
            threads=threads,
            overwrite=overwrite,
        )
    except ValueError as error:
        raise ConfigError(str(error)) from None
    with RowProgress(quiet or as_json, "rollouts (prompts)") as progress:
        result = run_rollouts(config, progress=progress.advance, on_total=progress.set_total)
    if as_json:
        _echo_json(result.to_dict())
        return
    rate = "-" if result.mean_reward is None else f"{result.mean_reward:.3f}"
    speed = (
        "-"
        if result.tokens_per_second is None
        else (f"{result.tokens_per_second:.1f} tokens/s, {result.rollouts_per_second:.2f} rollouts/s")
    )
    typer.echo(
        f"{out}: {result.prompts} prompts x {config.samples} samples ({result.prompts_resumed} resumed), "
        f"{result.rollouts_written} rollouts written ({result.truncated_rollouts} cut at --max-new-tokens), "
        f"mean reward {rate}; {speed}"
    )
