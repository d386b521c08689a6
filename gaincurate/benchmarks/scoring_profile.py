"""Where a scoring run's forward time goes, by kind of operator, and the fidelity gate of every lossy dtype.

    python -m gaincurate.benchmarks.scoring_profile --data ../shared/data/math_train.json --offset 5000 \\
        --rows 200 --threads 1 [--dtype auto] [--batch-tokens N] [--gates]

Scores the rows once to warm up (kernels built, shared prefix cached), then once more under
`torch.profiler`, and sums each operator's own CPU time into groups: matmuls, attention, element-wise
and norm ops, copies (key/value cache, casts, padding) and the Python/framework time outside any
operator. Compare the matmul group with the floor that `gaincurate.benchmarks.scoring` reports.
`--gates` also runs the fidelity gate (`gaincurate.scoring.fidelity`) for bfloat16, float16 and int8.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

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


def profile_scoring(config: Any, questions: list[str]) -> dict[str, Any]:
    """Seconds by operator group for one warm scoring pass of `questions`, dtype and batch chosen as a run would."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from gaincurate.config import RunOptions
    from gaincurate.progress import NULL_PROGRESS
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="JSON/JSONL prompt file with a 'problem' column")
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--offset", type=int, default=0)
    parser.add_argument("--model", default=None)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--batch-tokens", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--gates", action="store_true", help="also run the fidelity gate of every lossy dtype")
    args = parser.parse_args(argv)
    import torch

    from gaincurate.benchmarks.scoring import write_rows
    from gaincurate.config import ScoreConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "rows.jsonl"
        write_rows(args.data, args.offset, args.rows, data)
        questions = [json.loads(line)["problem"] for line in data.read_text().splitlines()]
        config = ScoreConfig(dataset=str(data), model=args.model, dtype=args.dtype, device="cpu",
                             batch_tokens=args.batch_tokens)  # fmt: skip
        result = profile_scoring(config, questions)
    print(f"{result['dtype']}, batch tokens {result['batch_tokens']}: {result['profiled_seconds']:.2f} s profiled")
    for group, seconds in result["seconds"].items():
        print(f"  {group:40s} {seconds:7.2f} s  {seconds / result['profiled_seconds']:6.1%}")
    print(result["top_ops"])
    if args.gates:
        for dtype, figures in gate_figures(config).items():
            print(f"gate {dtype}: {json.dumps(figures)}")


if __name__ == "__main__":
    main()
