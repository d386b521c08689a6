"""`gaincurate schedule ...`: thin commands over `gaincurate.schedule.run.run` and `gaincurate.integrations.command`.

    gaincurate schedule init --scores scores/ --run run/ --seed 1
    gaincurate schedule step --run run/                                 # writes run/epoch-0000.parquet
    gaincurate schedule step --run run/ --feedback rollouts.jsonl       # updates mu, writes epoch 1
    gaincurate schedule run --run run/ --epochs 10 --trainer-cmd 'python train.py {epoch_data} ...'
    gaincurate schedule status --run run/ [--json] [--plot status.png]
    gaincurate schedule strategies                                      # what each --strategy does, its options

`init` takes the common settings generated from `ScheduleConfig`'s fields, every filter's flag from
`registry.FILTERS` and every strategy's options from their `Options` fields (`gaincurate.cli.schedule_options`);
a value left out (None) takes the config's default.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from gaincurate.cli.fields import fixed_parameters, install, with_default
from gaincurate.cli.options import AsJson, ConfigFile, Quiet, StrategyOption, command_group
from gaincurate.cli.progress import RowProgress, setup_logging
from gaincurate.cli.render import Stdout, emit, note
from gaincurate.cli.schedule_options import (
    RESCORE_PANEL,
    DropDuplicatesOption,
    PromptColumnOption,
    PromptsOption,
    RewardRange,
    ScoresOption,
    common_parameters,
    filter_parameters,
    pair,
    strategy_parameters,
    strategy_settings,
)
from gaincurate.errors import ConfigError, shell_word
from gaincurate.schedule.config import DEFAULT_STRATEGY
from gaincurate.schedule.readout import Thresholds

app = command_group(
    "Turn prompt scores and trainer feedback into each epoch's training data, by the strategy you choose."
)

RunOption = Annotated[Path, typer.Option("--run", help="Run directory (state.json, epoch files, history).")]


def init(
    context: typer.Context,
    run: RunOption,
    scores: ScoresOption = None,
    prompts: PromptsOption = None,
    prompt_column: PromptColumnOption = None,
    drop_duplicates: DropDuplicatesOption = False,
    strategy: StrategyOption = DEFAULT_STRATEGY,
    reward_range: RewardRange = None,
    config: ConfigFile = None,
    as_json: AsJson = False,
    lab: bool = True,  # no flag: `register` says whether init took the options of the strategies kept for comparison
    **values: Any,
) -> None:
    """Create a run directory for a scores directory (or, for strategies that read no score, a prompt file).

    The common options come first; each strategy's own follow in its panel (`--strategy` picks which apply).
    """
    schedule_config = _schedule_config(strategy, reward_range, values, lab, context)
    from gaincurate.schedule.readout_words import readout_needs
    from gaincurate.schedule.run.steps import init_run
    from gaincurate.schedule.run.unscored import init_unscored
    from gaincurate.schedule.sizes import subset_choice

    if (scores is None) == (prompts is None):
        raise ConfigError("pass --scores DIR (a `gaincurate score` directory) or --prompts FILE, one of them")
    if prompt_column is not None and prompts is None:
        raise ConfigError("--prompt-column goes with --prompts; --scores DIR already names its prompt column")
    if drop_duplicates and prompts is None:
        raise ConfigError("--drop-duplicates goes with --prompts; for --scores DIR pass it to `gaincurate score`")
    if prompts is not None:
        with RowProgress("reading prompts", quiet=as_json) as progress:
            _, scheduler = init_unscored(run, str(prompts), schedule_config, prompt_column=prompt_column,
                                         drop_duplicates=drop_duplicates, progress=progress)  # fmt: skip
    else:
        _, scheduler = init_run(run, scores, schedule_config)
    n_prompts = scheduler.n_prompts
    common = {
        key: value for key, value in schedule_config.to_dict().items() if key not in schedule_config.options.names()
    }
    resolved = {**common, "n_prompts": n_prompts, "subset_size": scheduler.subset_size}
    # The strategy's own options as its options dataclass resolved them (likelihood, target, tau, ...), then what it
    # derived from them: a user decides from the whole list, not from the common settings alone.
    resolved |= scheduler.config.options.to_dict() | dict(scheduler.strategy.about.settings)
    chosen = subset_choice(
        schedule_config.subset_size, n_prompts, schedule_config.subset_multiple, scheduler.subset_size
    )
    notes = [chosen, *readout_needs(scheduler), *scheduler.strategy.about.notes]

    def draw(stdout: Stdout) -> None:
        from rich.table import Table

        for line in notes:
            stdout.line(line)
        stdout.line(f"{run}: {n_prompts} prompts, strategy {schedule_config.strategy}; its settings (sizes in ranks):")
        table = Table(show_header=False)
        for key, value in resolved.items():
            table.add_row(key, f"{value:g}" if isinstance(value, float) else str(value))
        stdout.print(table)
        stdout.line(f"next: gaincurate schedule step --run {shell_word(run)}")

    emit({"run": str(run), "params": resolved, "notes": notes}, as_json=as_json, human=draw)


def _with_generated_options(command: Any, lab: bool) -> Any:
    """`command`, a call of `init`, given the signature Typer reads: `init`'s written parameters and, as keywords, the
    common settings (from `ScheduleConfig`'s fields), every filter's flag (from `registry.FILTERS`) and every strategy
    option (from the strategies' `Options` fields; those of the strategies kept for comparison only with `lab`)."""
    # All keyword-only (Typer passes keywords), so that generated options may sit among the written ones. The help
    # shows its panels in the order their first option comes: the common one, the default strategy's, the other
    # product strategies', --prompts' and the filters', and the lab's strategies' last.
    fixed = {p.name: p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in fixed_parameters(init)}
    product, kept = strategy_parameters(lab=lab)
    parameters = [
        fixed["context"], fixed["scores"], fixed["prompts"], fixed["run"], fixed["strategy"],
        *common_parameters("subset_size", "subset_multiple", "seed", "reward_max"), fixed["reward_range"],
        *common_parameters("format", "data_source"), fixed["config"], fixed["as_json"],
        *product, *common_parameters("pause"), *common_parameters("rescore_nproc", panel=RESCORE_PANEL),
        fixed["prompt_column"], fixed["drop_duplicates"], *filter_parameters(),
    ]  # fmt: skip
    return install(command, parameters, kept)


def register(parent: typer.Typer, panel: str, *, lab: bool) -> None:
    """`gaincurate schedule ...` under `parent`, in its help's `panel`. `init` offers the options of the strategies
    kept for comparison only with `lab`, which the CLI's entry decides from its command line (`mounts_the_lab`)."""
    command = _with_generated_options(lambda **values: init(**values, lab=lab), lab)
    app.command("init", help=init.__doc__)(command)
    app.registered_commands.insert(0, app.registered_commands.pop())  # init first in the help: a run starts there
    parent.add_typer(app, name="schedule", rich_help_panel=panel)


def _schedule_config(
    strategy: str, reward_range: str | None, values: dict[str, Any], lab: bool, context: typer.Context
) -> Any:
    """`ScheduleConfig` from `init`'s values: given values only, the comma pairs parsed."""
    from gaincurate.schedule.config import ScheduleConfig, common_fields

    names = [field.name for field in common_fields()]
    common = {name: values[name] for name in names if values.get(name) is not None}
    if reward_range is not None:
        low, high = pair(reward_range)
        # Flags override the file: of two settings of the top reward, one from each, the flag wins.
        in_file = [context.get_parameter_source(name).name == "DEFAULT_MAP" for name in ("reward_range", "reward_max")]
        if common.get("reward_max", high) != high and in_file[0] == in_file[1]:
            raise ConfigError(
                f"--reward-range {reward_range} and --reward-max {common['reward_max']:g} disagree; pass one of them"
            )
        common |= {"reward_min": low, "reward_max": common.get("reward_max", high) if in_file[0] else high}
    options = {name: value for name, value in values.items() if name not in names}
    return ScheduleConfig(strategy=strategy, **common, **strategy_settings(options, lab))


@app.command("step")
def step(
    run: RunOption,
    feedback: Annotated[Path | None, typer.Option(help="The last epoch's rollouts, JSON lines.")] = None,
    checkpoint: Annotated[Path | None, typer.Option(help="Newest checkpoint (or the trainer's output dir).")] = None,
    config: ConfigFile = None,
    quiet: Quiet = False,
    as_json: AsJson = False,
) -> None:
    """Consume the last epoch's feedback, update the strategy (gain: move mu) and write the next epoch (epoch 0 on
    the first call)."""
    setup_logging(quiet or as_json)  # before the heavy imports: the likelihood refresh loads a model
    from gaincurate.schedule.run.run import Run
    from gaincurate.schedule.run.rundir import run_lock

    # The lock `schedule run` holds while its trainer trains: a step beside it is refused, changing nothing.
    with run_lock(run), RowProgress("re-scoring", quiet=quiet or as_json) as progress:
        taken = Run.open(run).step(feedback=feedback, checkpoint=checkpoint, progress=progress)
    for notice in taken.notices:
        if not (quiet or as_json):
            note(notice if notice.startswith("warning: ") else f"note: {notice}")  # the readout's warnings
    from gaincurate.schedule.strategies.contract import draw_words, update_words
    from gaincurate.schedule.strategies.registry import top_level

    strategy = taken.run.config.strategy_class  # a step of a run directory: `taken.run` is its state after the step
    result = {
        "epoch": taken.epoch, "path": str(taken.path), "subset_size": taken.subset_size, "strategy": taken.strategy,
        **top_level(taken.draw), "draw": taken.draw, "record": taken.record, "notices": taken.notices,
    }  # fmt: skip
    update = "" if taken.record is None else update_words(strategy, taken.record)
    drawn = draw_words(strategy, taken.draw)  # gain: "around mu 410.7"; by default "by probe"
    emit(result, as_json=as_json, human=lambda stdout: _draw_step(stdout, result, update, drawn))


def _draw_step(stdout: Stdout, result: dict[str, Any], update: str, drawn: str) -> None:
    """`epoch 0: acc 0.412 over 3008 rollouts<what the update did>`, its readout in a line, then the next epoch."""
    from gaincurate.schedule.readout_words import epoch_words
    from gaincurate.schedule.run.timings import seconds_words

    record = result["record"]
    if record is not None:
        done = f"acc {record['accuracy']:.3f} over {record['rollouts']} rollouts"
        stdout.line(f"epoch {record['epoch']}: {done}{update}")
        stdout.line(f"epoch {record['epoch']} cost: {seconds_words(record.get('timings'))}")
        stdout.line(f"epoch {record['epoch']} {epoch_words(record)}")
    stdout.line(f"epoch {result['epoch']}: {result['subset_size']} prompts {drawn} -> {result['path']}")


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
        str | None, typer.Option(help=with_default("Where the trainer writes feedback.", "RUN/feedback-NNNN.jsonl"))
    ] = None,
    output_dir: Annotated[
        Path | None, typer.Option(help=with_default("The trainer's checkpoint folder.", "RUN/trainer"))
    ] = None,
    initial_checkpoint: Annotated[str, typer.Option(help="{checkpoint} before the trainer has saved one.")] = "",
    allow_stale: Annotated[
        bool,
        typer.Option(
            "--allow-stale",
            help="When the strategy reads the newest model (probe --likelihood, gain) and the trainer left none it "
            "can load: carry on, the epoch marked stale, instead of stopping.",
        ),
    ] = False,
    config: ConfigFile = None,
    quiet: Quiet = False,
    as_json: AsJson = False,
) -> None:
    """Run the whole loop: train an epoch with any trainer command, read its feedback, update, repeat."""
    setup_logging(quiet or as_json)
    from gaincurate.integrations.command import run_loop

    with RowProgress("re-scoring", quiet=quiet or as_json) as progress:
        result = run_loop(
            run, epochs=epochs, trainer_cmd=trainer_cmd, feedback_file=feedback_file, output_dir=output_dir,
            initial_checkpoint=initial_checkpoint, progress=progress, allow_stale=allow_stale,
            echo=None if quiet else sys.stderr,  # the trainer's output, bounded (its full log is in RUN/logs/)
        )  # fmt: skip
    from gaincurate.schedule.figures import figure_words
    from gaincurate.schedule.run.rundir import load_run
    from gaincurate.schedule.strategies.registry import top_level

    done = {"trained": result.trained, "epoch": result.epoch, **top_level(result.draw), "draw": result.draw}
    words = figure_words(load_run(run).config.strategy_class.about.columns, result.draw)  # "mu 410.7"
    shown = f", {words}" if words else ""

    def draw(stdout: Stdout) -> None:
        trained = ", ".join(map(str, result.trained)) or "none (already done)"
        stdout.line(f"trained epochs: {trained}; epoch {result.epoch} is written and waiting{shown}")

    emit(done, as_json=as_json, human=draw)


@app.command()
def status(
    run: RunOption,
    plot: Annotated[
        Path | None, typer.Option(help="Also draw the run into this file: a PNG for .png, a text chart otherwise.")
    ] = None,
    warn_zero_variance: Annotated[
        float,
        typer.Option(help="Warn when this share of rollout groups had zero reward variance two epochs in a row."),
    ] = Thresholds.zero_variance,
    warn_correlation: Annotated[
        float, typer.Option(help="Warn when the estimates' correlation with the measured pass rates is below this.")
    ] = Thresholds.correlation,
    config: ConfigFile = None,
    as_json: AsJson = False,
) -> None:
    """Show each epoch's accuracy and savings readout: what the strategy aimed at, what the feedback measured,
    its informative groups against the run's own uniform slice, the verdict so far, and warnings (docs/readout.md)."""
    from gaincurate.cli.status import draw_status
    from gaincurate.schedule.run.plot import save_plot
    from gaincurate.schedule.run.rundir import load_run
    from gaincurate.schedule.run.status import run_status

    thresholds = Thresholds(zero_variance=warn_zero_variance, correlation=warn_correlation)
    report = run_status(run, thresholds) | {"finished": load_run(run).is_finished}
    if plot is not None:
        report["plot"] = str(save_plot(plot, report))
    emit(report, as_json=as_json, human=lambda stdout: draw_status(stdout, report))


@app.command()
def strategies(config: ConfigFile = None, as_json: AsJson = False) -> None:
    """List the strategies `init --strategy` takes: what each draws, its own options, and which is the default."""
    import dataclasses

    from gaincurate.schedule.options import flag
    from gaincurate.schedule.run.unscored import MODEL_PASS
    from gaincurate.schedule.strategies.registry import KEPT_FOR_COMPARISON, STRATEGIES

    listed = [
        {"strategy": name, "default": name == DEFAULT_STRATEGY, "draws": cls.about.summary,
         "options": [flag(field.name) for field in dataclasses.fields(cls.about.options)],
         "needs": sorted(cls.about.needs), "prompts_file": not cls.about.needs & MODEL_PASS,
         "kept_for_comparison": name in KEPT_FOR_COMPARISON}
        for name, cls in STRATEGIES.items()
    ]  # fmt: skip

    def draw(stdout: Stdout) -> None:
        from rich.table import Table

        table = Table(title="gaincurate schedule init --strategy NAME", show_lines=True)
        for column in ("strategy", "what it draws (and what it saved on the bench)", "its options", "reads"):
            table.add_column(column)
        for row in listed:
            name = row["strategy"] + (" (default)" if row["default"] else "")
            name += " (kept for comparison, gaincurate/lab)" if row["kept_for_comparison"] else ""
            reads = [", ".join(row["needs"]), "no score: --prompts FILE will do" if row["prompts_file"] else ""]
            table.add_row(name, row["draws"], " ".join(row["options"]) or "-", "; ".join(filter(None, reads)) or "-")
        stdout.print(table)
        stdout.line("Which to use: docs/strategies.md; an option shared by several strategies is one flag.")

    emit(listed, as_json=as_json, human=draw)
