"""End-to-end scoring throughput on one GPU against the naive baseline and the forward roofline.

    gaincurate bench gpu --out docs/results/gpu/NAME.json    # on a CUDA machine
    gaincurate bench gpu --device cpu --tiny --rows 16        # smoke test anywhere

Models are random-weight Qwen2 configs of the 0.5B, 1.5B and 7B class (throughput does not depend on the
weights), with the embedded SmolLM2 tokenizer so nothing is downloaded. Each model scores `--rows` long prompts
(sample problems joined to about `--prompt-tokens` tokens); the 1.5B and 7B classes also score `--math-rows` of the
bundled MATH problems at their own lengths. For each case it reports, in one run:

* gaincurate's scoring throughput (tokens through the forward per second of the device's time), its batches and
  padding, and whether its rows ran packed (`packed_forward`; else why not); the scoring loop's tokens per second of
  wall clock (tokenizing and writing included), and the first batch's seconds (the shared prefix, kernel set-up);
* on MATH-length prompts, the same rows scored padded to buckets (`gpu_paths.padded_rows`): their throughput, and
  how far the packed scores are from the padded ones against the dtype's `SCORE_TOLERANCE`;
* the naive published-style scorer (one prompt at a time, full forward with logits, T x T cosines) on
  the same GPU and prompts, warm, and the speed-up;
* the roofline: matmul FLOPs per token times tokens/s, over the bf16 matmul rate measured in this run;
* the bundled prompts scored cold (a fresh process, an empty Triton cache) with `--backend auto` and with
  `--backend torch`, a SmolLM2-135M-shaped model: what a first small run pays for the kernel's compile;
* `gaincurate rollout` on the bundled problems with the 1.5B class against its decode floor, and vLLM beside it
  where it imports (`gpu_paths.rollout_case`; `--rollout-prompts 0` skips it);
* the answer likelihood's ranking in the half dtype against float32 (`gpu_paths.likelihood_case`);
* with `--forward-variants`, first, one padded batch's forward by each way to run it (`gpu_forward`).

`cuda_plan` computes, without a GPU, the batches scoring makes of a case's prompts on a GPU with a given free memory.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gaincurate.lab.benchmarks.gpu_models import (
    SMOLLM2,
    TINY,
    bench_tokenizer,
    build_model_folder,
    model_config,
    warm_score,
)
from gaincurate.settings import at_least, setting

log = logging.getLogger(__name__)

MODELS = {
    "qwen2-0.5b-class": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                             num_attention_heads=14, num_key_value_heads=2),
    "qwen2-1.5b-class": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                             num_attention_heads=12, num_key_value_heads=2),
    "qwen2-7b-class": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                           num_attention_heads=28, num_key_value_heads=4),
}  # fmt: skip
MATH_MODELS = ("qwen2-1.5b-class", "qwen2-7b-class")  # the models that also score the bundled problems as they are
MATH_MODEL = MATH_MODELS[0]  # the rollout's model
FORWARD_MODELS = ("qwen2-0.5b-class", MATH_MODEL)  # the forward variants' models
LONG, MATH = "long", "math"  # the prompt sets: joined problems of about --prompt-tokens tokens; problems as they are


@dataclass(frozen=True, kw_only=True)
class GpuBench:
    """What one GPU bench runs; `gaincurate bench gpu` takes each field as an option."""

    device: str = setting("cuda", "cuda[:N], or cpu for a smoke test.")
    dtype: str = setting("bfloat16", "Model and scoring dtype.")
    rows: int = setting(512, "Long prompts to score.", check=at_least(1))
    math_rows: int = setting(
        8192, "Bundled problems to score, repeated past their number: shards enough that the shared prefix and the "
        "first batch are a small part of the run, as in a real one.", check=at_least(1),
    )  # fmt: skip
    naive_rows: int = setting(32, "Rows for the naive baseline.", check=at_least(1))
    prompt_tokens: int = setting(1024, "Tokens per prompt.", check=at_least(8))
    batch_tokens: int | None = setting(
        None, "Padded tokens per batch.", check=at_least(1), shown="what the device holds, as scoring picks it"
    )
    tiny: bool = setting(False, "A 2-layer model: a smoke test of the bench.", flags=("--tiny",))
    tokenizer: str | None = setting(
        None, "Folder holding the tokenizer the random-weight models take.", shown="the embedded model's"
    )
    rollout_prompts: int = setting(32, "Bundled problems `gaincurate rollout` samples (0: none).", check=at_least(0))
    rollout_tokens: int = setting(128, "Tokens each rollout generates.", check=at_least(1))
    likelihood_model: str | None = setting(
        None, "Model folder for the likelihood's half-dtype ranking.", shown="the embedded model, or random weights"
    )
    largest: str = setting(
        list(MODELS)[-1], "The largest model class to score (a shorter lease skips the larger ones).",
        choices=tuple(MODELS),
    )  # fmt: skip
    forward_variants: bool = setting(
        False, "Also time one padded batch's forward per model class, after the shared prefix: transformers', "
        "scoring's and each variant of it, by name in the output.",
        flags=("--forward-variants",),
    )  # fmt: skip


def matmul_rate(device: str, dtype_name: str, size: int) -> float:
    """Median dense matmul FLOP/s measured with device events (or perf_counter on CPU)."""
    import torch

    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(size, size, device=device, dtype=dtype), torch.randn(size, size, device=device, dtype=dtype)
    times = []
    for step in range(23):
        if device.startswith("cuda"):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            a @ b
            end.record()
            torch.cuda.synchronize()
            elapsed = start.elapsed_time(end) / 1e3
        else:
            began = time.perf_counter()
            a @ b
            elapsed = time.perf_counter() - began
        if step >= 3:  # warm-up
            times.append(elapsed)
    return 2 * size**3 / float(np.median(times))


def prompts_of(kind: str, rows: int, prompt_tokens: int) -> list[dict]:
    """The bench's rows: `LONG` prompts of about `prompt_tokens` tokens, or `MATH`, the bundled problems as they are
    (repeated with a numbered suffix past the sample's size, so no two rows are one prompt)."""
    if kind == MATH:
        from gaincurate.data import load_sample

        sample = [r["problem"] for r in load_sample()]
        return [{"problem": sample[i % len(sample)] + ("" if i < len(sample) else f" ({i // len(sample)})")}
                for i in range(rows)]  # fmt: skip
    return long_prompts(rows, prompt_tokens)


def long_prompts(rows: int, prompt_tokens: int) -> list[dict]:
    from gaincurate.data import load_sample

    sample = [r["problem"] for r in load_sample()]
    words_per_prompt = int(prompt_tokens * 0.75)
    prompts = []
    for i in range(rows):
        words: list[str] = []
        j = i
        while len(words) < words_per_prompt:
            words += sample[j % len(sample)].split()
            j += 7
        prompts.append({"problem": " ".join(words[:words_per_prompt])})
    return prompts


def flops_per_token(shape: dict) -> float:
    d, kv = shape["hidden_size"], shape["hidden_size"] // shape["num_attention_heads"] * shape["num_key_value_heads"]
    layer = 2 * (2 * d * d + 2 * d * kv) + 2 * 3 * d * shape["intermediate_size"]
    return shape["num_hidden_layers"] * layer - 2 * 3 * d * shape["intermediate_size"]  # stops at the last MLP


def cuda_plan(shape: dict, kind: str, rows: int, prompt_tokens: int, free_bytes: int, dtype: str = "bfloat16",
              packed: bool = False, batch_tokens: int | None = None) -> dict:  # fmt: skip
    """The batches `gaincurate score` makes of a case's prompts on a GPU with `free_bytes` free (or `batch_tokens`
    given), computed on any machine: the budget it picks, the batch count, the padding share (tokens through the
    model over real tokens, less one) and the least fill of a batch but the last (its real tokens over the budget).
    `packed`: rows laid end to end, as where the GPU's torch has variable-length attention."""
    from gaincurate.prompts import PromptEncoder
    from gaincurate.scoring.config import ScoreConfig
    from gaincurate.scoring.engine import batch_plan, find_shared_prefix, padding_overhead
    from gaincurate.scoring.gpu_budget import budget, gpu_memory

    tokenizer = bench_tokenizer(None)
    config = ScoreConfig(max_length=prompt_tokens * 2)
    encoder = PromptEncoder(tokenizer, config.prompt_format, config.max_length)
    prompts = encoder.encode([row["problem"] for row in prompts_of(kind, rows, prompt_tokens)])
    weights, per_token = gpu_memory(model_config(shape, tokenizer), dtype, config.max_length)
    tokens = batch_tokens or budget(free_bytes, weights, per_token)
    plan = batch_plan(prompts, find_shared_prefix(encoder), tokens, "cuda", packed=packed)
    real = [sum(len(prompts[row].input_ids) - offset for row in rows_) for rows_, offset, _ in plan]
    padded = sum(width if packed else len(rows_) * width for rows_, _, width in plan)
    padding = padding_overhead(padded, sum(real))
    fill = min((tokens_ / tokens for tokens_ in real[:-1]), default=1.0)
    return {"batch_tokens": tokens, "batches": len(plan), "padding": padding, "least_fill": fill}


def bench_model(name: str, shape: dict, kind: str, args: GpuBench, rate: float) -> dict:
    import torch

    from gaincurate.lab.benchmarks.gpu_paths import why_padded
    from gaincurate.lab.benchmarks.scoring import naive_scores
    from gaincurate.model import load_model, load_tokenizer, resolve_source
    from gaincurate.prompts import PromptEncoder
    from gaincurate.scoring.config import ScoreConfig
    from gaincurate.scoring.engine import padding_overhead

    count = args.math_rows if kind == MATH else args.rows
    rows = prompts_of(kind, count, args.prompt_tokens)
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_model_folder(Path(tmp) / "model", shape, args.dtype, args.device, args.tokenizer)
        data = Path(tmp) / "prompts.jsonl"
        data.write_text("".join(json.dumps(p) + "\n" for p in rows))
        # Generated questions: no answer column to check.
        config = ScoreConfig(dataset=str(data), model=str(folder), dtype=args.dtype, device=args.device,
                             batch_tokens=args.batch_tokens, max_length=args.prompt_tokens * 2,
                             answer_column=None)  # fmt: skip
        manifest = warm_score(config, Path(tmp) / "scores")
        timings = manifest["timings"]
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

        source = resolve_source(str(folder))
        tokenizer = load_tokenizer(source)
        naive_rows = min(args.naive_rows, count)
        prompts = PromptEncoder(tokenizer, config.prompt_format, config.max_length).encode(
            [p["problem"] for p in rows[:naive_rows]]
        )
        model = load_model(source, dtype=args.dtype, device=args.device)
        # Timed on its second pass: a run over many prompts pays each new length's first-call costs (cuDNN's plans)
        # once, and a first pass over these few would charge them to every prompt.
        for _ in range(2):
            _, naive_seconds = naive_scores(model, tokenizer, prompts, shape["num_hidden_layers"] - 1, 1.0,
                                            device=args.device)  # fmt: skip
        naive_tokens = sum(len(p.input_ids) for p in prompts)
        padded = padded_case(config, Path(tmp), args.dtype) if kind == MATH else None
    tokens_per_second = timings["tokens"] / timings["forward_seconds"]
    achieved = flops_per_token(shape) * tokens_per_second
    return {
        "model": name,
        "prompts": kind,
        "rows": count,
        "prompt_tokens": args.prompt_tokens if kind == LONG else None,
        "batch_tokens": manifest["tuning"]["batch_tokens"]["chosen"],
        "batches": timings["batches"],
        "backend": manifest.get("backend"),
        "tokens_per_second": tokens_per_second,
        "rows_per_second": timings["rows_per_second"],
        "naive_tokens_per_second": naive_tokens / naive_seconds,
        "speedup_vs_naive": tokens_per_second / (naive_tokens / naive_seconds),
        "achieved_tflops": achieved / 1e12,
        "fraction_of_roofline": achieved / rate,
        # The scoring loop's wall clock: tokenizing, the forwards and writing the shards, as a user waits for them.
        "loop_tokens_per_second": timings["tokens"] / timings["score_seconds"],
        "first_batch_seconds": timings["first_batch_seconds"],
        "padding_overhead": padding_overhead(timings["padded_tokens"], timings["tokens"]),
        "packed": timings["packed_batches"] == timings["batches"],
        "not_packed_because": None if timings["packed_batches"] else why_padded(args.device, args.dtype, timings),
        "padded": padded,
    }


def padded_case(config: Any, tmp: Path, dtype: str) -> dict:
    """The case's rows scored again padded to buckets: throughput, and the largest score difference from the packed
    run (in `tmp/scores`) against the dtype's tolerance."""
    from gaincurate.lab.benchmarks.gpu_paths import padded_rows, score_difference
    from gaincurate.scoring.config import SCORE_TOLERANCE
    from gaincurate.scoring.engine import padding_overhead

    with padded_rows():
        timings = warm_score(config, tmp / "scores-padded")["timings"]
    return {"tokens_per_second": timings["tokens"] / timings["forward_seconds"], "batches": timings["batches"],
            "padding_overhead": padding_overhead(timings["padded_tokens"], timings["tokens"]),
            "largest_score_difference": score_difference(tmp / "scores", tmp / "scores-padded"),
            "tolerance": SCORE_TOLERANCE[dtype].score if dtype in SCORE_TOLERANCE else None}  # fmt: skip


def cases(tiny: bool, largest: str = list(MODELS)[-1]) -> list[tuple[str, dict, str]]:
    """(model, shape, prompts) of each row of the bench, the model classes up to `largest`."""
    if tiny:
        return [(name, shape, kind) for name, shape in TINY.items() for kind in (LONG, MATH)]
    names = list(MODELS)[: list(MODELS).index(largest) + 1]
    long_cases = [(name, MODELS[name], LONG) for name in names]
    return long_cases + [(name, MODELS[name], MATH) for name in MATH_MODELS if name in names]


def bench_gpu(options: GpuBench) -> dict:
    """Every case of the run (or the tiny one): gaincurate and naive throughput, and the roofline."""
    import torch

    from gaincurate.lab.benchmarks.gpu_paths import likelihood_case, rollout_case

    rate = matmul_rate(options.device, options.dtype, 256 if options.tiny else 8192)
    rollout_shape = TINY["tiny"] if options.tiny else MODELS[MATH_MODEL]
    forward = forward_cases(options) if options.forward_variants else None  # first: what a short lease decides on
    return {
        "date": time.strftime("%Y-%m-%d"),
        "device": torch.cuda.get_device_name() if options.device.startswith("cuda") else "cpu",
        "torch": torch.__version__,
        "dtype": options.dtype,
        "matmul_tflops": rate / 1e12,
        "models": [
            _logged(bench_model(name, shape, kind, options, rate))
            for name, shape, kind in cases(options.tiny, options.largest)
        ],
        "cold": None if options.tiny else cold_backends(options),
        "rollout": rollout_case(rollout_shape, options, rate) if options.rollout_prompts else None,
        "likelihood": likelihood_case(options),
        "forward": forward,
    }


def _logged(row: dict) -> dict:
    """`row`, after logging its throughput: a run stopped by a time limit still shows the cases it finished."""
    log.info("%s %s: %.0f tokens/s, %.1f%% of the matmul rate", row["model"], row["prompts"],
             row["tokens_per_second"], 100 * row["fraction_of_roofline"])  # fmt: skip
    return row


def forward_cases(options: GpuBench) -> list[dict]:
    """The forward variants on the 0.5B and 1.5B classes at one batch of 16 prompts each (a smoke size with --tiny),
    continuing from the scoring loop's shared prefix."""
    from gaincurate.lab.benchmarks.gpu_forward import forward_lines, forward_variants, loop_prefix_tokens

    models = TINY if options.tiny else {name: MODELS[name] for name in FORWARD_MODELS}
    found, prefix = [], loop_prefix_tokens(options.tokenizer)
    for name, shape in models.items():
        found.append({"model": name} | forward_variants(shape, options.device, options.dtype, 16, options.prompt_tokens,
                                                        flops_per_token(shape), prefix))  # fmt: skip
        log.info("%s: %s", name, "\n".join(forward_lines(found[-1])))  # a run stopped by a time limit still shows it
    return found


COLD_ROUNDS = 3


def cold_backends(options: GpuBench) -> dict:
    """The bundled prompts' forward seconds in a fresh process with an empty Triton cache, `--backend auto` against
    `--backend torch`: what a first small run pays for the kernel's compile (`auto` should not pay it). The two
    alternate over COLD_ROUNDS rounds and each keeps its fastest, so neither pays alone for the GPU's first work in
    the bench (its clocks, the model file's first read)."""
    import os
    import subprocess
    import sys

    from gaincurate.shards import read_manifest

    seconds: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_model_folder(Path(tmp) / "model", SMOLLM2, options.dtype, options.device, options.tokenizer)
        for round_ in range(COLD_ROUNDS):
            for backend in ("auto", "torch"):
                out = Path(tmp) / f"{backend}-{round_}"
                command = [sys.executable, "-m", "gaincurate", "score", "--model", str(folder), "--device",
                           options.device, "--dtype", options.dtype, "--backend", backend, "--out", str(out),
                           "--quiet"]  # fmt: skip
                environment = {**os.environ, "TRITON_CACHE_DIR": str(Path(tmp) / f"triton-{backend}-{round_}")}
                subprocess.run(command, env=environment, check=True, capture_output=True)
                manifest = read_manifest(out)
                run = {"forward_seconds": manifest["timings"]["forward_seconds"], "backend": manifest.get("backend")}
                seen = seconds.setdefault(backend, run | {"rounds": []})
                seen["rounds"].append(run["forward_seconds"])
                seen["forward_seconds"] = min(seen["rounds"])
    ratio = seconds["auto"]["forward_seconds"] / seconds["torch"]["forward_seconds"]
    return {**seconds, "auto_over_torch": ratio}


def table_lines(results: dict) -> list[str]:
    """The run as a header line and one row per model, then the other parts' lines."""
    from gaincurate.lab.benchmarks.gpu_paths import path_lines

    lines = [
        f"{results['device']}  {results['dtype']}  measured matmul {results['matmul_tflops']:.1f} TFLOP/s",
        f"{'model':<18} {'prompts':<7} {'batches':>7} {'padding':>7} {'tok/s':>10} {'naive tok/s':>12} "
        f"{'speed-up':>9} {'TFLOP/s':>8} {'roofline':>9}",
    ]
    for r in results["models"]:
        lines.append(
            f"{r['model']:<18} {r['prompts']:<7} {r['batches']:>7} {r['padding_overhead']:>7.1%} "
            f"{r['tokens_per_second']:>10.0f} {r['naive_tokens_per_second']:>12.0f} "
            f"{r['speedup_vs_naive']:>8.1f}x {r['achieved_tflops']:>8.2f} {r['fraction_of_roofline']:>8.1%}"
        )
    for r in results["models"]:
        lines.append(f"{r['model']} {r['prompts']}: {r['rows']} rows; the scoring loop "
                     f"{r['loop_tokens_per_second']:.0f} tok/s of wall clock; "
                     f"first batch {r['first_batch_seconds']:.2f} s")  # fmt: skip
        if not r.get("packed"):
            lines.append(f"{r['model']} {r['prompts']}: rows padded ({r.get('not_packed_because')})")
        if r.get("padded"):
            padded = r["padded"]
            lines.append(
                f"{r['model']} {r['prompts']} padded to buckets: {padded['tokens_per_second']:.0f} tok/s "
                f"({padded['padding_overhead']:.1%} padding); scores within {padded['largest_score_difference']:.2g} "
                f"of the packed run (tolerance {padded['tolerance']})"
            )
    lines += path_lines(results)
    cold = results.get("cold")
    if cold:
        lines.append(
            f"bundled prompts, cold: --backend auto ({cold['auto']['backend']}) "
            f"{cold['auto']['forward_seconds']:.2f} s, torch {cold['torch']['forward_seconds']:.2f} s: "
            f"{cold['auto_over_torch']:.2f}x"
        )
    if results.get("forward"):
        from gaincurate.lab.benchmarks.gpu_forward import forward_lines

        for case in results["forward"]:
            lines += [f"{case['model']}:", *forward_lines(case)]
    return lines
