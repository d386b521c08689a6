"""Check, then time, the segment-sum backends against the O(T^2) cosine-matrix approach.

Run:
    gaincurate bench kernel                    # everything this machine can run
    gaincurate bench kernel --quick            # fewer shapes, no config sweep
    gaincurate bench kernel --out results.json # also write every number as JSON

One command does it all, in this order: correctness of every available backend against the float64
reference (the same rules and inputs as the tests, from gaincurate.kernels.accuracy), then timings,
then a short table on stdout (progress goes to stderr). The command fails if any correctness check fails.

On a CUDA GPU it times with triton.testing.do_bench (median and 0.2/0.8 quantiles, L2 flushed
between runs) and reports achieved GB/s against a copy-bandwidth ceiling measured in the same run:
ceiling = 2 * bytes / time of `y.copy_(x)` on a 1 GiB buffer. Bytes moved by a backend = hidden
states of the scored tokens (ignored tokens are never read) + segment ids + the fp32 sums and int32
counts written. The full run also sweeps tile configs per hidden size, to re-tune launch.py.
On CPU it times the torch backend and the naive approach with time.perf_counter at small shapes;
GPU numbers need a GPU.

"naive" is gaincurate.kernels.reference.cosine_means_naive in fp32: per sample, normalise, form the
T x T cosine matrix, take masked means. It produces the mean cosines directly; the sum backends
need one more tiny [B, S, S] step (cosine_means_from_sums) that is not timed here.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial

import torch

from . import resolve_backend
from .accuracy import agreement_with_reference, random_segment_inputs
from .bench_options import KernelBench
from .launch import LaunchConfig, launch_config
from .reference import cosine_means_from_sums, cosine_means_naive
from .torch_impl import segment_unit_sums_torch

NUM_SEGMENTS = 2  # question and context, as scoring uses them
METRIC_ATOL = 1e-5  # mean cosines from kernel sums vs the float64 brute force

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
GPU_DIMS = (896, 1536, 3584)  # Qwen2.5 0.5B, 1.5B, 7B
GPU_BATCH_TOKENS = ((1, 4096), (8, 1024), (8, 4096), (64, 512), (64, 4096))
GPU_QUICK = ((896, 3584), ((1, 4096), (64, 512)))
CPU_DIMS = (896, 1536, 3584)
CPU_BATCH_TOKENS = ((1, 256), (4, 512))
CPU_QUICK = ((896,), ((1, 256),))
SWEEP_SHAPE = (64, 4096)  # the shape the kernel is judged at: 2 GB of hidden states at D 3584
# Around launch.py's rule (one token per tile, 64 row values per thread, 4 stages, 256 tokens per program).
SWEEP_BLOCK_T = (1, 2)
SWEEP_ROW_VALUES = (32, 64)  # values of a hidden row per thread: sets the warps for each BLOCK_D
SWEEP_TILE_VALUES = 64  # at most this many values of a tile per thread (block_t x row values): no spills
SWEEP_STAGES = (3, 4)
SWEEP_CHUNK_T = (256, 512, 1024)


@dataclass
class Timing:
    median_ms: float
    p20_ms: float
    p80_ms: float
    gbps: float | None = None


@dataclass
class Row:
    batch: int
    tokens: int
    dim: int
    dtype: str
    bytes_moved: int
    results: dict[str, Timing] = field(default_factory=dict)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _silent(message: str) -> None:
    pass


def bytes_moved(hidden: torch.Tensor, segment_ids: torch.Tensor, num_segments: int) -> int:
    scored_tokens = int(((segment_ids >= 0) & (segment_ids < num_segments)).sum())
    batch, _, dim = hidden.shape
    return (
        scored_tokens * dim * hidden.element_size()
        + segment_ids.numel() * segment_ids.element_size()
        + batch * num_segments * (dim * 4 + 4)
    )


def time_cpu(function: Callable[[], object], repeats: int) -> Timing:
    function()  # warm-up
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        samples.append((time.perf_counter() - start) * 1e3)
    cut_points = statistics.quantiles(samples, n=5) if len(samples) > 1 else samples * 4
    return Timing(statistics.median(samples), cut_points[0], cut_points[3])


def time_gpu(function: Callable[[], object]) -> Timing:
    from . import triton_impl

    median, p20, p80 = triton_impl.do_bench(function)
    return Timing(median, p20, p80)


def copy_ceiling_gbps(device: torch.device, repeats: int) -> float:
    """2 * bytes / time of copying a buffer much larger than any cache."""
    size = (1 << 30) if device.type == "cuda" else (1 << 28)
    source = torch.ones(size // 2, dtype=torch.bfloat16, device=device)
    target = torch.empty_like(source)
    if device.type == "cuda":
        timing = time_gpu(lambda: target.copy_(source))
    else:
        timing = time_cpu(lambda: target.copy_(source), repeats)
    return 2 * size / (timing.median_ms * 1e-3) / 1e9


def available_backends(device: torch.device, log: Callable[[str], None] = log) -> list[str]:
    backends = ["torch"]
    try:
        if resolve_backend("triton", device) == "triton":
            backends.insert(0, "triton")
    except ValueError as error:
        log(f"triton backend not checked here: {error}")
    return backends


def run_backend(
    backend: str,
    hidden: torch.Tensor,
    segment_ids: torch.Tensor,
    config: LaunchConfig | None = None,
):
    if backend == "triton":
        from . import triton_impl

        return triton_impl.segment_unit_sums_triton(hidden, segment_ids, NUM_SEGMENTS, config=config)
    return segment_unit_sums_torch(hidden, segment_ids, NUM_SEGMENTS)


def check_correctness(
    device: torch.device, backends: list[str], quick: bool, log: Callable[[str], None] = log
) -> list[dict[str, object]]:
    """Every backend against the float64 reference, plus the metric against the brute force."""
    if device.type == "cuda":
        shapes = [(5, 300, 896, "runs"), (4, 4096, 3584, "prompt"), (64, 512, 1536, "prompt")]
    else:
        shapes = [(3, 300, 896, "runs"), (2, 128, 1536, "prompt")]
    if quick:
        shapes = shapes[:2]
    checks = []
    for backend in backends:
        for batch, tokens, dim, layout in shapes:
            for dtype_name, dtype in DTYPES.items():
                hidden, segment_ids = random_segment_inputs(
                    batch, tokens, dim, dtype, NUM_SEGMENTS, seed=dim + tokens, layout=layout, device=device
                )
                sums, counts = run_backend(backend, hidden, segment_ids)
                agreement = agreement_with_reference(hidden, segment_ids, NUM_SEGMENTS, sums, counts)
                checks.append(
                    {"check": "sums vs float64 reference", "backend": backend, "shape": [batch, tokens, dim]}
                    | {"dtype": dtype_name, **asdict(agreement), "ok": agreement.ok}
                )
                verdict = "ok" if agreement.ok else "FAIL"
                log(f"  {backend:6} B{batch}-T{tokens}-D{dim}-{dtype_name}: {verdict}")
        hidden, segment_ids = random_segment_inputs(
            4, 1024, 896, torch.bfloat16, NUM_SEGMENTS, seed=7, layout="prompt", device=device
        )
        from_sums = cosine_means_from_sums(*run_backend(backend, hidden, segment_ids))
        brute_force = cosine_means_naive(hidden, segment_ids, NUM_SEGMENTS)
        error = float((from_sums - brute_force).abs().nan_to_num(0.0).max())
        same_nans = bool(torch.equal(from_sums.isnan(), brute_force.isnan()))
        checks.append(
            {"check": "mean cosines vs O(T^2) brute force", "backend": backend, "shape": [4, 1024, 896]}
            | {"dtype": "bf16", "rule": "max abs", "error": error, "bound": METRIC_ATOL}
            | {"ok": same_nans and error <= METRIC_ATOL}
        )
    return checks


def time_shapes(device: torch.device, backends: list[str], quick: bool, log: Callable[[str], None] = log) -> list[Row]:
    on_gpu = device.type == "cuda"
    if on_gpu:
        dims, batch_tokens = GPU_QUICK if quick else (GPU_DIMS, GPU_BATCH_TOKENS)
    else:
        dims, batch_tokens = CPU_QUICK if quick else (CPU_DIMS, CPU_BATCH_TOKENS)
    repeats = 3 if quick else 5
    rows = []
    for dim in dims:
        for batch, tokens in batch_tokens:
            hidden, segment_ids = random_segment_inputs(
                batch, tokens, dim, torch.bfloat16, NUM_SEGMENTS, seed=dim, layout="prompt", device=device
            )
            row = Row(batch, tokens, dim, "bf16", bytes_moved(hidden, segment_ids, NUM_SEGMENTS))
            candidates: dict[str, Callable[[], object]] = {
                backend: partial(run_backend, backend, hidden, segment_ids)
                for backend in backends
                if on_gpu or backend == "torch"  # interpreter timings would mean nothing
            }
            candidates["naive"] = partial(cosine_means_naive, hidden, segment_ids, NUM_SEGMENTS, torch.float32)
            for name, function in candidates.items():
                timing = time_gpu(function) if on_gpu else time_cpu(function, repeats)
                if name != "naive":
                    timing.gbps = row.bytes_moved / (timing.median_ms * 1e-3) / 1e9
                row.results[name] = timing
            rows.append(row)
            log(
                f"  B{batch}-T{tokens}-D{dim}: "
                + ", ".join(f"{k} {v.median_ms:.3f} ms" for k, v in row.results.items())
            )
    return rows


def sweep_configs(device: torch.device, log: Callable[[str], None] = log) -> list[dict[str, object]]:
    """Time tile configs per hidden size at SWEEP_SHAPE, to re-tune launch.py on a new GPU."""
    batch, tokens = SWEEP_SHAPE
    results = []
    for dim in GPU_DIMS:
        hidden, segment_ids = random_segment_inputs(
            batch, tokens, dim, torch.bfloat16, NUM_SEGMENTS, seed=dim, layout="prompt", device=device
        )
        moved = bytes_moved(hidden, segment_ids, NUM_SEGMENTS)
        default = launch_config(dim, NUM_SEGMENTS, interpret=False)
        grid = [
            {"block_t": block_t, "num_warps": default.block_d // (32 * values), "num_stages": stages, "chunk_t": chunk}
            for block_t in SWEEP_BLOCK_T
            for values in SWEEP_ROW_VALUES
            for stages in SWEEP_STAGES
            for chunk in SWEEP_CHUNK_T
            if default.block_d // (32 * values) >= 1 and block_t * values <= SWEEP_TILE_VALUES
        ]
        if not any(LaunchConfig(**asdict(default) | tiles) == default for tiles in grid):
            grid.append({key: getattr(default, key) for key in ("block_t", "num_warps", "num_stages", "chunk_t")})
        for tiles in grid:
            config = LaunchConfig(**asdict(default) | tiles)
            timing = time_gpu(partial(run_backend, "triton", hidden, segment_ids, config))
            results.append(
                {"dim": dim, **tiles}
                | {"median_ms": timing.median_ms, "gbps": moved / (timing.median_ms * 1e-3) / 1e9}
                | {"default": config == default}
            )
            log(f"    D{dim} {tiles}: {results[-1]['gbps']:.0f} GB/s")
        best = max((r for r in results if r["dim"] == dim), key=lambda r: r["gbps"])
        log(
            f"  sweep D{dim}: best block_t={best['block_t']} warps={best['num_warps']} "
            f"stages={best['num_stages']} chunk_t={best['chunk_t']} at {best['gbps']:.0f} GB/s"
        )
    return results


def rate(gbps: float) -> str:
    return f"{gbps:.0f}" if gbps >= 10 else f"{gbps:.2g}"


def render_table(report: dict[str, object]) -> str:
    lines = []
    checks = report["correctness"]
    failed = [c for c in checks if not c["ok"]]
    lines.append(f"correctness: {len(checks) - len(failed)}/{len(checks)} checks passed")
    for check in failed:
        lines.append(
            f"  FAILED {check['backend']} {check['shape']} {check['dtype']}: {check['error']:.3g} > "
            f"{check['bound']:.3g} ({check['rule']}, row-relative {check.get('row_relative_error', 0):.3g}, "
            f"counts equal: {check.get('counts_equal')})"
        )
    lines.append(f"device: {report['device']}; copy ceiling {rate(report['ceiling_gbps'])} GB/s")
    names = [n for n in ("triton", "torch", "naive") if any(n in row["results"] for row in report["timings"])]
    first, others = names[0], names[1:]
    lines.append(f"'vs X' = X's median time / {first}'s median time")
    header = f"{'shape':<18}" + "".join(f"{n + ' ms':>12}{'GB/s':>8}{'%ceil':>7}" for n in names if n != "naive")
    header += f"{'naive ms':>12}" if "naive" in names else ""
    header += "".join(f"{'vs ' + other:>10}" for other in others)
    lines.append(header)
    for row in report["timings"]:
        results = row["results"]
        shape = f"B{row['batch']} T{row['tokens']} D{row['dim']}"
        line = f"{shape:<18}"
        for name in names:
            if name != "naive":
                timing = results[name]
                line += f"{timing['median_ms']:>12.3f}{rate(timing['gbps']):>8}"
                line += f"{100 * timing['gbps'] / report['ceiling_gbps']:>6.0f}%"
        if "naive" in names:
            line += f"{results['naive']['median_ms']:>12.3f}"
        line += "".join(f"{results[o]['median_ms'] / results[first]['median_ms']:>9.1f}x" for o in others)
        lines.append(line)
    if report["device_type"] != "cuda":
        lines.append("GPU numbers need a GPU: run `gaincurate bench kernel --out results.json` there.")
    if report.get("sweep"):
        lines.append("config sweep (best per hidden size; default in launch.py marked *):")
        for dim in GPU_DIMS:
            entries = [r for r in report["sweep"] if r["dim"] == dim]
            best = max(entries, key=lambda r: r["gbps"])
            default = next(r for r in entries if r["default"])
            lines.append(
                f"  D{dim}: best block_t={best['block_t']} warps={best['num_warps']} "
                f"stages={best['num_stages']} chunk_t={best['chunk_t']} {rate(best['gbps'])} GB/s; "
                f"* {rate(default['gbps'])} GB/s"
            )
    return "\n".join(lines)


def run_kernel_bench(options: KernelBench = KernelBench(), *, quiet: bool = False) -> dict[str, object]:
    """Correctness of every backend this device runs, then timings (and on CUDA, unless quick, a config sweep);
    progress on stderr unless `quiet`."""
    say = _silent if quiet else log
    device_name, quick = options.device, options.quick
    if device_name == "auto":
        device_name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device_name)
    backends = available_backends(device, say)
    report: dict[str, object] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU",
        "device_type": device.type,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "backends": backends,
        "quick": quick,
    }
    if "triton" in backends:
        from . import triton_impl

        report["triton"] = triton_impl.TRITON_VERSION

    say(f"correctness on {report['device']} ({', '.join(backends)}):")
    report["correctness"] = check_correctness(device, backends, quick, say)
    say("copy-bandwidth ceiling ...")
    report["ceiling_gbps"] = copy_ceiling_gbps(device, repeats=5)
    say("timings:")
    report["timings"] = [asdict(row) for row in time_shapes(device, backends, quick, say)]
    if device.type == "cuda" and "triton" in backends and options.sweep and not quick:
        say("config sweep:")
        report["sweep"] = sweep_configs(device, say)
    return report


def failed_checks(report: dict[str, object]) -> list[str]:
    """One `backend shape dtype` label per correctness check that failed; empty when all passed."""
    return [
        f"{check['backend']} {'x'.join(map(str, check['shape']))} {check['dtype']}"
        for check in report["correctness"]
        if not check["ok"]
    ]
