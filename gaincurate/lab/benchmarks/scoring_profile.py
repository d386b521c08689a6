"""Where a scoring run's forward time goes, by kind of operator, and the fidelity gate of every lossy dtype.

    gaincurate bench profile --data math_train.json --offset 5000 \\
        --rows 200 --threads 1 [--dtype auto] [--batch-tokens N] [--gates]

Scores the rows once to warm up (kernels built, shared prefix cached), then once more under
`torch.profiler`, and sums each operator's own CPU time into groups: matmuls, attention, element-wise
and norm ops, copies (key/value cache, casts, padding) and the Python/framework time outside any
operator. Compare the matmul group with the floor that `gaincurate bench scoring` reports.
`--gates` also runs the fidelity gate (`gaincurate.scoring.fidelity`) for bfloat16, float16 and int8.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gaincurate.lab.benchmarks.scoring import ScoringRows, selected_rows
from gaincurate.settings import setting

GROUPS = {
    "matmul": ("aten::mm", "aten::addmm", "aten::bmm", "aten::_int_mm", "mkldnn", "onednn"),
    "attention": ("scaled_dot_product", "flash_attention", "_efficient_attention"),
    "elementwise and norms": ("aten::mul", "aten::add", "aten::silu", "aten::rsqrt", "aten::pow", "aten::mean",
                              "aten::neg", "aten::sub", "aten::div", "aten::sum", "aten::where", "aten::softmax",
                              "aten::masked_fill", "aten::clamp", "aten::exp", "aten::norm", "aten::linalg_vector_norm",
                              "aten::gelu", "aten::tanh", "aten::abs", "aten::amax", "aten::round"),
    "copies, casts and concatenation": ("aten::copy_", "aten::cat", "aten::index", "aten::clone", "aten::_to_copy",
                                        "aten::repeat_interleave", "aten::fill_", "aten::zero_"),
}  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class ProfileBench(ScoringRows):
    """What one profile run scores; `gaincurate bench profile` takes each field as an option."""

    gates: bool = setting(False, "Also run the fidelity gate of every lossy dtype.", flags=("--gates",))


def profile_scoring(config: Any, questions: list[str]) -> dict[str, Any]:
    """Seconds by operator group for one warm scoring pass of `questions`, dtype and batch chosen as a run would."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from gaincurate.progress import NULL_PROGRESS
    from gaincurate.scoring.config import RunOptions
    from gaincurate.scoring.prepare import load_scorer, plan_run, prepare

    with tempfile.TemporaryDirectory() as folder:
        prepared = prepare(plan_run(config, RunOptions(out=str(Path(folder) / "out"))))
    loaded = load_scorer(prepared, "cpu", NULL_PROGRESS)
    prompts = prepared.encoder.encode(questions)
    loaded.scorer.score(prompts)  # warm-up
    start = time.perf_counter()
    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU]) as profiler:
        loaded.scorer.score(prompts)
    wall = time.perf_counter() - start
    groups: dict[str, float] = defaultdict(float)
    for event in profiler.key_averages():
        name = next((group for group, keys in GROUPS.items() if any(key in event.key for key in keys)), "other ops")
        groups[name] += event.self_cpu_time_total / 1e6
    groups["python and framework (outside ops)"] = wall - sum(groups.values())
    return {
        "dtype": prepared.dtype,
        "batch_tokens": prepared.config.batch_tokens,
        "profiled_seconds": wall,
        "seconds": dict(sorted(groups.items(), key=lambda item: -item[1])),
        "top_ops": profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=12),
    }


def gate_figures(config: Any) -> dict[str, Any]:
    """The fidelity gate of each lossy dtype that can run here, on the bundled gate prompts."""
    from gaincurate.model import load_model, load_tokenizer, resolve_source
    from gaincurate.prompts import PromptEncoder
    from gaincurate.scoring.dtype import unavailable
    from gaincurate.scoring.fidelity import FidelityGate

    source = resolve_source(config.model)
    encoder = PromptEncoder(load_tokenizer(source), config.prompt_format, config.max_length)
    gate = FidelityGate(load_model(source, dtype="float32", device="cpu"), config, encoder)
    return {dtype: gate(dtype) for dtype in ("bfloat16", "float16", "int8") if not unavailable(dtype)}


def bench_profile(options: ProfileBench) -> dict[str, Any]:
    """Profile one warm scoring pass of the rows; with `gates`, also each lossy dtype's fidelity gate."""
    with selected_rows(options) as data:
        questions = [json.loads(line)["problem"] for line in data.read_text().splitlines()]
        config = options.score_config(str(data))
        result = profile_scoring(config, questions)
    if options.gates:
        result["gates"] = gate_figures(config)
    return result


def profile_lines(result: dict[str, Any]) -> list[str]:
    """Seconds and share per operator group, the top operators, then each gate's figures."""
    profiled = result["profiled_seconds"]
    lines = [f"{result['dtype']}, batch tokens {result['batch_tokens']}: {profiled:.2f} s profiled"]
    for group, seconds in result["seconds"].items():
        lines.append(f"  {group:40s} {seconds:7.2f} s  {seconds / profiled:6.1%}")
    lines += result["top_ops"].splitlines()
    lines += [f"gate {dtype}: {json.dumps(figures)}" for dtype, figures in result.get("gates", {}).items()]
    return lines
