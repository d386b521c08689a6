"""`gaincurate bench scoring|kernel|gpu|replay|profile|scale`: the measurements behind docs/benchmarks.md.

    gaincurate bench scoring --data math_train.json --rows 200 --threads 1 --out r.json
    gaincurate bench kernel --quick
    gaincurate bench gpu --device cpu --tiny --rows 16
    gaincurate bench replay --steps 12
    gaincurate bench profile --data math_train.json --offset 5000 --rows 200 --gates
    gaincurate bench scale --sizes 10000,100000 --workdir scale-bench

Each command's options are its library bench's fields (a dataclass in gaincurate.lab.benchmarks.* or
gaincurate.kernels.bench_options), generated with `gaincurate.cli.fields`, so a default and its help are written
once, in the field; the command builds the dataclass from the options given, runs it and prints the result:
a table, or with `--json` the whole result; `--out FILE` also writes the result as JSON. They load torch
only when they run, and their errors take the CLI's one error path.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from gaincurate.cli.fields import field_parameters, fixed_parameters, given, install
from gaincurate.cli.options import AsJson, ConfigFile, Quiet
from gaincurate.cli.progress import setup_logging
from gaincurate.cli.render import emit, json_text, note
from gaincurate.errors import ConfigError, GaincurateError
from gaincurate.kernels.bench_options import KernelBench
from gaincurate.lab.benchmarks.gpu import GpuBench
from gaincurate.lab.benchmarks.replay import BenchConfig as ReplayBench
from gaincurate.lab.benchmarks.scale import ScaleBench
from gaincurate.lab.benchmarks.scoring import ScoringBench
from gaincurate.lab.benchmarks.scoring_profile import ProfileBench

JsonOut = Annotated[Path | None, typer.Option("--out", "-o", metavar="FILE", help="Also write the result as JSON.")]


def _words(text: str) -> tuple[str, ...]:
    return tuple(word.strip() for word in text.split(",") if word.strip())


def _sizes(text: str) -> tuple[int, ...]:
    """A comma list of positive integers, checked at parse time (its ValueError is the usage error naming it)."""
    words = _words(text)
    if not all(word.isdigit() and int(word) > 0 for word in words):
        raise ValueError("expected a comma list of positive integers such as 256,512,1024")
    return tuple(int(word) for word in words)


# A field's spelling on the command line (`setting(cli=...)`), when it is not a plain value.
_PARSERS = {"words": _words, "sizes": _sizes}


def register(bench_app: typer.Typer) -> None:
    """Add the six measurement commands to `gaincurate bench`, after `curriculum`: each takes its bench's fields
    as options (generated from the dataclass), then `--out`, `--config` and the output switches."""
    for command, options in _BENCHES.items():
        install(command, [], [*field_parameters(options, parsers=_PARSERS), *fixed_parameters(command)])
        bench_app.command(epilog=_EPILOGS[command.__name__])(command)


def scoring(
    *, out: JsonOut = None, config: ConfigFile = None, quiet: Quiet = False, as_json: AsJson = False, **values: Any
) -> None:
    """Scoring throughput against the naive published scorer and the forward's compute floor, in one run."""
    setup_logging(quiet or as_json)
    from gaincurate.lab.benchmarks.scoring import bench_scoring, result_lines

    _check_out(out)
    _finish(bench_scoring(ScoringBench(**given(ScoringBench, values))), out, as_json, result_lines)


def kernel(
    *, out: JsonOut = None, config: ConfigFile = None, quiet: Quiet = False, as_json: AsJson = False, **values: Any
) -> None:
    """Check every segment-sum backend against the float64 reference, then time them against the O(T^2) way."""
    setup_logging(quiet or as_json)
    from gaincurate.kernels.bench import failed_checks, render_table, run_kernel_bench

    _check_out(out)
    report = run_kernel_bench(KernelBench(**given(KernelBench, values)), quiet=quiet or as_json)
    _finish(report, out, as_json, lambda result: render_table(result).splitlines())
    failed = failed_checks(report)
    if failed:
        raise GaincurateError(
            f"{len(failed)} kernel correctness checks failed ({', '.join(failed[:3])}); "
            "use --backend torch when scoring, and report the table above"
        )


def gpu(
    *, out: JsonOut = None, config: ConfigFile = None, quiet: Quiet = False, as_json: AsJson = False, **values: Any
) -> None:
    """Scoring throughput of 0.5B-, 1.5B- and 7B-class random Qwen2 models on one GPU (long and MATH-length prompts),
    with batches, padding and packing, against naive and the roofline; rollout against its decode floor; the
    likelihood's half-dtype ranking."""
    setup_logging(quiet or as_json)
    from gaincurate.lab.benchmarks.gpu import bench_gpu, table_lines

    _check_out(out)
    _finish(bench_gpu(GpuBench(**given(GpuBench, values))), out, as_json, table_lines)


def replay(
    *, out: JsonOut = None, config: ConfigFile = None, quiet: Quiet = False, as_json: AsJson = False, **values: Any
) -> None:
    """Generated tokens and seconds per GRPO step without and with rollout replay (tiny random Llama, CPU)."""
    setup_logging(quiet or as_json)
    from gaincurate.lab.benchmarks.replay import format_table, run_bench

    options = ReplayBench(**given(ReplayBench, values))
    _check_out(out)
    if not (quiet or as_json):
        note(f"benchmarking {options}")
    _finish(run_bench(options), out, as_json, lambda result: format_table(result).splitlines())


def profile(
    *, out: JsonOut = None, config: ConfigFile = None, quiet: Quiet = False, as_json: AsJson = False, **values: Any
) -> None:
    """Where a warm scoring pass spends its time, by kind of operator (torch.profiler)."""
    setup_logging(quiet or as_json)
    from gaincurate.lab.benchmarks.scoring_profile import bench_profile, profile_lines

    _check_out(out)
    _finish(bench_profile(ProfileBench(**given(ProfileBench, values))), out, as_json, profile_lines)


def scale(
    *, out: JsonOut = None, config: ConfigFile = None, quiet: Quiet = False, as_json: AsJson = False, **values: Any
) -> None:
    """Seconds and peak memory of every strategy's schedule steps on synthetic pools of each size."""
    setup_logging(quiet or as_json)
    from gaincurate.lab.benchmarks.scale import bench_scale, failures, result_lines

    options = ScaleBench(**given(ScaleBench, values))
    _check_out(out)

    def progress(size: int, name: str, line: dict[str, Any]) -> None:
        if not (quiet or as_json):
            note(
                f"{size:,} prompts, {name}: "
                + ("skipped" if "skipped" in line else "failed" if "failed" in line else "done")
            )

    result = bench_scale(options, progress)
    _finish(result, out, as_json, result_lines)
    failed = failures(result)
    if failed:
        raise GaincurateError(
            f"{len(failed)} strategy run{'s' if len(failed) > 1 else ''} failed ({', '.join(failed[:3])}"
            f"{', ...' if len(failed) > 3 else ''}); each one's error is in its table row"
        )


# Each command and the dataclass whose fields are its options.
_BENCHES = {
    scoring: ScoringBench,
    kernel: KernelBench,
    gpu: GpuBench,
    replay: ReplayBench,
    profile: ProfileBench,
    scale: ScaleBench,
}
_EPILOGS = {
    "scoring": "Example:\n\n* `gaincurate bench scoring --data ../shared/data/math_train.json --rows 200 --threads 1`",
    "kernel": "Example:\n\n* `gaincurate bench kernel --quick` (a GPU run: `gaincurate bench kernel --out r.json`)",
    "gpu": "Example:\n\n* `gaincurate bench gpu --out docs/results/gpu/NAME.json` (on a CUDA machine; "
    "`--device cpu --tiny --rows 16` is a smoke test anywhere)",
    "replay": "Example:\n\n* `gaincurate bench replay --steps 12 --out bench.json`",
    "profile": "Example:\n\n* `gaincurate bench profile --data ../shared/data/math_train.json --rows 200 --gates`",
    "scale": "Example:\n\n* `gaincurate bench scale --sizes 10000,100000 --workdir scale-bench --out scale.json`",
}


def _check_out(out: Path | None) -> None:
    """Refuse an --out the result cannot be written to before the bench runs, so no measurement is lost."""
    if out is None:
        return
    if out.is_dir():
        raise ConfigError(f"--out {out} is a folder; pass a file path, such as {out / 'result.json'}")
    folder = out.parent
    if not folder.is_dir():
        raise ConfigError(f"--out {out}: the folder {folder} does not exist; create it, or pick another path")
    if not os.access(folder, os.W_OK):
        raise ConfigError(f"--out {out}: the folder {folder} is not writable; pick another path")


def _finish(result: dict[str, Any], out: Path | None, as_json: bool, lines: Any) -> None:
    """Write the result to `out` as JSON (when given), then print it: JSON with `--json`, else its lines."""
    if out is not None:
        out.write_text(json_text(result) + "\n")

    def human(stdout: Any) -> None:
        for line in lines(result):
            stdout.line(line)

    emit(result, as_json=as_json, human=human)
