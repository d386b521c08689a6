"""`gaincurate bench curriculum` and `gaincurate signal check`: the measurements behind the docs' claims.

    gaincurate bench curriculum --bench cpu-arith --out bench/ --strategies uniform,gain,oracle --seeds 3
    gaincurate signal check scores/ --data problems.jsonl --rows 200 --json

`bench curriculum` trains every (strategy, seed) pair with stock TRL GRPO and reports accuracy per rollout
spent (gaincurate.lab.benchmarks.curriculum); a killed bench resumes at the first unfinished pair. `signal
check` correlates the angle score with the gradient of each prompt's right answer, beyond length
(gaincurate.lab.benchmarks.signal). Both load torch only when they run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from gaincurate.cli.fields import field_parameters, fixed_parameters, given, install
from gaincurate.cli.options import AsJson, ConfigFile, Quiet, ScoresDirArgument, command_group
from gaincurate.cli.progress import RowProgress, setup_logging
from gaincurate.cli.render import Stdout, emit
from gaincurate.lab.benchmarks.curriculum.bundled import BENCH_HELP, DEMO_WORKERS
from gaincurate.lab.benchmarks.curriculum.run_options import BenchRun
from gaincurate.lab.benchmarks.curriculum.verdicts import VERDICTS
from gaincurate.lab.benchmarks.curriculum.warm_starts import DECLARATION
from gaincurate.lab.benchmarks.signal import SignalCheck

bench_app = command_group(
    "Measure what a curriculum buys: held-out accuracy per rollout spent, strategy against strategy."
)
signal_app = command_group("Check that the angle score carries learning signal on a model, beyond prompt length.")


DEMO_OUT = "bench-demo"


def _words(text: str) -> tuple[str, ...] | None:
    """A comma list, blanks dropped; none left means "not given" (the config's)."""
    return tuple(word.strip() for word in text.split(",") if word.strip()) or None


def _seeds(text: str) -> str:
    """A --seeds spec checked at parse time: a malformed one is a usage error naming it, before torch loads."""
    from gaincurate.errors import ConfigError
    from gaincurate.lab.benchmarks.curriculum.run_options import parse_seeds

    try:
        parse_seeds(text)
    except ConfigError as error:
        raise ValueError(str(error)) from None
    return text


def _check_outputs(report: Path | None, plot: Path | None, demo: bool) -> None:
    from gaincurate.errors import ConfigError

    if plot is not None and plot.suffix.lower() != ".png":
        raise ConfigError(f"--plot {plot}: the curves are drawn as a PNG; give a name ending in .png")
    if report is not None and demo:
        raise ConfigError("--demo runs the demo bench and --report reads a finished one; pass one of them")


def curriculum(
    *,
    bench: Annotated[
        str | None,
        typer.Option(
            "--bench",
            metavar="NAME|FILE",
            help=f"{BENCH_HELP} Across warm starts: {next(iter(VERDICTS))} or a later one (docs/benchmark-history.md).",
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Bench directory (resumed when it holds this bench).")
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option(help="Print the tables re-derived from a bench directory or docs/results/NAME; trains nothing."),
    ] = None,
    plot: Annotated[Path | None, typer.Option(help="With --report: draw the curves to this PNG.")] = None,
    demo: Annotated[
        bool,
        typer.Option(
            "--demo",
            help="See the saving in about four minutes (3 min 33 s on 2 idle AMD EPYC cores): the bundled `demo` "
            "bench (cpu-arith, uniform against the strategy a schedule uses when none is named, two fresh seeds, two "
            "workers), into --out.",
        ),
    ] = False,
    config: ConfigFile = None,
    quiet: Quiet = False,
    as_json: AsJson = False,
    **run: Any,
) -> None:
    """Train each arm and seed with stock TRL GRPO; print the declared paired comparisons against the baseline."""
    setup_logging(quiet or as_json)
    from gaincurate.errors import ConfigError
    from gaincurate.lab.benchmarks.curriculum.report import markdown_table

    _check_outputs(report, plot, demo)
    if report is not None and (report / DECLARATION).is_file():  # a warm-start run: its units pooled
        from gaincurate.lab.benchmarks.curriculum.pooled import report as pooled_report

        summary, table = pooled_report(report)
        emit(summary, as_json=as_json, human=lambda stdout: stdout.write(table))
        return
    if report is not None:
        from gaincurate.lab.benchmarks.curriculum.report import plot_results
        from gaincurate.lab.benchmarks.curriculum.report import report as rederive

        summary, table = rederive(report)
        if plot is not None:
            plot_results(report, plot)
        emit(summary, as_json=as_json, human=lambda stdout: stdout.write(table))
        return
    options = given(BenchRun, run)
    if demo:
        if bench not in (None, "demo"):
            raise ConfigError(f"--demo runs the bundled demo bench; drop --bench {bench}, or drop --demo")
        bench, out = "demo", out or Path(DEMO_OUT)
        options = {"workers": DEMO_WORKERS, **options}
    if bench is None or out is None:
        raise ConfigError("bench curriculum needs --bench and --out to run a bench (or --report DIR to read one)")
    if bench in VERDICTS:
        _warm_starts(bench, out, options, quiet=quiet, as_json=as_json)
        return
    from gaincurate.lab.benchmarks.curriculum.bench import run_bench

    with RowProgress("bench (optimizer steps)", quiet=quiet or as_json) as progress:
        summary = run_bench(bench, out, progress=progress, **options)
    from gaincurate.lab.benchmarks.curriculum.readout import readout_markdown
    from gaincurate.lab.benchmarks.curriculum.report import demo_note

    shown = markdown_table(summary) + readout_markdown(summary.get("readout") or {})
    if demo:
        shown += demo_note(summary, "demo") + (
            f"\nCurves: {out / 'curves.png'}. The same tables and plot again from the folder: gaincurate bench "
            f"curriculum --report {out} --plot curves.png\n"
        )
    emit(summary, as_json=as_json, human=lambda stdout: stdout.write(shown))


def _warm_starts(bench: str, out: Path, options: dict[str, Any], *, quiet: bool, as_json: bool) -> None:
    """A warm-start verdict: its declared arms and seeds on every unit; only --workers and --smoke apply."""
    from gaincurate.errors import ConfigError
    from gaincurate.lab.benchmarks.curriculum.pooled import report
    from gaincurate.lab.benchmarks.curriculum.warm_starts import run_warm_starts

    extra = sorted(set(options) - {"workers", "smoke"})
    if extra:
        raise ConfigError(f"--bench {bench} runs its declared arms and seeds; drop --{extra[0].replace('_', '-')}")
    with RowProgress("warm starts (units: a task's warm start)", quiet=quiet or as_json) as progress:
        run_warm_starts(bench, out, progress=progress, **options)
    summary, table = report(out)
    emit(summary, as_json=as_json, human=lambda stdout: stdout.write(table))


def _with_run_options(command: Any) -> Any:
    """`curriculum` taking `BenchRun`'s fields as options, after --bench, --out, --report, --plot and --demo."""
    fixed = fixed_parameters(command)
    generated = field_parameters(BenchRun, parsers={"words": _words, "seeds": _seeds})
    return install(command, [], [*fixed[:5], *generated, *fixed[5:]])


bench_app.command(
    epilog="Examples:\n\n* `gaincurate bench curriculum --demo` (uniform against probe as shipped: the likelihood on, "
    "3 min 33 s on 2 idle AMD EPYC cores)\n\n* `gaincurate bench curriculum --bench cpu-arith --out bench --smoke`\n\n"
    "* `gaincurate bench curriculum --bench cpu-arith --out bench --seeds 100-111 --workers 2`\n\n"
    "* `gaincurate bench curriculum --report docs/results/cpu-arith` (the published tables, re-derived)"
)(_with_run_options(curriculum))


def check(
    scores: ScoresDirArgument,
    *,
    config: ConfigFile = None,
    quiet: Quiet = False,
    as_json: AsJson = False,
    **values: Any,
) -> None:
    """Spearman of each prompt's answer-gradient norm with its score, its length and its difficulty."""
    setup_logging(quiet or as_json)
    from gaincurate.lab.benchmarks.signal import signal_check

    with RowProgress("signal (prompts)", quiet=quiet or as_json) as progress:
        result = signal_check(scores, progress=progress, **given(SignalCheck, values))
    emit(result, as_json=as_json, human=lambda stdout: _draw_signal(stdout, result))


signal_app.command(
    epilog="Example:\n\n* `gaincurate signal check scores --data problems.jsonl --rows 200` after `gaincurate score`"
)(install(check, fixed_parameters(check)[:1], [*field_parameters(SignalCheck), *fixed_parameters(check)[1:]]))


def _draw_signal(stdout: Stdout, result: dict[str, Any]) -> None:
    def number(value: float | None) -> str:
        return "-" if value is None else f"{value:+.3f}"

    stdout.line(f"{result['rows']} prompts: Spearman of the answer-gradient norm with")
    for name, value in result["spearman"].items():
        stdout.line(f"  {name:<16} {number(value)}")
    stdout.line(f"  score, length held fixed (partial) {number(result['partial_spearman_score_given_length'])}")
