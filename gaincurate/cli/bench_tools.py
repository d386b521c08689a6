"""`gaincurate bench scoring|kernel|gpu|replay|profile`: the throughput measurements behind docs/benchmarks.md.

    gaincurate bench scoring --data ../shared/data/math_train.json --rows 200 --threads 1 --out r.json
    gaincurate bench kernel --quick
    gaincurate bench gpu --device cpu --tiny --rows 16
    gaincurate bench replay --steps 12
    gaincurate bench profile --data ../shared/data/math_train.json --offset 5000 --rows 200 --gates

Each command builds its library bench's options (a dataclass in gaincurate.benchmarks.* or
gaincurate.kernels.bench, whose defaults are the options' defaults here), runs it and prints the result:
a table, or with `--json` the whole result; `--out FILE` also writes the result as JSON. They load torch
only when they run, and their errors take the CLI's one error path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from gaincurate.benchmarks.gpu import GpuBench
from gaincurate.benchmarks.replay import BenchConfig as ReplayBench
from gaincurate.benchmarks.scoring import ScoringBench
from gaincurate.benchmarks.scoring_profile import ProfileBench
from gaincurate.cli.options import AsJson, ConfigFile, Quiet
from gaincurate.cli.progress import setup_logging
from gaincurate.cli.render import emit, json_text, note
from gaincurate.errors import ConfigError, GaincurateError

Data = Annotated[str, typer.Option(help="JSON/JSONL prompt file with a 'problem' column.")]
Rows = Annotated[int, typer.Option(min=1, help="Rows to score.")]
Offset = Annotated[int, typer.Option(min=0, help="Skip this many rows first.")]
Model = Annotated[str | None, typer.Option(help="Hub id, local folder or .gguf (default: the embedded SmolLM2-135M).")]
Dtype = Annotated[str, typer.Option(help="gaincurate's dtype; auto: measured on this machine.")]
BatchTokens = Annotated[int | None, typer.Option(min=1, help="Padded tokens per batch (default: measured).")]
Threads = Annotated[int | None, typer.Option(min=1, help="Torch CPU threads (default: torch's choice).")]
JsonOut = Annotated[Path | None, typer.Option("--out", "-o", metavar="FILE", help="Also write the result as JSON.")]


def register(bench_app: typer.Typer) -> None:
    """Add the five measurement commands to `gaincurate bench`, after `curriculum`."""
    for command in (scoring, kernel, gpu, replay, profile):
        bench_app.command(epilog=_EPILOGS[command.__name__])(command)


def scoring(
    data: Data,
    rows: Rows = ScoringBench.rows,
    offset: Offset = ScoringBench.offset,
    model: Model = None,
    dtype: Dtype = ScoringBench.dtype,
    batch_tokens: BatchTokens = None,
    compare_dtypes: Annotated[str, typer.Option(help="Comma list: also score with each forced dtype.")] = "",
    batch_sweep: Annotated[str, typer.Option(help="Comma list: also score with each forced batch size.")] = "",
    no_naive: Annotated[bool, typer.Option("--no-naive", help="Skip the naive published-style baseline.")] = False,
    memory: Annotated[bool, typer.Option("--memory", help="Also measure peak RSS at 500 and 5,000 rows.")] = False,
    memory_layer: Annotated[int, typer.Option(help="Site layer of the memory runs.")] = ScoringBench.memory_layer,
    threads: Threads = None,
    out: JsonOut = None,
    config: ConfigFile = None,
    quiet: Quiet = False,
    as_json: AsJson = False,
) -> None:
    """Scoring throughput against the naive published scorer and the forward's compute floor, in one run."""
    setup_logging(quiet or as_json)
    from gaincurate.benchmarks.scoring import bench_scoring, result_lines

    options = ScoringBench(
        data=data, rows=rows, offset=offset, model=model, dtype=dtype, batch_tokens=batch_tokens,
        compare_dtypes=_words(compare_dtypes), batch_sweep=tuple(_integers("--batch-sweep", batch_sweep)),
        naive=not no_naive, memory=memory, memory_layer=memory_layer, threads=threads,
    )  # fmt: skip
    _finish(bench_scoring(options), out, as_json, result_lines)


def kernel(
    quick: Annotated[bool, typer.Option("--quick", help="Fewer shapes, no config sweep.")] = False,
    device: Annotated[Literal["auto", "cuda", "cpu"], typer.Option(help="Where to check and time.")] = "auto",
    out: JsonOut = None,
    config: ConfigFile = None,
    as_json: AsJson = False,
) -> None:
    """Check every segment-sum backend against the float64 reference, then time them against the O(T^2) way."""
    from gaincurate.kernels.bench import failed_checks, render_table, run_kernel_bench

    report = run_kernel_bench(device, quick)
    _finish(report, out, as_json, lambda result: render_table(result).splitlines())
    failed = failed_checks(report)
    if failed:
        raise GaincurateError(
            f"{len(failed)} kernel correctness checks failed ({', '.join(failed[:3])}); "
            "use --backend torch when scoring, and report the table above"
        )


def gpu(
    device: Annotated[str, typer.Option(help="cuda[:N], or cpu for a smoke test.")] = GpuBench.device,
    dtype: Annotated[str, typer.Option(help="Model and scoring dtype.")] = GpuBench.dtype,
    rows: Rows = GpuBench.rows,
    naive_rows: Annotated[int, typer.Option(min=1, help="Rows for the naive baseline.")] = GpuBench.naive_rows,
    prompt_tokens: Annotated[int, typer.Option(min=8, help="Tokens per prompt.")] = GpuBench.prompt_tokens,
    batch_tokens: Annotated[int, typer.Option(min=1, help="Padded tokens per batch.")] = GpuBench.batch_tokens,
    tiny: Annotated[bool, typer.Option("--tiny", help="A 2-layer model: a smoke test of the bench.")] = False,
    out: JsonOut = None,
    config: ConfigFile = None,
    quiet: Quiet = False,
    as_json: AsJson = False,
) -> None:
    """Scoring throughput of 0.5B- and 1.5B-class random Qwen2 models on one GPU, against naive and the roofline."""
    setup_logging(quiet or as_json)
    from gaincurate.benchmarks.gpu import bench_gpu, table_lines

    options = GpuBench(
        device=device, dtype=dtype, rows=rows, naive_rows=naive_rows, prompt_tokens=prompt_tokens,
        batch_tokens=batch_tokens, tiny=tiny,
    )  # fmt: skip
    _finish(bench_gpu(options), out, as_json, table_lines)


def replay(
    steps: Annotated[int, typer.Option(min=1, help="Optimizer steps per run.")] = ReplayBench.steps,
    batch_prompts: Annotated[int, typer.Option(min=1, help="Prompts per step.")] = ReplayBench.batch_prompts,
    num_generations: Annotated[int, typer.Option(min=2, help="Completions per prompt.")] = ReplayBench.num_generations,
    completion_length: Annotated[int, typer.Option(min=1, help="Most tokens per completion.")] = (
        ReplayBench.completion_length
    ),
    hidden_size: Annotated[int, typer.Option(min=2, help="The random Llama's width.")] = ReplayBench.hidden_size,
    layers: Annotated[int, typer.Option(min=1, help="The random Llama's depth.")] = ReplayBench.layers,
    fresh_fraction: Annotated[float, typer.Option(help="Replay's share of fresh prompts per step.")] = (
        ReplayBench.fresh_fraction
    ),
    threads: Annotated[int, typer.Option(min=1, help="Torch CPU threads.")] = ReplayBench.threads,
    seed: Annotated[int, typer.Option(help="Seed of the model, data and both runs.")] = ReplayBench.seed,
    out: JsonOut = None,
    config: ConfigFile = None,
    quiet: Quiet = False,
    as_json: AsJson = False,
) -> None:
    """Generated tokens and seconds per GRPO step without and with rollout replay (tiny random Llama, CPU)."""
    setup_logging(quiet or as_json)
    from gaincurate.benchmarks.replay import format_table, run_bench

    options = ReplayBench(
        steps=steps, batch_prompts=batch_prompts, num_generations=num_generations,
        completion_length=completion_length, hidden_size=hidden_size, layers=layers, fresh_fraction=fresh_fraction,
        threads=threads, seed=seed,
    )  # fmt: skip
    if not (quiet or as_json):
        note(f"benchmarking {options}")
    _finish(run_bench(options), out, as_json, lambda result: format_table(result).splitlines())


def profile(
    data: Data,
    rows: Rows = ProfileBench.rows,
    offset: Offset = ProfileBench.offset,
    model: Model = None,
    dtype: Dtype = ProfileBench.dtype,
    batch_tokens: BatchTokens = None,
    threads: Threads = None,
    gates: Annotated[bool, typer.Option("--gates", help="Also run the fidelity gate of every lossy dtype.")] = False,
    out: JsonOut = None,
    config: ConfigFile = None,
    quiet: Quiet = False,
    as_json: AsJson = False,
) -> None:
    """Where a warm scoring pass spends its time, by kind of operator (torch.profiler)."""
    setup_logging(quiet or as_json)
    from gaincurate.benchmarks.scoring_profile import bench_profile, profile_lines

    options = ProfileBench(
        data=data, rows=rows, offset=offset, model=model, dtype=dtype, batch_tokens=batch_tokens, threads=threads,
        gates=gates,
    )  # fmt: skip
    _finish(bench_profile(options), out, as_json, profile_lines)


_EPILOGS = {
    "scoring": "Example:\n\n* `gaincurate bench scoring --data ../shared/data/math_train.json --rows 200 --threads 1`",
    "kernel": "Example:\n\n* `gaincurate bench kernel --quick` (a GPU run: `gaincurate bench kernel --out r.json`)",
    "gpu": "Example:\n\n* `gaincurate bench gpu --device cpu --tiny --rows 16` (a smoke test anywhere)",
    "replay": "Example:\n\n* `gaincurate bench replay --steps 12 --out bench.json`",
    "profile": "Example:\n\n* `gaincurate bench profile --data ../shared/data/math_train.json --rows 200 --gates`",
}


def _finish(result: dict[str, Any], out: Path | None, as_json: bool, lines: Any) -> None:
    """Write the result to `out` as JSON (when given), then print it: JSON with `--json`, else its lines."""
    if out is not None:
        out.write_text(json_text(result) + "\n")

    def human(stdout: Any) -> None:
        for line in lines(result):
            stdout.line(line)

    emit(result, as_json=as_json, human=human)


def _words(text: str) -> tuple[str, ...]:
    return tuple(word.strip() for word in text.split(",") if word.strip())


def _integers(option: str, text: str) -> list[int]:
    words = _words(text)
    if not all(word.isdigit() and int(word) > 0 for word in words):
        raise ConfigError(f"{option} {text} is not a comma list of positive integers; e.g. {option} 256,512,1024")
    return [int(word) for word in words]
