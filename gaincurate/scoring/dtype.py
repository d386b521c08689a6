"""The scoring dtype on CPU, chosen by timing the model's own linear layers rather than from CPU flags.

Flags mislead: a Xeon with AVX512-BF16 but no AMX runs torch's bf16 matmul at about half its fp32 rate,
one with AMX at several times it, and an EPYC without bf16 units emulates it. So `--dtype auto` times
one decoder layer's linear shapes (q/k/v/o and the MLP, from the model's config, random weights) in
each candidate dtype on `PROBE_TOKENS` tokens, and picks the fastest candidate that is exact (float32) or
passes the fidelity gate (`gaincurate.scoring.fidelity`).

The measurement is built so that load from other processes cannot flip it: every round times each
candidate right after float32, and a candidate's speed is the median over at least `MIN_ROUNDS` rounds
of its ratio to float32 within the round. A load that lasts slows both sides of a ratio alike, and a
burst spoils a few rounds, which the median ignores. A lossy dtype must then be at least `MARGIN` times
float32's speed: near a tie float32 wins, so noise around a tie cannot flip the choice either.

Candidates: float32, bfloat16, float16 (where torch can run it) and int8: dynamic int8 quantization of
the `nn.Linear` layers with torchao (`pip install 'gaincurate[int8]'`), activations quantized per token.

    from gaincurate.scoring.dtype import choose_dtype
    choose_dtype({"float32": 2e-4, "bfloat16": 5e-5}, gate=lambda dtype: {"passed": True, ...}).dtype
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

CANDIDATES = ("float32", "bfloat16", "float16", "int8")
REFERENCE = "float32"  # exact: the dtype every lossy candidate is gated against
PROBE_TOKENS = 256
PROBE_BUDGET_SECONDS = 0.15  # rounds past MIN_ROUNDS stop here
MIN_ROUNDS = 9  # rounds always timed: the median of 9 ratios ignores 4 spoiled by bursts of load
MAX_ROUNDS = 15
MARGIN = 1.1  # a lossy dtype must beat float32 by this factor: a tie keeps the exact dtype
_MLP_NAMES = ("mlp", "feed_forward", "block_sparse_moe", "ffn")


def model_shapes(model_config: Any) -> dict[str, Any]:
    """The linear shapes of one decoder layer: `[[in, out, count, is_mlp], ...]`, and the layer count.

    Read from a weightless (meta device) instance of the model, so any architecture transformers can
    build is covered and nothing is allocated.
    """
    import torch
    from transformers import AutoModelForCausalLM

    from gaincurate.model import decoder_layers

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(model_config)
    counts: dict[tuple[int, int, bool], int] = {}
    for name, module in decoder_layers(model)[0].named_modules():
        if isinstance(module, torch.nn.Linear):
            shape = (module.in_features, module.out_features)
        elif type(module).__name__ == "Conv1D":  # GPT-2 stores [in, out]
            shape = tuple(module.weight.shape)
        else:
            continue
        key = (*shape, name.split(".")[0] in _MLP_NAMES)
        counts[key] = counts.get(key, 0) + 1
    linears = [[size_in, size_out, count, is_mlp] for (size_in, size_out, is_mlp), count in sorted(counts.items())]
    return {"linears": linears, "num_layers": model_config.num_hidden_layers}


def flops_per_token(shapes: dict[str, Any], last_layer: int, site: str) -> float:
    """Matmul FLOPs per token of a forward that stops at `site` of layer `last_layer` (0-based).

    Attention-score FLOPs are left out: at prompt lengths of a few hundred tokens they are a few percent.
    """
    attention = sum(2 * i * o * n for i, o, n, mlp in shapes["linears"] if not mlp)
    mlp = sum(2 * i * o * n for i, o, n, is_mlp in shapes["linears"] if is_mlp)
    total = (last_layer + 1) * (attention + mlp)
    return float(total - mlp if site == "mlp-input" else total)


def layer_flops_per_token(shapes: dict[str, Any]) -> float:
    return float(sum(2 * i * o * n for i, o, n, _ in shapes["linears"]))


def unavailable(dtype: str) -> str | None:
    """Why `dtype` cannot run here, or None when it can."""
    import torch

    if dtype == "int8":
        from gaincurate.model import quiet_dependency_noise

        quiet_dependency_noise()  # torchao's CUDA-only extensions fail to load on this CPU: said at import, dropped
        try:
            from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_  # noqa: F401
        except ImportError as error:
            return f"torchao is not installed or does not import ({error}); pip install 'gaincurate[int8]'"
        return None
    try:
        ones = torch.ones(2, 2, dtype=getattr(torch, dtype))
        ones @ ones
    except (RuntimeError, TypeError) as error:
        return f"torch cannot multiply {dtype} matrices on this CPU ({error})"
    try:  # 64 tokens of 64 features: the smallest attention that takes torch's blocked CPU kernel
        block = torch.ones(1, 1, 64, 64, dtype=getattr(torch, dtype))
        torch.nn.functional.scaled_dot_product_attention(block, block, block, is_causal=True)
    except RuntimeError as error:
        return f"torch cannot run {dtype} attention on this CPU ({error})"
    return None


def convert_model(model: Any, dtype: str) -> Any:
    """Cast `model` (loaded in float32 for int8) to `dtype` in place; int8 quantizes its `nn.Linear` layers.

    The output embedding is left alone: scoring never reaches the LM head.
    """
    import torch

    if dtype != "int8":
        return model.to(getattr(torch, dtype))
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    quantize_(
        model,
        Int8DynamicActivationInt8WeightConfig(),
        filter_fn=lambda module, name: isinstance(module, torch.nn.Linear) and module is not head,
    )
    return model


def load_dtype(dtype: str) -> str:
    """The dtype to load weights in before `convert_model`: int8 quantizes a float32 model."""
    return "float32" if dtype == "int8" else dtype


def load_in(source: Any, dtype: str, device: str) -> Any:
    """The model of `source` in a scoring dtype on `device`: int8 is loaded in float32 and its linears quantized."""
    from gaincurate.model import load_model

    model = load_model(source, dtype=load_dtype(dtype), device=device)
    return convert_model(model, "int8") if dtype == "int8" else model


def probe_layer(shapes: dict[str, Any], dtype: str) -> list[tuple[Any, Any, int]]:
    """`(linear, input dtype, count)` per distinct shape of one layer, random weights, on `PROBE_TOKENS` tokens."""
    import torch

    generator = torch.Generator().manual_seed(0)
    work = torch.float32 if dtype == "int8" else getattr(torch, dtype)
    parts = []
    for size_in, size_out, count, _ in shapes["linears"]:
        linear = torch.nn.Linear(size_in, size_out, bias=False, device="meta")  # skips the default init's cost
        weight = torch.empty(size_out, size_in).uniform_(-0.05, 0.05, generator=generator)
        linear.weight = torch.nn.Parameter(weight.to(work), requires_grad=False)
        parts.append((linear, count))
    if dtype == "int8":
        convert_model(torch.nn.Sequential(*(linear for linear, _ in parts)), "int8")
    return [(linear, work, count) for linear, count in parts]


Parts = list[tuple[Any, Any, int]]  # (linear, input dtype, count), from `probe_layer`


def race(contestants: dict[str, tuple[Parts, int]], budget: float, rounds: int = 7) -> dict[str, float]:
    """Seconds per token of each contestant (`probe_layer` parts, token count): best of interleaved rounds.

    Every round times each contestant once, so a burst of load from another process hits all of them
    alike rather than whichever happened to be running. Rounds stop once `budget` seconds have passed,
    the warm-up included, after at least one timed round.
    """
    seconds = timed_rounds(_layer_timers(contestants), budget, min_rounds=1, max_rounds=rounds)
    return {name: min(seconds[name]) / tokens for name, (_, tokens) in contestants.items()}


def _layer_timers(contestants: dict[str, tuple[Parts, int]]) -> dict[str, Callable[[], float]]:
    """One timer per contestant: seconds of one pass through its layer, warmed up (kernels built)."""
    import torch

    generator = torch.Generator().manual_seed(0)
    timers = {}
    for name, (parts, tokens) in contestants.items():
        layer = [(linear, torch.randn(tokens, linear.in_features, generator=generator).to(work), count)
                 for linear, work, count in parts]  # fmt: skip
        with torch.inference_mode():
            _layer_seconds(layer)  # warm-up: oneDNN builds its kernels on the first call of a shape
        timers[name] = lambda layer=layer: _inference_seconds(layer)
    return timers


def _inference_seconds(layer: list[tuple[Any, Any, Any]]) -> float:
    import torch

    with torch.inference_mode():
        return _layer_seconds(layer)


def _layer_seconds(layer: list[tuple[Any, Any, Any]]) -> float:
    total = 0.0
    for linear, x, count in layer:
        start = time.perf_counter()
        linear(x)
        total += (time.perf_counter() - start) * count
    return total


def timed_rounds(
    timers: dict[str, Callable[[], float]], budget: float, *, min_rounds: int, max_rounds: int
) -> dict[str, list[float]]:
    """Seconds of every round per timer: each round calls every timer once, in a fixed order.

    At least `min_rounds` rounds; more while the timed seconds stay within `budget`, up to `max_rounds`.
    """
    seconds: dict[str, list[float]] = {name: [] for name in timers}
    spent = 0.0
    for round_index in range(max_rounds):
        if round_index >= min_rounds and spent > budget:
            break
        for name, timer in timers.items():
            seconds[name].append(timer())
            spent += seconds[name][-1]
    return seconds


def measure_dtypes(
    shapes: dict[str, Any],
    candidates: tuple[str, ...] = CANDIDATES,
    budget: float = PROBE_BUDGET_SECONDS,
    timers: dict[str, Callable[[], float]] | None = None,
) -> dict[str, Any]:
    """Each candidate's speed against float32 (median of paired ratios), and why any candidate cannot run.

    `seconds_per_token` is float32's median time over the candidate's median speed-up, so the ratio of
    any two entries is the load-proof figure `choose_dtype` compares. `timers` (seconds of one pass, per
    dtype) replace the real probe, for tests.
    """
    missing = {dtype: why for dtype in candidates if (why := unavailable(dtype))}
    runnable = [REFERENCE, *(dtype for dtype in candidates if dtype not in missing and dtype != REFERENCE)]
    if timers is None:
        timers = _layer_timers({dtype: (probe_layer(shapes, dtype), PROBE_TOKENS) for dtype in runnable})
    seconds = timed_rounds({d: timers[d] for d in runnable}, budget, min_rounds=MIN_ROUNDS, max_rounds=MAX_ROUNDS)
    reference = float(np.median(seconds[REFERENCE])) / PROBE_TOKENS
    speedups = {dtype: paired_speedup(seconds[REFERENCE], seconds[dtype]) for dtype in runnable}
    return {
        "seconds_per_token": {dtype: reference / speedup for dtype, speedup in speedups.items()},
        "speedup": speedups,
        "rounds": len(seconds[REFERENCE]),
        "unavailable": missing,
        "tokens": PROBE_TOKENS,
    }


def paired_speedup(reference: list[float], candidate: list[float]) -> float:
    """Median over rounds of float32's time over the candidate's, each pair timed back to back."""
    return float(np.median([r / c for r, c in zip(reference, candidate, strict=True)]))


@dataclass(frozen=True)
class DtypeChoice:
    dtype: str
    reason: str  # one line: what was measured and which gate results decided
    gates: dict[str, dict[str, Any]] = field(default_factory=dict)  # the gate results consulted


def describe_gate(result: dict[str, Any]) -> str:
    comparison = "<=" if result["max_abs_diff"] <= result["bound"] else ">"
    return (
        f"Spearman {result['spearman']:.4f} (needs >= {result['min_spearman']}), "
        f"max |score diff| {result['max_abs_diff']:.4f} {comparison} {result['bound']:.4f}"
    )


def choose_dtype(timings: dict[str, float], gate: Callable[[str], dict[str, Any]]) -> DtypeChoice:
    """The fastest dtype that is float32 or passes `gate`; a lossy dtype counts only at `MARGIN` x float32's speed.

    `gate` runs only for lossy dtypes that clear the margin.
    """
    reference = timings[REFERENCE]
    steps, gates = [], {}
    for dtype in sorted(timings, key=lambda name: (timings[name], name != REFERENCE)):
        speed = f"{reference / timings[dtype]:.2f}x float32's speed"
        if dtype == REFERENCE or reference / timings[dtype] < MARGIN:
            untried = [d for d in sorted(timings) if d not in gates and d != REFERENCE]
            others = ", ".join(f"{d} {reference / timings[d]:.2f}x" for d in untried)
            tie = f"; a lossy dtype needs {MARGIN:.2f}x" if any(reference / timings[d] >= 1 for d in untried) else ""
            steps.append("float32 is exact" + (f" (measured speed vs float32: {others}{tie})" if others else ""))
            return DtypeChoice(REFERENCE, "; ".join(steps), gates)
        gates[dtype] = result = gate(dtype)
        if result["passed"]:
            steps.append(f"{dtype} ran at {speed} and passed the fidelity gate ({describe_gate(result)})")
            return DtypeChoice(dtype, "; ".join(steps), gates)
        steps.append(f"{dtype} ran at {speed} but failed the fidelity gate ({describe_gate(result)})")
    raise AssertionError("float32 is always a candidate")  # pragma: no cover
