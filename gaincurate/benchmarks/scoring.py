"""Scoring throughput against a naive baseline and the forward's compute floor, in one run.

    python -m gaincurate.benchmarks.scoring --data ../shared/data/math_train.json --rows 200 [--out r.json]

The naive baseline does what the published GAIN-RL scorer does: one prompt at a time, a full forward
through every layer and the LM head (logits), then the O(T^2) cosine matrix of the hooked hidden
states. gaincurate scores the same prompts with the same model: truncated forward, length-bucketed
batches, one pass of segment sums. The floor is forward FLOPs over the fp32 matmul rate measured
in this run. `--memory` also measures peak RSS when scoring 500 and 5,000 prompts, in subprocesses.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def naive_scores(
    model, tokenizer, prompts, layer_index: int, inter_weight: float, device: str = "cpu"
) -> tuple[np.ndarray, float]:
    """Published-style scorer: per prompt, full forward with logits, hook, O(T^2) cosine matrix."""
    import torch

    from gaincurate.model import decoder_layers
    from gaincurate.prompts import CONTEXT, QUESTION

    captured = {}
    mlp = decoder_layers(model)[layer_index].mlp
    handle = mlp.register_forward_pre_hook(lambda module, args: captured.__setitem__("h", args[0]))
    scores = []
    start = time.perf_counter()
    with torch.inference_mode():
        for prompt in prompts:
            model(input_ids=torch.from_numpy(prompt.input_ids)[None].to(device))  # logits computed, thrown away
            hidden = captured["h"][0].float()
            unit = hidden / hidden.norm(dim=-1, keepdim=True)
            cosine = unit @ unit.T
            labels = torch.from_numpy(prompt.segment_ids).to(device)
            question, context = labels == QUESTION, labels == CONTEXT
            block = cosine[question][:, question]
            n = int(question.sum())
            intra = (block.sum() - block.diagonal().sum()) / (n * (n - 1)) if n > 1 else torch.tensor(float("nan"))
            inter = cosine[question][:, context].mean() if context.any() else torch.tensor(0.0)
            scores.append(float(intra + inter_weight * inter))  # float() waits for the device
    elapsed = time.perf_counter() - start
    handle.remove()
    return np.array(scores), elapsed


def matmul_rate(dtype_name: str, size: int = 1536, repeats: int = 20) -> float:
    """Measured dense matmul rate on this machine, FLOP/s (median of repeats)."""
    import torch

    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * size**3 / float(np.median(times))


def forward_flops_per_token(config, layers: int) -> float:
    """Matmul FLOPs per token up to the scoring site (attention score FLOPs excluded: small at these T)."""
    d = config.hidden_size
    kv = d // config.num_attention_heads * getattr(config, "num_key_value_heads", config.num_attention_heads)
    attention = 2 * (d * d * 2 + d * kv * 2)
    mlp = 2 * 3 * d * config.intermediate_size
    return layers * (attention + mlp) - mlp  # the last layer stops at its MLP input


def peak_memory_mb(data: str, rows: int, layer: int) -> float:
    """Peak RSS of a fresh child process that scores `rows` prompts (its own ru_maxrss, in KiB on Linux)."""
    with tempfile.TemporaryDirectory() as out:
        argv = ["gaincurate", "score", data, "--limit", str(rows), "--out", out, "--quiet", "--layer", str(layer)]
        program = (
            "import resource, sys\n"
            "from gaincurate.cli import main\n"
            f"sys.argv = {argv!r}\n"
            "try:\n    main()\nexcept SystemExit as done:\n    assert not done.code, done.code\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
        )
        done = subprocess.run([sys.executable, "-c", program], check=True, capture_output=True, text=True)
    return int(done.stdout.strip().splitlines()[-1]) / 1024


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="JSON/JSONL prompt file with a 'problem' column")
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--model", default=None, help="default: the embedded SmolLM2-135M-Instruct")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--memory", action="store_true", help="also measure peak RSS at 500 and 5,000 rows")
    parser.add_argument("--memory-layer", type=int, default=2, help="site layer for the memory runs (speed)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)

    import torch

    if args.threads:
        # On a shared machine, 2 OpenMP threads fighting other jobs can run several times slower than 1.
        torch.set_num_threads(args.threads)

    from gaincurate.config import ScoreConfig
    from gaincurate.data import load_rows
    from gaincurate.metrics import spearman
    from gaincurate.model import load_model, load_tokenizer, resolve_dtype, resolve_source
    from gaincurate.prompts import PromptEncoder
    from gaincurate.scoring import score
    from gaincurate.shards import read_scores

    dtype = resolve_dtype(args.dtype, "cpu")
    config = ScoreConfig(dataset=args.data, limit=args.rows, model=args.model, dtype=dtype, device="cpu", quiet=True)
    rows = load_rows(args.data, split=None, prompt_column="problem", limit=args.rows).rows
    source = resolve_source(args.model)
    tokenizer = load_tokenizer(source)
    prompts = PromptEncoder(tokenizer, config.prompt_format, config.max_length).encode(rows["problem"])
    tokens = sum(len(p.input_ids) for p in prompts)

    # Same model, same prompts, same dtype: the naive baseline first.
    model = load_model(source, dtype=dtype, device="cpu")
    last = model.config.num_hidden_layers - 1
    naive, naive_seconds = naive_scores(model, tokenizer, prompts, last, config.inter_weight)
    model_config = model.config
    del model

    with tempfile.TemporaryDirectory() as out:
        manifest = score(config.replace(out=out))
        ours = read_scores(Path(out))["gc_score"].to_numpy()
    timings = manifest["timings"]
    ours_seconds = timings["score_seconds"]

    rate = matmul_rate(dtype)
    per_token = forward_flops_per_token(model_config, model_config.num_hidden_layers)
    # The floor counts the tokens this run pushed through the model; the shared prefix ran once.
    computed_tokens = timings["tokens"]
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
        "torch": torch.__version__,
        "model": manifest["model"]["id"],
        "dtype": dtype,
        "rows": len(prompts),
        "prompt_tokens": tokens,
        "naive_seconds": naive_seconds,
        "gaincurate_seconds": ours_seconds,
        "speedup": naive_seconds / ours_seconds,
        "gaincurate_forward_seconds": timings["forward_seconds"],
        "padding_overhead": timings["padded_tokens"] / max(timings["tokens"], 1) - 1,
        "matmul_gflops": rate / 1e9,
        "tokens_through_model": computed_tokens,
        "floor_seconds_full_prompts": per_token * tokens / rate,
        "floor_seconds": per_token * computed_tokens / rate,
        "fraction_of_floor": (per_token * computed_tokens / rate) / ours_seconds,
        "naive_floor_seconds": (per_token + 2 * model_config.hidden_size * model_config.vocab_size) * tokens / rate,
        "max_abs_diff_vs_naive": float(np.nanmax(np.abs(naive - ours))),
        "spearman_vs_naive": spearman(naive, ours),
    }
    if args.memory:
        result["peak_rss_mb"] = {n: peak_memory_mb(args.data, n, args.memory_layer) for n in (500, 5000)}
        result["memory_layer"] = args.memory_layer

    for key, value in result.items():
        print(f"{key:>28}: {value:.4g}" if isinstance(value, float) else f"{key:>28}: {value}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
